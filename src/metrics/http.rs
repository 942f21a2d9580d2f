//! Request counts and latency, by the pattern each route was registered under.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `{route, status}`: `route` is the pattern of the route table (`http::routes::Routes`), and
/// so bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

/// `{route}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 25 µs … ~0.8 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

/// `rtconfig_http_requests_total` and `rtconfig_http_request_duration_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RouteStatus, Counter>,
    duration: HistogramFamily,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
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

    /// The series of the route registered under `pattern`, for what counts its requests (the
    /// route table's middleware, the sidecar's fast path). Several may count into one route.
    pub fn route(&self, pattern: &'static str) -> RouteMetrics {
        RouteMetrics {
            route: pattern,
            http: self.clone(),
            ok: OnceLock::new(),
            duration: OnceLock::new(),
        }
    }
}

/// One route's series. Its `status="200"` counter and its histogram are looked up in their
/// families on first use (so a series appears with its first request) and kept: then a request
/// costs no lock and no hash. Other statuses are looked up per request.
pub struct RouteMetrics {
    route: &'static str,
    http: HttpMetrics,
    ok: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// Counts one request answered with `status` after `elapsed`.
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let status = status.as_u16();
        if status == 200 {
            self.ok.get_or_init(|| self.counter(200)).inc();
        } else {
            self.counter(status).inc();
        }
        self.duration
            .get_or_init(|| {
                self.http
                    .duration
                    .get_or_create(&RouteLabel { route: self.route })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }

    fn counter(&self, status: u16) -> Counter {
        self.http
            .requests
            .get_or_create(&RouteStatus {
                route: self.route,
                status,
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{registry, Exposition};

    #[test]
    fn routes_count_by_status_into_the_shared_families() {
        let mut r = registry();
        let http = HttpMetrics::register(&mut r);
        let (a, b) = (http.route("/a/{x}"), http.route("/a/{x}"));
        a.record(StatusCode::OK, Duration::from_millis(1));
        b.record(StatusCode::OK, Duration::from_millis(1));
        a.record(StatusCode::NOT_FOUND, Duration::from_millis(1));
        let text = Exposition::new(r).encode();
        for line in [
            "rtconfig_http_requests_total{route=\"/a/{x}\",status=\"200\"} 2",
            "rtconfig_http_requests_total{route=\"/a/{x}\",status=\"404\"} 1",
            "rtconfig_http_request_duration_seconds_count{route=\"/a/{x}\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn no_series_before_the_first_request() {
        let mut r = registry();
        let http = HttpMetrics::register(&mut r);
        let _unused = http.route("/b");
        assert!(!Exposition::new(r).encode().contains("route="));
    }
}
