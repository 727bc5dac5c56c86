//! The admin API, on its own listener (default `127.0.0.1:9180`). Its
//! OpenAPI 3.1 description is `docs/admin-api.openapi.json`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | `200 {"status":"ok"}` while the process serves (also `/-/health`) |
//! | GET | `/readyz` | `200` when the config is loaded and every listener accepts connections; `503` problem with the reasons otherwise |
//! | GET | `/metrics` | Prometheus metrics (text format 0.0.4) |
//! | GET | `/-/config` | the effective config as JSON (key digests left out, the admin token redacted) |
//! | GET | `/-/pools` | every pool with its backends' health and in-flight requests |
//! | GET | `/-/upstreams` | per pool and backend: health, in-flight requests, last error |
//! | GET | `/-/routes` | the routing table of the current snapshot |
//! | GET | `/-/certificates` | each TLS listener's certificates: names and expiry |
//! | GET | `/-/consumers` | every consumer: id, name, metadata, disabled, keys by prefix (never a digest) |
//! | GET | `/-/usage` | per consumer and route: requests, refusals, last seen; quota used |
//! | POST | `/-/reload` | re-read the config: `200` with `status` `reloaded` (and the changes) or `unchanged`, or `422` with every error; `?force=true` applies a config that drops every route or every consumer; `?dry_run=true` only says what a reload would do (`would_reload`) |
//!
//! With `[admin] token_digest`, every endpoint but `/healthz` and `/readyz`
//! asks for `Authorization: Bearer TOKEN` (401 otherwise; the token of
//! `read_token_digest` may only read). Only IP-literal, `localhost` and
//! configured `Host` names are answered (421), and state-changing requests
//! a browser could forge from another site are refused (403): see
//! `guard.rs`. Errors are `application/problem+json`.

mod cache;
pub mod client;
pub mod guard;
pub(crate) mod ready;
mod views;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::gateway::Gateway;

pub struct AdminApp {
    gateway: Arc<Gateway>,
}

/// Every endpoint: (path, method).
const ENDPOINTS: &[(&str, &str)] = &[
    ("/healthz", "GET"),
    ("/-/health", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/-/config", "GET"),
    ("/-/pools", "GET"),
    ("/-/upstreams", "GET"),
    ("/-/routes", "GET"),
    ("/-/certificates", "GET"),
    ("/-/consumers", "GET"),
    ("/-/usage", "GET"),
    ("/-/reload", "POST"),
    ("/-/cache", "DELETE"),
];

/// Endpoints open without the admin token: liveness and readiness probes.
const OPEN: &[&str] = &["/healthz", "/-/health", "/readyz"];

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    fn ready(&self) -> Response<Vec<u8>> {
        let reasons = ready::not_ready(self.gateway.bound_listeners());
        let snapshot = self.gateway.snapshot();
        if reasons.is_empty() {
            return reply(
                StatusCode::OK,
                json!({
                    "status": "ready",
                    "config": snapshot.summary(),
                    "listeners": self.gateway.bound_listeners().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "restart_required": self.gateway.restart_required(),
                }),
            );
        }
        let mut body = problem_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway is not ready to serve.",
        );
        body["reasons"] = reasons.into();
        reply(StatusCode::SERVICE_UNAVAILABLE, body)
    }

    async fn reload(&self, force: bool, dry_run: bool) -> (StatusCode, Value) {
        let result = if dry_run {
            let gateway = self.gateway.clone();
            tokio::task::spawn_blocking(move || gateway.reload_dry_run(force))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::config::ConfigError::whole_file(
                        &self.gateway.config_path().display().to_string(),
                        format!("the dry run did not finish: {e}"),
                    )
                    .into())
                })
        } else {
            self.gateway.reload("admin", force).await
        };
        match result {
            Ok(report) => {
                let status = match (report.unchanged(), dry_run) {
                    (true, _) => "unchanged",
                    (false, false) => "reloaded",
                    (false, true) => "would_reload",
                };
                let mut body = json!({
                    "status": status,
                    "summary": report.summary,
                    "restart_required": report.diff.restart_required,
                    "changes": report.diff,
                    "probes_restarted": report.probes_restarted,
                    "took_ms": report.took.as_secs_f64() * 1e3,
                });
                if dry_run {
                    body["dry_run"] = true.into();
                    // So `portcullis diff --against-running FILE` can tell
                    // whether FILE is the one the gateway runs from.
                    let file = self.gateway.config_path();
                    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
                    body["config_file"] = file.display().to_string().into();
                }
                (StatusCode::OK, body)
            }
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
                let mut body = problem_body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The config file is invalid; the previous config keeps serving.",
                );
                body["title"] = "Config rejected".into();
                body["errors"] = list.into();
                (StatusCode::UNPROCESSABLE_ENTITY, body)
            }
        }
    }
}

