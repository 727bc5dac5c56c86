//! The cache's object store: a [`pingora_cache::storage::Storage`] over a
//! `moka` cache bounded by total bytes (a weigher counting key, meta and
//! body), with LRU eviction.
//!
//! Pingora's own `MemCache` is test-only (unbounded, global locks, a panic
//! in `update_meta`); this store fixes what the issue lists as traps:
//! - `update_meta` of an entry evicted meanwhile returns `false`, never
//!   panics;
//! - `CacheMeta` is not `Clone`: entries hold its fields and response
//!   header (`StoredMeta`) and rebuild one per hit. Not its serialized
//!   form: deserializing means zstd-decompressing and parsing the header
//!   again, a quarter of the instructions of a whole hit;
//! - moka's default TinyLFU admission may refuse a just-inserted object: the
//!   store uses LRU, so what was just stored is there to be hit;
//! - an object heavier than `max_object_size` (which is at most the whole
//!   capacity) is never stored, so it cannot evict everything and vanish.
//!
//! Bodies are stored whole (no streaming partial writes): concurrent misses
//! wait on Pingora's cache lock and then read the complete object.
//!
//! Each object remembers where it came from ([`Origin`]: route, host,
//! path, query) and its tags (`Surrogate-Key`, `Cache-Tag`), for purge. An
//! index by path finds every variant of a URL (query strings, consumers,
//! `Vary`) without a scan; purge by route or tag scans the store.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use moka::policy::EvictionPolicy;
use pingora_cache::eviction::CacheEntryKey;
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheMeta, PurgeType};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use prometheus::IntCounter;

use super::key::{origin_of, Origin};

/// Bytes counted per object beyond its key, meta, body and tags: the
/// store's and the index's bookkeeping, so the bound covers them too.
const OVERHEAD: usize = 160;

/// What a [`CacheMeta`] holds, kept so that a hit can rebuild it without
/// deserializing: freshness, stale windows, age reference, variance and
/// the response header.
struct StoredMeta {
    fresh_until: SystemTime,
    /// The reference of the object's age: the meta's `updated` (the last
    /// store or revalidation). The rebuilt meta's `created` is this too.
    updated: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    variance: Option<HashBinary>,
    epoch_override: Option<SystemTime>,
    header: ResponseHeader,
    /// Bytes the header takes, for the weigher.
    header_bytes: usize,
}

impl StoredMeta {
    fn of(meta: &CacheMeta) -> StoredMeta {
        let header = meta.response_header_copy();
        let header_bytes = header
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum::<usize>()
            + 64;
        StoredMeta {
            fresh_until: meta.fresh_until(),
            updated: meta.updated(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            epoch_override: meta.epoch_override(),
            header,
            header_bytes,
        }
    }

    fn meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        );
        if let Some(v) = self.variance {
            meta.set_variance_key(v);
        }
        if let Some(e) = self.epoch_override {
            meta.set_epoch_override(e);
        }
        meta
    }
}

/// One stored response.
struct Object {
    meta: StoredMeta,
    body: Bytes,
    origin: Option<Arc<Origin>>,
    tags: Box<[Box<str>]>,
    /// Tells this version of a key's object from a later one in the index.
    generation: u64,
}

