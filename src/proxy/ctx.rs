//! Per-request state carried through the phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::snapshot::{Route, Snapshot};
use crate::upstream::{Backend, InflightGuard};

/// Created by `new_ctx`, filled phase by phase.
pub struct RequestCtx {
    pub started: Instant,
    /// Taken once per request in `early_request_filter`.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Index into `snapshot.routes` once a route matched.
    pub route: Option<usize>,
    /// Bytes of the path the route's prefix matched.
    pub prefix_len: usize,
    /// `X-Request-Id`: the client's when well formed, else generated.
    pub request_id: http::HeaderValue,
    /// W3C trace context: the client's trace continued, or a new one.
    pub trace: super::trace::TraceContext,
    /// Deadline of the whole request, when the route has a `total` timeout.
    pub deadline: Option<Instant>,
    /// Backends (pool indices) tried so far, in order; inline, as most
    /// requests make one attempt and retries are bounded.
    pub tried: smallvec::SmallVec<[usize; 4]>,
    /// The next attempt must use a fresh upstream connection: the last one
    /// failed on a reused connection that the backend had closed.
    pub fresh_connection: bool,
    /// Counts this request against the current backend's in-flight requests.
    pub inflight: Option<InflightGuard>,
    /// When the current backend was chosen.
    pub upstream_started: Option<Instant>,
    /// From choosing the backend that answered to its response head.
    pub upstream_ttfb: Option<Duration>,
    /// From the accepting listener: redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// From the accepting listener: `Strict-Transport-Security` to add.
    pub hsts: Option<http::HeaderValue>,
    /// The authenticated consumer (index into the snapshot's consumers).
    pub consumer: Option<u32>,
    /// The non-secret prefix of the key used.
    pub key_prefix: Option<Arc<str>>,
    /// Why authentication failed, for the access log.
    pub auth_failure: Option<&'static str>,
    /// The limit that refused the request (429), for the access log.
    pub denied_by: Option<&'static str>,
    /// `RateLimit-Policy` and `RateLimit` for the response.
    pub rate_limit_headers: Option<(http::HeaderValue, http::HeaderValue)>,
    /// On a caching route: what the cache is doing for this request.
    pub cache: Option<super::caching::CacheCtx>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            route: None,
            prefix_len: 0,
            request_id: http::HeaderValue::from_static(""),
            trace: super::trace::TraceContext {
                trace_id: [0; 16],
                span_id: [0; 8],
                flags: 0,
                continued: false,
            },
            deadline: None,
            tried: smallvec::SmallVec::new(),
            fresh_connection: false,
            inflight: None,
            upstream_started: None,
            upstream_ttfb: None,
            redirect_https: None,
            hsts: None,
            consumer: None,
            key_prefix: None,
            auth_failure: None,
            denied_by: None,
            rate_limit_headers: None,
            cache: None,
        }
    }

    /// The matched route, if any.
    pub fn route(&self) -> Option<&Route> {
        Some(&self.snapshot.as_ref()?.routes[self.route?])
    }

    /// The backend of the latest attempt, if any.
    pub fn backend(&self) -> Option<&Backend> {
        let index = *self.tried.last()?;
        self.route()?.pool.backends.get(index)
    }

    /// Connect attempts made so far.
    pub fn attempts(&self) -> usize {
        self.tried.len()
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
