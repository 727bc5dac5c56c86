//! The route table: which route serves a request. Compiled once per config
//! load by [`Router::build`], queried once per request by [`Router::find`].
//!
//! # Matching rules
//!
//! 1. **Host tiers**, most specific first: routes naming the exact host, then
//!    routes with a wildcard `*.example.com` (longest matching suffix first;
//!    it matches `a.example.com` and `a.b.example.com`, never the apex
//!    `example.com`), then routes without hosts (any host). The tiers are tried
//!    in that order and the first one holding a route that matches the path
//!    *and* accepts the method wins: a tier that matches the path but not the
//!    method does not stop the search.
//! 2. **Within a tier**: the exact path first, then prefixes from longest to
//!    shortest. A prefix matches on segment boundaries only: `/v1` matches
//!    `/v1`, `/v1/` and `/v1/x`, not `/v10`; the prefix `/` matches every
//!    path.
//! 3. **At the same host and path**: a route listing the method beats a route
//!    accepting any method. Validation forbids two routes with the same host,
//!    path and an overlapping method, but ties are still broken
//!    deterministically: the lowest route index wins.
//! 4. If no route accepts the method but at least one matched host and path,
//!    the answer is [`RouteLookup::MethodNotAllowed`] with the union of the
//!    methods those routes accept (for the `Allow` header); otherwise
//!    [`RouteLookup::NotFound`].
//!
//! The request host is compared case-insensitively after dropping its port
//! (`example.com:8080`, `[::1]:8080`) and one trailing dot (`example.com.`).
//! An IPv6 literal keeps its brackets (`[::1]`); config validation accepts no
//! IPv6 host patterns, so such requests match routes without hosts only.
//! A host longer than [`MAX_HOST_LEN`] bytes (no valid DNS name is) and an
//! empty host also match routes without hosts only.
//!
//! Paths are compared case-sensitively and byte for byte: no percent-decoding
//! and no dot-segment removal happen here, so `/v1%2Fx` is not below `/v1`
//! and `/V1` is not `/v1`. Methods are compared byte for byte too (HTTP
//! methods are case-sensitive), and `HEAD` is not implied by `GET`.
//!
//! # Data structure
//!
//! One `PathTable` per host key: a hash map per exact host, a hash map per
//! wildcard suffix (`.example.com`), and one table for routes without hosts.
//! A path table holds a hash map of exact paths and one of prefixes (the root
//! prefix `/` kept aside), each mapping to a `Slot`: the routes sharing
//! that host and path, pre-sorted so the first one accepting the method is
//! the winner.
//!
//! A lookup lower-cases the host into a stack buffer, then probes: the exact
//! host, each wildcard suffix of the host (one per dot, left to right), and
//! the any-host table. In each table it probes the exact path, then the path
//! cut at each `/` from right to left, then the root prefix. Bitmaps of the
//! key lengths present skip the hashing of lengths no key has. The cost is
//! proportional to the host's label count times the path's depth, not to the
//! number of routes, and nothing is allocated unless the answer is
//! `MethodNotAllowed`. Hashing is `ahash` with per-table random keys.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::ControlFlow;

use ahash::RandomState;

use crate::config::model::{HostPattern, PathMatch, RouteConfig};

/// Longest request host, in bytes after dropping the port and a trailing
/// dot, that can match an exact or wildcard host pattern. Longer hosts (never
/// valid DNS names, which stop at 253) match routes without hosts only.
pub const MAX_HOST_LEN: usize = 255;

/// Hash map keyed by host or path bytes.
type Map<V> = HashMap<Box<[u8]>, V, RandomState>;

/// The compiled route table. Immutable once built, so it is `Send + Sync`
/// and shared by every request of one config snapshot.
#[derive(Debug, Default)]
pub struct Router {
    /// Routes by lower-case exact host.
    exact_hosts: Map<PathTable>,
    /// Routes by lower-case wildcard suffix, leading dot included (`.example.com`).
    wildcard_hosts: Map<PathTable>,
    /// Lengths of the keys of `wildcard_hosts`.
    wildcard_lens: LenSet,
    /// Routes that list no hosts.
    any_host: PathTable,
}

