//! `[cache.shared] kind = "redis"`: a second cache tier every instance
//! shares, so N instances do not each miss. A local miss looks here before
//! the origin; an object stored locally is written here too (bodies up to
//! `max_object_size`), for as long as it may be served. Keys are the local
//! tier's (route, host, path, query, key headers, consumer, variance), so
//! RFC 9111 rules and consumer isolation are the same.
//!
//! Purges reach every tier without a scan: each object remembers the
//! generations of what it depends on (its route, path, URL and tags), a
//! purge increments the generation it names, and a lookup drops an object
//! whose dependencies moved on (one Lua script, one round trip). Each
//! instance's local copies are purged through a Redis pub/sub channel.
//!
//! Every call is bounded by `timeout`; a failure opens a breaker for
//! [`RETRY_AFTER`], and meanwhile the tier is skipped: the cache works
//! locally, as without it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::Script;
use tracing::{info, warn};

use super::store::{purge_dep, Key, Purge, SecondTier};
use crate::config::model::SharedCacheConfig;
use crate::metrics::cache::CacheFamilies;
use crate::redis_conn::{Breaker, Endpoint, OwnedRuntime, RETRY_AFTER};

/// A generation outlives every object that recorded it: an object is kept
/// at most [`MAX_OBJECT_TTL`], a generation key [`GENERATION_TTL`] after
/// its last purge.
const MAX_OBJECT_TTL: Duration = Duration::from_secs(366 * 86_400);
const GENERATION_TTL: Duration = Duration::from_secs(400 * 86_400);

/// A purge another instance made, as the channel carries it.
#[derive(serde::Serialize, serde::Deserialize)]
struct PurgeMessage {
    /// The sender's instance id: its own messages are not applied again.
    from: u64,
    kind: String,
    a: String,
    b: String,
    c: Option<String>,
}

impl PurgeMessage {
    fn of(from: u64, purge: &Purge<'_>) -> PurgeMessage {
        let (kind, a, b, c) = match *purge {
            Purge::Path { route, path, query } => ("path", route, path, query),
            Purge::Route(route) => ("route", route, "", None),
            Purge::Tag(tag) => ("tag", tag, "", None),
            Purge::Url { host, path, query } => ("url", host, path, Some(query)),
        };
        PurgeMessage {
            from,
            kind: kind.into(),
            a: a.into(),
            b: b.into(),
            c: c.map(str::to_string),
        }
    }

    fn purge(&self) -> Option<Purge<'_>> {
        Some(match self.kind.as_str() {
            "path" => Purge::Path {
                route: &self.a,
                path: &self.b,
                query: self.c.as_deref(),
            },
            "route" => Purge::Route(&self.a),
            "tag" => Purge::Tag(&self.a),
            "url" => Purge::Url {
                host: &self.a,
                path: &self.b,
                query: self.c.as_deref()?,
            },
            _ => return None,
        })
    }
}

/// What to do with another instance's purge: purge the local tier.
pub type OnPurge = Arc<dyn Fn(Purge<'_>) + Send + Sync>;

/// The shared tier in Redis.
pub struct SharedTier {
    conn: ConnectionManager,
    lookup: Script,
    store: Script,
    bump: Script,
    prefix: String,
    channel: String,
    timeout: Duration,
    max_object_size: usize,
    breaker: Breaker,
    /// Failing now: logged once per outage.
    down: AtomicBool,
    families: CacheFamilies,
    instance: u64,
    started: Instant,
    runtime: OwnedRuntime,
}

impl SharedTier {
    /// Connect (lazily) and subscribe to the purge channel, applying
    /// other instances' purges with `on_purge`.
    pub fn start(
        config: &SharedCacheConfig,
        families: CacheFamilies,
        on_purge: OnPurge,
    ) -> Result<Arc<SharedTier>, String> {
        let runtime = OwnedRuntime::start("portcullis-cache")?;
        let handle = runtime
            .get()
            .map(|rt| rt.handle().clone())
            .ok_or("the shared cache's runtime is gone")?;
        let endpoint = Endpoint {
            url: &config.url,
            password: config.password.as_ref(),
            ca_file: config.ca_file.as_deref(),
            timeout: config.timeout,
        };
        let conn = crate::redis_conn::connect(&endpoint, &handle)?;
        let client = crate::redis_conn::client(&endpoint)?;
        let tier = Arc::new(SharedTier {
            conn,
            lookup: Script::new(include_str!("lookup.lua")),
            store: Script::new(include_str!("store.lua")),
            bump: Script::new(include_str!("bump.lua")),
            prefix: config.key_prefix.clone(),
            channel: format!("{}cache:purge", config.key_prefix),
            timeout: config.timeout,
            max_object_size: usize::try_from(config.max_object_size).unwrap_or(usize::MAX),
            breaker: Breaker::default(),
            down: AtomicBool::new(false),
            families,
            instance: rand::random(),
            started: Instant::now(),
            runtime,
        });
        handle.spawn(subscribe(
            client,
            tier.channel.clone(),
            tier.instance,
            on_purge,
        ));
        Ok(tier)
    }

    fn object_key(&self, key: Key) -> String {
        format!("{}cache:{key:032x}", self.prefix)
    }

    /// The Redis key of a dependency's generation: a digest of it (paths
    /// and tags are the client's bytes).
    fn generation_key(&self, dep: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, dep.as_bytes());
        let mut out = format!("{}cache:gen:", self.prefix);
        for b in &digest.as_ref()[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Nanoseconds since start, the breaker's clock.
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Run `call` within the timeout, if the breaker lets it; its failure
    /// opens the breaker.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let now = self.now();
        if !self.breaker.allow(now) {
            return None;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => {
                self.breaker.success();
                self.families.shared_up.set(1);
                if self.down.swap(false, Ordering::Relaxed) {
                    info!("shared cache: Redis answers again");
                }
                Some(v)
            }
            failed => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    let why = match &failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", self.timeout),
                    };
                    warn!(error = %why, "shared cache: Redis failed; the local tier works alone until it answers (tried again every {RETRY_AFTER:?})");
                }
                self.breaker.failure(now);
                self.families.shared_up.set(0);
                None
            }
        }
    }

    /// Run `call` in the background, on the tier's runtime.
    fn background(&self, call: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(rt) = self.runtime.get() {
            rt.spawn(call);
        }
    }
}

