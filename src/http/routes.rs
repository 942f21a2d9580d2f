//! A route table whose patterns are the `route` label of `rtconfig_http_*`, and which declares
//! next to each route what it takes to call it.
//!
//! Routes are added to [`Routes`] with their pattern and an access declaration `A` (the admin's
//! `auth::guard::Needs`: the role each method needs; `()` on the sidecar, which has no
//! auth), layered as `Router::route_layer` would layer them ([`Routes::map`], or
//! [`Routes::map_with`] to build each route's layer from its declaration, as the admin's guard
//! does), listed with [`Routes::table`] (the RBAC matrix test reads it), and turned into an axum
//! `Router` by [`Routes::metered`], which
//! wraps each route in a counting middleware holding that route's series
//! ([`RouteMetrics`], resolved once): the label is the pattern the route was registered under,
//! so there is no second list of patterns to keep in step and no label lookup per request.
//!
//! Like `Router::route_layer`, the counting middleware sees only requests that matched a
//! route: those a route answers, and its `405` for another method. Unknown paths (the
//! router's fallback) and requests refused before routing (`414`) are not counted.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::Router;

use crate::metrics::{HttpMetrics, RouteMetrics};

/// Routes with their patterns and access declarations, not yet a `Router`.
pub struct Routes<S, A = ()> {
    routes: Vec<(&'static str, MethodRouter<S>, A)>,
}

impl<S: Clone + Send + Sync + 'static, A> Default for Routes<S, A> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<S: Clone + Send + Sync + 'static, A> Routes<S, A> {
    pub fn new() -> Routes<S, A> {
        Routes { routes: Vec::new() }
    }

    /// Adds `method_router` under `pattern` (which becomes its `route` label), with what it
    /// takes to call it.
    pub fn route(
        mut self,
        pattern: &'static str,
        method_router: MethodRouter<S>,
        access: A,
    ) -> Routes<S, A> {
        self.routes.push((pattern, method_router, access));
        self
    }

    /// Applies `f` (a layer, a fallback) to every route added so far, as `Router::route_layer`
    /// applies a layer: the counting middleware of [`Self::metered`] stays outside it.
    pub fn map(self, f: impl Fn(MethodRouter<S>) -> MethodRouter<S>) -> Routes<S, A> {
        self.map_with(|r, _, _| f(r))
    }

    /// As [`Self::map`], with each route's pattern and access declaration.
    pub fn map_with(
        self,
        f: impl Fn(MethodRouter<S>, &'static str, &A) -> MethodRouter<S>,
    ) -> Routes<S, A> {
        Routes {
            routes: self
                .routes
                .into_iter()
                .map(|(p, r, a)| {
                    let r = f(r, p, &a);
                    (p, r, a)
                })
                .collect(),
        }
    }

    /// The routes of both.
    pub fn merge(mut self, other: Routes<S, A>) -> Routes<S, A> {
        self.routes.extend(other.routes);
        self
    }

    /// Every pattern with its access declaration, in the order added.
    pub fn table(&self) -> Vec<(&'static str, &A)> {
        self.routes.iter().map(|(p, _, a)| (*p, a)).collect()
    }

    /// The router, each route counted into `http` under its pattern, outside every layer
    /// [`Self::map`] added.
    pub fn metered(self, http: &HttpMetrics) -> Router<S> {
        self.routes
            .into_iter()
            .fold(Router::new(), |router, (pattern, method_router, _)| {
                let series = Arc::new(http.route(pattern));
                router.route(
                    pattern,
                    method_router.layer(from_fn_with_state(series, count)),
                )
            })
    }
}

/// Middleware: counts a request into its route's series, and times it.
async fn count(State(series): State<Arc<RouteMetrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let resp = next.run(req).await;
    series.record(resp.status(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::{registry, Exposition};

    async fn status(router: &Router, method: &str, uri: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
    }

    #[tokio::test]
    async fn routes_are_labelled_by_their_pattern_outside_their_layers() {
        let mut r = registry();
        let http = HttpMetrics::register(&mut r);
        let teapot = from_fn_with_state((), |_: State<()>, _: Request, _: Next| async {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::IM_A_TEAPOT;
            resp
        });
        let router = Routes::new()
            .route("/guarded/{id}", get(|| async { "no" }), "guarded")
            .map(|route| route.layer(teapot.clone()))
            .merge(Routes::new().route("/open/{id}", get(|| async { "yes" }), "open"));
        assert_eq!(
            router.table(),
            vec![("/guarded/{id}", &"guarded"), ("/open/{id}", &"open")]
        );
        let router = router
            .metered(&http)
            .fallback(|| async { StatusCode::NOT_FOUND });
        assert_eq!(status(&router, "GET", "/open/1").await, StatusCode::OK);
        assert_eq!(status(&router, "GET", "/open/2").await, StatusCode::OK);
        assert_eq!(
            status(&router, "POST", "/open/2").await,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(&router, "GET", "/guarded/1").await,
            StatusCode::IM_A_TEAPOT
        );
        assert_eq!(
            status(&router, "GET", "/nowhere").await,
            StatusCode::NOT_FOUND
        );
        let text = Exposition::new(r).encode();
        for line in [
            "rtconfig_http_requests_total{route=\"/open/{id}\",status=\"200\"} 2",
            "rtconfig_http_requests_total{route=\"/open/{id}\",status=\"405\"} 1",
            "rtconfig_http_requests_total{route=\"/guarded/{id}\",status=\"418\"} 1",
            "rtconfig_http_request_duration_seconds_count{route=\"/open/{id}\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("/open/1") && !text.contains("nowhere"),
            "{text}"
        );
    }
}