/// The answer of [`Router::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteLookup {
    /// The route that serves the request.
    Found {
        /// Index of the route in the slice given to [`Router::build`].
        route: usize,
        /// Byte length of the matched path prefix, for strip/rewrite: the
        /// path's length for an exact match, the prefix's length for a prefix
        /// match (`/v1` on `/v1/x` → 3), and 0 for the root prefix `/`, so
        /// that `path[prefix_len..]` is always empty or starts with `/`.
        prefix_len: usize,
    },
    /// Some route matched host and path but none accepts the method. Holds
    /// the union of the methods those routes accept, sorted and deduplicated
    /// (for the `Allow` header).
    MethodNotAllowed { allowed: Vec<String> },
    /// No route matched host and path.
    NotFound,
}

impl Router {
    /// Compile the table. `routes[i]` is route index `i` in the results.
    ///
    /// Prefixes are matched without trailing slashes (`/v1/` is treated as
    /// `/v1`, an empty prefix as `/`); host patterns are lower-cased. The
    /// validated model already holds them that way.
    pub fn build(routes: &[RouteConfig]) -> Router {
        let mut router = Router::default();
        for (index, route) in routes.iter().enumerate() {
            let entry = Entry {
                route: index,
                methods: route.methods.iter().map(|m| m.as_str().into()).collect(),
            };
            if route.hosts.is_empty() {
                router.any_host.insert(&route.path, entry);
                continue;
            }
            for host in &route.hosts {
                let table = match host {
                    HostPattern::Exact(name) => {
                        let key = name.trim_end_matches('.').to_ascii_lowercase();
                        router.exact_hosts.entry(key.into_bytes().into())
                    }
                    HostPattern::Wildcard(suffix) => {
                        let mut key = suffix.to_ascii_lowercase();
                        if !key.starts_with('.') {
                            key.insert(0, '.');
                        }
                        router.wildcard_lens.insert(key.len());
                        router.wildcard_hosts.entry(key.into_bytes().into())
                    }
                };
                table.or_default().insert(&route.path, entry.clone());
            }
        }
        for table in router.tables_mut() {
            table.finish();
        }
        router
    }

    /// The route for a request.
    ///
    /// `host` is the request's Host/authority in any case, possibly with a
    /// `:port` (`[v6]:port` too), possibly empty. `path` is the request path
    /// without the query. `method` is the method as received (`"GET"`).
    pub fn find(&self, host: &str, path: &str, method: &str) -> RouteLookup {
        let path = path.as_bytes();
        let mut path_matched = false;
        let found = self.visit(host, path, &mut |slot, prefix_len| {
            path_matched = true;
            match slot.route_for(method) {
                Some(route) => ControlFlow::Break(RouteLookup::Found { route, prefix_len }),
                None => ControlFlow::Continue(()),
            }
        });
        if let ControlFlow::Break(found) = found {
            return found;
        }
        if !path_matched {
            return RouteLookup::NotFound;
        }
        // Cold path: walk the same slots again, collecting their methods.
        // Every route there lists methods, or it would have been found.
        let mut allowed: Vec<&str> = Vec::new();
        let ControlFlow::Continue(()) = self.visit::<Infallible>(host, path, &mut |slot, _| {
            allowed.extend(
                slot.entries
                    .iter()
                    .flat_map(|e| e.methods.iter().map(|m| &**m)),
            );
            ControlFlow::Continue(())
        });
        allowed.sort_unstable();
        allowed.dedup();
        RouteLookup::MethodNotAllowed {
            allowed: allowed.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Offer `f` every slot matching `host` and `path`, in precedence order,
    /// until it breaks.
    fn visit<'a, T>(
        &'a self,
        host: &str,
        path: &[u8],
        f: &mut impl FnMut(&'a Slot, usize) -> ControlFlow<T>,
    ) -> ControlFlow<T> {
        let mut buf = [0u8; MAX_HOST_LEN];
        if let Some(host) = host_key(host, &mut buf) {
            if let Some(table) = self.exact_hosts.get(host) {
                table.visit(path, f)?;
            }
            if !self.wildcard_hosts.is_empty() {
                // A dot at index i starts the suffix host[i..]; left to right
                // is longest first. i > 0 keeps at least one byte in front.
                for (i, &b) in host.iter().enumerate().skip(1) {
                    if b == b'.' && self.wildcard_lens.contains(host.len() - i) {
                        if let Some(table) = self.wildcard_hosts.get(&host[i..]) {
                            table.visit(path, f)?;
                        }
                    }
                }
            }
        }
        self.any_host.visit(path, f)
    }

    fn tables_mut(&mut self) -> impl Iterator<Item = &mut PathTable> {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut self.any_host))
    }
}

