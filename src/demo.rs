//! `portcullis demo`: the gateway on a bundled config, with the sample
//! backends that config points at started in the same process, so a fresh
//! machine sees the gateway do its real job with one command.

use std::net::SocketAddr;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use serde_json::json;

use crate::config::model::{
    Balance, Config, HashKey, HostPattern, KeySource, PathMatch, RouteAuth, RouteUpstream,
};
use crate::server::ExtraServices;

/// The demo consumer's API key. Published on purpose: `conf/demo.toml`
/// holds its digest so `make demo` can show a key-protected route. Never
/// use it anywhere else.
pub const DEMO_KEY: &str = "pk_demo-key-published-in-the-readme";

/// A sample backend: answers every request with a JSON description of what
/// it received, so you can see routing, rewrites and added headers.
pub struct SampleBackend {
    pool: String,
    address: SocketAddr,
}

#[async_trait]
impl ServeHttp for SampleBackend {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let body = json!({
            "service": self.pool,
            "instance": self.address.to_string(),
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": req.uri.query(),
            "host": header("host"),
            "x_forwarded_for": header("x-forwarded-for"),
            "x_forwarded_host": header("x-forwarded-host"),
            "x_request_id": header("x-request-id"),
            "x_consumer_id": header("x-consumer-id"),
            "x_api_key": header("x-api-key"),
        });
        let mut body = body.to_string().into_bytes();
        body.push(b'\n');
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let len = resp.body().len();
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(http::header::CONTENT_LENGTH, len.into());
        resp
    }
}

/// One sample backend per distinct backend address of `config`.
pub fn sample_backends(config: &Config) -> ExtraServices {
    let mut seen = std::collections::BTreeSet::new();
    let mut services: ExtraServices = Vec::new();
    for pool in config.pools.values() {
        for b in &pool.backends {
            if !seen.insert(b.address) {
                continue;
            }
            let app = SampleBackend {
                pool: pool.name.clone(),
                address: b.address,
            };
            let mut service = Service::new(format!("demo backend {}", b.address), app);
            service.threads = Some(1);
            service.add_tcp(&b.address.to_string());
            services.push(Box::new(service));
        }
    }
    services
}

/// The `curl` lines `portcullis demo` prints (and the README's quickstart
/// shows, checked by a test): one per route of `config` with what it
/// shows, a key route once without and once with the demo key, a path no
/// route matches, and the admin API.
pub fn try_lines(config: &Config) -> Vec<String> {
    let Some(proxy) = config.listeners.first().map(|l| l.address) else {
        return Vec::new();
    };
    let demo_digest = crate::keys::digest(DEMO_KEY.as_bytes());
    let demo_key_known = config
        .consumers
        .iter()
        .any(|c| c.keys.iter().any(|k| k.digest == demo_digest));
    let mut lines = Vec::new();
    for r in &config.routes {
        let host = match r.hosts.first() {
            Some(HostPattern::Exact(h)) => format!(" -H 'Host: {h}'"),
            Some(HostPattern::Wildcard(s)) => format!(" -H 'Host: demo{s}'"),
            None => String::new(),
        };
        let method = match r.methods.first() {
            Some(m) if m != "GET" => format!(" -X {m}"),
            _ => String::new(),
        };
        let pools = r.upstream.pools();
        let pool = pools.first().and_then(|p| config.pools.get(*p));
        let sticky = match pool.map(|p| &p.balance) {
            Some(Balance::ConsistentHash(HashKey::Cookie(c))) => format!(" -b {c}=alice"),
            Some(Balance::ConsistentHash(HashKey::Header(h))) => format!(" -H '{h}: alice'"),
            _ => String::new(),
        };
        let prefix = r.path.as_str();
        let path = match r.path {
            PathMatch::Exact(_) => prefix.to_string(),
            PathMatch::Prefix(_) if prefix.ends_with('/') => format!("{prefix}hello"),
            PathMatch::Prefix(_) => format!("{prefix}/hello"),
        };
        let mut what = match &r.upstream {
            RouteUpstream::Pool(p) => format!("route {} → pool {p}", r.id),
            RouteUpstream::Split(s) => {
                let sides: Vec<String> = s
                    .sides
                    .iter()
                    .map(|s| format!("{} {}%", s.pool, s.weight))
                    .collect();
                format!("route {} → split {}", r.id, sides.join(", "))
            }
        };
        if r.strip_prefix {
            what.push_str(&format!(", prefix {prefix} stripped"));
        }
        if let Some(to) = &r.rewrite_prefix {
            what.push_str(&format!(", {prefix} rewritten to {to}"));
        }
        if let Some(HostPattern::Wildcard(s)) = r.hosts.first() {
            what.push_str(&format!(", any host *{s}"));
        }
        let url = |query: &str| format!("http://{proxy}{path}{query}");
        if r.auth == RouteAuth::None {
            if !sticky.is_empty() {
                what.push_str(", the same backend for the same session");
            }
            lines.push(format!(
                "curl -i{method}{host}{sticky} {}    # {what}",
                url("")
            ));
            continue;
        }
        lines.push(format!(
            "curl -i{method}{host} {}    # route {}: 401, it needs an API key",
            url(""),
            r.id
        ));
        if !demo_key_known {
            continue;
        }
        let (key, query) = match r.auth.api_key() {
            Some(KeySource::Header(h)) => (format!(" -H '{h}: {DEMO_KEY}'"), String::new()),
            Some(KeySource::Bearer) => (
                format!(" -H 'Authorization: Bearer {DEMO_KEY}'"),
                String::new(),
            ),
            Some(KeySource::Query(q)) => (String::new(), format!("?{q}={DEMO_KEY}")),
            None => continue,
        };
        let limited = if r.rate_limits.is_empty() {
            ""
        } else {
            "; RateLimit headers, loop it for 429"
        };
        lines.push(format!(
            "curl -i{method}{host}{key} {}    # {what}, with the demo key{limited}",
            url(&query)
        ));
    }
    let catch_all = config
        .routes
        .iter()
        .any(|r| r.hosts.is_empty() && r.path.as_str() == "/");
    if !catch_all {
        lines.push(format!(
            "curl -i http://{proxy}/no-such-route    # no route matches: 404 problem+json"
        ));
    }
    let admin = config.admin.address;
    lines.push(format!(
        "curl -s http://{admin}/-/pools    # admin API: backends and their health"
    ));
    lines.push(format!(
        "curl -s http://{admin}/metrics    # Prometheus metrics"
    ));
    lines
}
