//! The consumer index of one snapshot: keys by digest, consumers with their
//! scopes compiled to route indices.
//!
//! Lookup is one hash probe on the digest's first eight bytes (already
//! uniformly random, so they are the hash) and a constant-time comparison
//! of the whole digest: the cost does not grow with the number of keys.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::HeaderValue;
use smallvec::SmallVec;
use subtle::ConstantTimeEq;

use crate::config::model;
use crate::plans::ConsumerLimits;

/// One key, as the index keeps it.
pub struct KeyEntry {
    digest: [u8; 32],
    /// Index into [`ConsumerIndex::consumers`].
    pub consumer: u32,
    /// Non-secret prefix naming the key.
    pub prefix: Arc<str>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

impl std::fmt::Debug for KeyEntry {
    // The digest stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("consumer", &self.consumer)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A consumer, compiled for requests.
#[derive(Debug)]
pub struct ConsumerEntry {
    pub id: Arc<str>,
    /// `id` as the value of the consumer header sent upstream.
    pub header_value: HeaderValue,
    pub disabled: bool,
    scopes: Vec<CompiledScope>,
    pub limits: ConsumerLimits,
    /// Where this consumer's requests are counted per route.
    pub usage: crate::usage::ConsumerSlots,
}

/// Routes (by index) and methods one scope entry grants.
#[derive(Debug)]
struct CompiledScope {
    /// `None`: every route.
    routes: Option<Vec<u32>>,
    /// Empty: any method.
    methods: SmallVec<[http::Method; 4]>,
}

impl ConsumerEntry {
    /// Whether the consumer may call route `route` with `method`.
    pub fn may_call(&self, route: usize, method: &http::Method) -> bool {
        self.scopes.iter().any(|s| {
            let route_ok = match &s.routes {
                None => true,
                Some(list) => u32::try_from(route).is_ok_and(|r| list.binary_search(&r).is_ok()),
            };
            route_ok && (s.methods.is_empty() || s.methods.contains(method))
        })
    }
}

/// `u64` keys that are already random: used as their own hash.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type DigestMap = HashMap<u64, SmallVec<[u32; 1]>, BuildHasherDefault<IdentityHasher>>;

/// Every consumer and key of one config.
#[derive(Debug, Default)]
pub struct ConsumerIndex {
    by_digest: DigestMapDebug,
    keys: Vec<KeyEntry>,
    pub consumers: Vec<ConsumerEntry>,
}

/// The digest map, without printing digests in debug output.
#[derive(Default)]
struct DigestMapDebug(DigestMap);

impl std::fmt::Debug for DigestMapDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} digests", self.0.len())
    }
}

fn bucket_of(digest: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(head)
}

impl ConsumerIndex {
    /// Compile `consumers` against `routes` (the snapshot's, in router order).
    pub fn build(
        consumers: &[model::Consumer],
        routes: &[model::RouteConfig],
        usage: &crate::usage::UsageTable,
    ) -> ConsumerIndex {
        let route_index: HashMap<&str, u32> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i as u32))
            .collect();
        let mut index = ConsumerIndex::default();
        for (ci, c) in consumers.iter().enumerate() {
            let ci = ci as u32;
            for k in &c.keys {
                let ki = index.keys.len() as u32;
                index
                    .by_digest
                    .0
                    .entry(bucket_of(&k.digest))
                    .or_default()
                    .push(ki);
                index.keys.push(KeyEntry {
                    digest: k.digest,
                    consumer: ci,
                    prefix: Arc::from(k.prefix.as_str()),
                    not_before: k.not_before,
                    expires: k.expires,
                });
            }
            let scopes = c
                .scopes
                .iter()
                .map(|s| compile_scope(s, routes, &route_index))
                .collect();
            let limits = ConsumerLimits::build(c, routes);
            index.consumers.push(ConsumerEntry {
                // One allocation of the id, shared with its limits' counters.
                id: limits.consumer().clone(),
                // Ids are validated as [A-Za-z0-9_.-]+.
                header_value: HeaderValue::from_str(&c.id)
                    .unwrap_or_else(|_| HeaderValue::from_static("")),
                disabled: c.disabled,
                scopes,
                limits,
                usage: crate::usage::ConsumerSlots::new(usage.for_consumer(&c.id)),
            });
        }
        index
    }

    /// The key whose digest is `digest`, compared in constant time.
    pub fn find(&self, digest: &[u8; 32]) -> Option<&KeyEntry> {
        let candidates = self.by_digest.0.get(&bucket_of(digest))?;
        candidates.iter().find_map(|&ki| {
            let entry = self.keys.get(ki as usize)?;
            bool::from(entry.digest.ct_eq(digest)).then_some(entry)
        })
    }

    pub fn consumer(&self, index: u32) -> Option<&ConsumerEntry> {
        self.consumers.get(index as usize)
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

fn compile_scope(
    scope: &model::Scope,
    routes: &[model::RouteConfig],
    route_index: &HashMap<&str, u32>,
) -> CompiledScope {
    let methods = scope
        .methods
        .iter()
        .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .collect();
    if scope.routes.iter().any(|r| r == "*") {
        return CompiledScope {
            routes: None,
            methods,
        };
    }
    let mut list: Vec<u32> = scope
        .routes
        .iter()
        .filter_map(|id| route_index.get(id.as_str()).copied())
        .collect();
    for (i, r) in routes.iter().enumerate() {
        if r.tags.iter().any(|t| scope.tags.contains(t)) {
            list.push(i as u32);
        }
    }
    list.sort_unstable();
    list.dedup();
    CompiledScope {
        routes: Some(list),
        methods,
    }
}