impl Object {
    fn weight(&self) -> u32 {
        let origin = self
            .origin
            .as_ref()
            .map_or(0, |o| o.host.len() + o.path.len() + o.query.len());
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        let bytes = std::mem::size_of::<Key>()
            + self.meta.header_bytes
            + self.body.len()
            + origin
            + tags
            + OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The store's key: the cache key's combined hash (primary and variance),
/// as a number rather than its hex string.
pub type Key = u128;

fn key_of(key: &impl CacheHashKey) -> Key {
    u128::from_be_bytes(key.combined_bin())
}

/// A stored object's key and the generation it was stored with.
type Entry = (Key, u64);

/// Keys of the objects stored for each path (by hash).
struct PathIndex {
    hasher: ahash::RandomState,
    keys: Mutex<HashMap<u64, Vec<Entry>>>,
}

impl PathIndex {
    fn slot(&self, path: &str) -> u64 {
        self.hasher.hash_one(path)
    }

    fn add(&self, path: &str, key: Key, generation: u64) {
        let slot = self.slot(path);
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let keys = map.entry(slot).or_default();
        keys.retain(|(k, _)| *k != key);
        keys.push((key, generation));
    }

    fn remove(&self, path: &str, key: Key, generation: u64) {
        let slot = self.slot(path);
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = map.get_mut(&slot) {
            keys.retain(|(k, g)| !(*k == key && *g == generation));
            if keys.is_empty() {
                map.remove(&slot);
            }
        }
    }

    fn keys_of(&self, path: &str) -> Vec<Key> {
        let map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&self.slot(path))
            .map(|keys| keys.iter().map(|(k, _)| *k).collect())
            .unwrap_or_default()
    }
}

/// A fresh stored response, as [`MokaStore::fresh`] found it.
pub struct FreshObject {
    /// The stored response header, as the backend's response was stored.
    pub header: ResponseHeader,
    pub body: Bytes,
    pub fresh_until: SystemTime,
    pub age: std::time::Duration,
}

/// Which objects a purge takes.
#[derive(Debug, Clone, Copy)]
pub enum Purge<'a> {
    /// Every variant of a path on a route; with a query, only that query
    /// (normalized as the route keys it).
    Path {
        route: &'a str,
        path: &'a str,
        query: Option<&'a str>,
    },
    /// Everything a route stored.
    Route(&'a str),
    /// Every object whose `Surrogate-Key` or `Cache-Tag` named this tag.
    Tag(&'a str),
    /// Invalidation after an unsafe method (RFC 9111 §4.4): this URL on
    /// this host, whatever the route, consumer or variant.
    Url {
        host: &'a str,
        path: &'a str,
        query: &'a str,
    },
}

/// Cached responses, at most `capacity` bytes in all.
pub struct MokaStore {
    objects: moka::sync::Cache<Key, Arc<Object>, ahash::RandomState>,
    index: Arc<PathIndex>,
    generation: AtomicU64,
    max_object_size: usize,
    capacity: u64,
    /// `[cache.shared]`, when configured.
    second: Option<Arc<dyn SecondTier>>,
}

/// A second tier behind the local one (`crate::cache::shared`, in Redis):
/// a local miss looks there, what is stored here is written there too, and
/// purges reach it.
#[async_trait]
pub trait SecondTier: Send + Sync {
    /// The object stored under `key` (as [`encode`] made it), if any, and
    /// if no purge named one of its dependencies since it was stored.
    async fn get(&self, key: Key) -> Option<Bytes>;
    /// Store `blob` under `key` for `ttl`, remembering the purge
    /// generations of `deps` ([`deps`]). In the background.
    fn put(&self, key: Key, blob: Vec<u8>, ttl: std::time::Duration, deps: Vec<String>);
    /// Forget `key`. In the background.
    fn delete(&self, key: Key);
    /// What [`MokaStore::purge_objects`] purged here, for the other tier
    /// and the other instances. In the background.
    fn purge(&self, purge: &Purge<'_>);
}

impl MokaStore {
    /// A store of at most `capacity` bytes (keys, metas and bodies), whose
    /// objects are each at most `max_object_size` bytes of body (capped at
    /// `capacity`).
    /// Objects pushed out by the byte bound are counted in `evictions`.
    pub fn new(
        capacity: u64,
        max_object_size: usize,
        evictions: IntCounter,
        second: Option<Arc<dyn SecondTier>>,
    ) -> MokaStore {
        let index = Arc::new(PathIndex {
            hasher: ahash::RandomState::new(),
            keys: Mutex::new(HashMap::new()),
        });
        let unindex = index.clone();
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_: &Key, v: &Arc<Object>| v.weight())
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |key: Arc<Key>, object: Arc<Object>, cause| {
                use moka::notification::RemovalCause;
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
                if let Some(origin) = &object.origin {
                    unindex.remove(&origin.path, *key, object.generation);
                }
            })
            .build_with_hasher(ahash::RandomState::new());
        MokaStore {
            objects,
            index,
            generation: AtomicU64::new(0),
            max_object_size: max_object_size.min(usize::try_from(capacity).unwrap_or(usize::MAX)),
            capacity,
            second,
        }
    }

    /// The object stored under `key` when it can answer a request as it
    /// is, at `now`: fresh (Pingora's rule, `fresh_until >= now`) and
    /// without `Vary` (variants are for Pingora's lookup to pick).
    pub fn fresh(&self, key: &CacheKey, now: SystemTime) -> Option<FreshObject> {
        let object = self.objects.get(&key_of(key))?;
        let meta = &object.meta;
        if meta.fresh_until < now
            || meta.variance.is_some()
            || meta.header.headers.contains_key(http::header::VARY)
        {
            return None;
        }
        // `CacheMeta::age`: from the epoch override if set, else `updated`.
        let epoch = meta.epoch_override.unwrap_or(meta.updated);
        Some(FreshObject {
            header: meta.header.clone(),
            body: object.body.clone(),
            fresh_until: meta.fresh_until,
            age: now.duration_since(epoch).unwrap_or_default(),
        })
    }

    /// The byte bound this store was made with.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn insert(&self, key: Key, object: Object) {
        if let Some(origin) = &object.origin {
            self.index.add(&origin.path, key, object.generation);
        }
        self.objects.insert(key, Arc::new(object));
    }

