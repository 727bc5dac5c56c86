//! The cache key of a request: route id, method class, host, the
//! canonical path and query (see [`crate::target`]; the query as the
//! route's `key` asks), the values of the key's headers
//! and, on key routes that are not `shared`, the consumer id.
//!
//! Components are length-prefixed before hashing, so no two different
//! requests frame to the same bytes (`a` + `bc` ≠ `ab` + `c`). `Vary` is not
//! here: Pingora keeps variants apart with a variance hash
//! ([`variance`]) computed from the stored response's `Vary`.

use std::sync::Arc;

use http::HeaderMap;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, VarianceBuilder};

use crate::config::model::{CacheKeySpec, QueryKey};

/// Where a stored object came from, for purge and invalidation. Travels
/// in the [`CacheKey`]'s extensions to the store's miss handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub route: Arc<str>,
    /// Lower-case `Host` (with its port, if any).
    pub host: Box<str>,
    /// The canonical path (see [`crate::target`]).
    pub path: Box<str>,
    /// Normalized query as keyed (`""` when none).
    pub query: Box<str>,
    /// The route's `max_object_size`: larger bodies are not stored.
    pub max_object_size: usize,
}

/// What the key is made of, borrowed from the request.
pub struct KeyParts<'a> {
    pub route: &'a Arc<str>,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The consumer, on key routes that keep entries per consumer.
    pub consumer: Option<&'a str>,
    /// On a route with a traffic split: the side's pool (each side's
    /// answers are kept apart, so a canary's never reaches the stable
    /// side's clients).
    pub side: Option<&'a str>,
}

/// The key and the [`Origin`] it carries.
pub fn cache_key(parts: &KeyParts<'_>, spec: &CacheKeySpec, max_object_size: usize) -> CacheKey {
    let origin = Origin {
        max_object_size,
        route: parts.route.clone(),
        host: parts.host.to_ascii_lowercase().into_boxed_str(),
        path: parts.path.into(),
        query: normalize_query(parts.query.unwrap_or(""), &spec.query).into_boxed_str(),
    };
    let mut primary = Vec::with_capacity(
        64 + origin.route.len() + origin.host.len() + origin.path.len() + origin.query.len(),
    );
    // Only GET and HEAD are looked up; both are answered from a stored GET.
    frame(&mut primary, b"GET");
    frame(&mut primary, origin.route.as_bytes());
    frame(&mut primary, origin.host.as_bytes());
    frame(&mut primary, origin.path.as_bytes());
    frame(&mut primary, origin.query.as_bytes());
    for name in &spec.headers {
        let mut values = parts.headers.get_all(name.as_str()).iter();
        match values.next() {
            None => frame(&mut primary, b"\xff"), // absent ≠ empty
            Some(first) => {
                let mut joined = first.as_bytes().to_vec();
                for v in values {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(v.as_bytes());
                }
                frame(&mut primary, &joined);
            }
        }
    }
    match parts.consumer {
        Some(c) => frame(&mut primary, c.as_bytes()),
        None => frame(&mut primary, b"\xff"),
    }
    // Only on split routes, so every other key stays what it was.
    if let Some(side) = parts.side {
        frame(&mut primary, b"side");
        frame(&mut primary, side.as_bytes());
    }
    let mut key = CacheKey::new(primary, "");
    key.extensions.insert(Arc::new(origin));
    key
}

fn frame(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// The [`Origin`] a key carries, if it is one of ours.
pub fn origin_of(key: &CacheKey) -> Option<&Arc<Origin>> {
    key.extensions.get::<Arc<Origin>>()
}

/// The query as the key sees it: as sent (`all`), its parameters sorted
/// (`sorted`), or only the listed parameters, sorted.
pub fn normalize_query(query: &str, mode: &QueryKey) -> String {
    let mut params: Vec<&str> = match mode {
        QueryKey::All => return query.to_string(),
        QueryKey::Sorted => query.split('&').filter(|p| !p.is_empty()).collect(),
        QueryKey::Only(names) => query
            .split('&')
            .filter(|p| {
                let name = p.split_once('=').map_or(*p, |(n, _)| n);
                !p.is_empty() && names.iter().any(|n| n == name)
            })
            .collect(),
    };
    params.sort_unstable();
    params.join("&")
}

/// `query` without the parameter `name` (the route's API key).
pub fn without_param<'a>(query: &'a str, name: &str) -> std::borrow::Cow<'a, str> {
    let is_it = |p: &str| p.split_once('=').map_or(p, |(n, _)| n) == name;
    if !query.split('&').any(is_it) {
        return std::borrow::Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_it(p)).collect();
    std::borrow::Cow::Owned(kept.join("&"))
}

