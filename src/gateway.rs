//! The gateway's shared state: the current [`Snapshot`] behind one
//! `ArcSwap`, the [`LongLived`] state that outlives snapshots, and the one
//! reload path every trigger (`SIGHUP`, `POST /-/reload`, the file watcher)
//! goes through: [`reload::prepare`], then commit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::accesslog::AccessLog;
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors};
use crate::drain::Requests;
use crate::metrics::{Metrics, RouteMetricsTable, ScrapeState};
use crate::ratelimit::LimitStore;
use crate::reload::{self, diff::ConfigDiff};
use crate::snapshot::Snapshot;
use crate::state::{LiveCerts, LongLived, StartError, Tables};
use crate::upstream::StateTable;
use crate::usage::UsageTable;

/// Shared by the proxy, the admin API and the control-plane service.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Everything that outlives snapshots.
    state: LongLived,
    /// Listeners with a redirect or HSTS, set once the addresses are bound.
    policies: OnceLock<Vec<ListenerPolicy>>,
    /// Every start-up listener's bound address (port 0 resolved), in order.
    bound: OnceLock<Vec<SocketAddr>>,
    config_path: PathBuf,
    /// Serialises reloads so two triggers cannot interleave prepare and commit.
    reload_lock: Mutex<()>,
    /// Start-up-only settings the config file changes and a restart would
    /// apply (see [`reload::restart`]), as of the last successful reload.
    restart_required: Mutex<Vec<&'static str>>,
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
    /// What changed, and in `restart_required` the start-up-only settings
    /// the file differs in (still running with their old values).
    pub diff: ConfigDiff,
    /// Whether anything was applied.
    pub applied: bool,
    /// Pools whose health probes restarted.
    pub probes_restarted: Vec<String>,
    /// From the trigger to the swap (prepare and commit).
    pub took: Duration,
}

impl ReloadReport {
    /// True when the reload found nothing to change (and changed nothing).
    pub fn unchanged(&self) -> bool {
        !self.applied
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    State(#[from] StartError),
}

impl Gateway {
    /// Prepare the first snapshot and set up the long-lived state around it.
    pub fn load(config_path: PathBuf) -> Result<Arc<Gateway>, LoadError> {
        // The metric families come first: the first snapshot's route
        // handles are resolved against them.
        let metrics = Metrics::new().map_err(StartError::from)?;
        let route_metrics = RouteMetricsTable::new(metrics.requests().clone());
        let tables = Tables {
            backends: StateTable::new(metrics.upstream().clone()),
            route_metrics,
            usage: UsageTable::default(),
            cache: crate::cache::CacheTable::new(metrics.cache().clone()),
            bearer: crate::bearer::BearerTable::new(metrics.jwt().clone()),
        };
        let prepared = reload::prepare(&config_path, &tables, None)?;
        let state = LongLived::new(&prepared.snapshot.config, prepared.certs, tables, metrics)?;
        state
            .metrics
            .restart_required(&reload::restart::REASONS, &[]);
        reload::commit::adopt(&state, &prepared.snapshot, |_| true);
        state.metrics.config_loaded(prepared.snapshot.fingerprint);
        Ok(Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(prepared.snapshot),
            state,
            policies: OnceLock::new(),
            bound: OnceLock::new(),
            config_path,
            reload_lock: Mutex::new(()),
            restart_required: Mutex::new(Vec::new()),
        }))
    }

    /// Start-up-only settings the config file changes, waiting for a
    /// restart (empty when the file matches what runs).
    pub fn restart_required(&self) -> Vec<&'static str> {
        self.restart_required
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current snapshot; a request holds on to it until it ends.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Where rate-limit and quota counters live.
    pub fn limit_store(&self) -> &dyn LimitStore {
        &*self.state.limits
    }

    /// The clock limits and key validity are judged by.
    pub fn clock(&self) -> &dyn Clock {
        &*self.state.clock
    }

    /// The live certificate store of start-up listener `index`, if it is TLS.
    pub fn tls_store(&self, index: usize) -> Option<LiveCerts> {
        self.state.listener_certs.get(index)?.1.clone()
    }

