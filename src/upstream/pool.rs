//! A built pool and what it decides per request: admission (breaker,
//! `max_in_flight`, usable backends, the fallback chain), backend
//! selection, and what an attempt's outcome does to its backend and
//! breaker.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::model;
use crate::metrics::{FailureReason, RefusalReason};

use super::breaker::{self, Admission};
use super::outlier::{self, Failure, OutlierVerdict};
use super::state::{BackendState, PoolState};
use super::{tls, Selector};

/// Why a pool turned a request away before any backend saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolRefusal {
    /// No backend is healthy and not ejected.
    NoUsableBackend,
    /// The breaker is open (or half-open with every probe out).
    BreakerOpen { retry_after: Duration },
    /// `max_in_flight` requests are already in flight.
    Saturated,
}

impl PoolRefusal {
    pub fn reason(self) -> RefusalReason {
        match self {
            PoolRefusal::NoUsableBackend => RefusalReason::NoUsableBackend,
            PoolRefusal::BreakerOpen { .. } => RefusalReason::BreakerOpen,
            PoolRefusal::Saturated => RefusalReason::MaxInFlight,
        }
    }
}

/// A request admitted to a pool: counts it in flight, and holds its
/// half-open probe place until an outcome is recorded.
pub struct PoolTicket {
    pub pool: Arc<Pool>,
    /// How the breaker admitted the request; `Pass` once a probe's
    /// outcome is recorded.
    pub admission: Admission,
    /// Admitted by a fallback of the route's pool.
    pub fell_back: bool,
    counted: bool,
}

impl std::fmt::Debug for PoolTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolTicket")
            .field("pool", &self.pool.config.name)
            .field("admission", &self.admission)
            .finish()
    }
}

impl PoolTicket {
    /// Backend `i` of the pool answered with `status` at `now`.
    pub fn responded(&mut self, i: usize, now: u64, status: u16) -> AttemptOutcome {
        let outcome = self.pool.responded(i, now, status, self.admission);
        self.admission = Admission::Pass;
        outcome
    }

    /// An attempt to backend `i` of the pool got no response at `now`.
    pub fn failed(&mut self, i: usize, now: u64, reason: FailureReason) -> AttemptOutcome {
        let outcome = self.pool.attempt_failed(i, now, reason, self.admission);
        self.admission = Admission::Pass;
        outcome
    }
}

impl Drop for PoolTicket {
    fn drop(&mut self) {
        if self.counted {
            self.pool.state.inflight.fetch_sub(1, Ordering::Relaxed);
        }
        if self.admission == Admission::Probe {
            if let Some(b) = &self.pool.state.breaker {
                b.release_probe();
            }
        }
    }
}

/// One backend of a built pool.
#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: Arc<BackendState>,
}

/// A pool ready to serve: its settings, backends and selector.
pub struct Pool {
    pub config: model::PoolConfig,
    pub backends: Vec<Backend>,
    /// Long-lived: metric handles.
    pub state: Arc<PoolState>,
    /// TLS to the backends, loaded once per config load.
    pub tls: Option<tls::PeerTls>,
    pub(super) selector: Selector,
    /// The pool that takes the traffic while this one cannot (set once,
    /// right after every pool of the snapshot is built; validation
    /// refuses loops).
    pub(super) fallback: OnceLock<Arc<Pool>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.config.name)
            .field("backends", &self.backends)
            .finish()
    }
}

/// How many backends a request may be turned away from before we give up.
const MAX_SELECT_ITERATIONS: usize = 256;

impl Pool {
    /// Whether backend `i` may take a request at `now`: healthy by the
    /// active checks and not ejected.
    fn usable(&self, i: usize, now: u64) -> bool {
        let state = &self.backends[i].state;
        state.is_healthy() && !state.ejection.is_ejected(now)
    }

    /// Pick a usable backend not in `tried` (indices of backends already
    /// attempted by this request). `key` feeds consistent hashing.
    pub fn select(&self, key: &[u8], tried: &[usize], now: u64) -> Option<usize> {
        let usable = |i: usize| self.usable(i, now) && !tried.contains(&i);
        self.selector
            .select(key, &self.backends, MAX_SELECT_ITERATIONS, usable)
    }

    /// Whether a usable backend remains that is not in `tried`.
    pub fn has_untried(&self, tried: &[usize], now: u64) -> bool {
        (0..self.backends.len()).any(|i| self.usable(i, now) && !tried.contains(&i))
    }

    /// Whether requests go to the backends over HTTP/2 (TLS `h2`, or
    /// `h2c`).
    pub fn speaks_h2(&self) -> bool {
        self.config.h2c || self.tls.as_ref().is_some_and(|t| t.h2)
    }

