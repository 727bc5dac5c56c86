//! The cache's object store: a [`pingora_cache::storage::Storage`] over a
//! `moka` cache bounded by total bytes (a weigher counting key, meta and
//! body), with LRU eviction.
//!
//! Pingora's own `MemCache` is test-only (unbounded, global locks, a panic
//! in `update_meta`); this store fixes what the issue lists as traps:
//! - `update_meta` of an entry evicted meanwhile returns `false`, never
//!   panics;
//! - `CacheMeta` is not `Clone`: entries hold its serialized form;
//! - moka's default TinyLFU admission may refuse a just-inserted object: the
//!   store uses LRU, so what was just stored is there to be hit;
//! - an object heavier than `max_object_size` (which is at most the whole
//!   capacity) is never stored, so it cannot evict everything and vanish.
//!
//! Bodies are stored whole (no streaming partial writes): concurrent misses
//! wait on Pingora's cache lock and then read the complete object.

use std::any::Any;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use moka::policy::EvictionPolicy;
use pingora_cache::eviction::CacheEntryKey;
use pingora_cache::key::{CacheHashKey, CacheKey};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheMeta, PurgeType};
use pingora_error::{Error, ErrorType, Result};

/// One stored response.
struct Object {
    /// `CacheMeta::serialize()`: (internal, header).
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
}

impl Object {
    fn weight(&self, key: &str) -> u32 {
        let bytes = key.len() + self.meta.0.len() + self.meta.1.len() + self.body.len();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Cached responses, at most `capacity` bytes in all.
pub struct MokaStore {
    objects: moka::sync::Cache<String, Arc<Object>>,
    max_object_size: usize,
}

impl MokaStore {
    /// A store of at most `capacity` bytes (keys, metas and bodies), whose
    /// objects are each at most `max_object_size` bytes of body (capped at
    /// `capacity`).
    pub fn new(capacity: u64, max_object_size: usize) -> MokaStore {
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|k: &String, v: &Arc<Object>| v.weight(k))
            .eviction_policy(EvictionPolicy::lru())
            .build();
        MokaStore {
            objects,
            max_object_size: max_object_size.min(usize::try_from(capacity).unwrap_or(usize::MAX)),
        }
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
        self.objects.remove(&target.key().combined())
    }
}

fn hit(object: &Object) -> Result<(CacheMeta, HitHandler)> {
    let meta = CacheMeta::deserialize(&object.meta.0, &object.meta.1)?;
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
        match self.objects.get(&key.combined()) {
            Some(object) => hit(&object).map(Some),
            None => Ok(None),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            store: self,
            key: key.combined(),
            meta: Some(meta.serialize()?),
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
        let key = target.key().combined();
        let Some(object) = self.objects.get(&key) else {
            return Ok(PurgeOutcome::NotFound);
        };
        let mut meta = CacheMeta::deserialize(&object.meta.0, &object.meta.1)?;
        meta.expire_at(SystemTime::now());
        let stale = Object {
            meta: meta.serialize()?,
            body: object.body.clone(),
        };
        self.objects.insert(key, Arc::new(stale));
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
        let key = key.combined();
        let Some(object) = self.objects.get(&key) else {
            return Ok(false);
        };
        let refreshed = Object {
            meta: meta.serialize()?,
            body: object.body.clone(),
        };
        self.objects.insert(key, Arc::new(refreshed));
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
    key: String,
    meta: Option<(Vec<u8>, Vec<u8>)>,
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
        if self.body.len() + data.len() > self.store.max_object_size {
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
        };
        let size = object.weight(&self.key) as usize;
        self.store
            .objects
            .insert(std::mem::take(&mut self.key), Arc::new(object));
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
    fn leak(store: MokaStore) -> &'static MokaStore {
        Box::leak(Box::new(store))
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

    #[tokio::test]
    async fn stores_reads_seeks_and_purges() {
        let store = leak(MokaStore::new(1 << 20, 1 << 16));
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
        let store = leak(MokaStore::new(CAPACITY, 10_000));
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
        let store = leak(MokaStore::new(1 << 20, 1_000));
        let key = CacheKey::new("/big", "");
        put(store, &key, &vec![b'x'; 1_001]).await;
        assert!(body_of(store, &key).await.is_none());
        assert!(store.is_empty());
        put(store, &key, &vec![b'x'; 1_000]).await;
        assert_eq!(body_of(store, &key).await.unwrap().len(), 1_000);
        // Never more than the whole capacity, whatever max_object_size says.
        let tiny = leak(MokaStore::new(100, 1 << 20));
        put(tiny, &key, &[b'x'; 200]).await;
        assert!(tiny.is_empty());
    }

    #[tokio::test]
    async fn update_meta_refreshes_and_never_panics_on_an_evicted_entry() {
        let store = leak(MokaStore::new(1 << 20, 1 << 16));
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
