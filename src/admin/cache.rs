//! `DELETE /-/cache`: purge cached responses by URL, route or tag.
//!
//! - `?route=ID&path=/p`: every variant of that path on the route (query
//!   strings, consumers, `Vary`); with a query in `path`
//!   (`path=/p%3Fa%3D1`), only that query, normalized as the route keys it;
//! - `?route=ID`: everything the route stored;
//! - `?tag=T`: every object whose `Surrogate-Key` or `Cache-Tag` named T.
//!
//! The answer says how many objects went.

use http::StatusCode;
use serde_json::{json, Value};

use crate::cache::key::normalize_query;
use crate::cache::Purge;
use crate::gateway::Gateway;

/// What to purge, from the query string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeQuery {
    pub route: Option<String>,
    pub path: Option<String>,
    pub tag: Option<String>,
}

impl PurgeQuery {
    pub fn parse(query: Option<&str>) -> Result<PurgeQuery, String> {
        let mut q = PurgeQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = crate::target::percent_decode(v.as_bytes(), false)
                .and_then(|v| String::from_utf8(v.into_owned()).ok())
                .ok_or_else(|| format!("{k}: invalid percent-encoding"))?;
            let slot = match k {
                "route" => &mut q.route,
                "path" => &mut q.path,
                "tag" => &mut q.tag,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use route and path, route, or tag"
                    ))
                }
            };
            if v.is_empty() {
                return Err(format!("{k} is empty"));
            }
            *slot = Some(v);
        }
        match (&q.route, &q.path, &q.tag) {
            (_, _, Some(_)) if q.route.is_some() || q.path.is_some() => {
                Err("tag cannot be combined with route or path".into())
            }
            (None, Some(_), None) => Err("path needs the route it is cached under".into()),
            (None, None, None) => Err("say what to purge: route=ID[&path=/p] or tag=T".into()),
            (_, Some(p), _) if !p.starts_with('/') => Err("path must start with '/'".into()),
            _ => Ok(q),
        }
    }
}

/// Run the purge: `(status, body)`; 404 for a route that does not cache.
pub fn purge(gateway: &Gateway, q: &PurgeQuery) -> (StatusCode, Value) {
    let table = gateway.cache();
    if let Some(tag) = &q.tag {
        let n = table.purge(Purge::Tag(tag));
        return (StatusCode::OK, json!({ "purged": n, "tag": tag }));
    }
    let Some(route_id) = &q.route else {
        return (StatusCode::BAD_REQUEST, json!({}));
    };
    let snapshot = gateway.snapshot();
    let Some(caching) = snapshot
        .routes
        .iter()
        .find(|r| &r.id == route_id)
        .and_then(|r| r.cache.as_ref())
    else {
        return (
            StatusCode::NOT_FOUND,
            json!(format!(
                "route {route_id:?} does not exist or does not cache"
            )),
        );
    };
    let n = match &q.path {
        None => table.purge(Purge::Route(route_id)),
        Some(target) => {
            // Spelled as a request for it would be after normalization.
            let rules = &snapshot.config.server.client.paths;
            let (path, query) = match crate::target::canonical_split(target, rules) {
                Ok(split) => split,
                Err(why) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!(format!("path {target:?} is not a request target: {why}")),
                    )
                }
            };
            let query = query.map(|q| normalize_query(&q, &caching.settings.key.query));
            table.purge(Purge::Path {
                route: route_id,
                path: &path,
                query: query.as_deref(),
            })
        }
    };
    let mut body = json!({ "purged": n, "route": route_id });
    if let Some(p) = &q.path {
        body["path"] = json!(p);
    }
    (StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        let q = PurgeQuery::parse(Some("route=r&path=%2Fa%3Fx%3D1")).unwrap();
        assert_eq!(q.path.as_deref(), Some("/a?x=1"));
        assert!(PurgeQuery::parse(Some("tag=t")).is_ok());
        assert!(PurgeQuery::parse(None).is_err());
        assert!(PurgeQuery::parse(Some("path=/a")).is_err());
        assert!(PurgeQuery::parse(Some("tag=t&route=r")).is_err());
        assert!(PurgeQuery::parse(Some("route=r&path=a")).is_err());
        assert!(PurgeQuery::parse(Some("route=r&x=1")).is_err());
        assert!(PurgeQuery::parse(Some("route=%zz")).is_err());
    }
}
