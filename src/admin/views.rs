//! The JSON bodies of the admin API's read endpoints, from the snapshot
//! now serving and the long-lived state.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::config::model::{HostPattern, PathMatch, RouteUpstream};
use crate::gateway::Gateway;
use crate::ratelimit::{Limit, Outcome};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `GET /-/pools`: every pool with its backends' health and in-flight
/// requests.
pub fn pools(gateway: &Gateway) -> Value {
    let snapshot = gateway.snapshot();
    let pools: serde_json::Map<String, Value> = sorted_pools(&snapshot)
        .map(|(name, pool)| {
            let backends: Vec<Value> = pool.backends.iter().map(backend).collect();
            (name.clone(), json!({ "backends": backends }))
        })
        .collect();
    json!({ "pools": pools })
}

/// A backend's address, weight, health and requests in flight.
fn backend(b: &crate::upstream::Backend) -> Value {
    json!({
        "address": b.address.to_string(),
        "weight": b.weight,
        "healthy": b.state.is_healthy(),
        "inflight": b.state.inflight(),
    })
}

fn sorted_pools(
    snapshot: &crate::snapshot::Snapshot,
) -> impl Iterator<Item = (&String, &std::sync::Arc<crate::upstream::Pool>)> {
    let mut pools: Vec<_> = snapshot.pools.iter().collect();
    pools.sort_by(|a, b| a.0.cmp(b.0));
    pools.into_iter()
}

/// Unix nanoseconds as Unix seconds with milliseconds.
fn unix_nanos(n: u64) -> f64 {
    (n / 1_000_000) as f64 / 1000.0
}

/// `GET /-/upstreams`: per pool its breaker, concurrency, retry budget and
/// fallback; per backend health, ejection, in-flight requests, the last
/// failures that counted, the last attempt that got no response, and why
/// it takes no traffic when it does not.
pub fn upstreams(gateway: &Gateway) -> Value {
    let snapshot = gateway.snapshot();
    let now = gateway.clock().now_nanos();
    let pools: Vec<Value> = sorted_pools(&snapshot)
        .map(|(name, pool)| {
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .map(|b| upstream_backend(b, now))
                .collect();
            let healthy = pool
                .backends
                .iter()
                .filter(|b| b.state.is_healthy())
                .count();
            let usable = pool
                .backends
                .iter()
                .filter(|b| b.state.is_healthy() && !b.state.ejection.is_ejected(now))
                .count();
            let budget = pool.state.budget.as_ref().map(|b| {
                let (requests, retries) = b.totals(now);
                json!({
                    "ratio": b.settings().ratio,
                    "min_per_second": b.settings().min_per_second,
                    "window_requests": requests,
                    "window_retries": retries,
                })
            });
            json!({
                "name": name,
                "balance": pool.config.balance,
                "health_check": pool.config.health_check.is_some(),
                "healthy_backends": healthy,
                "usable_backends": usable,
                "inflight": pool.state.inflight(),
                "max_in_flight": pool.config.max_in_flight,
                "fallback": pool.config.fallback,
                "outlier": pool.config.outlier,
                "breaker": pool.state.breaker.as_ref().map(|b| breaker(b, now)),
                "retry_budget": budget,
                "backends": backends,
            })
        })
        .collect();
    // Each split with the sides' weights, and whether each side can take
    // requests now: its own pool has a usable backend and its breaker is
    // not open (a fallback not counted).
    let splits: Vec<Value> = snapshot
        .config
        .routes
        .iter()
        .zip(snapshot.routes.iter())
        .filter_map(|(model, route)| {
            let RouteUpstream::Split(split) = &model.upstream else {
                return None;
            };
            let sides: Vec<Value> = split
                .sides
                .iter()
                .zip(route.sides.iter())
                .map(|(s, side)| {
                    json!({
                        "pool": s.pool,
                        "weight": s.weight,
                        "match": s.match_headers.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "usable": side.pool.any_usable(now) && side.pool.admits_retry(),
                    })
                })
                .collect();
            Some(json!({ "route": model.id, "sticky": split.sticky, "sides": sides }))
        })
        .collect();
    json!({ "pools": pools, "splits": splits })
}

