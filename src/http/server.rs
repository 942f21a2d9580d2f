//! The accept loop shared by every listener: HTTP/1.1 on hyper with limits and graceful drain.
//!
//! Limits: request head (line + headers) ≤ 16 KiB (larger → 431 by hyper) and ≤ 64 headers
//! (more → 431, [`too_many_headers`]), URI ≤ 8 KiB (→ 414 with our JSON error), 10 s to send a
//! request head (→ 408 and close, [`super::head_timer`]), and the peer address in every
//! request's extensions (`ConnectInfo`). On shutdown the listener closes
//! at once, idle keep-alive connections are closed, and in-flight requests get until the drain
//! deadline; streams (SSE, long-poll) end themselves on the same shutdown signal.
//!
//! A listener is plain TCP or TLS ([`Transport`]; the admin's `--tls-cert`/`--tls-key`). A TLS
//! listener does each handshake in the connection's task, bounded by the header-read timeout,
//! marks every request it serves with [`ServedOverTls`] (the admin sends HSTS on those), and
//! answers a plain-HTTP request sent to it with a 400 that says to use `https://`.
//!
//! A listener serves an [`App`]: an axum `Router`, optionally behind a [`FastPath`] that answers
//! the hottest requests (the sidecar's `GET /v1/configs/{key}`) before routing. Routing,
//! middleware, boxed futures and hyper's `HeaderMap` responses cost several times what reading
//! the snapshot costs; on a plain-TCP listener with a fast path, each connection starts in
//! [`super::fast_conn`]'s own HTTP/1.1 loop, which writes the fast path's answers as bytes and
//! gives the connection to hyper and the router at the first request the fast path does not
//! take. The fast path answers byte for byte as the router would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures_util::future::{ready, Either};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::Service;

use super::drain::Drain;
use super::error::ApiError;
use super::fast_conn::FastConnection;
pub use super::fast_conn::FastRequest;
use super::head_timer::{Deadlined, HeadClock, Tracked};
use crate::shutdown::Shutdown;

pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers some requests without routing or hyper ([`super::fast_conn`]). An answer must be
/// byte for byte what hyper would write for the router's response (status line, headers in the
/// router's order, then `content-length` and `date`, then the body) and count the same
/// metrics; `false` (with `out` untouched) leaves the request, and the rest of its connection,
/// to hyper and the router.
pub trait FastPath: Send + Sync + 'static {
    /// Appends the whole response to `req` to `out`; `date` is the `Date` header's value.
    fn answer(&self, req: &FastRequest<'_>, date: &[u8], out: &mut Vec<u8>) -> bool;
}

/// In the extensions of every request that came over TLS.
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// How a listener's connections are carried.
#[derive(Clone, Default)]
pub enum Transport {
    #[default]
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
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
}

impl From<Router> for App {
    fn from(router: Router) -> App {
        App { router, fast: None }
    }
}

/// For in-process use (tests, benches): the router. (The fast path works on the wire, in
/// [`super::fast_conn`], and answers as the router does.)
impl<B> Service<http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.router.call(req)
    }
}

/// The body hyper writes: an empty one of our own (431), or whatever the router produced.
type ServedBody = http_body_util::Either<Full<Bytes>, Body>;

/// Serves `app` (a `Router`, or an [`App`] with a fast path) over plain TCP on `listener` until
/// `shutdown`, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: impl Into<App>,
    shutdown: Shutdown,
    drain: Duration,
) {
    serve_with(listener, app, Transport::Plain, shutdown, drain).await;
}