    /// Every TLS listener's certificates: (listener address, names, expiry
    /// as seconds since the Unix epoch).
    pub fn certificates(&self) -> Vec<(String, Vec<String>, i64)> {
        self.state
            .listener_certs
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| Some((self.listener_address(i), s.as_ref()?.load_full())))
            .flat_map(|(i, store)| {
                store
                    .certs
                    .iter()
                    .map(|c| (i.clone(), c.names.clone(), c.not_after))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Since when usage per consumer has been counted.
    pub fn usage_since(&self) -> std::time::SystemTime {
        self.state.tables.usage.since()
    }

    /// Usage per consumer and route.
    pub fn usage(&self) -> &crate::usage::UsageTable {
        &self.state.tables.usage
    }

    /// Every start-up listener's bound address, once the server bound them.
    pub fn bound_listeners(&self) -> &[SocketAddr] {
        self.bound.get().map_or(&[], |b| b.as_slice())
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
        policies
            .iter()
            .find(|p| crate::config::model::accepts_on(p.address, local))
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Start the active health checks of the current snapshot (at once, no
    /// jitter). Their tasks run on the health checker's own runtime.
    pub fn start_health_checks(&self) {
        self.state.health.sync(&self.snapshot.load().pools, false);
    }

    /// Reload on a blocking thread (`spawn_blocking`), off the async workers
    /// of the proxy and the admin API: prepare reads files and builds
    /// tables. See [`Gateway::reload_blocking`].
    pub async fn reload(
        self: &Arc<Self>,
        trigger: &'static str,
        force: bool,
    ) -> Result<ReloadReport, ConfigErrors> {
        let gateway = self.clone();
        match tokio::task::spawn_blocking(move || gateway.reload_blocking(trigger, force)).await {
            Ok(result) => result,
            Err(e) => Err(ConfigError::whole_file(
                &self.config_path.display().to_string(),
                format!("the reload did not finish: {e}"),
            )
            .into()),
        }
    }

    /// The one reload path of every trigger (`SIGHUP`, `POST /-/reload`,
    /// the file watcher): `apply`, between systemd's `RELOADING=1`
    /// and `READY=1` with the outcome in `STATUS=`.
    pub fn reload_blocking(
        &self,
        trigger: &str,
        force: bool,
    ) -> Result<ReloadReport, ConfigErrors> {
        crate::notify::reloading();
        let result = self.apply(trigger, force);
        crate::notify::reloaded(&match &result {
            Ok(_) => format!("serving {} (reloaded)", self.snapshot().summary()),
            Err(errors) => format!(
                "reload rejected ({} error(s)); serving the previous config",
                errors.0.len()
            ),
        });
        result
    }

    /// Prepare the config file afresh, then commit it. On any error in
    /// prepare, the current snapshot keeps serving, the long-lived state is
    /// untouched, and the errors are logged, counted and returned. A config
    /// identical to the one serving changes nothing and reports `unchanged`
    /// (the access log is still reopened, for log rotation). A config
    /// that drops every route or every consumer is refused unless `force`
    /// (see [`reload::not_emptied`]).
    fn apply(&self, trigger: &str, force: bool) -> Result<ReloadReport, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let (prepared, mut diff) = match self.plan(force) {
            Ok(planned) => planned,
            Err(errors) => {
                self.state.metrics.reload(false);
                for e in &errors.0 {
                    error!(trigger, error = %e, "reload rejected; the previous config keeps serving");
                }
                return Err(errors);
            }
        };
        let pending = prepared.restart_required.clone();
        let summary = prepared.snapshot.summary();
        let applied = !diff.is_empty();
        let probes_restarted = if applied {
            self.commit(prepared, &diff)
        } else {
            Vec::new()
        };
        self.state
            .metrics
            .restart_required(&reload::restart::REASONS, &pending);
        diff.restart_required = pending.iter().map(|r| r.to_string()).collect();
        *self
            .restart_required
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = pending;
        self.reopen_access_log();
        self.state.metrics.reload(true);
        self.state
            .metrics
            .config_loaded(self.snapshot.load().fingerprint);
        let report = ReloadReport {
            summary,
            diff,
            applied,
            probes_restarted,
            took: started.elapsed(),
        };
        for what in &report.diff.restart_required {
            warn!(trigger, setting = %what, "the config file changes a setting read at start-up only; it keeps its running value until a restart");
        }
        if report.unchanged() {
            info!(trigger, "config unchanged; nothing to reload");
        } else {
            info!(
                trigger,
                summary = %report.summary,
                changes = %report.diff.to_string().replace("\n    ", ", ").replace('\n', "; "),
                probes_restarted = ?report.probes_restarted,
                took_ms = report.took.as_secs_f64() * 1e3,
                "config reloaded"
            );
        }
        Ok(report)
    }

    /// Prepare the config file as a reload would and compare it with what
    /// runs: start-up-only settings are equal in the two (the prepared
    /// config keeps the running values; `Prepared::restart_required` lists
    /// where the file differs).
    fn plan(&self, force: bool) -> Result<(reload::Prepared, ConfigDiff), ConfigErrors> {
        let started = Instant::now();
        let old = self.snapshot.load_full();
        let prepared = reload::prepare(&self.config_path, &self.state.tables, Some(&old.config))
            .and_then(|p| reload::not_emptied(&old, p, force))?;
        let prepared_in = started.elapsed();
        let diff = ConfigDiff::between(&old, &prepared.snapshot);
        tracing::debug!(
            prepare_ms = prepared_in.as_secs_f64() * 1e3,
            diff_ms = (started.elapsed() - prepared_in).as_secs_f64() * 1e3,
            "compared"
        );
        Ok((prepared, diff))
    }

    /// What a reload would do now, without doing it: the same answer as
    /// [`Self::reload_blocking`], nothing committed, counted or logged.
    pub fn reload_dry_run(&self, force: bool) -> Result<ReloadReport, ConfigErrors> {
        let started = Instant::now();
        let (prepared, mut diff) = self.plan(force)?;
        let applied = !diff.is_empty();
        diff.restart_required = prepared
            .restart_required
            .iter()
            .map(|r| r.to_string())
            .collect();
        Ok(ReloadReport {
            summary: prepared.snapshot.summary(),
            diff,
            applied,
            probes_restarted: Vec::new(),
            took: started.elapsed(),
        })
    }

    /// Commit a prepared config, in this order: the backend table adopts
    /// the new snapshot's backends (keeping the state of unchanged ones);
    /// the snapshot is swapped in (new requests route by it at once); then
    /// each TLS listener's certificates are swapped (new handshakes get
    /// them); then the probes of changed pools restart. A request that
    /// started on the old snapshot finishes on it. Returns the pools whose
    /// probes restarted.
    fn commit(&self, prepared: reload::Prepared, diff: &ConfigDiff) -> Vec<String> {
        let reload::Prepared {
            snapshot, certs, ..
        } = prepared;
        reload::commit::adopt(&self.state, &snapshot, |name| {
            diff.pools.added.iter().any(|p| p == name)
                || diff.pools.changed.iter().any(|p| p == name)
        });
        let config = snapshot.config.clone();
        self.snapshot.store(Arc::new(snapshot));
        self.state.swap_certificates(&config, certs);
        self.state.health.sync(&self.snapshot.load().pools, true)
    }

    /// Reopen the access-log file (after logrotate moved it away: SIGUSR1,
    /// or any reload). May wait for the writer thread: call it off the
    /// request path.
    pub fn reopen_access_log(&self) {
        let target = &self.snapshot.load().config.access_log;
        if let Err(e) = self.state.access_log.reopen(target) {
            error!(error = %e, "the access log keeps going to the file it was writing");
        }
    }

    /// The response cache (purge).
    pub fn cache(&self) -> &crate::cache::CacheTable {
        &self.state.tables.cache
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    pub fn access_log(&self) -> &AccessLog {
        &self.state.access_log
    }

    /// Requests in flight in this process.
    pub fn requests(&self) -> &Arc<Requests> {
        &self.state.requests
    }

    /// Start-up listener `index`'s address: as bound, or as configured
    /// before the server bound it.
    pub fn listener_address(&self, index: usize) -> String {
        if let Some(a) = self.bound.get().and_then(|b| b.get(index)) {
            return a.to_string();
        }
        self.state
            .listener_certs
            .get(index)
            .map_or_else(String::new, |(a, _)| a.to_string())
    }

    /// The Prometheus text of every metric, as of now.
    pub fn render_metrics(&self) -> Vec<u8> {
        let snapshot = self.snapshot();
        let backends = snapshot
            .pools
            .iter()
            .flat_map(|(name, pool)| {
                pool.backends.iter().map(move |b| {
                    (
                        name.clone(),
                        b.address.to_string(),
                        b.state.is_healthy(),
                        b.state.inflight(),
                    )
                })
            })
            .collect();
        self.state.tables.cache.refresh_gauges();
        self.state.metrics.render(&ScrapeState {
            certificates: self.certificates(),
            access_log_dropped: self.state.access_log.dropped(),
            backends,
        })
    }
}
