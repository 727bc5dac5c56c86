//! Active health checks.
//!
//! One task per pool that has a `health_check`, probing every backend each
//! `interval` (TCP connect, or an HTTP GET whose status must fall in the
//! expected range). A backend flips to unhealthy after
//! `unhealthy_threshold` consecutive failures and back after
//! `healthy_threshold` consecutive successes. The state lives in
//! [`BackendState`], so it survives reloads; the tasks are restarted on each
//! reload with the new pools.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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

/// A probe of one backend, built once per pool.
enum Probe {
    Tcp,
    Http(Box<HttpHealthCheck>),
}

impl Probe {
    fn new(hc: &HealthCheck) -> Probe {
        match &hc.kind {
            HealthCheckKind::Tcp => Probe::Tcp,
            HealthCheckKind::Http {
                path,
                host,
                expected_status,
            } => {
                let mut check = HttpHealthCheck::new(host.as_deref().unwrap_or("localhost"), false);
                if let Ok(mut req) =
                    pingora_http::RequestHeader::build("GET", path.as_bytes(), None)
                {
                    if let Some(h) = host {
                        let _ = req.insert_header("Host", h.as_str());
                    }
                    let _ = req.insert_header("User-Agent", "portcullis-health-check");
                    check.req = req;
                }
                check.peer_template.options.connection_timeout = Some(hc.timeout);
                check.peer_template.options.read_timeout = Some(hc.timeout);
                check.peer_template.options.write_timeout = Some(hc.timeout);
                let (lo, hi) = *expected_status;
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
                Probe::Http(Box::new(check))
            }
        }
    }

    async fn run(&self, addr: std::net::SocketAddr, hc: &HealthCheck) -> bool {
        let attempt = async {
            match self {
                Probe::Tcp => tokio::net::TcpStream::connect(addr).await.is_ok(),
                Probe::Http(check) => {
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

async fn check_pool(pool: Arc<Pool>, hc: HealthCheck) {
    let probe = Probe::new(&hc);
    let mut tick = tokio::time::interval(hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hc_ref = &hc;
    let probe = &probe;
    loop {
        tick.tick().await;
        let probes = pool.backends.iter().map(|b| async move {
            let ok = probe.run(b.address, hc_ref).await;
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

/// Owns the health-check tasks of the current snapshot.
#[derive(Default)]
pub struct HealthChecker {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl HealthChecker {
    /// Replace the running checks by checks of `pools`. Must run inside a
    /// tokio runtime that lives as long as the process.
    pub fn restart(&self, pools: &HashMap<String, Arc<Pool>>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
        for pool in pools.values() {
            if let Some(hc) = pool.config.health_check.clone() {
                tasks.push(tokio::spawn(check_pool(pool.clone(), hc)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
