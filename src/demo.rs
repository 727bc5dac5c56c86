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

use crate::config::model::{Config, HostPattern, KeySource, RouteAuth};
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

/// The curl lines to try, one per route of `config`; key routes get the
/// demo key when a consumer of `config` holds it.
pub fn curl_lines(config: &Config, proxy: SocketAddr) -> Vec<String> {
    let demo_digest = crate::auth::keys::digest(DEMO_KEY.as_bytes());
    let demo_key_known = config
        .consumers
        .iter()
        .any(|c| c.keys.iter().any(|k| k.digest == demo_digest));
    config
        .routes
        .iter()
        .map(|r| {
            let key = match (&r.auth, demo_key_known) {
                (RouteAuth::ApiKey(KeySource::Header(h)), true) => format!(" -H '{h}: {DEMO_KEY}'"),
                (RouteAuth::ApiKey(KeySource::Bearer), true) => {
                    format!(" -H 'Authorization: Bearer {DEMO_KEY}'")
                }
                _ => String::new(),
            };
            let host = match r.hosts.first() {
                Some(HostPattern::Exact(h)) => format!(" -H 'Host: {h}'"),
                Some(HostPattern::Wildcard(s)) => format!(" -H 'Host: demo{s}'"),
                None => String::new(),
            };
            let method = match r.methods.first() {
                Some(m) if m != "GET" => format!(" -X {m}"),
                _ => String::new(),
            };
            let path = r.path.as_str();
            let sample = if path.ends_with('/') {
                format!("{path}hello")
            } else {
                format!("{path}/hello")
            };
            let path = match r.path {
                crate::config::model::PathMatch::Exact(_) => path.to_string(),
                crate::config::model::PathMatch::Prefix(_) => sample,
            };
            let query = match (&r.auth, demo_key_known) {
                (RouteAuth::ApiKey(KeySource::Query(q)), true) => format!("?{q}={DEMO_KEY}"),
                _ => String::new(),
            };
            format!(
                "curl -i{method}{host}{key} http://{proxy}{path}{query}    # route {}",
                r.id
            )
        })
        .collect()
}