#[async_trait]
impl SecondTier for Arc<SharedTier> {
    async fn get(&self, key: Key) -> Option<Bytes> {
        let mut conn = self.conn.clone();
        let invocation = self.lookup.key(self.object_key(key));
        let found = self
            .call(async move { invocation.invoke_async::<Option<Vec<u8>>>(&mut conn).await })
            .await;
        let result = match &found {
            None => "error",
            Some(None) => "miss",
            Some(Some(_)) => "hit",
        };
        self.families.shared_lookup(result).inc();
        found.flatten().map(Bytes::from)
    }

    fn put(&self, key: Key, blob: Vec<u8>, ttl: Duration, deps: Vec<String>) {
        if blob.len() > self.max_object_size {
            self.families.shared_store("too_large").inc();
            return;
        }
        let tier = self.clone();
        self.background(async move {
            let mut invocation = tier.store.key(tier.object_key(key));
            let ttl = ttl.min(MAX_OBJECT_TTL).as_millis().max(1);
            invocation
                .arg(blob)
                .arg(u64::try_from(ttl).unwrap_or(u64::MAX));
            for dep in &deps {
                invocation.arg(tier.generation_key(dep));
            }
            let mut conn = tier.conn.clone();
            let stored = tier
                .call(async move { invocation.invoke_async::<i64>(&mut conn).await })
                .await;
            let result = if stored.is_some() { "stored" } else { "error" };
            tier.families.shared_store(result).inc();
        });
    }

    fn delete(&self, key: Key) {
        let tier = self.clone();
        self.background(async move {
            let mut conn = tier.conn.clone();
            let key = tier.object_key(key);
            tier.call(async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        });
    }

    fn purge(&self, purge: &Purge<'_>) {
        let generation = self.generation_key(&purge_dep(purge));
        let message = serde_json::to_string(&PurgeMessage::of(self.instance, purge));
        let tier = self.clone();
        self.background(async move {
            let mut conn = tier.conn.clone();
            let mut invocation = tier.bump.key(generation);
            invocation
                .arg(u64::try_from(GENERATION_TTL.as_millis()).unwrap_or(u64::MAX))
                .arg(&tier.channel)
                .arg(message.unwrap_or_default());
            tier.call(async move { invocation.invoke_async::<i64>(&mut conn).await })
                .await;
        });
    }
}

/// Apply the purges other instances publish, for the life of the process
/// (reconnecting after a failure).
async fn subscribe(client: redis::Client, channel: String, instance: u64, on_purge: OnPurge) {
    // One warning per outage, not one per attempt.
    let mut warned = false;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    warned = false;
                    info!(channel = %channel, "shared cache: listening for other instances' purges");
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let Ok(m) = serde_json::from_str::<PurgeMessage>(&text) else {
                            continue;
                        };
                        if m.from != instance {
                            if let Some(p) = m.purge() {
                                on_purge(p);
                            }
                        }
                    }
                }
            }
            Err(e) if !warned => {
                warned = true;
                warn!(error = %e, "shared cache: cannot subscribe to other instances' purges; retrying every second");
            }
            Err(_) => {}
        }
        // Not a wait for a condition: the pace of reconnecting.
        tokio::time::sleep(RETRY_AFTER).await;
    }
}