    /// Write `object` to the second tier too, for as long as it may be
    /// served (fresh, then its stale windows).
    fn share(&self, key: Key, object: &Object) {
        let (Some(second), Some(origin)) = (&self.second, &object.origin) else {
            return;
        };
        let meta = &object.meta;
        let stale = u64::from(meta.stale_while_revalidate.max(meta.stale_if_error));
        let Ok(fresh) = meta.fresh_until.duration_since(SystemTime::now()) else {
            if stale == 0 {
                return;
            }
            // Stale already, but within its windows: kept for them.
            let ttl = std::time::Duration::from_secs(stale);
            return self.share_for(second.as_ref(), key, object, origin, ttl);
        };
        let ttl = fresh + std::time::Duration::from_secs(stale);
        self.share_for(second.as_ref(), key, object, origin, ttl);
    }

    fn share_for(
        &self,
        second: &dyn SecondTier,
        key: Key,
        object: &Object,
        origin: &Origin,
        ttl: std::time::Duration,
    ) {
        if let Some(blob) = encode(object) {
            second.put(key, blob, ttl, deps(origin, &object.tags));
        }
    }

    /// Remove what `purge` names, here and in the second tier (and, through
    /// it, in the other instances); how many objects went here.
    pub fn purge_objects(&self, purge: Purge<'_>) -> usize {
        if let Some(second) = &self.second {
            second.purge(&purge);
        }
        self.purge_local(purge)
    }

    /// Remove what `purge` names here only (another instance's purge);
    /// how many objects went.
    pub fn purge_local(&self, purge: Purge<'_>) -> usize {
        let doomed: Vec<Key> = match purge {
            // A path's objects are found through the index.
            Purge::Path { path, .. } | Purge::Url { path, .. } => self
                .index
                .keys_of(path)
                .into_iter()
                .filter(|k| self.objects.get(k).is_some_and(|o| matches(&o, &purge)))
                .collect(),
            Purge::Route(_) | Purge::Tag(_) => self.keys_where(|o| matches(o, &purge)),
        };
        self.remove_all(&doomed)
    }

    /// Remove every object of the routes `keep` says no to (after a reload
    /// changed or removed their cache settings); how many went.
    pub fn retain_routes(&self, keep: impl Fn(&str) -> bool) -> usize {
        let doomed =
            self.keys_where(|o| o.origin.as_ref().is_some_and(|origin| !keep(&origin.route)));
        self.remove_all(&doomed)
    }

