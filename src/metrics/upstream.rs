//! Upstream metrics, with handles held by the long-lived pool and backend
//! states (`crate::upstream::StateTable`): the request path never hashes
//! label strings.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portcullis_upstream_requests_total` | counter: responses received from a backend | `pool`, `backend`, `code` |
//! | `portcullis_upstream_failures_total` | counter: attempts that got no response | `pool`, `backend`, `reason` ([`FailureReason`]) |
//! | `portcullis_upstream_response_duration_seconds` | histogram: time to the response head ([`TTFB_BUCKETS`]) | `pool` |
//! | `portcullis_upstream_retries_total` | counter | `pool`, `reason` ([`RetryReason`]) |
//! | `portcullis_upstream_retry_budget_exhausted_total` | counter: retries the budget refused | `pool` |
//! | `portcullis_upstream_breaker_state` | gauge: 1 for the breaker's current state, 0 for the others | `pool`, `state` (`closed`, `open`, `half_open`) |
//! | `portcullis_upstream_breaker_transitions_total` | counter | `pool`, `to` |
//! | `portcullis_upstream_ejections_total` | counter: outlier ejections | `pool`, `backend` |
//! | `portcullis_upstream_refused_total` | counter: requests a pool turned away before any backend saw them | `pool`, `reason` ([`RefusalReason`]) |
//! | `portcullis_upstream_fallback_total` | counter: requests a pool handed to its fallback | `pool`, `fallback` |
//!
//! Label children are created on first use; the series of a pool or a
//! backend that a reload removes are removed at commit.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};

use super::status::StatusCounters;

/// Buckets of `portcullis_upstream_response_duration_seconds`, in seconds:
/// 0.5 ms to 10 s.
pub const TTFB_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why an upstream attempt was retried (`reason` of
/// `portcullis_upstream_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Connecting failed (refused, unreachable, timeout).
    Connect,
    /// A reused keep-alive connection had been closed by the backend.
    StaleConnection,
    /// `retry_on`: the backend reset the connection after the request was sent.
    Reset,
    /// `retry_on`: the backend did not answer in time.
    Timeout,
    /// `retry_on`: the backend answered with a status listed there.
    Status,
}

impl RetryReason {
    pub const ALL: [RetryReason; 5] = [
        RetryReason::Connect,
        RetryReason::StaleConnection,
        RetryReason::Reset,
        RetryReason::Timeout,
        RetryReason::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::StaleConnection => "stale_connection",
            RetryReason::Reset => "reset",
            RetryReason::Timeout => "timeout",
            RetryReason::Status => "status",
        }
    }
}

/// A pool breaker's state (`state` of `portcullis_upstream_breaker_state`,
/// `to` of `portcullis_upstream_breaker_transitions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Why a pool turned a request away (`reason` of
/// `portcullis_upstream_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Its breaker is open.
    BreakerOpen,
    /// `max_in_flight` requests were in flight.
    MaxInFlight,
    /// No backend was healthy and not ejected.
    NoUsableBackend,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 3] = [
        RefusalReason::BreakerOpen,
        RefusalReason::MaxInFlight,
        RefusalReason::NoUsableBackend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::BreakerOpen => "breaker_open",
            RefusalReason::MaxInFlight => "max_in_flight",
            RefusalReason::NoUsableBackend => "no_usable_backend",
        }
    }
}

