//! The gateway's shared state: the current [`Snapshot`] behind one
//! `ArcSwap`, the long-lived state that outlives snapshots, and the one
//! reload path every trigger (SIGHUP, `POST /-/reload`) goes through.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::accesslog::AccessLog;
use crate::config::{self, ConfigError, ConfigErrors};
use crate::metrics::{Metrics, ScrapeState};
use crate::ratelimit::clock::{Clock, SystemClock};
use crate::ratelimit::{LimitStore, LocalStore, DEFAULT_MAX_COUNTERS};
use crate::snapshot::Snapshot;
use crate::tls::{self, CertStore};
use crate::upstream::health::HealthChecker;
use crate::upstream::StateTable;

/// Shared by the proxy, the admin API and the control-plane service.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Certificates of each start-up listener (`None`: plain HTTP), swapped
    /// on reload like the snapshot.
    tls: Vec<Option<Arc<ArcSwap<CertStore>>>>,
    /// Listeners with a redirect or HSTS, set once the addresses are bound.
    policies: OnceLock<Vec<ListenerPolicy>>,
    /// Every start-up listener's bound address (port 0 resolved), in order.
    bound: OnceLock<Vec<SocketAddr>>,
    config_path: PathBuf,
    states: StateTable,
    health: HealthChecker,
    /// Rate-limit and quota counters; keyed by each limit's definition, so
    /// they outlive snapshots.
    limits: Arc<dyn LimitStore>,
    clock: Arc<dyn Clock>,
    /// Serialises reloads so two triggers cannot interleave build and swap.
    reload_lock: Mutex<()>,
    metrics: Metrics,
    access_log: AccessLog,
}

/// What a start-up listener asks of every request it accepts.
#[derive(Debug, Clone)]
pub struct ListenerPolicy {
    /// The bound address (port 0 already resolved).
    pub address: SocketAddr,
    /// Answer with a 308 to `https://` on this port.
    pub redirect_https: Option<u16>,
    /// `Strict-Transport-Security` for responses.
    pub hsts: Option<http::HeaderValue>,
}

/// What a successful reload reports.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub summary: String,
    /// Settings read at start-up only (listeners, admin, threads) that changed.
    pub restart_required: Vec<String>,
}

