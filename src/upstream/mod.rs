//! Upstream pools: backends, their long-lived state, and backend selection.
//!
//! A [`Pool`] is rebuilt on every config load, but the [`BackendState`] of
//! each backend (health, in-flight count, last error, metric handles) and
//! the [`PoolState`] of each pool live in the [`StateTable`], keyed by pool
//! name and backend address, so they survive reloads that keep them.

pub mod health;
mod select;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::model;
use crate::metrics::{BackendMetrics, FailureReason, PoolMetrics, UpstreamFamilies};
pub use select::Selector;

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

/// Live state of one pool, shared by every snapshot that contains it.
pub struct PoolState {
    pub metrics: PoolMetrics,
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
    states: Mutex<HashMap<(String, SocketAddr), Arc<BackendState>>>,
    pools: Mutex<HashMap<String, Arc<PoolState>>>,
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

    /// The state of `pool`: the live one, or a fresh one.
    pub fn pool_state(&self, pool: &str) -> Arc<PoolState> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.get(pool).cloned().unwrap_or_else(|| {
            Arc::new(PoolState {
                metrics: PoolMetrics::new(pool, self.families.clone()),
            })
        })
    }

    /// Make the pools and backends of `pools` the table's contents: their
    /// states are kept; the states of pools and backends that left the
    /// config are dropped and their series stop being exported.
    pub fn adopt<'a>(&self, pools: impl IntoIterator<Item = &'a Arc<Pool>> + Clone) {
        let kept: HashMap<_, _> = pools
            .clone()
            .into_iter()
            .flat_map(|p| {
                p.backends
                    .iter()
                    .map(|b| ((p.config.name.clone(), b.address), b.state.clone()))
            })
            .collect();
        let kept_pools: HashMap<_, _> = pools
            .into_iter()
            .map(|p| (p.config.name.clone(), p.state.clone()))
            .collect();
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        for (key, gone) in states.iter() {
            if !kept.contains_key(key) {
                gone.metrics.remove_series();
            }
        }
        *states = kept;
        drop(states);
        let mut table = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for (name, gone) in table.iter() {
            if !kept_pools.contains_key(name) {
                gone.metrics.remove_series();
            }
        }
        *table = kept_pools;
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
    pub config: model::Pool,
    pub backends: Vec<Backend>,
    /// Long-lived: metric handles.
    pub state: Arc<PoolState>,
    /// TLS to the backends, loaded once per config load.
    pub tls: Option<tls::PeerTls>,
    selector: Selector,
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
    /// Pick a healthy backend not in `tried` (indices of backends already
    /// attempted by this request). `key` feeds consistent hashing.
    pub fn select(&self, key: &[u8], tried: &[usize]) -> Option<usize> {
        let usable = |i: usize| self.backends[i].state.is_healthy() && !tried.contains(&i);
        self.selector
            .select(key, &self.backends, MAX_SELECT_ITERATIONS, usable)
    }

    /// Whether a healthy backend remains that is not in `tried`.
    pub fn has_untried(&self, tried: &[usize]) -> bool {
        (0..self.backends.len()).any(|i| self.backends[i].state.is_healthy() && !tried.contains(&i))
    }

    /// Whether any backend is currently healthy.
    pub fn any_healthy(&self) -> bool {
        self.backends.iter().any(|b| b.state.is_healthy())
    }
}

/// Build every pool of `config`, with the live state of every backend
/// `table` knows (see [`StateTable`]: this does not change the table).
/// Fails with the pool's name and the reason when its TLS files cannot be
/// loaded.
pub fn build_pools(
    config: &model::Config,
    table: &StateTable,
) -> Result<HashMap<String, Arc<Pool>>, (String, tls::LoadError)> {
    config
        .pools
        .values()
        .map(|p| {
            let tls = match &p.tls {
                Some(t) => Some(tls::load(t).map_err(|e| (p.name.clone(), e))?),
                None => None,
            };
            let backends: Vec<Backend> = p
                .backends
                .iter()
                .map(|b| Backend {
                    address: b.address,
                    weight: b.weight,
                    state: table.state_for(&p.name, b.address),
                })
                .collect();
            let selector = Selector::build(&p.balance, &backends);
            let pool = Pool {
                config: p.clone(),
                backends,
                state: table.pool_state(&p.name),
                tls,
                selector,
            };
            Ok((p.name.clone(), Arc::new(pool)))
        })
        .collect()
}
