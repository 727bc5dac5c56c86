//! Route matching, rewrites, header rules and the 404/405 problem bodies,
//! through the real gateway in front of real backends.

mod common;

use common::{base_config, client, pool, Backend, TestGateway};
use serde_json::Value;

/// One backend per route, so the answering backend names the route that matched.
struct Fixture {
    gw: TestGateway,
    _backends: Vec<Backend>,
}

async fn fixture() -> Fixture {
    let names = [
        "exact-host",
        "wild",
        "any",
        "v1-prefix",
        "v1-exact",
        "v10",
        "root",
        "methods",
        "nomethods",
        "strip",
        "rewrite",
        "headers",
        "deep-wild",
    ];
    let mut backends = Vec::new();
    let mut config = base_config();
    for n in names {
        let b = Backend::start(n).await;
        config.push_str(&pool(n, &[b.addr], ""));
        backends.push(b);
    }
    config.push_str(
        r#"
[[routes]]
id = "exact-host"
hosts = ["api.example.com"]
path = "/svc"
pool = "exact-host"

[[routes]]
id = "wild"
hosts = ["*.example.com"]
path = "/svc"
pool = "wild"

[[routes]]
id = "deep-wild"
hosts = ["*.eu.example.com"]
path = "/svc"
pool = "deep-wild"

[[routes]]
id = "any"
path = "/svc"
pool = "any"

[[routes]]
id = "v1-prefix"
path = "/v1"
pool = "v1-prefix"

[[routes]]
id = "v1-exact"
path = "/v1/status"
path_match = "exact"
pool = "v1-exact"

[[routes]]
id = "v10"
path = "/v10"
pool = "v10"

[[routes]]
id = "root"
path = "/"
pool = "root"

[[routes]]
id = "methods"
path = "/items"
methods = ["POST", "PUT"]
pool = "methods"

[[routes]]
id = "nomethods"
path = "/items"
pool = "nomethods"

[[routes]]
id = "only-get"
path = "/readonly"
methods = ["GET"]
pool = "methods"

[[routes]]
id = "strip"
path = "/strip"
strip_prefix = true
pool = "strip"

[[routes]]
id = "rewrite"
path = "/old"
rewrite_prefix = "/new/api"
pool = "rewrite"

[[routes]]
id = "headers"
path = "/headers"
pool = "headers"
[routes.request_headers]
set = { "x-env" = "test", "x-replaced" = "by-gateway" }
remove = ["x-drop-me"]
[routes.response_headers]
set = { "x-served-by" = "portcullis" }
remove = ["x-internal"]
"#,
    );
    Fixture {
        gw: TestGateway::start(&config).await,
        _backends: backends,
    }
}

async fn get(gw: &TestGateway, host: &str, path: &str) -> (u16, Value) {
    send(gw, "GET", host, path).await
}