impl Gateway {
    /// Load and build the first snapshot. Fails with every config error.
    pub fn load(config_path: PathBuf) -> Result<Arc<Gateway>, ConfigErrors> {
        let config = config::load(&config_path)?;
        let tls = tls::load_stores(&config)?
            .into_iter()
            .map(|s| s.map(|s| Arc::new(ArcSwap::from_pointee(s))))
            .collect();
        let states = StateTable::default();
        let metrics = Metrics::new().map_err(|e| {
            ConfigError::whole_file(&config.source, format!("cannot set up metrics: {e}"))
        })?;
        let access_log = AccessLog::start(&config.access_log);
        let snapshot = Snapshot::build(config, &states)?;
        Ok(Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            tls,
            policies: OnceLock::new(),
            bound: OnceLock::new(),
            config_path,
            states,
            health: HealthChecker::default(),
            limits: Arc::new(LocalStore::new(DEFAULT_MAX_COUNTERS)),
            clock: Arc::new(SystemClock),
            reload_lock: Mutex::new(()),
            metrics,
            access_log,
        }))
    }

    /// The current snapshot; a request holds on to it until it ends.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Where rate-limit and quota counters live.
    pub fn limit_store(&self) -> &dyn LimitStore {
        &*self.limits
    }

    /// The clock limits and key validity are judged by.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The live certificate store of start-up listener `index`, if it is TLS.
    pub fn tls_store(&self, index: usize) -> Option<Arc<ArcSwap<CertStore>>> {
        self.tls.get(index)?.clone()
    }

    /// Every TLS listener's certificates: (listener address, names, expiry
    /// as seconds since the Unix epoch).
    pub fn certificates(&self) -> Vec<(String, Vec<String>, i64)> {
        self.tls
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((self.listener_address(i), s.as_ref()?.load_full())))
            .flat_map(|(i, store)| {
                store
                    .certs
                    .iter()
                    .map(|c| (i.clone(), c.names.clone(), c.not_after))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Record the bound listeners and those that carry a policy; called
    /// once at start-up.
    pub fn set_listener_policies(&self, policies: Vec<ListenerPolicy>) {
        let _ = self.bound.set(policies.iter().map(|p| p.address).collect());
        let with_policy = policies
            .into_iter()
            .filter(|p| p.redirect_https.is_some() || p.hsts.is_some())
            .collect();
        let _ = self.policies.set(with_policy);
    }

    /// The policy of the listener that accepted a connection, if any;
    /// `local` (the accepting address) is only asked for when some listener
    /// has a policy.
    pub fn listener_policy(
        &self,
        local: impl FnOnce() -> Option<SocketAddr>,
    ) -> Option<&ListenerPolicy> {
        let policies = self.policies.get().filter(|p| !p.is_empty())?;
        let local = local()?;
        policies.iter().find(|p| {
            p.address.port() == local.port()
                && (p.address.ip() == local.ip() || p.address.ip().is_unspecified())
        })
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Start (or restart) the active health checks of the current snapshot.
    /// Call from a runtime that lives as long as the process.
    pub fn start_health_checks(&self) {
        self.health.restart(&self.snapshot.load().pools);
    }

    /// Re-read the config file: parse, validate, build, swap. On any error
    /// the current snapshot keeps serving and the errors are returned.
    pub fn reload(&self, trigger: &str) -> Result<ReloadReport, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let built = config::load(&self.config_path).and_then(|config| {
            let restart = startup_only_changes(&self.snapshot.load().config, &config);
            let stores = tls::load_stores(&config)?;
            Ok((Snapshot::build(config, &self.states)?, stores, restart))
        });
        let (snapshot, stores, restart_required) = match built {
            Ok(b) => b,
            Err(errors) => {
                self.metrics.reload(false);
                for e in &errors.0 {
                    error!(trigger, error = %e, "reload rejected; the previous config keeps serving");
                }
                return Err(errors);
            }
        };
        for what in &restart_required {
            warn!(trigger, setting = %what, "changed setting takes effect only after a restart");
        }
        let summary = snapshot.summary();
        self.snapshot.store(Arc::new(snapshot));
        // New handshakes get the new certificates; open connections keep theirs.
        for (live, new) in self.tls.iter().zip(stores) {
            if let (Some(live), Some(new)) = (live, new) {
                live.store(Arc::new(new));
            }
        }
        self.access_log
            .reopen(&self.snapshot.load().config.access_log);
        self.start_health_checks();
        self.metrics.reload(true);
        info!(trigger, %summary, "config reloaded");
        Ok(ReloadReport {
            summary,
            restart_required,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// Start-up listener `index`'s address: as bound, or as configured
    /// before the server bound it.
    pub fn listener_address(&self, index: usize) -> String {
        if let Some(a) = self.bound.get().and_then(|b| b.get(index)) {
            return a.to_string();
        }
        self.snapshot
            .load()
            .config
            .listeners
            .get(index)
            .map_or_else(String::new, |l| l.address.to_string())
    }

    /// The Prometheus text of every metric, as of now.
    pub fn render_metrics(&self) -> Vec<u8> {
        self.metrics.render(&ScrapeState {
            certificates: self.certificates(),
            access_log_dropped: self.access_log.dropped(),
        })
    }
}

fn startup_only_changes(old: &config::Config, new: &config::Config) -> Vec<String> {
    let mut changed = Vec::new();
    if old.listeners != new.listeners {
        changed.push("listeners".to_string());
    }
    if old.admin != new.admin {
        changed.push("admin.address".to_string());
    }
    if old.server != new.server {
        changed.push("server".to_string());
    }
    let off = |c: &config::Config| c.access_log == config::model::AccessLogTarget::Off;
    if off(old) != off(new) {
        changed.push("access_log.enabled".to_string());
    }
    changed
}