/// Why an attempt got no response (`reason` of
/// `portcullis_upstream_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Refused, unreachable, or not connected in time.
    Connect,
    /// The TLS handshake with the backend failed.
    Tls,
    /// Connected, but reading or writing timed out.
    Timeout,
    /// The backend closed or reset the connection.
    Reset,
    /// Anything else (invalid response, internal error).
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Timeout,
        FailureReason::Reset,
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Timeout => "timeout",
            FailureReason::Reset => "reset",
            FailureReason::Other => "other",
        }
    }

    /// The reason for a Pingora error on an upstream attempt.
    pub fn of(e: &pingora_error::Error) -> FailureReason {
        use pingora_error::ErrorType as T;
        match e.etype() {
            T::ConnectTimedout
            | T::ConnectRefused
            | T::ConnectNoRoute
            | T::ConnectError
            | T::BindError
            | T::ConnectProxyFailure
            | T::SocketError => FailureReason::Connect,
            T::TLSHandshakeFailure
            | T::TLSHandshakeTimedout
            | T::InvalidCert
            | T::HandshakeError
            | T::TLSWantX509Lookup => FailureReason::Tls,
            T::ReadTimedout | T::WriteTimedout => FailureReason::Timeout,
            T::ConnectionClosed | T::ReadError | T::WriteError | T::H2Error => FailureReason::Reset,
            _ => FailureReason::Other,
        }
    }
}

/// The upstream metric families; cheap to clone.
#[derive(Clone)]
pub struct UpstreamFamilies {
    requests: IntCounterVec,
    failures: IntCounterVec,
    ttfb: HistogramVec,
    retries: IntCounterVec,
    budget_exhausted: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    ejections: IntCounterVec,
    refused: IntCounterVec,
    fallback: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl UpstreamFamilies {
    /// The families, not registered anywhere yet.
    pub fn new() -> prometheus::Result<UpstreamFamilies> {
        Ok(UpstreamFamilies {
            requests: IntCounterVec::new(
                Opts::new(
                    "portcullis_upstream_requests_total",
                    "Responses received from backends, by pool, backend and status.",
                ),
                &["pool", "backend", "code"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "portcullis_upstream_failures_total",
                    "Upstream attempts that got no response, by pool, backend and reason (connect, tls, timeout, reset, other).",
                ),
                &["pool", "backend", "reason"],
            )?,
            ttfb: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_upstream_response_duration_seconds",
                    "Time from choosing a backend to receiving its response head (time to first byte), by pool.",
                )
                .buckets(TTFB_BUCKETS.to_vec()),
                &["pool"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "portcullis_upstream_retries_total",
                    "Upstream attempts retried, by pool and reason (connect, stale_connection, reset, timeout, status).",
                ),
                &["pool", "reason"],
            )?,
            budget_exhausted: counter(
                "portcullis_upstream_retry_budget_exhausted_total",
                "Retries not made because the pool's retry budget was spent, by pool.",
                &["pool"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "portcullis_upstream_breaker_state",
                    "1 for the pool's circuit breaker's current state (closed, open, half_open), 0 for the others.",
                ),
                &["pool", "state"],
            )?,
            breaker_transitions: counter(
                "portcullis_upstream_breaker_transitions_total",
                "Circuit breaker state changes, by pool and the state entered.",
                &["pool", "to"],
            )?,
            ejections: counter(
                "portcullis_upstream_ejections_total",
                "Backends ejected by outlier detection, by pool and backend.",
                &["pool", "backend"],
            )?,
            refused: counter(
                "portcullis_upstream_refused_total",
                "Requests a pool turned away before any backend saw them, by pool and reason (breaker_open, max_in_flight, no_usable_backend).",
                &["pool", "reason"],
            )?,
            fallback: counter(
                "portcullis_upstream_fallback_total",
                "Requests a pool handed to its fallback pool, by pool and fallback.",
                &["pool", "fallback"],
            )?,
        })
    }

    /// Families registered nowhere, shared by everything built outside a
    /// running gateway (`check`, `diff`, `explain`, unit tests).
    pub fn detached() -> UpstreamFamilies {
        static DETACHED: OnceLock<UpstreamFamilies> = OnceLock::new();
        DETACHED
            .get_or_init(|| match UpstreamFamilies::new() {
                Ok(f) => f,
                Err(e) => unreachable!("static metric definitions are valid: {e}"),
            })
            .clone()
    }

    /// Register every family with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.ttfb.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.budget_exhausted.clone()))?;
        registry.register(Box::new(self.breaker_state.clone()))?;
        registry.register(Box::new(self.breaker_transitions.clone()))?;
        registry.register(Box::new(self.ejections.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.fallback.clone()))?;
        Ok(())
    }
}