/// `force=true|false` and `dry_run=true|false`, each at most once.
fn reload_query(query: Option<&str>) -> Result<(bool, bool), &'static str> {
    const WHY: &str = "The parameters of /-/reload are force=true and dry_run=true.";
    let (mut force, mut dry_run) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (slot, value) = match pair.split_once('=') {
            Some(("force", v)) => (&mut force, v),
            Some(("dry_run", v)) => (&mut dry_run, v),
            _ => return Err(WHY),
        };
        let value = match value {
            "true" => true,
            "false" => false,
            _ => return Err(WHY),
        };
        if slot.replace(value).is_some() {
            return Err(WHY);
        }
    }
    Ok((force.unwrap_or(false), dry_run.unwrap_or(false)))
}

fn reply(status: StatusCode, body: Value) -> Response<Vec<u8>> {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    respond(status, content_type, body.to_string().into_bytes())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

fn problem_body(status: StatusCode, detail: &str) -> Value {
    json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    })
}

fn problem(status: StatusCode, detail: &str) -> Response<Vec<u8>> {
    reply(status, problem_body(status, detail))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let known: Vec<&str> = ENDPOINTS
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, m)| *m)
            .collect();
        if known.is_empty() {
            return problem(StatusCode::NOT_FOUND, "No such admin endpoint.");
        }
        let settings = &self.gateway.snapshot().config.admin;
        let open = OPEN.contains(&path.as_str());
        if let Err(refusal) = guard::check(session.req_header(), settings, open) {
            let mut resp = problem(refusal.status(), refusal.detail());
            if refusal == guard::AdminRefusal::Unauthenticated {
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"portcullis admin\""),
                );
            }
            return resp;
        }
        // HEAD is GET without a body (Pingora drops the body).
        let as_get = if method == "HEAD" {
            "GET"
        } else {
            method.as_str()
        };
        if !known.contains(&as_get) {
            let mut resp = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed on this endpoint.",
            );
            if let Ok(allow) = http::HeaderValue::from_str(&known.join(", ")) {
                resp.headers_mut().insert(http::header::ALLOW, allow);
            }
            return resp;
        }
        let g = &*self.gateway;
        match path.as_str() {
            "/healthz" | "/-/health" => reply(StatusCode::OK, json!({ "status": "ok" })),
            "/readyz" => self.ready(),
            "/metrics" => respond(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                g.render_metrics(),
            ),
            "/-/config" => reply(StatusCode::OK, views::config(g)),
            "/-/pools" => reply(StatusCode::OK, views::pools(g)),
            "/-/upstreams" => reply(StatusCode::OK, views::upstreams(g)),
            "/-/routes" => reply(StatusCode::OK, views::routes(g)),
            "/-/certificates" => reply(StatusCode::OK, views::certificates(g)),
            "/-/consumers" => reply(StatusCode::OK, views::consumers(g)),
            "/-/usage" => match views::UsageQuery::parse(query.as_deref()) {
                Ok(q) => reply(StatusCode::OK, views::usage(g, &q).await),
                Err(why) => problem(StatusCode::BAD_REQUEST, &why),
            },
            "/-/cache" => match cache::PurgeQuery::parse(query.as_deref()) {
                Ok(q) => match cache::purge(g, &q) {
                    (StatusCode::OK, body) => reply(StatusCode::OK, body),
                    (status, detail) => problem(status, detail.as_str().unwrap_or("")),
                },
                Err(why) => problem(StatusCode::BAD_REQUEST, &why),
            },
            "/-/reload" => match reload_query(query.as_deref()) {
                Ok((force, dry_run)) => {
                    let (status, body) = self.reload(force, dry_run).await;
                    reply(status, body)
                }
                Err(why) => problem(StatusCode::BAD_REQUEST, why),
            },
            _ => problem(StatusCode::NOT_FOUND, "No such admin endpoint."),
        }
    }
}
