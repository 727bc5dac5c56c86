//! Request metrics per route, with handles resolved when a snapshot is
//! built: the request path never hashes label strings.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portcullis_http_requests_total` | counter | `route`, `method`, `code` |
//! | `portcullis_http_request_duration_seconds` | histogram ([`DURATION_BUCKETS`]) | `route` |
//! | `portcullis_http_request_bytes_total` | counter (request body bytes) | `route` |
//! | `portcullis_http_response_bytes_total` | counter (response body bytes) | `route` |
//!
//! Every request counts, those the gateway answers itself included
//! (404, 401, 429, 502, 503…); `route=""` when no route matched. `method`
//! is one of [`METHODS`]; anything else is `OTHER`.
//!
//! Handles live in a [`RouteMetricsTable`] keyed by route id, owned by the
//! long-lived state: a route that stays across a reload keeps its counters;
//! the series of a route that leaves are removed at commit. Label children
//! are created when a snapshot is committed (at zero, so dashboards have
//! a series before the first request) or when a request is recorded, so
//! preparing a snapshot (and a rejected reload) exports nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use super::status::StatusCounters;

/// Methods with a `method` label of their own; the rest count as `OTHER`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// Buckets of `portcullis_http_request_duration_seconds`, in seconds:
/// 1 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The index of `method` in [`METHODS`].
pub fn method_index(method: &http::Method) -> usize {
    let m = method.as_str();
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|k| *k == m)
        .unwrap_or(METHODS.len() - 1)
}

/// The metric families; cheap to clone (handles to the same metrics).
#[derive(Clone)]
pub struct RequestFamilies {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
}

impl RequestFamilies {
    /// The families, not registered anywhere yet.
    pub fn new() -> prometheus::Result<RequestFamilies> {
        Ok(RequestFamilies {
            requests: IntCounterVec::new(
                Opts::new(
                    "portcullis_http_requests_total",
                    "Requests by route (\"\" when none matched), method and response status, including those the gateway answered itself.",
                ),
                &["route", "method", "code"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_http_request_duration_seconds",
                    "Time from the request's arrival to the end of the response, by route.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["route"],
            )?,
            request_bytes: IntCounterVec::new(
                Opts::new(
                    "portcullis_http_request_bytes_total",
                    "Request body bytes received, by route.",
                ),
                &["route"],
            )?,
            response_bytes: IntCounterVec::new(
                Opts::new(
                    "portcullis_http_response_bytes_total",
                    "Response body bytes sent, by route.",
                ),
                &["route"],
            )?,
        })
    }

    /// Register every family with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.request_bytes.clone()))?;
        registry.register(Box::new(self.response_bytes.clone()))?;
        Ok(())
    }
}

/// The metric handles of one route (or of requests that matched none).
pub struct RouteMetrics {
    route: Arc<str>,
    families: RequestFamilies,
    duration: OnceLock<Histogram>,
    request_bytes: OnceLock<IntCounter>,
    response_bytes: OnceLock<IntCounter>,
    /// By method.
    codes: [StatusCounters; METHODS.len()],
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    fn new(route: &str, families: RequestFamilies) -> RouteMetrics {
        RouteMetrics {
            route: Arc::from(route),
            families,
            duration: OnceLock::new(),
            request_bytes: OnceLock::new(),
            response_bytes: OnceLock::new(),
            codes: Default::default(),
        }
    }

    /// Record one finished request.
    pub fn record(
        &self,
        method: usize,
        status: u16,
        took: Duration,
        request_bytes: usize,
        response_bytes: usize,
    ) {
        let route = &*self.route;
        let f = &self.families;
        let method = method.min(METHODS.len() - 1);
        self.codes[method].inc(status, |code| {
            f.requests
                .with_label_values(&[route, METHODS[method], code])
        });
        self.duration
            .get_or_init(|| f.duration.with_label_values(&[route]))
            .observe(took.as_secs_f64());
        if request_bytes > 0 {
            self.request_bytes
                .get_or_init(|| f.request_bytes.with_label_values(&[route]))
                .inc_by(request_bytes as u64);
        }
        if response_bytes > 0 {
            self.response_bytes
                .get_or_init(|| f.response_bytes.with_label_values(&[route]))
                .inc_by(response_bytes as u64);
        }
    }

    /// Export the route's series at zero before its first request: the
    /// duration, byte counters, and `code="200"` of each method in
    /// `methods` (indices into [`METHODS`]).
    fn zero(&self, methods: &[usize]) {
        let route = &*self.route;
        let f = &self.families;
        for &method in methods {
            let method = method.min(METHODS.len() - 1);
            self.codes[method].touch(200, |code| {
                f.requests
                    .with_label_values(&[route, METHODS[method], code])
            });
        }
        self.duration
            .get_or_init(|| f.duration.with_label_values(&[route]));
        self.request_bytes
            .get_or_init(|| f.request_bytes.with_label_values(&[route]));
        self.response_bytes
            .get_or_init(|| f.response_bytes.with_label_values(&[route]));
    }