/// The routes of one host key, by path.
#[derive(Debug, Default)]
struct PathTable {
    exact: Map<Slot>,
    /// Prefixes other than the root, without trailing slash.
    prefix: Map<Slot>,
    /// The root prefix `/`.
    root: Option<Slot>,
    /// Lengths of the keys of `exact`.
    exact_lens: LenSet,
    /// Lengths of the keys of `prefix`.
    prefix_lens: LenSet,
}

impl PathTable {
    fn insert(&mut self, path: &PathMatch, entry: Entry) {
        let slot = match path {
            PathMatch::Exact(p) => {
                self.exact_lens.insert(p.len());
                self.exact.entry(p.as_bytes().into()).or_default()
            }
            PathMatch::Prefix(p) => match p.trim_end_matches('/') {
                "" => self.root.get_or_insert_with(Slot::default),
                p => {
                    self.prefix_lens.insert(p.len());
                    self.prefix.entry(p.as_bytes().into()).or_default()
                }
            },
        };
        slot.entries.push(entry);
    }

    fn finish(&mut self) {
        let slots = self
            .exact
            .values_mut()
            .chain(self.prefix.values_mut())
            .chain(self.root.as_mut());
        for slot in slots {
            slot.finish();
        }
    }

    /// Offer `f` the slots matching `path` with their prefix length: the
    /// exact path, then prefixes longest first, then the root.
    fn visit<'a, T>(
        &'a self,
        path: &[u8],
        f: &mut impl FnMut(&'a Slot, usize) -> ControlFlow<T>,
    ) -> ControlFlow<T> {
        if self.exact_lens.contains(path.len()) {
            if let Some(slot) = self.exact.get(path) {
                f(slot, path.len())?;
            }
        }
        if !self.prefix.is_empty() {
            // Candidates: the whole path, then the path cut before each '/'
            // from right to left (the leading '/' is the root's business).
            let mut end = path.len();
            loop {
                if self.prefix_lens.contains(end) {
                    if let Some(slot) = self.prefix.get(&path[..end]) {
                        f(slot, end)?;
                    }
                }
                match path[..end].iter().rposition(|&b| b == b'/') {
                    Some(cut) if cut > 0 => end = cut,
                    _ => break,
                }
            }
        }
        if let Some(slot) = &self.root {
            f(slot, 0)?;
        }
        ControlFlow::Continue(())
    }
}

/// The routes sharing one host key and path.
#[derive(Debug, Default)]
struct Slot {
    /// Routes listing methods first, then routes accepting any method; each
    /// group by route index. The first entry accepting a method wins.
    entries: Vec<Entry>,
}

impl Slot {
    fn finish(&mut self) {
        self.entries
            .sort_by_key(|e| (e.methods.is_empty(), e.route));
        // A route listing the same host twice lands here twice.
        self.entries.dedup_by_key(|e| e.route);
        self.entries.shrink_to_fit();
    }

    fn route_for(&self, method: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.accepts(method))
            .map(|e| e.route)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    route: usize,
    /// Upper-case methods; empty = any.
    methods: Box<[Box<str>]>,
}

impl Entry {
    fn accepts(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| **m == *method)
    }
}

/// A set of small lengths (key lengths), as a bitmap.
#[derive(Debug, Default)]
struct LenSet {
    words: Vec<u64>,
}

impl LenSet {
    fn insert(&mut self, len: usize) {
        let word = len / 64;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (len % 64);
    }

    fn contains(&self, len: usize) -> bool {
        self.words
            .get(len / 64)
            .is_some_and(|w| w >> (len % 64) & 1 == 1)
    }
}

/// The lookup key of a request host: port and one trailing dot dropped,
/// lower-cased into `buf`. `None` when empty or longer than the buffer.
fn host_key<'b>(host: &str, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b [u8]> {
    let name = strip_port(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > buf.len() {
        return None;
    }
    let key = &mut buf[..name.len()];
    key.copy_from_slice(name.as_bytes());
    key.make_ascii_lowercase();
    Some(key)
}

/// The host the client asked for: `Host`, or the URI authority (HTTP/2).
pub fn request_host(req: &pingora_http::RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// `host` without its `:port`. An IPv6 literal keeps its brackets
/// (`[::1]:8080` → `[::1]`); a bare IPv6 address (several colons, no
/// brackets; not valid in a Host header) is left whole.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) if !host[..colon].contains(':') => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests;
