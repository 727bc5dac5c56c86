//! Active health checks.
//!
//! One task per pool that has a `health_check`, probing every backend each
//! `interval` (TCP connect, an HTTP GET whose status must fall in the
//! expected range, or the gRPC health protocol's `Check`). A backend flips to unhealthy after
//! `unhealthy_threshold` consecutive failures and back after
//! `healthy_threshold` consecutive successes. The state lives in
//! [`BackendState`], so it survives reloads. On a reload only the tasks of
//! pools whose backends or check changed restart, after a random delay
//! within one interval, so that a reload does not fire every probe at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora_http::ResponseHeader;
use pingora_load_balancing::health_check::{HealthCheck as _, HttpHealthCheck};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{BackendState, Pool};
use crate::config::model::{HealthCheck, HealthCheckKind};

/// Feed one probe result into `state`. Returns the new health when it flips.
pub fn observe(state: &BackendState, success: bool, hc: &HealthCheck) -> Option<bool> {
    let healthy = state.is_healthy();
    if success == healthy {
        // Result agrees with the current state: reset the opposite streak.
        state.streak.store(0, Ordering::Relaxed);
        return None;
    }
    let streak = state.streak.fetch_add(1, Ordering::Relaxed) + 1;
    let threshold = if success {
        hc.healthy_threshold
    } else {
        hc.unhealthy_threshold
    };
    if streak >= threshold {
        state.streak.store(0, Ordering::Relaxed);
        state.set_healthy(success);
        Some(success)
    } else {
        None
    }
}

/// A probe of a pool's backends, built once per pool.
enum Probe {
    Tcp,
    /// One check per backend (index as in the pool), each with its own
    /// `Host`.
    Http(Vec<HttpHealthCheck>),
    Grpc(Box<super::grpc_health::GrpcProbe>),
}

impl Probe {
    fn new(hc: &HealthCheck, pool: &Pool) -> Probe {
        match &hc.kind {
            HealthCheckKind::Tcp => Probe::Tcp,
            HealthCheckKind::Grpc { service } => {
                Probe::Grpc(Box::new(super::grpc_health::GrpcProbe::new(service)))
            }
            HealthCheckKind::Http {
                path,
                host,
                expected_status,
            } => Probe::Http(
                pool.backends
                    .iter()
                    .map(|b| http_check(hc, pool, b, path, host.as_deref(), *expected_status))
                    .collect(),
            ),
        }
    }

    async fn run(&self, pool: &Pool, index: usize, hc: &HealthCheck) -> bool {
        let Some(backend) = pool.backends.get(index) else {
            return false;
        };
        let addr = backend.address;
        let attempt = async {
            match self {
                Probe::Tcp => tokio::net::TcpStream::connect(addr).await.is_ok(),
                Probe::Grpc(probe) => probe.serving(pool, backend, hc.timeout).await,
                Probe::Http(checks) => {
                    let Some(check) = checks.get(index) else {
                        return false;
                    };
                    let target = pingora_load_balancing::Backend {
                        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                        weight: 1,
                        ext: Default::default(),
                    };
                    check.check(&target).await.is_ok()
                }
            }
        };
        // The probe's own timeouts cover connect and read; this bounds the whole probe.
        tokio::time::timeout(hc.timeout, attempt)
            .await
            .unwrap_or(false)
    }
}

/// An HTTP `GET path` of `backend` with the pool's connection settings
/// (TLS, SNI, CA, client certificate: a TLS backend is probed over TLS),
/// over HTTP/1.1 whatever the pool speaks to its backends. `Host` is
/// `host`, else the pool's SNI on a TLS pool, else the backend's address
/// (HTTP/1.1 requires one; nginx refuses a request without it).
fn http_check(
    hc: &HealthCheck,
    pool: &Pool,
    backend: &super::Backend,
    path: &str,
    host: Option<&str>,
    (lo, hi): (u16, u16),
) -> HttpHealthCheck {
    let address = backend.address.to_string();
    let sni = pool
        .tls
        .as_ref()
        .map(|t| t.sni.as_str())
        .filter(|s| !s.is_empty());
    let host = host.or(sni).unwrap_or(&address);
    let mut check = HttpHealthCheck::new(host, false);
    if let Ok(mut req) = pingora_http::RequestHeader::build("GET", path.as_bytes(), None) {
        let _ = req.insert_header("Host", host);
        let _ = req.insert_header("User-Agent", "portcullis-health-check");
        check.req = req;
    }
    check.peer_template =
        super::peer::probe_peer(pool, backend, hc.timeout, pingora_core::protocols::ALPN::H1);
    check.validator = Some(Box::new(move |resp: &ResponseHeader| {
        let s = resp.status.as_u16();
        if (lo..=hi).contains(&s) {
            Ok(())
        } else {
            pingora_error::Error::e_explain(
                pingora_error::ErrorType::CustomCode("unexpected status", s),
                "health check",
            )
        }
    }));
    check
}

