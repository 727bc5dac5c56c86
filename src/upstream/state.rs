//! The long-lived state of backends and pools, kept across reloads in the
//! [`StateTable`]: health, in-flight counts, last errors, outlier and
//! breaker state, retry budgets and metric handles.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::model;
use crate::metrics::{BackendMetrics, FailureReason, PoolMetrics, UpstreamFamilies};

use super::breaker::{self, Admission, Breaker};
use super::budget::RetryBudget;
use super::outlier::Ejection;

/// The last attempt to a backend that got no response.
#[derive(Debug, Clone)]
pub struct LastError {
    pub at: SystemTime,
    pub reason: FailureReason,
    /// What went wrong, as Pingora describes it (no request data).
    pub detail: String,
}

/// Live state of one backend, shared by every snapshot that contains it.
pub struct BackendState {
    healthy: AtomicBool,
    inflight: AtomicUsize,
    /// Consecutive probe results in the current direction (health.rs).
    pub(crate) streak: AtomicU32,
    last_error: Mutex<Option<LastError>>,
    /// Passive outlier ejection (separate from `healthy`).
    pub ejection: Ejection,
    pub metrics: BackendMetrics,
}

impl std::fmt::Debug for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendState")
            .field("healthy", &self.is_healthy())
            .field("inflight", &self.inflight())
            .finish_non_exhaustive()
    }
}

impl Default for BackendState {
    /// A state whose metrics are exported nowhere (tests).
    fn default() -> Self {
        Self::new(BackendMetrics::new("", "", UpstreamFamilies::detached()))
    }
}

impl BackendState {
    /// New backends start healthy, like nginx and Envoy without
    /// "ignore new hosts until first check": traffic flows at once and the
    /// first failed probes eject it.
    pub fn new(metrics: BackendMetrics) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
            streak: AtomicU32::new(0),
            last_error: Mutex::new(None),
            ejection: Ejection::default(),
            metrics,
        }
    }

    /// An attempt got no response: counted, and kept as the last error.
    pub fn failed(&self, e: &pingora_error::Error) {
        let reason = FailureReason::of(e);
        self.metrics.failure(reason);
        let detail = match e.context.as_ref() {
            Some(c) => format!("{}: {}", e.etype().as_str(), c.as_str()),
            None => e.etype().as_str().to_string(),
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastError {
            at: SystemTime::now(),
            reason,
            detail,
        });
    }

    /// The last attempt that got no response, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed)
    }

    /// Requests currently sent to this backend by this process.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// Counts one in-flight request against a backend until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<BackendState>);

impl InflightGuard {
    pub fn new(state: Arc<BackendState>) -> Self {
        state.inflight.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Live state of one pool, shared by every snapshot that contains it
/// while the pool's backends, breaker and retry budget settings stay the
/// same (a pool changed in any of these starts over).
pub struct PoolState {
    pub metrics: PoolMetrics,
    pub breaker: Option<Breaker>,
    pub budget: Option<RetryBudget>,
    /// Requests in flight to the pool (for `max_in_flight`).
    pub(super) inflight: AtomicUsize,
    /// Taken only to decide an ejection against `max_ejection_percent`.
    pub(super) eject_lock: Mutex<()>,
    /// What the state was built for: reused only for the same.
    identity: PoolIdentity,
}

impl PoolState {
    fn new(pool: &model::PoolConfig, metrics: PoolMetrics, now: u64) -> PoolState {
        let breaker = pool.breaker.clone().map(|b| Breaker::new(b, now));
        if breaker.is_some() {
            metrics.breaker_state(breaker::BreakerState::Closed);
        }
        PoolState {
            metrics,
            breaker,
            budget: pool.retry_budget.clone().map(RetryBudget::new),
            inflight: AtomicUsize::new(0),
            eject_lock: Mutex::new(()),
            identity: identity(pool),
        }
    }

    /// Requests in flight to the pool.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Count the outcome of an attempt admitted with `admission` in the
    /// breaker; record a transition.
    pub(super) fn breaker_outcome(&self, now: u64, failed: bool, admission: Admission) -> bool {
        let Some(b) = &self.breaker else {
            return false;
        };
        match b.record(now, failed, admission) {
            Some(t) => {
                self.transition(&t);
                t.to == breaker::BreakerState::Open
            }
            None => false,
        }
    }

    pub(super) fn transition(&self, t: &breaker::Transition) {
        self.metrics.breaker_transition(t.to);
        tracing::warn!(pool = %self.metrics.pool(), to = t.to.as_str(), reason = %t.reason, "circuit breaker");
    }
}

type PoolIdentity = (
    Vec<model::BackendConfig>,
    Option<model::BreakerConfig>,
    Option<model::RetryBudgetConfig>,
);

fn identity(pool: &model::PoolConfig) -> PoolIdentity {
    (
        pool.backends.clone(),
        pool.breaker.clone(),
        pool.retry_budget.clone(),
    )
}

/// Long-lived pool and backend states keyed by pool name and (pool,
/// address): the one place backend health, in-flight counts, last errors
/// and upstream metric handles live between snapshots.
///
/// Building a snapshot only *reads* the table ([`StateTable::state_for`]):
/// a backend already known gets its existing state, a new one a fresh
/// state that the table does not hold yet. Only committing the snapshot
/// ([`StateTable::adopt`]) changes the table, so a rejected reload leaves it
/// as it was.
pub struct StateTable {
    families: UpstreamFamilies,
    pub(super) states: Mutex<HashMap<(String, SocketAddr), Arc<BackendState>>>,
    pub(super) pools: Mutex<HashMap<String, Arc<PoolState>>>,
}

impl Default for StateTable {
    /// A table whose metrics are exported nowhere (`check`, `diff`, tests).
    fn default() -> Self {
        Self::new(UpstreamFamilies::detached())
    }
}

impl StateTable {
    /// An empty table whose metric handles belong to `families`.
    pub fn new(families: UpstreamFamilies) -> Self {
        Self {
            families,
            states: Mutex::default(),
            pools: Mutex::default(),
        }
    }

    /// The state of `address` in `pool`: the live one, or a fresh one.
    pub fn state_for(&self, pool: &str, address: SocketAddr) -> Arc<BackendState> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states
            .get(&(pool.to_string(), address))
            .cloned()
            .unwrap_or_else(|| {
                let metrics =
                    BackendMetrics::new(pool, &address.to_string(), self.families.clone());
                Arc::new(BackendState::new(metrics))
            })
    }

    /// The state of `pool`: the live one if it was built for the same
    /// backends, breaker and retry budget, or a fresh one.
    pub fn pool_state(&self, pool: &model::PoolConfig, now: u64) -> Arc<PoolState> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        match pools.get(&pool.name) {
            Some(live) if live.identity == identity(pool) => live.clone(),
            _ => Arc::new(PoolState::new(
                pool,
                PoolMetrics::new(&pool.name, self.families.clone()),
                now,
            )),
        }
    }
}
