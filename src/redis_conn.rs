//! What the gateway's Redis users (the shared limit store, the shared
//! cache tier) have in common: the connection (the `redis` crate's
//! `ConnectionManager`: one multiplexed connection that reconnects by
//! itself, made lazily so the gateway starts while Redis is down; TLS with
//! a CA file; the password from a file or variable, never inline), the
//! breaker that keeps calls away from a failing Redis, and the one-thread
//! runtime the connection's driver runs on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;

use crate::config::model::SecretSource;

/// How long the breaker keeps calls away from a failing Redis.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where a Redis is and how to talk to it.
pub struct Endpoint<'a> {
    /// `redis://` or `rediss://`, with no password in it.
    pub url: &'a str,
    pub password: Option<&'a SecretSource>,
    pub ca_file: Option<&'a Path>,
    /// Per call; also bounds connecting (at least 1 s).
    pub timeout: Duration,
}

/// The client for `endpoint`, connected lazily in the background of
/// `runtime`. An unreadable password or CA file is an error here.
pub fn client(endpoint: &Endpoint<'_>) -> Result<redis::Client, String> {
    let mut info = endpoint
        .url
        .into_connection_info()
        .map_err(|e| format!("url: {e}"))?;
    if let Some(source) = endpoint.password {
        let password = read_secret(source)?;
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    match endpoint.ca_file {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| e.to_string())
}

/// The multiplexed connection to `endpoint`, made on first use in the
/// background of `runtime`.
pub fn connect(
    endpoint: &Endpoint<'_>,
    runtime: &tokio::runtime::Handle,
) -> Result<ConnectionManager, String> {
    let client = client(endpoint)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(endpoint.timeout.max(Duration::from_secs(1))))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let _entered = runtime.enter();
    client
        .get_connection_manager_lazy(manager_config)
        .map_err(|e| e.to_string())
}

/// A secret's first line, from its file or variable. The error names the
/// source, never the value.
pub fn read_secret(source: &SecretSource) -> Result<String, String> {
    let text = match source {
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("password_file {}: {e}", path.display()))?,
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("password_env: the variable {name} is not set"))?,
    };
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(match source {
            SecretSource::File(path) => format!("password_file {} is empty", path.display()),
            SecretSource::Env(name) => format!("password_env: the variable {name} is empty"),
        });
    }
    Ok(line.to_string())
}

/// Closed (0), or open until a Unix time in ns: after a failure, calls
/// stay away for [`RETRY_AFTER`]; then one caller tries, and its success
/// closes it.
#[derive(Default)]
pub struct Breaker {
    open_until: AtomicU64,
}

impl Breaker {
    /// Whether to call Redis at `now`: closed, or open and due for a try
    /// (which this caller takes; others keep away meanwhile).
    pub fn allow(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now.saturating_add(crate::clock::nanos(RETRY_AFTER)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    pub fn success(&self) {
        self.open_until.store(0, Ordering::Release);
    }

    pub fn failure(&self, now: u64) {
        self.open_until.store(
            now.saturating_add(crate::clock::nanos(RETRY_AFTER)).max(1),
            Ordering::Release,
        );
    }
}

/// A one-thread runtime for a Redis user's connection driver and
/// background work, shut down without waiting when its owner goes.
pub struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    pub fn start(thread_name: &str) -> Result<OwnedRuntime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map(|rt| OwnedRuntime(Some(rt)))
            .map_err(|e| format!("cannot start the runtime {thread_name}: {e}"))
    }

    pub fn get(&self) -> Option<&tokio::runtime::Runtime> {
        self.0.as_ref()
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