/// The field names a response's `Vary` lists, lower-cased.
pub fn vary_names(vary: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    vary.get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// The variance of a request against a stored response's `Vary`: the
/// values of the named request headers. `None` when the response does not
/// vary. (`Vary: *` responses are never stored.)
pub fn variance(vary: &HeaderMap, request: &HeaderMap) -> Option<HashBinary> {
    let mut builder = VarianceBuilder::new();
    for name in vary_names(vary) {
        let mut joined = Vec::new();
        for (i, v) in request.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        builder.add_owned_name_value(name, joined);
    }
    builder.finalize()
}

/// `Vary: *`: the response varies on things outside the request.
pub fn varies_on_everything(vary: &HeaderMap) -> bool {
    vary.get_all(http::header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|n| n.trim_ascii() == b"*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    fn key(path: &str, query: Option<&str>, consumer: Option<&str>, spec: &CacheKeySpec) -> String {
        let route: Arc<str> = Arc::from("r");
        let headers = HeaderMap::new();
        cache_key(
            &KeyParts {
                route: &route,
                host: "Example.com",
                path,
                query,
                headers: &headers,
                consumer,
                side: None,
            },
            spec,
            1000,
        )
        .combined()
    }

    #[test]
    fn the_key_parameter_is_left_out() {
        assert_eq!(
            without_param("a=1&api_key=s3cret&b=2", "api_key"),
            "a=1&b=2"
        );
        assert_eq!(without_param("api_key=s3cret", "api_key"), "");
        assert_eq!(without_param("a=1", "api_key"), "a=1");
    }

    #[test]
    fn query_modes() {
        assert_eq!(normalize_query("b=1&a=2", &QueryKey::All), "b=1&a=2");
        assert_eq!(normalize_query("b=1&a=2&", &QueryKey::Sorted), "a=2&b=1");
        let only = QueryKey::Only(vec!["page".into(), "sort".into()]);
        assert_eq!(
            normalize_query("utm=x&sort=asc&page=2&pagex=1", &only),
            "page=2&sort=asc"
        );
    }

    #[test]
    fn keys_separate_consumers_queries_and_framing() {
        let spec = CacheKeySpec::default();
        assert_ne!(
            key("/a", None, Some("alice"), &spec),
            key("/a", None, Some("bob"), &spec)
        );
        assert_ne!(
            key("/a", None, Some("alice"), &spec),
            key("/a", None, None, &spec)
        );
        assert_ne!(
            key("/a", Some("x=1"), None, &spec),
            key("/a", None, None, &spec)
        );
        assert_ne!(
            key("/ab", None, None, &spec),
            key("/a", Some("b"), None, &spec)
        );
        let sorted = CacheKeySpec {
            query: QueryKey::Sorted,
            headers: vec![],
        };
        assert_eq!(
            key("/a", Some("b=1&a=2"), None, &sorted),
            key("/a", Some("a=2&b=1"), None, &sorted)
        );
    }

    #[test]
    fn key_headers_and_vary() {
        let route: Arc<str> = Arc::from("r");
        let spec = CacheKeySpec {
            query: QueryKey::All,
            headers: vec!["accept-language".into()],
        };
        let with = |v: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = v {
                headers.insert("accept-language", v.parse().unwrap());
            }
            let k = cache_key(
                &KeyParts {
                    route: &route,
                    host: "h",
                    path: "/",
                    query: None,
                    headers: &headers,
                    consumer: None,
                    side: None,
                },
                &spec,
                1000,
            );
            k.combined()
        };
        assert_ne!(with(Some("de")), with(Some("fr")));
        assert_ne!(with(None), with(Some("")));

        let mut vary = HeaderMap::new();
        vary.insert("vary", "Accept-Encoding".parse().unwrap());
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", "gzip".parse().unwrap());
        assert_ne!(variance(&vary, &gzip), variance(&vary, &HeaderMap::new()));
        assert_eq!(variance(&HeaderMap::new(), &gzip), None);
        vary.insert("vary", "accept-encoding, *".parse().unwrap());
        assert!(varies_on_everything(&vary));
    }
}
