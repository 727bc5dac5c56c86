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
//!
//! Label children are created on first use; the series of a pool or a
//! backend that a reload removes are removed at commit.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

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
}

impl RetryReason {
    pub const ALL: [RetryReason; 2] = [RetryReason::Connect, RetryReason::StaleConnection];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::StaleConnection => "stale_connection",
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
                    "Upstream attempts retried, by pool and reason (connect, stale_connection).",
                ),
                &["pool", "reason"],
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
        Ok(())
    }
}

/// The metric handles of one pool.
pub struct PoolMetrics {
    pool: Arc<str>,
    families: UpstreamFamilies,
    ttfb: OnceLock<Histogram>,
    retries: [OnceLock<IntCounter>; RetryReason::ALL.len()],
}

impl PoolMetrics {
    pub fn new(pool: &str, families: UpstreamFamilies) -> PoolMetrics {
        PoolMetrics {
            pool: Arc::from(pool),
            families,
            ttfb: OnceLock::new(),
            retries: Default::default(),
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

    /// Stop exporting the backend's series.
    pub fn remove_series(&self) {
        let (pool, backend) = (&*self.pool, &*self.backend);
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