fn breaker(b: &crate::upstream::breaker::Breaker, now: u64) -> Value {
    let view = b.view(now);
    let mut out = serde_json::to_value(&view).unwrap_or(Value::Null);
    out["since"] = json!(unix_nanos(view.since_nanos));
    out["open_until"] = json!(view.open_until_nanos.map(unix_nanos));
    out["retry_after_seconds"] = json!(view
        .open_until_nanos
        .map(|u| u.saturating_sub(now).div_ceil(1_000_000_000)));
    out["settings"] = serde_json::to_value(b.settings()).unwrap_or(Value::Null);
    out
}

fn upstream_backend(b: &crate::upstream::Backend, now: u64) -> Value {
    let mut out = backend(b);
    let ejection = b.state.ejection.view(now);
    let mut why_out = Vec::new();
    if !b.state.is_healthy() {
        why_out.push("failing active health checks".to_string());
    }
    if ejection.ejected_until_nanos.is_some() {
        why_out.extend(ejection.why.clone());
    }
    out["usable"] = json!(why_out.is_empty());
    out["why_out"] = json!((!why_out.is_empty()).then(|| why_out.join("; ")));
    out["ejected"] = json!(ejection.ejected_until_nanos.is_some());
    out["ejected_until"] = json!(ejection.ejected_until_nanos.map(unix_nanos));
    out["times_ejected"] = json!(ejection.times_ejected);
    out["on_trial"] = json!(ejection.on_trial);
    out["consecutive_failures"] = json!(ejection.consecutive_failures);
    out["ejection_note"] = json!(ejection.why);
    out["recent_failures"] = json!(ejection
        .recent_failures
        .iter()
        .map(|f| json!({ "at": unix_nanos(f.at_nanos), "kind": f.failure.to_string() }))
        .collect::<Vec<_>>());
    out["last_error"] = json!(b.state.last_error().map(|e| {
        json!({
            "at": unix(e.at),
            "reason": e.reason.as_str(),
            "detail": e.detail,
        })
    }));
    out
}

/// `GET /-/routes`: the routing table of the current snapshot.
pub fn routes(gateway: &Gateway) -> Value {
    let snapshot = gateway.snapshot();
    let routes: Vec<Value> = snapshot
        .config
        .routes
        .iter()
        .map(|r| {
            let hosts: Vec<String> = r
                .hosts
                .iter()
                .map(|h| match h {
                    HostPattern::Exact(h) => h.clone(),
                    HostPattern::Wildcard(s) => format!("*{s}"),
                })
                .collect();
            let (kind, path) = match &r.path {
                PathMatch::Exact(p) => ("exact", p),
                PathMatch::Prefix(p) => ("prefix", p),
            };
            let (pool, split) = match &r.upstream {
                RouteUpstream::Pool(p) => (Some(p), None),
                RouteUpstream::Split(s) => (None, Some(s)),
            };
            json!({
                "id": r.id, "hosts": hosts, "path": path, "path_match": kind,
                "methods": r.methods, "pool": pool, "split": split,
            })
        })
        .collect();
    json!({ "routes": routes })
}

/// `GET /-/certificates`: each TLS listener's certificates.
pub fn certificates(gateway: &Gateway) -> Value {
    let certs: Vec<Value> = gateway
        .certificates()
        .into_iter()
        .map(|(listener, names, not_after)| {
            json!({ "listener": listener, "names": names, "not_after": not_after })
        })
        .collect();
    json!({ "certificates": certs })
}

/// `GET /-/consumers`: every consumer with its keys by prefix.
pub fn consumers(gateway: &Gateway) -> Value {
    let snapshot = gateway.snapshot();
    let consumers: Vec<Value> = snapshot
        .config
        .consumers
        .iter()
        .map(|c| {
            let keys: Vec<Value> = c
                .keys
                .iter()
                .map(|k| {
                    json!({
                        "prefix": k.prefix,
                        "not_before": k.not_before,
                        "expires": k.expires,
                    })
                })
                .collect();
            json!({
                "id": c.id,
                "name": c.name,
                "metadata": c.metadata,
                "disabled": c.disabled,
                "keys": keys,
                "defined_at": c.defined_at,
            })
        })
        .collect();
    json!({ "consumers": consumers })
}

/// `GET /-/config`: the effective config (defaults applied) as JSON, with
/// key digests left out and the admin token digest redacted.
pub fn config(gateway: &Gateway) -> Value {
    let snapshot = gateway.snapshot();
    let mut config = serde_json::to_value(&*snapshot.config).unwrap_or(Value::Null);
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "fingerprint".to_string(),
            format!("{:012x}", snapshot.fingerprint & 0xffff_ffff_ffff).into(),
        );
    }
    config
}