    /// Keys of the objects `pred` picks, by a scan of the whole store.
    fn keys_where(&self, pred: impl Fn(&Object) -> bool) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(_, o)| pred(o))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Remove these keys; how many were still there.
    fn remove_all(&self, keys: &[Key]) -> usize {
        keys.iter()
            .filter(|k| self.objects.remove(*k).is_some())
            .count()
    }

    /// Drop everything (the store is being replaced).
    pub fn clear(&self) {
        self.objects.invalidate_all();
        self.objects.run_pending_tasks();
    }

    /// Bytes stored now (after pending evictions are applied).
    pub fn weighted_size(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.weighted_size()
    }

    /// Objects stored now (after pending evictions are applied).
    pub fn len(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, target: PurgeTarget<'_>) -> Option<Arc<Object>> {
        // Entries carry no identity beyond their key.
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return None;
        }
        self.objects.remove(&key_of(target.key()))
    }
}

fn matches(object: &Object, purge: &Purge<'_>) -> bool {
    let Some(origin) = &object.origin else {
        return false;
    };
    match *purge {
        Purge::Path { route, path, query } => {
            &*origin.route == route
                && &*origin.path == path
                && query.is_none_or(|q| &*origin.query == q)
        }
        Purge::Route(route) => &*origin.route == route,
        Purge::Tag(tag) => object.tags.iter().any(|t| &**t == tag),
        Purge::Url { host, path, query } => {
            &*origin.host == host && &*origin.path == path && &*origin.query == query
        }
    }
}

/// Tags of a response: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated), each at most 64 of them.
fn tags_of(meta: &CacheMeta) -> Box<[Box<str>]> {
    let headers = meta.headers();
    let mut tags: Vec<Box<str>> = Vec::new();
    let mut add = |name: &str, sep: fn(char) -> bool| {
        for v in headers.get_all(name) {
            let Ok(text) = v.to_str() else { continue };
            for t in text.split(sep).map(str::trim).filter(|t| !t.is_empty()) {
                if tags.len() < 64 && !tags.iter().any(|x| &**x == t) {
                    tags.push(t.into());
                }
            }
        }
    };
    add("surrogate-key", char::is_whitespace);
    add("cache-tag", |c| c == ',');
    tags.into_boxed_slice()
}

/// An object as the second tier keeps it: `PC1`, then the meta (Pingora's
/// own serialization: internal fields, then the response header), the
/// tags (`\n`-separated) and the body, each after its length (u32, big
/// endian). Where it came from is not kept: the key it is found under
/// says it.
fn encode(object: &Object) -> Option<Vec<u8>> {
    let (internal, header) = object.meta.meta().serialize().ok()?;
    let tags = object.tags.join("\n");
    let parts: [&[u8]; 4] = [&internal, &header, tags.as_bytes(), &object.body];
    let mut out = Vec::with_capacity(3 + 16 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    for part in parts {
        out.extend_from_slice(&u32::try_from(part.len()).ok()?.to_be_bytes());
        out.extend_from_slice(part);
    }
    Some(out)
}

const MAGIC: &[u8] = b"PC1";

/// An object [`encode`] made, found under a key whose origin is `origin`;
/// `None` for anything else (another version, a truncated value).
fn decode(blob: &Bytes, origin: Arc<Origin>, generation: u64) -> Option<Object> {
    let mut rest = blob.strip_prefix(MAGIC)?;
    let mut parts: [&[u8]; 4] = [&[]; 4];
    for part in &mut parts {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return None;
        }
        (*part, rest) = tail.split_at(len);
    }
    let [internal, header, tags, body] = parts;
    if !rest.is_empty() {
        return None;
    }
    let meta = CacheMeta::deserialize(internal, header).ok()?;
    let tags: Box<[Box<str>]> = std::str::from_utf8(tags)
        .ok()?
        .split('\n')
        .filter(|t| !t.is_empty())
        .map(Box::from)
        .collect();
    Some(Object {
        meta: StoredMeta::of(&meta),
        body: blob.slice_ref(body),
        origin: Some(origin),
        tags,
        generation,
    })
}

