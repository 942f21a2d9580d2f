//! The accept loop shared by every listener: HTTP/1.1 on hyper with limits and graceful drain.
//!
//! Limits: request head (line + headers) ≤ 16 KiB and ≤ 64 headers (larger → 431 by hyper),
//! URI ≤ 8 KiB (→ 414 with our JSON error), a header-read timeout against slow clients, and the
//! peer address in every request's extensions (`ConnectInfo`). On shutdown the listener closes
//! at once, idle keep-alive connections are closed, and in-flight requests get until the drain
//! deadline; streams (SSE, long-poll) end themselves on the same shutdown signal.
//!
//! A listener serves an [`App`]: an axum `Router`, optionally behind a [`FastPath`] that answers
//! the hottest requests (the sidecar's `GET /v1/configs/{key}`) before routing. Routing,
//! middleware and boxed futures cost several times what hyper itself costs per request; the
//! fast path answers exactly as the router would, and gives every other request to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures_util::future::{ready, Either, Ready};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service;

use super::error::ApiError;
use crate::shutdown::Shutdown;

pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers some requests without routing. An answer must be exactly what the router would
/// answer (status, headers, body, metrics); `None` hands the request to the router.
pub trait FastPath: Send + Sync + 'static {
    fn answer(&self, method: &Method, uri: &Uri) -> Option<Response<Full<Bytes>>>;
}

/// What a listener serves: a router, optionally behind a [`FastPath`].
#[derive(Clone)]
pub struct App {
    router: Router,
    fast: Option<Arc<dyn FastPath>>,
}

impl App {
    pub fn with_fast_path(router: Router, fast: Arc<dyn FastPath>) -> App {
        App {
            router,
            fast: Some(fast),
        }
    }

    fn fast_answer<B>(&self, req: &http::Request<B>) -> Option<Response<Full<Bytes>>> {
        self.fast.as_ref()?.answer(req.method(), req.uri())
    }
}

impl From<Router> for App {
    fn from(router: Router) -> App {
        App { router, fast: None }
    }
}

/// For in-process use (tests, benches): the fast path, then the router, as [`serve`] does.
impl<B> Service<http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<Ready<Result<Response, Infallible>>, axum::routing::future::RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.fast_answer(&req) {
            Some(resp) => Either::Left(ready(Ok(resp.map(Body::new)))),
            None => Either::Right(self.router.call(req)),
        }
    }
}

/// The body hyper writes: a fast-path answer as is, or whatever the router produced.
type ServedBody = http_body_util::Either<Full<Bytes>, Body>;

/// Serves `app` (a `Router`, or an [`App`] with a fast path) on `listener` until `shutdown`,
/// then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: impl Into<App>,
    shutdown: Shutdown,
    drain: Duration,
) {
    let app: App = app.into();
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let local = listener.local_addr().ok();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            if let Some(resp) = app.fast_answer(&req) {
                return Either::Left(ready(Ok::<_, Infallible>(resp.map(ServedBody::Left))));
            }
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = app.router.clone();
            Either::Right(async move {
                let resp = router.call(req.map(Body::new)).await?;
                Ok(resp.map(ServedBody::Right))
            })
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(addr = ?local, "listener closed; draining connections");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(addr = ?local, drain_seconds = drain.as_secs_f64(), "drain deadline passed; closing remaining connections");
    }
}

/// Middleware: refuses over-long URIs before routing.
pub async fn limit_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such path")
}

/// Fallback for a known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Binds a listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
