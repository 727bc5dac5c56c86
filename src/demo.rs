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

use crate::config::model::{Config, HostPattern};
use crate::server::ExtraServices;

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

/// The curl lines to try, one per route of `config`.
pub fn curl_lines(config: &Config, proxy: SocketAddr) -> Vec<String> {
    config
        .routes
        .iter()
        .map(|r| {
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
            format!(
                "curl -i{method}{host} http://{proxy}{path}    # route {}",
                r.id
            )
        })
        .collect()
}
