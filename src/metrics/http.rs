//! Request counts and latency, by the router's route pattern.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A route label: a pattern of the router (axum's `MatchedPath`), or `unmatched`. Patterns are
/// the router's own and so bounded; each is interned once, so a label costs a reference count.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Route(Arc<str>);

impl Route {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: Route,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Route,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 25 µs … ~0.8 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

/// `rtconfig_http_requests_total` and `rtconfig_http_request_duration_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<RouteStatus, Counter>,
    pub duration: HistogramFamily,
    routes: Arc<RwLock<HashMap<Arc<str>, Route>>>,
}

/// The label of a request no route matched (fallbacks, refusals before routing).
pub const UNMATCHED: &str = "unmatched";

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            routes: Arc::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response (streams: time to the first byte)",
            m.duration.clone(),
        );
        m
    }

    /// The label of a route pattern (`None`: no route matched), interned on first use.
    pub fn route(&self, pattern: Option<&str>) -> Route {
        let pattern = pattern.unwrap_or(UNMATCHED);
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pattern)
        {
            return r.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes
            .entry(Arc::from(pattern))
            .or_insert_with_key(|k| Route(k.clone()))
            .clone()
    }

    /// Counts one answered request and its time.
    pub fn record(&self, route: Route, status: u16, seconds: f64) {
        self.duration
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }

    /// The counter of one route and status, to keep where a hot path counts without the
    /// family's lock and hash (the same series [`HttpMetrics::record`] counts into).
    pub fn requests_handle(&self, route: &Route, status: u16) -> Counter {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.clone(),
                status,
            })
            .clone()
    }

    /// The histogram of one route, to keep where a hot path times requests.
    pub fn duration_handle(&self, route: &Route) -> Histogram {
        self.duration
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .clone()
    }
}
