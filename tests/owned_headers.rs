//! Identity and forwarding headers a client can forge: the consumer and
//! client-subject headers (in either spelling), `Forwarded`, `X-Real-IP`,
//! `True-Client-IP`, `X-Original-URL`, `X-Forwarded-Prefix` never reach
//! the backend from a client, on HTTP/1.1 and HTTP/2; header names with
//! `_` are dropped, refused or allowed as configured; `X-Forwarded-For`
//! keeps its append behaviour. The echo backend answers with the headers
//! it received.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use common::backend::Backend;
use common::{raw_http1, single_route, TestGateway};
use h2raw::H2Gateway;
use serde_json::Value;

/// What a hostile client sends beside its request.
const FORGED: &[(&str, &str)] = &[
    ("X-Consumer-Id", "admin"),
    ("X_Consumer_Id", "admin"),
    ("X-Client-Cert-Subject", "CN=admin"),
    ("X_Client_Cert_Subject", "CN=admin"),
    ("Forwarded", "for=10.0.0.1;host=evil.example;proto=https"),
    ("X-Real-IP", "10.0.0.1"),
    ("True-Client-IP", "10.0.0.1"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X_Forwarded_Host", "evil.example"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("X_Custom", "kept?"),
    ("X-Custom", "kept"),
];

/// The headers the backend received, from the echo body.
fn received(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"].clone()
}

fn assert_nothing_forged_passed(headers: &Value) {
    let names: Vec<&str> = headers
        .as_object()
        .expect("headers")
        .keys()
        .map(String::as_str)
        .collect();
    for forged in [
        "x-consumer-id",
        "x_consumer_id",
        "x-client-cert-subject",
        "x_client_cert_subject",
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x_forwarded_host",
        "x_forwarded_for",
    ] {
        assert!(
            !names.contains(&forged),
            "{forged} reached the backend: {headers}"
        );
    }
    // No trusted proxies: the client's chain is replaced, not extended.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_ne!(headers["x-forwarded-host"], "evil.example", "{headers}");
    assert_eq!(headers["x-custom"], "kept", "{headers}");
}

fn with_client(config: &str, lines: &str) -> String {
    config.replacen(
        "watch_config = false\n",
        &format!("watch_config = false\n[server.client]\n{lines}\n"),
        1,
    )
}

async fn raw_request(gw: &TestGateway, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = format!(
        "GET /x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        gw.proxy
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_http1(gw.proxy, req.as_bytes()).await
}

#[tokio::test]
async fn forged_identity_and_forwarding_headers_never_reach_the_backend_over_http1() {
    let backend = Backend::start("b").await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let (status, head, body) = raw_request(&gw, FORGED).await;
    assert_eq!(status, 200, "{head}");
    let headers = received(&body);
    assert_nothing_forged_passed(&headers);
    assert!(
        headers.get("x_custom").is_none(),
        "dropped by default: {headers}"
    );
}

#[tokio::test]
async fn forged_identity_and_forwarding_headers_never_reach_the_backend_over_http2() {
    let backend = Backend::start("b").await;
    let gw = H2Gateway::start_config(&single_route("p", &[backend.addr], "", "")).await;
    let lower: Vec<(String, &str)> = FORGED
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), *v))
        .collect();
    let fields: Vec<(&str, &str)> = lower.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let (status, body) = gw.request("GET", "/x", &fields).await.expect("h2 request");
    assert_eq!(status, 200, "{body}");
    let headers = received(&body);
    assert_nothing_forged_passed(&headers);
    assert!(headers.get("x_custom").is_none(), "{headers}");
}

/// Hop-by-hop request fields (RFC 9110 §7.6.1), the standard ones, those
/// `Connection` names and repeated ones, end at the gateway; the fields
/// around them reach the backend unchanged.
#[tokio::test]
async fn hop_by_hop_request_fields_end_at_the_gateway() {
    let backend = Backend::start("b").await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let request = format!(
        "GET /x HTTP/1.1\r\nHost: {}\r\nConnection: close, X-Private-Hop\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTE: gzip\r\n\
         Trailer: X-Trailer\r\nProxy-Authorization: Basic c2VjcmV0\r\nX-Private-Hop: secret\r\n\
         X-Before: 1\r\nX-After: 2\r\n\r\n",
        gw.proxy
    );
    let (status, head, body) = raw_http1(gw.proxy, request.as_bytes()).await;
    assert_eq!(status, 200, "{head}");
    let headers = received(&body);
    for hop in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "x-private-hop",
        "upgrade",
        "http2-settings",
    ] {
        assert!(
            headers.get(hop).is_none(),
            "{hop} reached the backend: {headers}"
        );
    }
    // The gateway's own connection to the backend says nothing of the client's.
    let connection = headers.get("connection").and_then(Value::as_str);
    assert!(
        !connection
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("x-private-hop"),
        "{headers}"
    );
    assert_eq!(headers["x-before"], "1", "{headers}");
    assert_eq!(headers["x-after"], "2", "{headers}");
}

#[tokio::test]
async fn underscore_names_are_refused_or_allowed_when_configured() {
    let backend = Backend::start("b").await;
    let config = single_route("p", &[backend.addr], "", "");
    let reject = TestGateway::start(&with_client(
        &config,
        "headers_with_underscores = \"reject\"",
    ))
    .await;
    let answer = raw_request(&reject, &[("X_Custom", "1")]).await;
    common::assert_problem(&answer, 400, "underscores are refused (x_custom)");
    assert_eq!(backend.hits(), 0);
    assert_eq!(raw_request(&reject, &[("X-Custom", "1")]).await.0, 200);

    let allow = TestGateway::start(&with_client(
        &config,
        "headers_with_underscores = \"allow\"",
    ))
    .await;
    let (status, _, body) = raw_request(&allow, FORGED).await;
    assert_eq!(status, 200);
    let headers = received(&body);
    assert_nothing_forged_passed(&headers);
    assert_eq!(headers["x_custom"], "kept?", "allowed: {headers}");
}

/// A response that reflects what the client claimed (`Forwarded:
/// host=…`) must never be stored for everyone: the claim never reaches
/// the origin.
#[tokio::test]
async fn a_cached_response_never_reflects_a_forged_forwarded_header() {
    let backend = Backend::start("b").await;
    let config = format!(
        "{}[cache]\nmax_size = \"1MiB\"\n\n[routes.cache]\nttl = \"60s\"\n",
        single_route("p", &[backend.addr], "", "")
    );
    let gw = TestGateway::start(&config).await;
    let (_, _, poisoned) = raw_request(&gw, &[("Forwarded", "host=evil.example")]).await;
    assert!(!poisoned.contains("evil.example"), "{poisoned}");
    let (_, head, later) = raw_request(&gw, &[]).await;
    assert!(head.contains("cache-status: portcullis; hit"), "{head}");
    assert!(!later.contains("evil.example"), "{later}");
}