    /// Remove every series of this route from the families.
    fn remove_series(&self) {
        let route = &*self.route;
        let f = &self.families;
        let _ = f.duration.remove_label_values(&[route]);
        let _ = f.request_bytes.remove_label_values(&[route]);
        let _ = f.response_bytes.remove_label_values(&[route]);
        for (method, codes) in self.codes.iter().enumerate() {
            for code in codes.codes() {
                let _ = f
                    .requests
                    .remove_label_values(&[route, METHODS[method], &code]);
            }
        }
    }
}

/// The handles of every route, by route id; long-lived. Building a
/// snapshot only reads it ([`RouteMetricsTable::for_route`]); committing it
/// ([`RouteMetricsTable::adopt`]) is the only change.
pub struct RouteMetricsTable {
    families: RequestFamilies,
    unmatched: Arc<RouteMetrics>,
    routes: Mutex<HashMap<String, Arc<RouteMetrics>>>,
}

impl RouteMetricsTable {
    /// A table over `families`.
    pub fn new(families: RequestFamilies) -> RouteMetricsTable {
        RouteMetricsTable {
            unmatched: Arc::new(RouteMetrics::new("", families.clone())),
            families,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// A table over families registered nowhere (for `check`, `diff`,
    /// `explain`).
    pub fn detached() -> RouteMetricsTable {
        // Fixed names and label sets: creating them cannot fail.
        match RequestFamilies::new() {
            Ok(f) => RouteMetricsTable::new(f),
            Err(e) => unreachable!("static metric definitions are valid: {e}"),
        }
    }

    /// The handles of route `id`: the live ones, or fresh ones.
    pub fn for_route(&self, id: &str) -> Arc<RouteMetrics> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes
            .get(id)
            .cloned()
            .unwrap_or_else(|| Arc::new(RouteMetrics::new(id, self.families.clone())))
    }

    /// The handles of requests that matched no route.
    pub fn unmatched(&self) -> Arc<RouteMetrics> {
        self.unmatched.clone()
    }

    /// Make `routes` the table's contents, each with the methods it
    /// answers (empty: any): their series are exported from now on, at
    /// zero until their first request (`code="200"` for each method, `GET`
    /// for a route of any method); the series of routes that left stop
    /// being exported.
    pub fn adopt<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a Arc<RouteMetrics>, &'a [String])>,
    ) {
        let kept: HashMap<String, Arc<RouteMetrics>> = routes
            .into_iter()
            .map(|(m, methods)| {
                let indices: Vec<usize> = if methods.is_empty() {
                    vec![method_index(&http::Method::GET)]
                } else {
                    methods
                        .iter()
                        .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                        .map(|m| method_index(&m))
                        .collect()
                };
                m.zero(&indices);
                (m.route.to_string(), m.clone())
            })
            .collect();
        let mut table = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for (id, gone) in table.iter() {
            if !kept.contains_key(id) {
                gone.remove_series();
            }
        }
        *table = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(families: &RequestFamilies) -> String {
        let registry = prometheus::Registry::new();
        families.register(&registry).unwrap();
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_by_method_and_code_and_removes_routes_that_leave() {
        let table = RouteMetricsTable::detached();
        let a = table.for_route("a");
        let b = table.for_route("b");
        // Preparing (for_route) exports nothing.
        assert!(!text(&table.families).contains("route=\"a\""));
        let get = method_index(&http::Method::GET);
        for code in [200, 200, 404, 500, 501, 502, 503, 504, 505] {
            a.record(get, code, Duration::from_millis(3), 0, 10);
        }
        a.record(
            method_index(&http::Method::from_bytes(b"PURGE").unwrap()),
            200,
            Duration::ZERO,
            5,
            0,
        );
        b.record(get, 200, Duration::from_millis(1), 0, 0);
        let t = text(&table.families);
        assert!(
            t.contains("portcullis_http_requests_total{code=\"200\",method=\"GET\",route=\"a\"} 2"),
            "{t}"
        );
        // Beyond the cached slots, still counted.
        assert!(
            t.contains("portcullis_http_requests_total{code=\"505\",method=\"GET\",route=\"a\"} 1"),
            "{t}"
        );
        assert!(
            t.contains(
                "portcullis_http_requests_total{code=\"200\",method=\"OTHER\",route=\"a\"} 1"
            ),
            "{t}"
        );
        assert!(
            t.contains("portcullis_http_request_duration_seconds_count{route=\"a\"} 10"),
            "{t}"
        );
        assert!(
            t.contains("portcullis_http_response_bytes_total{route=\"a\"} 90"),
            "{t}"
        );
        assert!(
            t.contains("portcullis_http_request_bytes_total{route=\"a\"} 5"),
            "{t}"
        );

        // A commit keeping only b: a's series go, b's stay and keep counting.
        let any: &[String] = &[];
        table.adopt([(&a, any), (&b, any)]);
        table.adopt([(&b, any)]);
        let t = text(&table.families);
        assert!(!t.contains("route=\"a\""), "{t}");
        assert!(
            t.contains("portcullis_http_requests_total{code=\"200\",method=\"GET\",route=\"b\"} 1"),
            "{t}"
        );
        assert!(Arc::ptr_eq(&table.for_route("b"), &b));
    }
}
