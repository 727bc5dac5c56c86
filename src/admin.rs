//! The admin API, on its own listener (default `127.0.0.1:9180`).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/-/health` | `200 {"status":"ok"}` while the process serves |
//! | GET | `/-/pools` | every pool with its backends' health and in-flight requests |
//! | GET | `/-/routes` | the routing table of the current snapshot |
//! | GET | `/-/certificates` | each TLS listener's certificates: names and expiry |
//! | GET | `/-/consumers` | every consumer: id, name, metadata, disabled, keys by prefix (never a digest) |
//! | GET | `/metrics` | Prometheus metrics (text format 0.0.4) |
//! | POST | `/-/reload` | re-read the config: `200` with `status` `reloaded` (and the changes) or `unchanged`, or `422` with every error |

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::config::model::{HostPattern, PathMatch};
use crate::gateway::Gateway;

pub struct AdminApp {
    gateway: Arc<Gateway>,
}

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    fn pools(&self) -> Value {
        let snapshot = self.gateway.snapshot();
        let mut names: Vec<_> = snapshot.pools.keys().collect();
        names.sort();
        let pools: serde_json::Map<String, Value> = names
            .into_iter()
            .filter_map(|name| {
                let pool = snapshot.pools.get(name)?;
                let backends: Vec<Value> = pool
                    .backends
                    .iter()
                    .map(|b| {
                        json!({
                            "address": b.address.to_string(),
                            "weight": b.weight,
                            "healthy": b.state.is_healthy(),
                            "inflight": b.state.inflight(),
                        })
                    })
                    .collect();
                Some((name.clone(), json!({ "backends": backends })))
            })
            .collect();
        json!({ "pools": pools })
    }

    fn routes(&self) -> Value {
        let snapshot = self.gateway.snapshot();
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
                json!({
                    "id": r.id, "hosts": hosts, "path": path, "path_match": kind,
                    "methods": r.methods, "pool": r.pool,
                })
            })
            .collect();
        json!({ "routes": routes })
    }

    fn certificates(&self) -> Value {
        let certs: Vec<Value> = self
            .gateway
            .certificates()
            .into_iter()
            .map(|(listener, names, not_after)| {
                json!({ "listener": listener, "names": names, "not_after": not_after })
            })
            .collect();
        json!({ "certificates": certs })
    }

    fn consumers(&self) -> Value {
        let snapshot = self.gateway.snapshot();
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

    async fn reload(&self) -> (StatusCode, Value) {
        match self.gateway.reload("admin").await {
            Ok(report) => (
                StatusCode::OK,
                json!({
                    "status": if report.unchanged() { "unchanged" } else { "reloaded" },
                    "summary": report.summary,
                    "restart_required": report.diff.restart_required,
                    "changes": report.diff,
                    "probes_restarted": report.probes_restarted,
                    "took_ms": report.took.as_secs_f64() * 1e3,
                }),
            ),
            Err(errors) => {
                let list: Vec<Value> = errors
                    .0
                    .iter()
                    .map(|e| {
                        json!({
                            "file": e.file, "line": e.line, "column": e.column,
                            "item": e.item, "message": e.message, "text": e.to_string(),
                        })
                    })
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({
                        "type": "about:blank",
                        "title": "Config rejected",
                        "status": 422,
                        "detail": "The config file is invalid; the previous config keeps serving.",
                        "errors": list,
                    }),
                )
            }
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

fn problem(status: StatusCode, detail: &str) -> Response<Vec<u8>> {
    reply(
        status,
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or(""),
            "status": status.as_u16(),
            "detail": detail,
        }),
    )
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let get = method == http::Method::GET;
        let post = method == http::Method::POST;
        match path.as_str() {
            "/-/health" if get => reply(StatusCode::OK, json!({ "status": "ok" })),
            "/-/pools" if get => reply(StatusCode::OK, self.pools()),
            "/-/routes" if get => reply(StatusCode::OK, self.routes()),
            "/-/certificates" if get => reply(StatusCode::OK, self.certificates()),
            "/-/consumers" if get => reply(StatusCode::OK, self.consumers()),
            "/metrics" if get => {
                let body = self.gateway.render_metrics();
                let mut resp = Response::new(body);
                let headers = resp.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                let len = resp.body().len();
                resp.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, len.into());
                resp
            }
            "/-/reload" if post => {
                let (status, body) = self.reload().await;
                reply(status, body)
            }
            "/-/health" | "/-/pools" | "/-/routes" | "/-/certificates" | "/-/consumers"
            | "/-/reload" | "/metrics" => problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed on this endpoint.",
            ),
            _ => problem(StatusCode::NOT_FOUND, "No such admin endpoint."),
        }
    }
}