/// Filters of `GET /-/usage`.
#[derive(Debug, Default)]
pub struct UsageQuery {
    pub consumer: Option<String>,
    pub route: Option<String>,
    /// Only routes with a `deprecation` or `sunset`.
    pub deprecated: bool,
}

impl UsageQuery {
    /// From `consumer=ID&route=ID&deprecated=true`; unknown parameters are
    /// an error.
    pub fn parse(query: Option<&str>) -> Result<UsageQuery, String> {
        let mut q = UsageQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "consumer" => q.consumer = Some(v.to_string()),
                "route" => q.route = Some(v.to_string()),
                "deprecated" => {
                    q.deprecated = match v {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("deprecated must be true or false, not {v:?}")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use consumer, route or deprecated"
                    ))
                }
            }
        }
        Ok(q)
    }
}

/// `GET /-/usage`: per consumer and route, requests, refusals by reason and
/// when last seen; per consumer, how much of each quota is used.
pub async fn usage(gateway: &Gateway, q: &UsageQuery) -> Value {
    let snapshot = gateway.snapshot();
    let now = gateway.clock().now_nanos();
    let lifecycle: std::collections::HashMap<&str, &crate::config::model::Lifecycle> = snapshot
        .config
        .routes
        .iter()
        .map(|r| (r.id.as_str(), &r.lifecycle))
        .collect();
    let mut consumers = Vec::new();
    // API-key consumers, then those bearer tokens named (`issuer:id`).
    let keyed = snapshot
        .consumers
        .consumers
        .iter()
        .map(|c| (c.id.clone(), None, c.usage.usage().clone(), &c.limits));
    let tokens = gateway
        .usage()
        .token_consumers()
        .into_iter()
        .filter_map(|(subject, usage)| {
            let (issuer, id) = subject.split_once(':')?;
            let issuer = snapshot.issuers.list.iter().find(|i| &*i.id == issuer)?;
            Some((Arc::from(id), Some(subject.clone()), usage, &issuer.limits))
        })
        .collect::<Vec<_>>();
    for (id, subject, usage, limits) in keyed.chain(tokens) {
        if q.consumer.as_deref().is_some_and(|want| want != &*id) {
            continue;
        }
        let routes: Vec<Value> = usage
            .routes()
            .into_iter()
            .filter(|(id, _)| q.route.as_deref().is_none_or(|r| r == &**id))
            .filter_map(|(id, counts)| {
                let l = lifecycle.get(&*id)?;
                let deprecated = l.deprecation.is_some() || l.sunset.is_some();
                (!q.deprecated || deprecated).then(|| {
                    json!({
                        "route": &*id,
                        "requests": counts.requests,
                        "refused": counts.refused,
                        "last_seen": counts.last_seen,
                        "deprecation": l.deprecation,
                        "sunset": l.sunset,
                    })
                })
            })
            .collect();
        let filtered = q.route.is_some() || q.deprecated;
        if filtered && routes.is_empty() {
            continue;
        }
        let counted_as = subject.as_ref().unwrap_or(limits.consumer());
        let mut quotas = Vec::new();
        for limit in limits.quotas() {
            let Limit::Quota(quota) = limit.limit else {
                continue;
            };
            let check = limit.check(Some(counted_as), None);
            let remaining = match gateway.limit_store().peek(&[check], now).await {
                Outcome::Allowed(s) | Outcome::Denied { states: s, .. } => {
                    s.first().map_or(quota.limit, |s| s.remaining)
                }
                // The shared store cannot say: nothing is known to be used.
                Outcome::Unavailable => quota.limit,
            };
            quotas.push(json!({
                "name": &*limit.name,
                "period": quota.period,
                "limit": quota.limit,
                "used": quota.limit.saturating_sub(remaining),
            }));
        }
        let mut entry = json!({ "id": &*id, "routes": routes, "quotas": quotas });
        if let Some((issuer, _)) = subject.as_deref().and_then(|s| s.split_once(':')) {
            entry["issuer"] = issuer.into();
        }
        consumers.push(entry);
    }
    json!({
        "since": unix(gateway.usage_since()),
        "consumers": consumers,
    })
}
