//! The one owner of long-lived state: everything that outlives a config
//! snapshot, keyed by a stable identity.
//!
//! | state | identity | kept across a reload when |
//! |---|---|---|
//! | backend health, probe streak, in-flight count, outlier ejection ([`StateTable`]) | pool name + backend address | the pool still lists the address |
//! | circuit breaker, retry budget, pool in-flight count ([`StateTable`]) | pool name | the pool's backends, `breaker` and `retry_budget` are unchanged |
//! | rate-limit and quota counters ([`LimitStore`]) | the limit's definition (scope, rate, burst) and who it counts | the definition is unchanged |
//! | health-probe tasks ([`HealthChecker`]) | pool name | the pool's backends and `health_check` are unchanged |
//! | certificates of each start-up listener (`ArcSwap<CertStore>`) | listener address | always swapped on commit; the handshake resolver reads them |
//! | request metric handles ([`RouteMetricsTable`]) | route id | the route id stays (series of removed routes are dropped) |
//! | pool metric handles ([`StateTable`]) | pool name | the pool name stays |
//! | usage per consumer and route ([`UsageTable`]) | consumer id, route id | both ids stay |
//! | cached responses ([`CacheTable`]) | route id | the route's cache settings and `[cache] max_size` are unchanged |
//! | metric families ([`Metrics`]), the access-log writer ([`AccessLog`]), requests in flight ([`Requests`]) | — | always |
//!
//! A [`Snapshot`](crate::snapshot::Snapshot) borrows handles from here
//! (the `Arc<BackendState>` of each backend) and never owns any of it.
//! Preparing a snapshot only reads this state; committing one is the only
//! step that changes it (see [`crate::reload`]), so a rejected reload leaves
//! all of it as it was.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::accesslog::AccessLog;
use crate::cache::CacheTable;
use crate::clock::{Clock, SystemClock};
use crate::config::model::Config;
use crate::drain::Requests;
use crate::metrics::{Metrics, RouteMetricsTable};
use crate::ratelimit::LimitStore;
use crate::tls::CertStore;
use crate::upstream::health::HealthChecker;
use crate::upstream::StateTable;
use crate::usage::UsageTable;

/// The certificates one start-up TLS listener serves, swapped on commit.
pub type LiveCerts = Arc<ArcSwap<CertStore>>;

/// Everything that outlives snapshots. Built once, at start-up.
pub struct LongLived {
    /// The tables snapshots take their handles from.
    pub tables: Tables,
    /// Rate-limit and quota counters.
    pub limits: Arc<dyn LimitStore>,
    /// The clock limits and key validity are judged by.
    pub clock: Arc<dyn Clock>,
    /// Active health checks, on a runtime that lives as long as the process.
    pub health: HealthChecker,
    /// Certificates of each start-up listener (`None`: plain HTTP), in
    /// start-up order, with the listener's address.
    pub listener_certs: Vec<(SocketAddr, Option<LiveCerts>)>,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// Requests in flight, which a graceful shutdown waits for.
    pub requests: Arc<Requests>,
}

/// The parts of the long-lived state that snapshots take handles from
/// (the first one is prepared against them before the rest is set up).
pub struct Tables {
    /// Backend health and in-flight counts.
    pub backends: StateTable,
    /// Request metric handles by route id.
    pub route_metrics: RouteMetricsTable,
    /// Usage per consumer and route.
    pub usage: UsageTable,
    /// The response cache's store, lock table and per-route settings.
    pub cache: CacheTable,
    /// Fetched JWT key sets and the bearer metric families.
    pub bearer: crate::bearer::BearerTable,
}

impl Tables {
    /// Empty tables whose metrics are registered nowhere, for a config
    /// that will not run in this process (`check`, `diff`, `explain`).
    pub fn detached() -> Tables {
        Tables {
            backends: StateTable::default(),
            route_metrics: RouteMetricsTable::detached(),
            usage: UsageTable::default(),
            cache: CacheTable::detached(),
            bearer: crate::bearer::BearerTable::detached(),
        }
    }
}

/// Why the long-lived state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the control runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("{0}")]
    AccessLog(#[from] crate::accesslog::OpenError),
    #[error("limit_store: {0}")]
    LimitStore(String),
    #[error("cache.shared: {0}")]
    SharedCache(String),
}

impl LongLived {
    /// Set up the state for the first config: listener certificates from
    /// `certs` (aligned with `config.listeners`), the access-log writer for
    /// its target, the health checker, around `tables`.
    pub fn new(
        config: &Config,
        certs: Vec<Option<CertStore>>,
        tables: Tables,
        metrics: Metrics,
    ) -> Result<LongLived, StartError> {
        let listener_certs = config
            .listeners
            .iter()
            .zip(certs)
            .map(|(l, c)| (l.address, c.map(|c| Arc::new(ArcSwap::from_pointee(c)))))
            .collect();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let limits = crate::limit_store::build(
            &config.limit_store,
            metrics.limit_store().clone(),
            clock.clone(),
        )
        .map_err(StartError::LimitStore)?;
        if let Some(shared) = &config.cache.shared {
            tables
                .cache
                .start_shared(shared)
                .map_err(StartError::SharedCache)?;
        }
        Ok(LongLived {
            tables,
            limits,
            clock,
            health: HealthChecker::new()?,
            listener_certs,
            metrics,
            access_log: AccessLog::start(&config.access_log)?,
            requests: Requests::new(),
        })
    }

    /// Hand a new config's certificates to the start-up listeners: each TLS
    /// listener takes the store of the new config's listener with the same
    /// address. A listener the new config dropped or made plain keeps its
    /// certificates until the restart the change needs.
    pub fn swap_certificates(&self, config: &Config, certs: Vec<Option<CertStore>>) {
        for (listener, store) in config.listeners.iter().zip(certs) {
            let Some(store) = store else { continue };
            let live = self
                .listener_certs
                .iter()
                .find(|(addr, _)| *addr == listener.address)
                .and_then(|(_, live)| live.as_ref());
            if let Some(live) = live {
                live.store(Arc::new(store));
            }
        }
    }
}