    /// Whether any backend is usable at `now`.
    pub fn any_usable(&self, now: u64) -> bool {
        (0..self.backends.len()).any(|i| self.usable(i, now))
    }

    /// The pool that takes over while this one cannot.
    pub fn fallback(&self) -> Option<&Arc<Pool>> {
        self.fallback.get()
    }

    /// Admit a request to this pool at `now`, or say why not (and hand
    /// the pool back).
    fn admit_here(self: Arc<Self>, now: u64) -> Result<PoolTicket, (Arc<Self>, PoolRefusal)> {
        if !self.any_usable(now) {
            return Err((self, PoolRefusal::NoUsableBackend));
        }
        let mut admission = Admission::Pass;
        if let Some(b) = &self.state.breaker {
            let (a, transition) = b.admit(now);
            if let Some(t) = transition {
                self.state.transition(&t);
            }
            if let Admission::Refused { retry_after } = a {
                return Err((self, PoolRefusal::BreakerOpen { retry_after }));
            }
            admission = a;
        }
        let mut counted = false;
        if let Some(max) = self.config.max_in_flight {
            let before = self.state.inflight.fetch_add(1, Ordering::Relaxed);
            if before >= max as usize {
                self.state.inflight.fetch_sub(1, Ordering::Relaxed);
                if let (Admission::Probe, Some(b)) = (admission, &self.state.breaker) {
                    b.release_probe();
                }
                return Err((self, PoolRefusal::Saturated));
            }
            counted = true;
        }
        if let Some(budget) = &self.state.budget {
            budget.request(now);
        }
        Ok(PoolTicket {
            pool: self,
            admission,
            counted,
            fell_back: false,
        })
    }

    /// Admit a request at `now` to this pool or, while it has no usable
    /// backend or its breaker refuses, to its fallback (and so on down
    /// the chain). A saturated pool answers for itself. On refusal, the
    /// first pool's reason.
    pub fn admit(self: Arc<Self>, now: u64) -> Result<PoolTicket, PoolRefusal> {
        let mut pool = self;
        let mut first = None;
        let mut fell_back = false;
        loop {
            match pool.admit_here(now) {
                Ok(mut ticket) => {
                    ticket.fell_back = fell_back;
                    return Ok(ticket);
                }
                Err((refused, refusal)) => {
                    refused.state.metrics.refused(refusal.reason());
                    let first = *first.get_or_insert(refusal);
                    match (refusal, refused.fallback()) {
                        (PoolRefusal::Saturated, _) | (_, None) => return Err(first),
                        (_, Some(next)) => {
                            refused.state.metrics.fallback(&next.config.name);
                            pool = next.clone();
                            fell_back = true;
                        }
                    }
                }
            }
        }
    }

    /// Whether another attempt of an admitted request may go to this pool:
    /// not while its breaker is open.
    pub fn admits_retry(&self) -> bool {
        self.state
            .breaker
            .as_ref()
            .is_none_or(|b| b.state() != breaker::BreakerState::Open)
    }

    /// Backend `i` answered with `status` at `now`. Returns what it meant
    /// for the breaker and ejection.
    fn responded(&self, i: usize, now: u64, status: u16, admission: Admission) -> AttemptOutcome {
        let mut outcome = AttemptOutcome::default();
        let ejection = &self.backends[i].state.ejection;
        if let Some(settings) = &self.config.outlier {
            if settings.failure_statuses.contains(status) {
                outcome.ejected = self.backend_failed(i, now, Failure::Status(status), settings);
            } else {
                ejection.succeeded(now);
            }
        }
        if let Some(b) = &self.state.breaker {
            let failed = b.is_failure_status(status);
            if failed && self.config.outlier.is_none() {
                ejection.note(now, Failure::Status(status));
            }
            outcome.tripped = self.state.breaker_outcome(now, failed, admission);
        }
        outcome
    }

    /// An attempt to backend `i` got no response at `now`.
    fn attempt_failed(
        &self,
        i: usize,
        now: u64,
        reason: FailureReason,
        admission: Admission,
    ) -> AttemptOutcome {
        let mut outcome = AttemptOutcome::default();
        match &self.config.outlier {
            Some(settings) => {
                outcome.ejected = self.backend_failed(i, now, Failure::Error(reason), settings);
            }
            None => self.backends[i]
                .state
                .ejection
                .note(now, Failure::Error(reason)),
        }
        outcome.tripped = self.state.breaker_outcome(now, true, admission);
        outcome
    }