/// The metric handles of one pool.
pub struct PoolMetrics {
    pool: Arc<str>,
    families: UpstreamFamilies,
    ttfb: OnceLock<Histogram>,
    retries: [OnceLock<IntCounter>; RetryReason::ALL.len()],
    refused: [OnceLock<IntCounter>; RefusalReason::ALL.len()],
    budget_exhausted: OnceLock<IntCounter>,
}

impl PoolMetrics {
    pub fn new(pool: &str, families: UpstreamFamilies) -> PoolMetrics {
        PoolMetrics {
            pool: Arc::from(pool),
            families,
            ttfb: OnceLock::new(),
            retries: Default::default(),
            refused: Default::default(),
            budget_exhausted: OnceLock::new(),
        }
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Export the pool's series at zero before anything happens to it:
    /// time to first byte, retries and refusals by every reason, the
    /// hand-off to `fallback`, the retry budget when it has one.
    pub fn zero(&self, fallback: Option<&str>, budget: bool) {
        let (pool, f) = (&*self.pool, &self.families);
        self.ttfb.get_or_init(|| f.ttfb.with_label_values(&[pool]));
        for reason in RetryReason::ALL {
            self.retries[reason as usize]
                .get_or_init(|| f.retries.with_label_values(&[pool, reason.as_str()]));
        }
        for reason in RefusalReason::ALL {
            self.refused[reason as usize]
                .get_or_init(|| f.refused.with_label_values(&[pool, reason.as_str()]));
        }
        if let Some(fallback) = fallback {
            f.fallback.with_label_values(&[pool, fallback]);
        }
        if budget {
            self.budget_exhausted
                .get_or_init(|| f.budget_exhausted.with_label_values(&[pool]));
        }
    }

    /// The pool turned a request away.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused[reason as usize]
            .get_or_init(|| {
                self.families
                    .refused
                    .with_label_values(&[&*self.pool, reason.as_str()])
            })
            .inc();
    }

    /// A retry was not made: the budget is spent.
    pub fn budget_exhausted(&self) {
        self.budget_exhausted
            .get_or_init(|| {
                self.families
                    .budget_exhausted
                    .with_label_values(&[&*self.pool])
            })
            .inc();
    }

    /// The pool handed a request to `fallback` (rare: labels hashed here).
    pub fn fallback(&self, fallback: &str) {
        self.families
            .fallback
            .with_label_values(&[&*self.pool, fallback])
            .inc();
    }

