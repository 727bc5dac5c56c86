//! Limit-store metrics: whether the shared store answers, and what it
//! costs.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portcullis_limit_store_up` | gauge (1: the store answers; 0: it failed and its breaker is open, limits follow `on_error`) | — |
//! | `portcullis_limit_store_errors_total` | counter | `reason` (`timeout`, `error`) |
//! | `portcullis_limit_store_fallbacks_total` | counter (requests whose limits `on_error` decided) | `on_error` (`local`, `allow`, `deny`) |
//! | `portcullis_limit_store_round_trip_seconds` | histogram | `call` (`check`: exact limits of one request; `sync`: approximate buckets' charges) |
//! | `portcullis_limit_store_synced_requests_total` | counter (requests passed on local buckets and then charged to the shared ones) | — |
//!
//! A local store (`kind = "local"`) is always up and never counts errors.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The families; cheap to clone.
#[derive(Clone)]
pub struct LimitStoreFamilies {
    pub up: IntGauge,
    errors: IntCounterVec,
    fallbacks: IntCounterVec,
    round_trip: HistogramVec,
    pub synced: IntCounter,
}

impl LimitStoreFamilies {
    pub fn new() -> prometheus::Result<LimitStoreFamilies> {
        let up = IntGauge::new(
            "portcullis_limit_store_up",
            "1 when the limit store answers; 0 while a shared store (Redis) is failing and limits follow its on_error.",
        )?;
        up.set(1);
        Ok(LimitStoreFamilies {
            up,
            errors: IntCounterVec::new(
                Opts::new(
                    "portcullis_limit_store_errors_total",
                    "Calls to the shared limit store that failed, by reason: timeout (no answer within [limit_store] timeout) or error.",
                ),
                &["reason"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "portcullis_limit_store_fallbacks_total",
                    "Requests whose limits were decided by [limit_store] on_error because the shared store could not be reached.",
                ),
                &["on_error"],
            )?,
            round_trip: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_limit_store_round_trip_seconds",
                    "Round trips to the shared limit store: check (a request's exact limits) or sync (approximate buckets' charges).",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                ]),
                &["call"],
            )?,
            synced: IntCounter::new(
                "portcullis_limit_store_synced_requests_total",
                "Requests passed on an approximate bucket of this instance and then charged to the shared bucket.",
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.up.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.fallbacks.clone()))?;
        registry.register(Box::new(self.round_trip.clone()))?;
        registry.register(Box::new(self.synced.clone()))?;
        Ok(())
    }

    /// The counter of failed calls for `reason` (`timeout`, `error`).
    pub fn error(&self, reason: &str) -> IntCounter {
        self.errors.with_label_values(&[reason])
    }

    /// The counter of requests `on_error` decided.
    pub fn fallback(&self, on_error: &str) -> IntCounter {
        self.fallbacks.with_label_values(&[on_error])
    }

    /// The round-trip histogram of `call` (`check`, `sync`).
    pub fn round_trip(&self, call: &str) -> Histogram {
        self.round_trip.with_label_values(&[call])
    }
}
