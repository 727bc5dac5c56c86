//! Per-route response caching on `pingora-cache`.
//!
//! - [`store`]: the byte-bounded object store over `moka` (LRU), with an
//!   index by path for purge and invalidation;
//! - [`key`]: the cache key (route, method class, host, normalized path and
//!   query, key headers, consumer) and the `Vary` variance;
//! - [`policy`]: RFC 9111 storing, freshness, age and request directives;
//! - [`status`]: the `Cache-Status` header (RFC 9211) and metric result;
//! - [`shared`]: the second tier every instance shares, in Redis
//!   (`[cache.shared]`);
//! - [`CacheTable`]: the long-lived part (store, lock, which settings the
//!   stored objects were made under), kept across reloads.
//!
//! The proxy's cache phases call into these from `proxy/caching.rs`.

pub mod key;
pub mod policy;
pub mod shared;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use prometheus::IntCounter;

use crate::config::model::{self, RouteCache};
use crate::metrics::cache::{CacheFamilies, CacheResult, PurgeReason};
pub use store::{MokaStore, Purge, SecondTier};

/// How long a request fetching an object may hold its key's lock before
/// waiting requests stop waiting and compete for it again.
pub const LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for another's fetch of the same key before
/// going to the backend itself.
pub const LOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A route's caching at run time, built with its snapshot.
pub struct RouteCaching {
    pub settings: RouteCache,
    pub route: Arc<str>,
    /// `[cache] max_size` of the route's config: the capacity of its store.
    max_size: u64,
    /// Set when the route's snapshot commits ([`CacheTable::adopt`]): a
    /// config that is only prepared makes no store.
    store: OnceLock<&'static MokaStore>,
    pub lock: &'static CacheKeyLockImpl,
    /// The route's key comes in `Authorization: Bearer`: that header is the
    /// gateway's credential, never seen by the backend.
    pub key_in_authorization: bool,
    /// The route authenticates API keys (entries per consumer unless shared).
    pub per_consumer: bool,
    /// The query parameter that carries the route's API key: never part
    /// of the key (nor kept in the store).
    pub key_param: Option<Box<str>>,
    /// Its series, exported from commit on.
    results: OnceLock<[IntCounter; 6]>,
    families: CacheFamilies,
}

impl std::fmt::Debug for RouteCaching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCaching")
            .field("route", &self.route)
            .field("settings", &self.settings)
            .field("per_consumer", &self.per_consumer)
            .finish_non_exhaustive()
    }
}

impl RouteCaching {
    /// The store of the route's snapshot; `None` until it commits.
    pub fn store(&self) -> Option<&'static MokaStore> {
        self.store.get().copied()
    }

    fn results(&self) -> &[IntCounter; 6] {
        self.results
            .get_or_init(|| self.families.for_route(&self.route))
    }

    pub fn count(&self, result: CacheResult) {
        // `results` is in `CacheResult::ALL` order, the declaration order.
        self.results()[result as usize].inc();
    }

    pub fn lock_waited(&self) {
        self.families.lock_waits.inc();
    }

    /// Invalidation after an unsafe method; how many objects went.
    pub fn invalidate(&self, purge: Purge<'_>) -> usize {
        let Some(store) = self.store() else {
            return 0;
        };
        let n = store.purge_objects(purge);
        self.families.purged(PurgeReason::Invalidation, n);
        n
    }
}

/// The store in use and the settings its objects were stored under.
struct Current {
    store: &'static MokaStore,
    /// Route id → settings, for the routes that cache in the config now
    /// serving.
    routes: HashMap<String, RouteCache>,
}

/// The long-lived cache state: one store (replaced only when `[cache]
/// max_size` changes), one lock table, the metric families. Building a
/// snapshot's [`RouteCaching`] changes none of it; [`CacheTable::adopt`]
/// is the only change.
pub struct CacheTable {
    current: Arc<Mutex<Current>>,
    /// `[cache.shared]`, set once at start-up.
    second: OnceLock<Arc<dyn SecondTier>>,
    lock: &'static CacheLock,
    families: CacheFamilies,
}

/// Stores and the lock table live as long as the process: Pingora's cache
/// API takes `&'static` references. A store is replaced (and emptied) only
/// when `max_size` changes, so at most one empty shell is left behind per
/// such reload.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

impl CacheTable {
    pub fn new(families: CacheFamilies) -> CacheTable {
        let store = leak(MokaStore::new(
            model::DEFAULT_CACHE_MAX_SIZE,
            usize::MAX,
            families.evictions.clone(),
            None,
        ));
        CacheTable {
            current: Arc::new(Mutex::new(Current {
                store,
                routes: HashMap::new(),
            })),
            second: OnceLock::new(),
            lock: leak(CacheLock::new(LOCK_AGE_TIMEOUT)),
            families,
        }
    }