    /// The breaker is in `state` (gauge only).
    pub fn breaker_state(&self, state: BreakerState) {
        for s in BreakerState::ALL {
            self.families
                .breaker_state
                .with_label_values(&[&*self.pool, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// The breaker entered `to`.
    pub fn breaker_transition(&self, to: BreakerState) {
        self.families
            .breaker_transitions
            .with_label_values(&[&*self.pool, to.as_str()])
            .inc();
        self.breaker_state(to);
    }

    /// Stop exporting the breaker's series (the pool's breaker was
    /// replaced or removed).
    pub fn remove_breaker_series(&self) {
        let pool = &*self.pool;
        for s in BreakerState::ALL {
            let _ = self
                .families
                .breaker_state
                .remove_label_values(&[pool, s.as_str()]);
            let _ = self
                .families
                .breaker_transitions
                .remove_label_values(&[pool, s.as_str()]);
        }
    }

    /// A backend of the pool sent its response head `took` after it was
    /// chosen.
    pub fn response_head(&self, took: Duration) {
        self.ttfb
            .get_or_init(|| self.families.ttfb.with_label_values(&[&*self.pool]))
            .observe(took.as_secs_f64());
    }

    /// An attempt of the pool is retried.
    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason as usize]
            .get_or_init(|| {
                self.families
                    .retries
                    .with_label_values(&[&*self.pool, reason.as_str()])
            })
            .inc();
    }

    /// Stop exporting the pool's series (its backends' go with them).
    pub fn remove_series(&self) {
        let pool = &*self.pool;
        let _ = self.families.ttfb.remove_label_values(&[pool]);
        for reason in RetryReason::ALL {
            let _ = self
                .families
                .retries
                .remove_label_values(&[pool, reason.as_str()]);
        }
        for reason in RefusalReason::ALL {
            let _ = self
                .families
                .refused
                .remove_label_values(&[pool, reason.as_str()]);
        }
        let _ = self.families.budget_exhausted.remove_label_values(&[pool]);
        self.remove_breaker_series();
        // Fallback series name two pools: drop every one this pool hands off to.
        use prometheus::core::Collector;
        for m in self.families.fallback.collect() {
            for metric in m.get_metric() {
                let labels = metric.get_label();
                let of_pool = labels
                    .iter()
                    .any(|l| l.name() == "pool" && l.value() == pool);
                if let (true, Some(f)) = (of_pool, labels.iter().find(|l| l.name() == "fallback")) {
                    let _ = self
                        .families
                        .fallback
                        .remove_label_values(&[pool, f.value()]);
                }
            }
        }
    }
}

/// The metric handles of one backend of one pool.
pub struct BackendMetrics {
    pool: Arc<str>,
    backend: Arc<str>,
    families: UpstreamFamilies,
    codes: StatusCounters,
    failures: [OnceLock<IntCounter>; FailureReason::ALL.len()],
}

impl BackendMetrics {
    pub fn new(pool: &str, backend: &str, families: UpstreamFamilies) -> BackendMetrics {
        BackendMetrics {
            pool: Arc::from(pool),
            backend: Arc::from(backend),
            families,
            codes: StatusCounters::default(),
            failures: Default::default(),
        }
    }

    /// Export the backend's series at zero before its first attempt:
    /// `code="200"`, failures by every reason, and ejections when the pool
    /// has outlier detection.
    pub fn zero(&self, outlier: bool) {
        let (pool, backend, f) = (&*self.pool, &*self.backend, &self.families);
        self.codes.touch(200, |code| {
            f.requests.with_label_values(&[pool, backend, code])
        });
        for reason in FailureReason::ALL {
            self.failures[reason as usize].get_or_init(|| {
                f.failures
                    .with_label_values(&[pool, backend, reason.as_str()])
            });
        }
        if outlier {
            f.ejections.with_label_values(&[pool, backend]);
        }
    }

    /// The backend answered with `status`.
    pub fn response(&self, status: u16) {
        self.codes.inc(status, |code| {
            self.families
                .requests
                .with_label_values(&[&*self.pool, &*self.backend, code])
        });
    }

    /// An attempt to the backend got no response.
    pub fn failure(&self, reason: FailureReason) {
        self.failures[reason as usize]
            .get_or_init(|| {
                self.families.failures.with_label_values(&[
                    &*self.pool,
                    &*self.backend,
                    reason.as_str(),
                ])
            })
            .inc();
    }

    /// Outlier detection ejected the backend (rare: labels hashed here).
    pub fn ejected(&self) {
        self.families
            .ejections
            .with_label_values(&[&*self.pool, &*self.backend])
            .inc();
    }

    /// Stop exporting the backend's series.
    pub fn remove_series(&self) {
        let (pool, backend) = (&*self.pool, &*self.backend);
        let _ = self
            .families
            .ejections
            .remove_label_values(&[pool, backend]);
        for code in self.codes.codes() {
            let _ = self
                .families
                .requests
                .remove_label_values(&[pool, backend, &code]);
        }
        for reason in FailureReason::ALL {
            let _ = self
                .families
                .failures
                .remove_label_values(&[pool, backend, reason.as_str()]);
        }
    }
}
