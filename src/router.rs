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

use crate::config::model::{HostPattern, PathMatch, Route};

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
    pub fn build(routes: &[Route]) -> Router {
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

/// `host` without its `:port`. An IPv6 literal keeps its brackets
/// (`[::1]:8080` → `[::1]`); a bare IPv6 address (several colons, no
/// brackets; not valid in a Host header) is left whole.
fn strip_port(host: &str) -> &str {
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
mod tests {
    use super::*;
    use crate::config::model::{HeaderRules, Timeouts};

    /// A route; hosts starting with `*.` are wildcards, paths starting with
    /// `=` exact, others prefixes.
    fn route(hosts: &[&str], path: &str, methods: &[&str]) -> Route {
        Route {
            id: format!("{hosts:?} {path} {methods:?}"),
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
                    None => HostPattern::Exact(h.to_string()),
                })
                .collect(),
            path: match path.strip_prefix('=') {
                Some(p) => PathMatch::Exact(p.to_string()),
                None => PathMatch::Prefix(path.to_string()),
            },
            methods: methods.iter().map(|m| m.to_string()).collect(),
            pool: "pool".into(),
            strip_prefix: false,
            rewrite_prefix: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            timeouts: Timeouts::default(),
        }
    }

    fn found(route: usize, prefix_len: usize) -> RouteLookup {
        RouteLookup::Found { route, prefix_len }
    }

    fn not_allowed(methods: &[&str]) -> RouteLookup {
        RouteLookup::MethodNotAllowed {
            allowed: methods.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// The route index only.
    fn index(router: &Router, host: &str, path: &str, method: &str) -> Option<usize> {
        match router.find(host, path, method) {
            RouteLookup::Found { route, .. } => Some(route),
            _ => None,
        }
    }

    #[test]
    fn router_is_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Router>();
    }

    #[test]
    fn empty_table_finds_nothing() {
        let router = Router::build(&[]);
        assert_eq!(
            router.find("example.com", "/", "GET"),
            RouteLookup::NotFound
        );
        assert_eq!(router.find("", "", ""), RouteLookup::NotFound);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let router = Router::build(&[
            route(&[], "/", &[]),
            route(&["*.example.com"], "/", &[]),
            route(&["api.example.com"], "/", &[]),
        ]);
        assert_eq!(index(&router, "api.example.com", "/x", "GET"), Some(2));
        assert_eq!(index(&router, "www.example.com", "/x", "GET"), Some(1));
        assert_eq!(index(&router, "example.org", "/x", "GET"), Some(0));
    }

    #[test]
    fn host_specificity_beats_path_specificity() {
        let router = Router::build(&[
            route(&[], "=/orders/1", &[]),
            route(&["*.example.com"], "/orders", &[]),
            route(&["api.example.com"], "/", &[]),
        ]);
        assert_eq!(
            router.find("api.example.com", "/orders/1", "GET"),
            found(2, 0)
        );
        assert_eq!(
            router.find("www.example.com", "/orders/1", "GET"),
            found(1, 7)
        );
        assert_eq!(router.find("example.org", "/orders/1", "GET"), found(0, 9));
    }

    #[test]
    fn wildcard_matches_one_or_more_labels_but_not_the_apex() {
        let router = Router::build(&[route(&["*.example.com"], "/", &[])]);
        assert_eq!(index(&router, "a.example.com", "/", "GET"), Some(0));
        assert_eq!(index(&router, "a.b.example.com", "/", "GET"), Some(0));
        assert_eq!(index(&router, "example.com", "/", "GET"), None);
        assert_eq!(index(&router, ".example.com", "/", "GET"), None);
        assert_eq!(index(&router, "aexample.com", "/", "GET"), None);
        assert_eq!(index(&router, "a.example.com.evil.org", "/", "GET"), None);
    }

    #[test]
    fn longest_wildcard_suffix_first() {
        let router = Router::build(&[
            route(&["*.com"], "/", &[]),
            route(&["*.example.com"], "/", &[]),
            route(&["*.eu.example.com"], "/", &[]),
        ]);
        assert_eq!(index(&router, "a.eu.example.com", "/", "GET"), Some(2));
        assert_eq!(index(&router, "a.b.eu.example.com", "/", "GET"), Some(2));
        assert_eq!(index(&router, "eu.example.com", "/", "GET"), Some(1));
        assert_eq!(index(&router, "a.us.example.com", "/", "GET"), Some(1));
        assert_eq!(index(&router, "example.com", "/", "GET"), Some(0));
        assert_eq!(index(&router, "example.org", "/", "GET"), None);
    }

    #[test]
    fn falls_back_to_a_lower_tier_when_the_path_does_not_match() {
        let router = Router::build(&[
            route(&[], "/static", &[]),
            route(&["*.example.com"], "/blog", &[]),
            route(&["api.example.com"], "/v1", &[]),
        ]);
        assert_eq!(index(&router, "api.example.com", "/v1/x", "GET"), Some(2));
        assert_eq!(index(&router, "api.example.com", "/blog/x", "GET"), Some(1));
        assert_eq!(
            index(&router, "api.example.com", "/static/x", "GET"),
            Some(0)
        );
        assert_eq!(index(&router, "www.example.com", "/v1/x", "GET"), None);
        assert_eq!(
            index(&router, "www.example.com", "/static/x", "GET"),
            Some(0)
        );
        // A shorter wildcard suffix is a lower tier too.
        let router = Router::build(&[
            route(&["*.example.com"], "/shop", &[]),
            route(&["*.eu.example.com"], "/blog", &[]),
        ]);
        assert_eq!(index(&router, "a.eu.example.com", "/shop", "GET"), Some(0));
    }

    #[test]
    fn falls_back_to_a_lower_tier_when_the_method_does_not_match() {
        let router = Router::build(&[
            route(&[], "/v1", &[]),
            route(&["api.example.com"], "/v1", &["POST"]),
        ]);
        assert_eq!(index(&router, "api.example.com", "/v1/x", "POST"), Some(1));
        assert_eq!(index(&router, "api.example.com", "/v1/x", "GET"), Some(0));
    }

    #[test]
    fn a_shorter_prefix_in_the_same_tier_beats_a_lower_tier_when_the_method_does_not_match() {
        let router = Router::build(&[
            route(&[], "/login", &[]),
            route(&["api.example.com"], "=/login", &["POST"]),
            route(&["api.example.com"], "/", &["GET"]),
        ]);
        assert_eq!(index(&router, "api.example.com", "/login", "POST"), Some(1));
        assert_eq!(index(&router, "api.example.com", "/login", "GET"), Some(2));
        assert_eq!(index(&router, "api.example.com", "/login", "PUT"), Some(0));
    }

    #[test]
    fn exact_path_beats_prefix() {
        let router = Router::build(&[
            route(&[], "/v1/health", &[]),
            route(&[], "=/v1/health", &[]),
        ]);
        assert_eq!(router.find("", "/v1/health", "GET"), found(1, 10));
        assert_eq!(router.find("", "/v1/health/", "GET"), found(0, 10));
        assert_eq!(router.find("", "/v1/health/x", "GET"), found(0, 10));
    }

    #[test]
    fn exact_path_matches_only_itself() {
        let router = Router::build(&[route(&[], "=/v1", &[])]);
        assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v1/", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v1/x", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v", "GET"), RouteLookup::NotFound);
    }

    #[test]
    fn longest_prefix_wins() {
        let router = Router::build(&[
            route(&[], "/", &[]),
            route(&[], "/a", &[]),
            route(&[], "/a/b/c", &[]),
            route(&[], "/a/b", &[]),
        ]);
        assert_eq!(router.find("", "/a/b/c/d", "GET"), found(2, 6));
        assert_eq!(router.find("", "/a/b/c", "GET"), found(2, 6));
        assert_eq!(router.find("", "/a/b/cd", "GET"), found(3, 4));
        assert_eq!(router.find("", "/a/b", "GET"), found(3, 4));
        assert_eq!(router.find("", "/a/x/c", "GET"), found(1, 2));
        assert_eq!(router.find("", "/b", "GET"), found(0, 0));
    }

    #[test]
    fn prefix_matches_on_segment_boundaries_only() {
        let router = Router::build(&[route(&[], "/v1", &[])]);
        assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v1/", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v1/x", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v1//x", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v10", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v1x/y", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/x/v1", "GET"), RouteLookup::NotFound);
    }

    #[test]
    fn trailing_slash_on_a_prefix_is_ignored() {
        let router = Router::build(&[route(&[], "/v1/", &[])]);
        assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v1/x", "GET"), found(0, 3));
        assert_eq!(router.find("", "/v10", "GET"), RouteLookup::NotFound);
    }

    #[test]
    fn root_prefix_matches_everything_with_prefix_len_zero() {
        let router = Router::build(&[route(&[], "/", &[])]);
        for path in ["/", "/x", "/x/y/z", "//", "", "*"] {
            assert_eq!(
                router.find("any.host", path, "GET"),
                found(0, 0),
                "{path:?}"
            );
        }
    }

    #[test]
    fn exact_root_path() {
        let router = Router::build(&[route(&[], "=/", &[]), route(&[], "/", &[])]);
        assert_eq!(router.find("", "/", "GET"), found(0, 1));
        assert_eq!(router.find("", "/x", "GET"), found(1, 0));
    }

    #[test]
    fn path_is_case_sensitive_and_not_decoded() {
        let router = Router::build(&[route(&[], "/v1/a b", &[]), route(&[], "/v1", &[])]);
        assert_eq!(router.find("", "/V1/x", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v1%2Fx", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/%761/x", "GET"), RouteLookup::NotFound);
        assert_eq!(router.find("", "/v1/a%20b", "GET"), found(1, 3));
        assert_eq!(router.find("", "/v1/a b/c", "GET"), found(0, 7));
    }

    #[test]
    fn route_listing_the_method_beats_route_accepting_any() {
        let router = Router::build(&[
            route(&[], "/items", &[]),
            route(&[], "/items", &["POST", "PUT"]),
        ]);
        assert_eq!(index(&router, "", "/items", "POST"), Some(1));
        assert_eq!(index(&router, "", "/items/1", "PUT"), Some(1));
        assert_eq!(index(&router, "", "/items", "GET"), Some(0));
        assert_eq!(index(&router, "", "/items", "DELETE"), Some(0));
    }

    #[test]
    fn routes_split_by_method_at_the_same_path() {
        let router = Router::build(&[
            route(&[], "/items", &["GET", "HEAD"]),
            route(&[], "/items", &["POST"]),
        ]);
        assert_eq!(index(&router, "", "/items", "GET"), Some(0));
        assert_eq!(index(&router, "", "/items", "HEAD"), Some(0));
        assert_eq!(index(&router, "", "/items", "POST"), Some(1));
        assert_eq!(
            router.find("", "/items", "PATCH"),
            not_allowed(&["GET", "HEAD", "POST"])
        );
    }

    #[test]
    fn method_not_allowed_lists_the_union_across_paths_and_tiers() {
        let router = Router::build(&[
            route(&[], "/", &["GET"]),
            route(&["*.example.com"], "/v1", &["PUT", "GET"]),
            route(&["api.example.com"], "=/v1/x", &["POST"]),
            route(&["api.example.com"], "/v1", &["DELETE", "POST"]),
            route(&["other.example.com"], "/v1", &["PATCH"]),
            route(&[], "/v2", &["OPTIONS"]),
        ]);
        assert_eq!(
            router.find("api.example.com", "/v1/x", "TRACE"),
            not_allowed(&["DELETE", "GET", "POST", "PUT"])
        );
        assert_eq!(router.find("api.example.com", "/v1/x", "PUT"), found(1, 3));
        assert_eq!(
            router.find("example.org", "/v1/x", "POST"),
            not_allowed(&["GET"])
        );
        assert_eq!(
            router.find("example.org", "/v2", "POST"),
            not_allowed(&["GET", "OPTIONS"])
        );
    }

    #[test]
    fn methods_are_case_sensitive() {
        let router = Router::build(&[route(&[], "/", &["GET"])]);
        assert_eq!(router.find("", "/", "GET"), found(0, 0));
        assert_eq!(router.find("", "/", "get"), not_allowed(&["GET"]));
        assert_eq!(router.find("", "/", ""), not_allowed(&["GET"]));
    }

    #[test]
    fn not_found_when_nothing_matches_the_path() {
        let router = Router::build(&[route(&["api.example.com"], "/v1", &["GET"])]);
        assert_eq!(
            router.find("api.example.com", "/v2", "POST"),
            RouteLookup::NotFound
        );
        assert_eq!(
            router.find("www.example.com", "/v1", "POST"),
            RouteLookup::NotFound
        );
    }

    #[test]
    fn duplicate_match_keys_resolve_to_the_lowest_index() {
        let router = Router::build(&[
            route(&[], "/a", &[]),
            route(&[], "/a", &["GET"]),
            route(&[], "/a", &[]),
            route(&[], "/a", &["GET"]),
        ]);
        assert_eq!(index(&router, "", "/a", "GET"), Some(1));
        assert_eq!(index(&router, "", "/a", "POST"), Some(0));
    }

    #[test]
    fn one_route_with_several_hosts() {
        let router = Router::build(&[
            route(
                &["a.example.com", "*.example.net", "a.example.com"],
                "/",
                &["GET"],
            ),
            route(&[], "/", &["POST"]),
        ]);
        assert_eq!(index(&router, "a.example.com", "/", "GET"), Some(0));
        assert_eq!(index(&router, "x.example.net", "/", "GET"), Some(0));
        assert_eq!(index(&router, "b.example.com", "/", "GET"), None);
        assert_eq!(
            router.find("a.example.com", "/", "PUT"),
            not_allowed(&["GET", "POST"])
        );
    }

    #[test]
    fn host_port_case_and_trailing_dot_are_normalised() {
        let router = Router::build(&[
            route(&["api.example.com"], "/", &[]),
            route(&["*.example.com"], "/", &[]),
        ]);
        for host in [
            "api.example.com",
            "API.Example.COM",
            "api.example.com:8080",
            "API.EXAMPLE.COM:443",
            "api.example.com.",
            "api.example.com.:80",
            "api.example.com:",
        ] {
            assert_eq!(index(&router, host, "/", "GET"), Some(0), "{host:?}");
        }
        assert_eq!(index(&router, "WWW.Example.Com:8443", "/", "GET"), Some(1));
        assert_eq!(index(&router, "api.example.com..", "/", "GET"), None);
    }

    #[test]
    fn ipv6_literal_hosts() {
        let router = Router::build(&[
            route(&["api.example.com"], "/", &[]),
            route(&[], "/", &["GET"]),
        ]);
        for host in ["[::1]", "[::1]:8080", "[2001:db8::1]:443", "::1", "[::1"] {
            assert_eq!(index(&router, host, "/", "GET"), Some(1), "{host:?}");
        }
        // The model takes no IPv6 patterns, but the router keys them as `[addr]`.
        let router = Router::build(&[route(&["[::1]"], "/", &[])]);
        assert_eq!(index(&router, "[::1]:8080", "/", "GET"), Some(0));
        assert_eq!(index(&router, "[::1]", "/", "GET"), Some(0));
        assert_eq!(index(&router, "[::2]:8080", "/", "GET"), None);
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port(""), "");
    }

    #[test]
    fn empty_host_matches_routes_without_hosts_only() {
        let router = Router::build(&[
            route(&["api.example.com"], "/v1", &[]),
            route(&["*.example.com"], "/v1", &[]),
            route(&[], "/v2", &[]),
        ]);
        assert_eq!(index(&router, "", "/v1", "GET"), None);
        assert_eq!(index(&router, ":8080", "/v1", "GET"), None);
        assert_eq!(index(&router, "", "/v2", "GET"), Some(2));
        assert_eq!(index(&router, ":8080", "/v2", "GET"), Some(2));
    }

    #[test]
    fn overlong_host_matches_routes_without_hosts_only() {
        let long = format!("{}.example.com", "a".repeat(MAX_HOST_LEN));
        let router = Router::build(&[
            route(&["*.example.com"], "/", &[]),
            route(&[&long], "/", &[]),
            route(&[], "/v2", &[]),
        ]);
        assert_eq!(index(&router, &long, "/", "GET"), None);
        assert_eq!(index(&router, &long, "/v2", "GET"), Some(2));
        let longest = format!("{}.example.com", "a".repeat(MAX_HOST_LEN - 12));
        assert_eq!(longest.len(), MAX_HOST_LEN);
        assert_eq!(index(&router, &longest, "/", "GET"), Some(0));
    }

    /// `n` routes over many hosts and `/vN/service-M` paths, like the bench.
    fn big_table(n: usize) -> Vec<Route> {
        (0..n)
            .map(|i| {
                let hosts = match i % 4 {
                    0 => vec![format!("api{}.example.com", i % 100)],
                    1 => vec![format!("*.tenant{}.example.net", i % 50)],
                    2 => vec![],
                    _ => vec![
                        format!("api{}.example.com", i % 100),
                        format!("*.shop{}.example.org", i % 20),
                    ],
                };
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                let path = if i.is_multiple_of(5) {
                    format!("=/v{}/service-{i}/health", i % 3 + 1)
                } else {
                    format!("/v{}/service-{i}", i % 3 + 1)
                };
                let methods: &[&str] = if i.is_multiple_of(7) {
                    &["GET", "POST"]
                } else {
                    &[]
                };
                route(&hosts, &path, methods)
            })
            .collect()
    }

    #[test]
    fn ten_thousand_routes() {
        let routes = big_table(10_000);
        let router = Router::build(&routes);
        for i in (0..10_000usize).step_by(37) {
            let host = match i % 4 {
                0 | 3 => format!("API{}.example.com:443", i % 100),
                1 => format!("x.y.tenant{}.example.net", i % 50),
                _ => "whatever.example".to_string(),
            };
            let path = if i.is_multiple_of(5) {
                format!("/v{}/service-{i}/health", i % 3 + 1)
            } else {
                format!("/v{}/service-{i}/orders/42", i % 3 + 1)
            };
            let expected = if i.is_multiple_of(5) {
                path.len()
            } else {
                format!("/v{}/service-{i}", i % 3 + 1).len()
            };
            assert_eq!(
                router.find(&host, &path, "GET"),
                found(i, expected),
                "route {i}"
            );
            // A neighbour's host does not reach route i unless i has no hosts.
            let miss = router.find("nobody.example.com", &path, "GET");
            if i % 4 == 2 {
                assert_eq!(miss, found(i, expected), "route {i}");
            } else {
                assert_eq!(miss, RouteLookup::NotFound, "route {i}");
            }
            if i.is_multiple_of(7) {
                assert_eq!(
                    router.find(&host, &path, "PUT"),
                    not_allowed(&["GET", "POST"])
                );
            }
        }
        assert_eq!(
            router.find("api1.example.com", "/v9/service-1", "GET"),
            RouteLookup::NotFound
        );
        assert_eq!(
            router.find("api1.example.com", "/v2/service-10", "GET"),
            RouteLookup::NotFound
        );
    }
}