/// What a stored object depends on: a purge of any of these drops it from
/// the second tier (see [`purge_dep`]).
fn deps(origin: &Origin, tags: &[Box<str>]) -> Vec<String> {
    let (route, host, path, query) = (&origin.route, &origin.host, &origin.path, &origin.query);
    let mut out = vec![
        format!("r\0{route}"),
        format!("p\0{route}\0{path}"),
        format!("q\0{route}\0{path}\0{query}"),
        format!("u\0{host}\0{path}\0{query}"),
    ];
    out.extend(tags.iter().map(|t| format!("t\0{t}")));
    out
}

/// The dependency a purge names: one of [`deps`]'s.
pub fn purge_dep(purge: &Purge<'_>) -> String {
    match *purge {
        Purge::Path {
            route,
            path,
            query: None,
        } => format!("p\0{route}\0{path}"),
        Purge::Path {
            route,
            path,
            query: Some(query),
        } => format!("q\0{route}\0{path}\0{query}"),
        Purge::Route(route) => format!("r\0{route}"),
        Purge::Tag(tag) => format!("t\0{tag}"),
        Purge::Url { host, path, query } => format!("u\0{host}\0{path}\0{query}"),
    }
}

fn hit(object: &Object) -> Result<(CacheMeta, HitHandler)> {
    let meta = object.meta.meta();
    let handler = Hit {
        body: object.body.clone(),
        range: 0..object.body.len(),
        done: false,
    };
    Ok((meta, Box::new(handler)))
}