    /// A table whose metrics are registered nowhere (for `check`, `diff`,
    /// `explain`).
    pub fn detached() -> CacheTable {
        match CacheFamilies::new() {
            Ok(f) => CacheTable::new(f),
            // The families' names and help are fixed; this cannot fail.
            Err(e) => panic!("cache metric families: {e}"),
        }
    }

    /// Start `[cache.shared]` (at start-up, before a snapshot is adopted):
    /// the store gets its second tier, and other instances' purges reach
    /// the local tier.
    pub fn start_shared(&self, config: &model::SharedCacheConfig) -> Result<(), String> {
        let current = self.current.clone();
        let on_purge: shared::OnPurge = Arc::new(move |purge| {
            let store = current.lock().unwrap_or_else(|e| e.into_inner()).store;
            store.purge_local(purge);
        });
        let tier: Arc<dyn SecondTier> = Arc::new(shared::SharedTier::start(
            config,
            self.families.clone(),
            on_purge,
        )?);
        let _ = self.second.set(tier.clone());
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.store.clear();
        current.store = leak(MokaStore::new(
            current.store.capacity(),
            usize::MAX,
            self.families.evictions.clone(),
            Some(tier),
        ));
        Ok(())
    }

    /// The run-time caching of `route` in a config with `[cache]`
    /// `settings`; `None` when the route does not cache.
    pub fn for_route(
        &self,
        route: &model::RouteConfig,
        settings: &model::CacheSettings,
    ) -> Option<Arc<RouteCaching>> {
        let cache = route.cache.as_ref()?;
        let per_consumer = route.auth != model::RouteAuth::None;
        // The credential is in `Authorization`: its presence does not
        // make the request private to the cache (the key is per consumer).
        let key_in_authorization = route.auth.api_key() == Some(&model::KeySource::Bearer)
            || route
                .auth
                .jwt()
                .is_some_and(|j| j.token_from == model::TokenSource::Bearer);
        let key_param = match route.auth.api_key() {
            Some(model::KeySource::Query(name)) => Some(name.as_str().into()),
            _ => None,
        };
        Some(Arc::new(RouteCaching {
            settings: cache.clone(),
            route: Arc::from(route.id.as_str()),
            max_size: settings.max_size,
            store: OnceLock::new(),
            lock: self.lock,
            key_in_authorization,
            per_consumer: per_consumer && !cache.shared,
            key_param,
            results: OnceLock::new(),
            families: self.families.clone(),
        }))
    }

    /// A snapshot is now serving: give its routes their store (a new one,
    /// emptying the old, when `max_size` changed) and their series, and
    /// drop the objects of routes whose cache settings changed or that no
    /// longer cache, with their metric series.
    pub fn adopt<'a>(&self, routes: impl Iterator<Item = &'a Arc<RouteCaching>>) {
        let routes: Vec<&Arc<RouteCaching>> = routes.collect();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(max_size) = routes.first().map(|r| r.max_size) {
            if current.store.capacity() != max_size {
                current.store.clear();
                current.store = leak(MokaStore::new(
                    max_size,
                    usize::MAX,
                    self.families.evictions.clone(),
                    self.second.get().cloned(),
                ));
                current.routes.clear();
            }
        }
        for route in &routes {
            let _ = route.store.set(current.store);
            route.results();
        }
        let next: HashMap<String, RouteCache> = routes
            .iter()
            .map(|r| (r.route.to_string(), r.settings.clone()))
            .collect();
        for id in current.routes.keys() {
            if !next.contains_key(id) {
                self.families.forget_route(id);
            }
        }
        let unchanged = |id: &str| {
            current
                .routes
                .get(id)
                .is_some_and(|s| next.get(id) == Some(s))
        };
        let purged = current.store.retain_routes(unchanged);
        self.families.purged(PurgeReason::Reload, purged);
        current.routes = next;
    }

    /// Purge by the admin API; how many objects went.
    pub fn purge(&self, purge: Purge<'_>) -> usize {
        let store = self.current.lock().unwrap_or_else(|e| e.into_inner()).store;
        let n = store.purge_objects(purge);
        self.families.purged(PurgeReason::Admin, n);
        n
    }

    /// Bytes and objects held now, for the gauges.
    pub fn refresh_gauges(&self) {
        let store = self.current.lock().unwrap_or_else(|e| e.into_inner()).store;
        self.families
            .stored_bytes
            .set(i64::try_from(store.weighted_size()).unwrap_or(i64::MAX));
        self.families
            .objects
            .set(i64::try_from(store.len()).unwrap_or(i64::MAX));
    }
}