async fn check_pool(pool: Arc<Pool>, hc: HealthCheck, first_after: Duration) {
    let probe = Probe::new(&hc, &pool);
    // Probes of restarted pools spread over one interval instead of all
    // firing at the moment of the reload.
    let start = tokio::time::Instant::now() + first_after;
    let mut tick = tokio::time::interval_at(start, hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hc_ref = &hc;
    let probe = &probe;
    loop {
        tick.tick().await;
        let pool_ref = &*pool;
        let probes = pool.backends.iter().enumerate().map(|(i, b)| async move {
            let ok = probe.run(pool_ref, i, hc_ref).await;
            (b, ok)
        });
        for (b, ok) in futures_util::future::join_all(probes).await {
            match observe(&b.state, ok, &hc) {
                Some(true) => {
                    info!(pool = %pool.config.name, backend = %b.address, "backend healthy again")
                }
                Some(false) => {
                    warn!(pool = %pool.config.name, backend = %b.address, "backend marked unhealthy")
                }
                None => {}
            }
        }
    }
}

/// What a probe task checks: when this changes, the task restarts.
#[derive(Debug, Clone, PartialEq)]
struct ProbeTarget {
    backends: Vec<crate::config::model::BackendConfig>,
    check: HealthCheck,
}

struct ProbeTask {
    target: ProbeTarget,
    handle: JoinHandle<()>,
}

/// The runtime health probes run on: one worker thread, as long-lived as
/// the process, so probes never depend on the service whose thread
/// triggered a reload. Shut down without waiting when dropped.
struct ControlRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ControlRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Owns the health-probe tasks, one per pool with a `health_check`.
pub struct HealthChecker {
    runtime: ControlRuntime,
    tasks: Mutex<HashMap<String, ProbeTask>>,
}

impl HealthChecker {
    /// Start the checker's own runtime (no probes yet).
    pub fn new() -> std::io::Result<HealthChecker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-health")
            .enable_all()
            .build()?;
        Ok(HealthChecker {
            runtime: ControlRuntime(Some(runtime)),
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// Make the running probes those of `pools`: a pool whose backends and
    /// check are unchanged keeps its task (and its rhythm); a new or changed
    /// one gets a new task whose first probe comes after a random delay
    /// within one interval (at once when `jitter` is false, as at start-up);
    /// tasks of pools that are gone, or lost their check, stop. Returns the
    /// names of the pools whose probes (re)started, sorted.
    pub fn sync(&self, pools: &HashMap<String, Arc<Pool>>, jitter: bool) -> Vec<String> {
        let Some(runtime) = self.runtime.0.as_ref() else {
            return Vec::new();
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|name, task| {
            let keep = pools.get(name).is_some_and(|p| {
                p.config.health_check.as_ref() == Some(&task.target.check)
                    && p.config.backends == task.target.backends
            });
            if !keep {
                task.handle.abort();
            }
            keep
        });
        let mut started = Vec::new();
        for (name, pool) in pools {
            let Some(hc) = pool.config.health_check.clone() else {
                continue;
            };
            if tasks.contains_key(name) {
                continue;
            }
            let first_after = if jitter {
                random_below(hc.interval)
            } else {
                Duration::ZERO
            };
            let target = ProbeTarget {
                backends: pool.config.backends.clone(),
                check: hc.clone(),
            };
            let handle = runtime.spawn(check_pool(pool.clone(), hc, first_after));
            tasks.insert(name.clone(), ProbeTask { target, handle });
            started.push(name.clone());
        }
        started.sort();
        started
    }
}

/// A uniformly random duration in `[0, max)` (zero when `max` is zero).
fn random_below(max: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // Jitter needs no secrecy; should the system generator fail, no delay.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() || max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = max.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(u64::from_le_bytes(bytes) % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc() -> HealthCheck {
        HealthCheck {
            kind: HealthCheckKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn flips_only_after_consecutive_results() {
        let s = BackendState::default();
        let hc = hc();
        assert_eq!(observe(&s, false, &hc), None);
        assert_eq!(observe(&s, false, &hc), None);
        // A success in between resets the failure streak.
        assert_eq!(observe(&s, true, &hc), None);
        assert_eq!(observe(&s, false, &hc), None);
        assert_eq!(observe(&s, false, &hc), None);
        assert_eq!(observe(&s, false, &hc), Some(false));
        assert!(!s.is_healthy());
        assert_eq!(observe(&s, true, &hc), None);
        assert_eq!(observe(&s, true, &hc), Some(true));
        assert!(s.is_healthy());
    }
}
