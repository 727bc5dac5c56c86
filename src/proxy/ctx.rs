//! Per-request state carried through the phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::snapshot::{Route, Snapshot};
use crate::upstream::{Backend, InflightGuard, PoolRefusal, PoolTicket};

/// Decisions of the breaker, outlier detection, concurrency limit, retry
/// budget and fallback that shaped a request, for the access log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decisions(u16);

impl Decisions {
    pub const BREAKER_OPEN: u16 = 1;
    pub const BREAKER_PROBE: u16 = 1 << 1;
    pub const BREAKER_TRIPPED: u16 = 1 << 2;
    pub const BACKEND_EJECTED: u16 = 1 << 3;
    pub const FALLBACK: u16 = 1 << 4;
    pub const MAX_IN_FLIGHT: u16 = 1 << 5;
    pub const RETRY_BUDGET_EXHAUSTED: u16 = 1 << 6;
    pub const NO_USABLE_BACKEND: u16 = 1 << 7;

    const NAMES: [(u16, &'static str); 8] = [
        (Self::BREAKER_OPEN, "breaker_open"),
        (Self::BREAKER_PROBE, "breaker_probe"),
        (Self::BREAKER_TRIPPED, "breaker_tripped"),
        (Self::BACKEND_EJECTED, "backend_ejected"),
        (Self::FALLBACK, "fallback"),
        (Self::MAX_IN_FLIGHT, "max_in_flight"),
        (Self::RETRY_BUDGET_EXHAUSTED, "retry_budget_exhausted"),
        (Self::NO_USABLE_BACKEND, "no_usable_backend"),
    ];

    pub fn add(&mut self, d: u16) {
        self.0 |= d;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the decisions taken, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }
}

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
    /// The pool that admitted the request (the route's, or a fallback),
    /// from the first `upstream_peer` on.
    pub pool: Option<PoolTicket>,
    /// Why a pool turned the request away, for the response.
    pub refusal: Option<PoolRefusal>,
    /// Breaker, ejection, concurrency, budget and fallback decisions.
    pub decisions: Decisions,
    /// The route's `max_body_size` and the request body bytes read so far.
    pub body_limit: Option<(u64, u64)>,
    /// When the current backend was chosen.
    pub upstream_started: Option<Instant>,
    /// From choosing the backend that answered to its response head.
    pub upstream_ttfb: Option<Duration>,
    /// The client's address, TLS and certificate subject.
    pub client: super::forward::ClientFacts,
    /// From the accepting listener: redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// From the accepting listener: `Strict-Transport-Security` to add.
    pub hsts: Option<http::HeaderValue>,
    /// The authenticated consumer (index into the snapshot's consumers).
    pub consumer: Option<u32>,
    /// The non-secret prefix of the key used.
    pub key_prefix: Option<Arc<str>>,
    /// The caller a bearer token named.
    pub bearer: Option<Arc<crate::bearer::Bearer>>,
    /// Why authentication failed, for the access log.
    pub auth_failure: Option<&'static str>,
    /// The limit that refused the request (429), for the access log.
    pub denied_by: Option<&'static str>,
    /// `RateLimit-Policy` and `RateLimit` for the response.
    pub rate_limit_headers: Option<(http::HeaderValue, http::HeaderValue)>,
    /// What the route's CORS policy made of the request (its fields go on
    /// the response after the cache).
    pub cors: crate::decide::CorsOutcome,
    /// On a route with a traffic split: the side chosen, and why.
    pub split: Option<crate::policy::split::Choice>,
    /// `[routes.compression]`: the coding the client accepts.
    pub coding: Option<crate::config::model::Coding>,
    /// `[routes.mirror]`: where this request's copy is.
    pub mirror: super::mirror::MirrorState,
    /// On a caching route: what the cache is doing for this request.
    pub cache: Option<super::caching::CacheCtx>,
    /// Counts the request as in flight until the context is dropped (after
    /// the access-log phase), so a graceful shutdown knows when none is left.
    pub in_flight: Option<crate::drain::InFlight>,
}

impl RequestCtx {
    /// A request's context; `in_flight` counts it until it ends.
    pub fn new(in_flight: Option<crate::drain::InFlight>) -> Self {
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
            pool: None,
            refusal: None,
            decisions: Decisions::default(),
            body_limit: None,
            upstream_started: None,
            upstream_ttfb: None,
            client: super::forward::ClientFacts::default(),
            redirect_https: None,
            hsts: None,
            consumer: None,
            key_prefix: None,
            bearer: None,
            auth_failure: None,
            denied_by: None,
            rate_limit_headers: None,
            cors: crate::decide::CorsOutcome::None,
            split: None,
            coding: None,
            mirror: super::mirror::MirrorState::None,
            cache: None,
            in_flight,
        }
    }

    /// Keep what the decision learned (route, consumer, key prefix, why
    /// refused, rate-limit headers, body limit); its verdict.
    pub fn take(&mut self, decision: crate::decide::Decision) -> crate::decide::Verdict {
        self.route = decision.route;
        self.prefix_len = decision.prefix_len;
        self.consumer = decision.consumer;
        self.key_prefix = decision.key_prefix;
        self.bearer = decision.bearer;
        self.auth_failure = decision.auth_failure;
        self.denied_by = decision.denied_by;
        self.rate_limit_headers = decision.rate_limit_headers;
        self.body_limit = decision.body_limit.map(|max| (max, 0));
        self.cors = decision.cors;
        self.split = decision.split;
        self.coding = decision.coding;
        if decision.mirror {
            self.mirror = super::mirror::MirrorState::Chosen;
        }
        decision.verdict
    }

    /// The route's side that takes the request: the split's choice, or
    /// its one pool.
    pub fn side(&self) -> usize {
        self.split.map_or(0, |c| c.side)
    }

    /// The matched route, if any.
    pub fn route(&self) -> Option<&Route> {
        Some(&self.snapshot.as_ref()?.routes[self.route?])
    }

    /// What shapes the forwarded request's headers, once a route matched.
    pub fn forwarding(&self) -> Option<super::forward::Forwarding<'_>> {
        let snapshot = self.snapshot.as_deref()?;
        Some(super::forward::Forwarding {
            snapshot,
            route: snapshot.routes.get(self.route?)?,
            consumer: self.consumer,
            bearer: self.bearer.as_deref(),
            client: &self.client,
            request_id: &self.request_id,
            trace: &self.trace,
        })
    }

    /// The backend of the latest attempt, if any.
    pub fn backend(&self) -> Option<&Backend> {
        let index = *self.tried.last()?;
        self.pool.as_ref()?.pool.backends.get(index)
    }

    /// Connect attempts made so far.
    pub fn attempts(&self) -> usize {
        self.tried.len()
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new(None)
    }
}