async fn send(gw: &TestGateway, method: &str, host: &str, path: &str) -> (u16, Value) {
    let r = client()
        .request(method.parse().unwrap(), gw.url(path))
        .header("host", host)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn backend_for(gw: &TestGateway, host: &str, path: &str) -> String {
    let (status, body) = get(gw, host, path).await;
    assert_eq!(status, 200, "{host}{path}: {body}");
    body["backend"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn host_precedence_exact_then_wildcard_then_any() {
    let f = fixture().await;
    let gw = &f.gw;
    assert_eq!(
        backend_for(gw, "api.example.com", "/svc").await,
        "exact-host"
    );
    assert_eq!(
        backend_for(gw, "API.Example.COM:8080", "/svc").await,
        "exact-host"
    );
    assert_eq!(backend_for(gw, "other.example.com", "/svc").await, "wild");
    assert_eq!(backend_for(gw, "a.b.example.com", "/svc").await, "wild");
    // The longest wildcard suffix wins.
    assert_eq!(
        backend_for(gw, "x.eu.example.com", "/svc").await,
        "deep-wild"
    );
    // The apex is not matched by the wildcard.
    assert_eq!(backend_for(gw, "example.com", "/svc").await, "any");
    assert_eq!(backend_for(gw, "elsewhere.org", "/svc").await, "any");
    // A host tier without a matching path falls through to the next tier.
    assert_eq!(
        backend_for(gw, "api.example.com", "/v1/x").await,
        "v1-prefix"
    );
}

#[tokio::test]
async fn paths_exact_over_prefix_on_segment_boundaries() {
    let f = fixture().await;
    let gw = &f.gw;
    assert_eq!(backend_for(gw, "h", "/v1").await, "v1-prefix");
    assert_eq!(backend_for(gw, "h", "/v1/").await, "v1-prefix");
    assert_eq!(backend_for(gw, "h", "/v1/orders/7").await, "v1-prefix");
    assert_eq!(backend_for(gw, "h", "/v1/status").await, "v1-exact");
    assert_eq!(backend_for(gw, "h", "/v1/status/deeper").await, "v1-prefix");
    assert_eq!(backend_for(gw, "h", "/v10").await, "v10");
    assert_eq!(backend_for(gw, "h", "/v10/x").await, "v10");
    assert_eq!(backend_for(gw, "h", "/v100").await, "root");
    assert_eq!(backend_for(gw, "h", "/anything/else?q=1").await, "root");
}

#[tokio::test]
async fn methods_route_beats_methodless_and_405_lists_allowed() {
    let f = fixture().await;
    let gw = &f.gw;
    let (_, body) = send(gw, "POST", "h", "/items").await;
    assert_eq!(body["backend"], "methods");
    let (_, body) = send(gw, "PUT", "h", "/items/3").await;
    assert_eq!(body["backend"], "methods");
    let (_, body) = send(gw, "GET", "h", "/items").await;
    assert_eq!(body["backend"], "nomethods");

    // `/readonly` is GET-only and nothing else matches it except the root
    // prefix, which takes every method: so POST falls to the root route.
    let (_, body) = send(gw, "POST", "h", "/readonly").await;
    assert_eq!(body["backend"], "root");
}

#[tokio::test]
async fn strip_and_rewrite_prefix_keep_the_query() {
    let f = fixture().await;
    let gw = &f.gw;
    let (_, body) = get(gw, "h", "/strip/users/7?x=1").await;
    assert_eq!(body["path"], "/users/7");
    assert_eq!(body["query"], "x=1");
    let (_, body) = get(gw, "h", "/strip").await;
    assert_eq!(body["path"], "/");
    let (_, body) = get(gw, "h", "/old/thing?a=b").await;
    assert_eq!(body["path"], "/new/api/thing");
    assert_eq!(body["query"], "a=b");
}

#[tokio::test]
async fn header_rules_apply_both_ways() {
    let f = fixture().await;
    let r = client()
        .get(f.gw.url("/headers"))
        .header("x-drop-me", "1")
        .header("x-replaced", "by-client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-served-by"], "portcullis");
    assert!(
        r.headers().get("x-internal").is_none(),
        "response header not removed"
    );
    assert_eq!(r.headers()["x-backend"], "yes");
    let body: Value = r.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(h["x-env"], "test");
    assert_eq!(h["x-replaced"], "by-gateway");
    assert!(
        h.get("x-drop-me").is_none(),
        "request header not removed: {h}"
    );
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let f = fixture().await;
    let gw = &f.gw;
    let r = client()
        .get(gw.url("/headers"))
        .header("host", "shop.example.org")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-123");
    let body: Value = r.json().await.unwrap();
    let h = &body["headers"];
    // From a peer that is not a trusted proxy: replaced.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.org");
    assert_eq!(h["x-request-id"], "client-id-123");
    assert_eq!(h["host"], "shop.example.org");

    // A malformed id is replaced by a generated one, echoed to the client.
    let r = client()
        .get(gw.url("/headers"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(echoed, "bad id with spaces");
    assert_eq!(echoed.len(), 32);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], echoed.as_str());
}

#[tokio::test]
async fn no_route_is_a_404_problem_naming_no_internals() {
    // No root route here, so unknown paths miss.
    let b = Backend::start("only").await;
    let mut config = base_config();
    config.push_str(&pool("internal-pool-name", &[b.addr], ""));
    config.push_str("[[routes]]\nid = \"only\"\npath = \"/only\"\nmethods = [\"GET\"]\npool = \"internal-pool-name\"\n");
    let gw = TestGateway::start(&config).await;

    let r = client().get(gw.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["request_id"], id.as_str());
    assert!(!text.contains("internal-pool-name") && !text.contains(&b.addr.to_string()));

    let r = client().delete(gw.url("/only")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