#[async_trait]
impl Storage for MokaStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key_of(key);
        if let Some(object) = self.objects.get(&k) {
            return hit(&object).map(Some);
        }
        // A local miss looks in the second tier; what it has is kept here.
        let (Some(second), Some(origin)) = (&self.second, origin_of(key)) else {
            return Ok(None);
        };
        let Some(blob) = second.get(k).await else {
            return Ok(None);
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let Some(object) = decode(&blob, origin.clone(), generation) else {
            return Ok(None);
        };
        let found = hit(&object);
        if object.body.len() <= self.max_object_size.min(origin.max_object_size) {
            self.insert(k, object);
        }
        found.map(Some)
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let origin = origin_of(key).cloned();
        let max = origin.as_ref().map_or(self.max_object_size, |o| {
            o.max_object_size.min(self.max_object_size)
        });
        Ok(Box::new(Miss {
            store: self,
            key: key_of(key),
            meta: Some(StoredMeta::of(meta)),
            tags: tags_of(meta),
            origin,
            max,
            body: BytesMut::new(),
            too_large: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        Ok(match self.remove(target) {
            Some(_) => PurgeOutcome::Purged(None),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let key = key_of(target.key());
        if let Some(second) = &self.second {
            second.delete(key);
        }
        let Some(object) = self.objects.get(&key) else {
            return Ok(PurgeOutcome::NotFound);
        };
        let mut meta = object.meta.meta();
        meta.expire_at(SystemTime::now());
        let stale = Object {
            meta: StoredMeta::of(&meta),
            body: object.body.clone(),
            origin: object.origin.clone(),
            tags: object.tags.clone(),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
        };
        self.insert(key, stale);
        Ok(PurgeOutcome::Expired)
    }

    /// A `304` refreshed an entry: store its new meta with the same body.
    /// `false` when the entry was evicted meanwhile.
    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let key = key_of(key);
        let Some(object) = self.objects.get(&key) else {
            return Ok(false);
        };
        let refreshed = Object {
            meta: StoredMeta::of(meta),
            body: object.body.clone(),
            origin: object.origin.clone(),
            tags: tags_of(meta),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
        };
        self.share(key, &refreshed);
        self.insert(key, refreshed);
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reading a stored body, whole or a range of it.
struct Hit {
    body: Bytes,
    range: std::ops::Range<usize>,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.range.clone())))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        let end = end.unwrap_or(len);
        if start > end || end > len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("range {start}..{end} outside a body of {len} bytes"),
            );
        }
        self.range = start..end;
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collecting a response body; stored whole when it is complete.
struct Miss {
    store: &'static MokaStore,
    key: Key,
    meta: Option<StoredMeta>,
    tags: Box<[Box<str>]>,
    origin: Option<Arc<Origin>>,
    /// Largest body stored, in bytes.
    max: usize,
    body: BytesMut,
    /// Past `max_object_size`: nothing more is kept, nothing is stored.
    too_large: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.too_large {
            return Ok(());
        }
        if self.body.len() + data.len() > self.max {
            self.too_large = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let Some(meta) = self.meta.take().filter(|_| !self.too_large) else {
            return Ok(MissFinishType::Created(0));
        };
        let object = Object {
            meta,
            body: std::mem::take(&mut self.body).freeze(),
            origin: self.origin.take(),
            tags: std::mem::take(&mut self.tags),
            generation: self.store.generation.fetch_add(1, Ordering::Relaxed),
        };
        let size = object.weight() as usize;
        self.store.share(self.key, &object);
        self.store.insert(self.key, object);
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use pingora_cache::trace::Span;
    use pingora_http::ResponseHeader;

    fn meta(fresh_for: Duration) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.append_header("content-type", "text/plain").unwrap();
        let now = SystemTime::now();
        CacheMeta::new(now + fresh_for, now, 0, 0, header)
    }

    /// A store that lives as long as the test binary (`Storage` methods
    /// take `&'static self`, as the gateway's long-lived store will be).
    fn new_store(capacity: u64, max_object_size: usize) -> &'static MokaStore {
        let evictions = IntCounter::new("e", "e").unwrap();
        Box::leak(Box::new(MokaStore::new(
            capacity,
            max_object_size,
            evictions,
            None,
        )))
    }

    async fn put(store: &'static MokaStore, key: &CacheKey, body: &[u8]) {
        let span = Span::inactive().handle();
        let mut miss = store
            .get_miss_handler(key, &meta(Duration::from_secs(60)), &span)
            .await
            .unwrap();
        for chunk in body.chunks(1000) {
            miss.write_body(Bytes::copy_from_slice(chunk), false)
                .await
                .unwrap();
        }
        miss.finish().await.unwrap();
    }

    async fn body_of(store: &'static MokaStore, key: &CacheKey) -> Option<Vec<u8>> {
        let span = Span::inactive().handle();
        let (_, mut hit) = store.lookup(key, &span).await.unwrap()?;
        let mut out = Vec::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            out.extend_from_slice(&b);
        }
        Some(out)
    }

    #[test]
    fn the_second_tier_encoding_round_trips_and_refuses_damage() {
        let origin = Arc::new(Origin {
            route: "r".into(),
            host: "a.test".into(),
            path: "/x".into(),
            query: "".into(),
            max_object_size: 1 << 20,
        });
        let mut m = meta(Duration::from_secs(60));
        m.set_variance_key([7u8; 16]);
        let object = Object {
            meta: StoredMeta::of(&m),
            body: Bytes::from_static(b"hello"),
            origin: Some(origin.clone()),
            tags: vec!["t1".into(), "t2".into()].into_boxed_slice(),
            generation: 0,
        };
        let blob = Bytes::from(encode(&object).unwrap());
        let back = decode(&blob, origin.clone(), 1).unwrap();
        assert_eq!(&back.body[..], b"hello");
        assert_eq!(&*back.tags, &object.tags[..]);
        assert_eq!(back.meta.variance, Some([7u8; 16]));
        assert_eq!(back.meta.header.headers["content-type"], "text/plain");
        // Whole seconds: Pingora's serialization keeps no more.
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(back.meta.fresh_until), secs(object.meta.fresh_until));
        for bad in [&blob[..blob.len() - 1], &blob[1..], b"PC1"] {
            assert!(decode(&Bytes::copy_from_slice(bad), origin.clone(), 2).is_none());
        }
        let deps = deps(&origin, &object.tags);
        for purge in [
            Purge::Route("r"),
            Purge::Tag("t2"),
            Purge::Path {
                route: "r",
                path: "/x",
                query: None,
            },
            Purge::Path {
                route: "r",
                path: "/x",
                query: Some(""),
            },
            Purge::Url {
                host: "a.test",
                path: "/x",
                query: "",
            },
        ] {
            assert!(deps.contains(&purge_dep(&purge)), "{purge:?}");
        }
        assert!(!deps.contains(&purge_dep(&Purge::Route("other"))));
    }

    #[tokio::test]
    async fn stores_reads_seeks_and_purges() {
        let store = new_store(1 << 20, 1 << 16);
        let span = Span::inactive().handle();
        let key = CacheKey::new("/a", "");
        assert!(store.lookup(&key, &span).await.unwrap().is_none());
        put(store, &key, b"hello world").await;
        assert_eq!(body_of(store, &key).await.unwrap(), b"hello world");

        let (m, mut hit) = store.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(m.response_header().status, 200);
        assert!(hit.can_seek());
        hit.seek(6, None).unwrap();
        assert_eq!(&hit.read_body().await.unwrap().unwrap()[..], b"world");
        assert!(hit.seek(5, Some(100)).is_err());

        let compact = key.to_compact();
        let purged = store
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span,
            )
            .await
            .unwrap();
        assert!(matches!(purged, PurgeOutcome::Purged(None)));
        assert!(body_of(store, &key).await.is_none());
        let again = store
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span,
            )
            .await
            .unwrap();
        assert!(matches!(again, PurgeOutcome::NotFound));
    }

    #[tokio::test]
    async fn stays_within_its_byte_bound_and_keeps_what_was_just_stored() {
        const CAPACITY: u64 = 200_000;
        let store = new_store(CAPACITY, 10_000);
        let body = vec![b'x'; 5_000];
        // Twice the capacity and more.
        for i in 0..100 {
            let key = CacheKey::new(format!("/o/{i}"), "");
            put(store, &key, &body).await;
            // LRU, not TinyLFU admission: the object just stored is there.
            assert!(body_of(store, &key).await.is_some(), "object {i}");
            assert!(store.weighted_size() <= CAPACITY, "after {i}");
        }
        assert!(store.len() < 100 && store.len() > 20, "{}", store.len());
        // The oldest went first.
        let first = CacheKey::new("/o/0", "");
        assert!(body_of(store, &first).await.is_none());
    }

    #[tokio::test]
    async fn objects_over_the_size_limit_are_not_stored() {
        let store = new_store(1 << 20, 1_000);
        let key = CacheKey::new("/big", "");
        put(store, &key, &vec![b'x'; 1_001]).await;
        assert!(body_of(store, &key).await.is_none());
        assert!(store.is_empty());
        put(store, &key, &vec![b'x'; 1_000]).await;
        assert_eq!(body_of(store, &key).await.unwrap().len(), 1_000);
        // Never more than the whole capacity, whatever max_object_size says.
        let tiny = new_store(100, 1 << 20);
        put(tiny, &key, &[b'x'; 200]).await;
        assert!(tiny.is_empty());
    }

    #[tokio::test]
    async fn update_meta_refreshes_and_never_panics_on_an_evicted_entry() {
        let store = new_store(1 << 20, 1 << 16);
        let span = Span::inactive().handle();
        let key = CacheKey::new("/m", "");
        let later = meta(Duration::from_secs(3600));
        assert!(!store.update_meta(&key, &later, &span).await.unwrap());
        put(store, &key, b"body").await;
        assert!(store.update_meta(&key, &later, &span).await.unwrap());
        let (m, _) = store.lookup(&key, &span).await.unwrap().unwrap();
        assert!(m.fresh_until() > SystemTime::now() + Duration::from_secs(3000));
        assert_eq!(body_of(store, &key).await.unwrap(), b"body");

        // Expire keeps the body but makes it stale.
        let compact = key.to_compact();
        let out = store
            .expire(PurgeTarget::Active(&compact), &span)
            .await
            .unwrap();
        assert!(matches!(out, PurgeOutcome::Expired));
        let (m, _) = store.lookup(&key, &span).await.unwrap().unwrap();
        assert!(!m.is_fresh(SystemTime::now()));
        assert_eq!(body_of(store, &key).await.unwrap(), b"body");
    }
}