    /// Count a failure of backend `i`; eject it when it has earned it and
    /// `max_ejection_percent` allows. Returns whether it was ejected.
    fn backend_failed(
        &self,
        i: usize,
        now: u64,
        failure: Failure,
        settings: &model::Outlier,
    ) -> bool {
        let state = &self.backends[i].state;
        let OutlierVerdict::Eject(why) = state.ejection.failed(now, failure, settings) else {
            return false;
        };
        let _one_at_a_time = self
            .state
            .eject_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.state.ejection.is_ejected(now))
            .count();
        let max = outlier::max_ejected(self.backends.len(), settings.max_ejection_percent);
        if ejected >= max {
            state.ejection.kept_in(format!(
                "kept in by max_ejection_percent = {} ({ejected} of {} already ejected): {why}",
                settings.max_ejection_percent,
                self.backends.len()
            ));
            return false;
        }
        let took = state.ejection.eject(now, settings, &why);
        state.metrics.ejected();
        tracing::warn!(
            pool = %self.config.name,
            backend = %self.backends[i].address,
            ejected_for = %humantime::format_duration(took),
            reason = %why,
            "backend ejected"
        );
        true
    }
}

/// What an attempt's outcome did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The backend was ejected.
    pub ejected: bool,
    /// The pool's breaker opened.
    pub tripped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{build_pools, StateTable};
    use std::collections::HashMap;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;

    fn pools(src: &str) -> HashMap<String, Arc<Pool>> {
        let config = crate::config::parse_str(src, "t.toml").expect("valid config");
        build_pools(&config, &StateTable::default(), T0).expect("pools")
    }

    #[test]
    fn max_ejection_percent_keeps_the_rest_of_the_pool_in() {
        let pools = pools(
            "[pools.p]\nbackends = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\"]\n\
             [pools.p.outlier]\nconsecutive_failures = 2\nmax_ejection_percent = 50\n",
        );
        let p = &pools["p"];
        let reset = FailureReason::Reset;
        let mut ejected = Vec::new();
        for i in 0..4 {
            for _ in 0..2 {
                if p.attempt_failed(i, T0, reset, Admission::Pass).ejected {
                    ejected.push(i);
                }
            }
        }
        // 50% of 4: the first two to earn it are out, the others stay in.
        assert_eq!(ejected, [0, 1]);
        assert_eq!((0..4).filter(|&i| p.usable(i, T0)).count(), 2);
        let kept = p.backends[3]
            .state
            .ejection
            .view(T0)
            .why
            .unwrap_or_default();
        assert!(
            kept.starts_with("kept in by max_ejection_percent = 50 (2 of 4 already ejected)"),
            "{kept}"
        );
        // Once the first ejections end (30 s), room is made again.
        let later = T0 + 30 * S;
        assert!(p.usable(0, later));
        assert!(p.attempt_failed(3, later, reset, Admission::Pass).ejected);
    }

    #[test]
    fn a_pool_admits_to_its_fallback_while_its_breaker_is_open() {
        let pools = pools(
            "[pools.p]\nbackends = [\"127.0.0.1:1\"]\nfallback = \"q\"\n\
             [pools.p.breaker]\nconsecutive_failures = 1\nopen_for = \"10s\"\nprobe_requests = 1\n\
             [pools.q]\nbackends = [\"127.0.0.1:2\"]\nmax_in_flight = 1\n",
        );
        let p = pools["p"].clone();
        let mut first = p.clone().admit(T0).expect("closed");
        assert!(!first.fell_back);
        assert!(first.failed(0, T0, FailureReason::Connect).tripped);
        drop(first);
        let taken = p.clone().admit(T0 + S).expect("the fallback admits");
        assert!(taken.fell_back);
        assert_eq!(taken.pool.config.name, "q");
        // The fallback is saturated: the primary's reason is the answer.
        match p.clone().admit(T0 + S) {
            Err(PoolRefusal::BreakerOpen { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(9))
            }
            other => panic!("{other:?}"),
        }
        drop(taken);
        // After open_for, the primary takes a probe; one probe at a time.
        let probe = p.clone().admit(T0 + 10 * S).expect("a probe");
        assert_eq!(probe.admission, Admission::Probe);
        let next = p.clone().admit(T0 + 10 * S).expect("the fallback again");
        assert!(next.fell_back);
        drop(next);
        // A probe that ends without an outcome gives its place back.
        drop(probe);
        let again = p.clone().admit(T0 + 10 * S).expect("a probe");
        assert_eq!(again.admission, Admission::Probe);
    }
}