/// [`serve`], over `transport` (plain TCP or TLS).
pub async fn serve_with(
    listener: TcpListener,
    app: impl Into<App>,
    transport: Transport,
    shutdown: Shutdown,
    drain: Duration,
) {
    let app: App = app.into();
    let graceful = Drain::new();
    let builder = http1_builder();
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
        match &transport {
            Transport::Plain if app.fast.is_some() => {
                let Some(fast) = app.fast.clone() else {
                    continue;
                };
                let conn = FastConnection::new(stream, peer, app.clone(), fast, builder.clone());
                let conn = graceful.watcher().watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            Transport::Plain => {
                let clock = HeadClock::new();
                let conn = builder.serve_connection(
                    TokioIo::new(Deadlined::new(stream, clock.clone())),
                    service(app.clone(), peer, false, clock),
                );
                let conn = graceful.watcher().watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            Transport::Tls(acceptor) => {
                let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
                // Counted by the drain from now on, handshake included.
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Some(tls) = handshake(&acceptor, stream, peer).await else {
                        return;
                    };
                    let clock = HeadClock::new();
                    let conn = builder.serve_connection(
                        TokioIo::new(Deadlined::new(tls, clock.clone())),
                        service(app, peer, true, clock),
                    );
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
        }
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

/// hyper's HTTP/1 settings for every listener.
pub(super) fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No `header_read_timeout` (one timer per request; `head_timer` keeps one per connection)
    // and no `max_headers` (hyper then fills a header array of that size for every request;
    // its default bound is 100, and `service` answers more than `MAX_HEADERS` with 431).
    builder.max_buf_size(MAX_HEAD_BYTES).keep_alive(true);
    builder
}

/// One connection's service for hyper: the router with the peer address (and the TLS mark) in
/// the request's extensions. It tells the connection's [`HeadClock`] when a request arrives
/// and, through the response body, when its answer is done.
pub(super) fn service(
    app: App,
    peer: SocketAddr,
    tls: bool,
    clock: Arc<HeadClock>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked<ServedBody>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Tracked<ServedBody>>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        clock.request_started();
        let track = {
            let clock = clock.clone();
            move |resp: Response<ServedBody>| resp.map(|body| Tracked::new(body, clock))
        };
        if req.headers().len() > MAX_HEADERS {
            return Either::Left(ready(Ok::<_, Infallible>(track(too_many_headers()))));
        }
        req.extensions_mut().insert(ConnectInfo(peer));
        if tls {
            req.extensions_mut().insert(ServedOverTls);
        }
        let mut router = app.router.clone();
        Either::Right(async move {
            let resp = router.call(req.map(Body::new)).await?;
            Ok(track(resp.map(ServedBody::Right)))
        })
    })
}

/// The answer to a head with more than [`MAX_HEADERS`] headers: 431 with an empty body, as
/// hyper answers one over [`MAX_HEAD_BYTES`], and the connection closed.
fn too_many_headers() -> Response<ServedBody> {
    let mut resp = Response::new(ServedBody::Left(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The body a plain-HTTP request to a TLS listener gets (400) before the connection is closed.
const PLAIN_HTTP_TO_TLS: &str = r#"{"error":{"code":"tls_required","message":"this port speaks HTTPS only: use an https:// URL"}}"#;

/// [`PLAIN_HTTP_TO_TLS`] as a whole HTTP/1.1 response.
fn plain_http_to_tls_response() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_HTTP_TO_TLS}",
        PLAIN_HTTP_TO_TLS.len()
    )
}

/// Answers a plain-HTTP request on a TLS listener with a 400 and closes. The request is read
/// first and the socket drained after the answer, so the close does not reset the connection
/// before the client has read it.
async fn refuse_plain_http(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    let linger = Duration::from_millis(500);
    let _ = tokio::time::timeout(linger, stream.read(&mut buf)).await;
    if stream
        .write_all(plain_http_to_tls_response().as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(linger, async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The TLS handshake of one connection, bounded by [`HEADER_READ_TIMEOUT`]. A client that
/// speaks plain HTTP gets [`PLAIN_HTTP_TO_TLS`]; any failure closes the connection (`None`).
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let attempt = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(1) if first[0] != TLS_HANDSHAKE_RECORD => {
                refuse_plain_http(stream).await;
                tracing::debug!(%peer, "plain HTTP on the TLS listener; told to use https");
                None
            }
            Ok(1) => match acceptor.accept(stream).await {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    None
                }
            },
            _ => None,
        }
    };
    tokio::time::timeout(HEADER_READ_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
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
