//! The Redis side of the shared store: one multiplexed connection (it
//! reconnects by itself; concurrent calls are pipelined on it), three Lua
//! scripts run by `EVALSHA` (loaded again after a Redis restart), and
//! every call bounded by `[limit_store] timeout`.
//!
//! Keys are `PREFIX{POLICY|SUBJECT}`: the braces are a Redis Cluster hash
//! tag, so a quota's per-period keys (`…}:INDEX`) live in the slot of the
//! key the script is given.

use std::fmt::Write;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::ConnectionManager;
use redis::Script;

use crate::config::model::RedisStoreConfig;
use crate::metrics::limit_store::LimitStoreFamilies;
use crate::ratelimit::gcra::Gcra;
use crate::ratelimit::{Check, CheckState, Limit, LimitKey, Period, Subject};

/// Why a call to Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

impl StoreError {
    /// The `reason` label of `portcullis_limit_store_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Redis(_) => "error",
        }
    }
}

/// One exact check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    pub state: CheckState,
    /// Seconds until a refused check would allow one request.
    pub retry_secs: u64,
}

/// The Redis connection and scripts.
pub struct Redis {
    conn: ConnectionManager,
    gcra: Script,
    quota: Script,
    sync: Script,
    prefix: String,
    timeout: Duration,
    metrics: LimitStoreFamilies,
}

/// Microseconds, as the scripts count them (with a fraction).
fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

impl Redis {
    /// Set up the connection (made on first use, in the background of
    /// `runtime`): the password comes from its file or variable.
    pub fn connect(
        config: &RedisStoreConfig,
        runtime: &tokio::runtime::Handle,
        metrics: LimitStoreFamilies,
    ) -> Result<Redis, String> {
        let conn = crate::redis_conn::connect(
            &crate::redis_conn::Endpoint {
                url: &config.url,
                password: config.password.as_ref(),
                ca_file: config.ca_file.as_deref(),
                timeout: config.timeout,
            },
            runtime,
        )?;
        Ok(Redis {
            conn,
            gcra: Script::new(include_str!("gcra.lua")),
            quota: Script::new(include_str!("quota.lua")),
            sync: Script::new(include_str!("sync.lua")),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            metrics,
        })
    }

    /// The key of a counter: `PREFIX{POLICY|SUBJECT}`.
    pub fn key(&self, key: &LimitKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.policy.len() + 24);
        out.push_str(&self.prefix);
        out.push('{');
        out.push_str(&key.policy);
        out.push('|');
        match &key.subject {
            Subject::All => out.push('*'),
            Subject::Consumer(c) => {
                out.push_str("c:");
                out.push_str(c);
            }
            Subject::ClientIp(ip) => {
                let _ = write!(out, "ip:{ip}");
            }
        }
        out.push('}');
        out
    }

    /// Run `calls` (pipelined on the connection: one round trip) within
    /// the timeout, timing them as `kind`; every reply, or the first error.
    async fn round_trip<T>(
        &self,
        kind: &str,
        calls: impl IntoIterator<Item = impl std::future::Future<Output = redis::RedisResult<T>>>,
    ) -> Result<Vec<T>, StoreError> {
        let started = Instant::now();
        let all = async { join_all(calls).await.into_iter().collect() };
        let result = match tokio::time::timeout(self.timeout, all).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout),
        };
        match &result {
            Ok(_) => self
                .metrics
                .round_trip(kind)
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => self.metrics.error(e.reason()).inc(),
        }
        result
    }

    /// Check `checks` in one round trip (their scripts pipelined), each
    /// charged `cost` (1), looked at (0) or given back (-1) when allowed.
    pub async fn check(&self, checks: &[&Check], cost: i64) -> Result<Vec<Answer>, StoreError> {
        let calls = checks.iter().map(|c| {
            let mut conn = self.conn.clone();
            let key = self.key(&c.key);
            let mut invocation = match c.limit {
                Limit::Bucket(b) => {
                    let g = Gcra::of(&b);
                    let mut i = self.gcra.key(key);
                    i.arg(micros(g.interval)).arg(micros(g.tolerance));
                    i
                }
                Limit::Quota(q) => {
                    let mut i = self.quota.key(key);
                    i.arg(q.limit).arg(match q.period {
                        Period::Day => "day",
                        Period::Month => "month",
                    });
                    i
                }
            };
            invocation.arg(cost);
            async move {
                invocation
                    .invoke_async::<(u8, u64, u64, u64)>(&mut conn)
                    .await
            }
        });
        let replies = self.round_trip("check", calls).await?;
        Ok(replies
            .into_iter()
            .map(|(allowed, remaining, reset_secs, retry_secs)| Answer {
                allowed: allowed == 1,
                state: CheckState {
                    remaining,
                    reset_secs,
                },
                retry_secs,
            })
            .collect())
    }

    /// Add `n` requests to each bucket (`key`, emission interval in ns) in
    /// one round trip: how far each shared bucket is ahead of now, in ns.
    pub async fn sync(&self, batch: &[(&str, u64, u64)]) -> Result<Vec<u64>, StoreError> {
        let calls = batch.iter().map(|(key, interval, n)| {
            let mut conn = self.conn.clone();
            let mut invocation = self.sync.key(*key);
            invocation.arg(micros(*interval)).arg(*n);
            async move { invocation.invoke_async::<u64>(&mut conn).await }
        });
        let ahead = self.round_trip("sync", calls).await?;
        Ok(ahead
            .into_iter()
            .map(|us| us.saturating_mul(1_000))
            .collect())
    }
}
