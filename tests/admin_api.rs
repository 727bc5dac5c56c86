//! The admin API against its OpenAPI document (`docs/admin-api.openapi.json`),
//! the admin token, readiness, the effective config, upstreams, usage per
//! consumer, and the version lifecycle of routes.

mod common;

use std::net::SocketAddr;

use common::{base_config, client, eventually, pool, Backend, TestGateway};
use portcullis::keys;
use serde_json::{json, Value};

const TOKEN: &str = "admin-secret-token-for-tests";

fn openapi() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/admin-api.openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The errors of `body` against the schema the document gives for
/// `status` of `method path` (`content_type` must be the one documented).
fn check(doc: &Value, path: &str, method: &str, status: u16, content_type: &str, body: &str) {
    let op = &doc["paths"][path][method];
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {path} answered {status}, which the document does not list: {body}"
    );
    let content = &resp["content"];
    let media = content_type.split(';').next().unwrap();
    let (documented, media_doc) = content
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.split(';').next().unwrap() == media)
        .unwrap_or_else(|| {
            panic!("{method} {path} {status}: undocumented content type {content_type}")
        });
    assert!(documented.starts_with(media));
    let schema = &media_doc["schema"];
    if media != "application/json" && media != "application/problem+json" {
        assert_eq!(schema["type"], "string");
        return;
    }
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let instance: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its schema: {errors:?}\n{instance:#}"
    );
}

struct Setup {
    gw: TestGateway,
    key: keys::NewKey,
    dead: SocketAddr,
    _backend: Backend,
}

/// A gateway with the admin token set, a key-protected route with a quota,
/// a deprecated route, a retired one, and a pool with a dead backend.
async fn setup() -> Setup {
    let backend = Backend::start("b").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key = keys::generate().unwrap();
    let token_digest = keys::hex(&keys::digest(TOKEN.as_bytes()));
    let config = format!(
        r#"{base}{p}{d}
[[routes]]
id = "v1"
path = "/v1"
pool = "p"
auth = "api_key"
deprecation = 2025-01-01T00:00:00Z
sunset = 2099-01-01T00:00:00Z
deprecation_link = "https://example.com/migrate-to-v2"
rate_limits = [{{ rate = "3/m", per = "consumer" }}]

[[routes]]
id = "v2"
path = "/v2"
pool = "p"
auth = "api_key"

[[routes]]
id = "v0"
path = "/v0"
pool = "p"
sunset = 2020-01-01T00:00:00Z
sunset_action = "gone"

[[routes]]
id = "admin-only"
path = "/internal"
pool = "p"
auth = "api_key"

[[routes]]
id = "flaky"
path = "/flaky"
pool = "dead"

[[consumers]]
id = "acme"
keys = [{entry}]
scopes = [{{ routes = ["v1", "v2"] }}]
quota = {{ day = 1000 }}
"#,
        base = base_config().replacen(
            "[admin]\naddress = \"127.0.0.1:0\"",
            &format!("[admin]\naddress = \"127.0.0.1:0\"\ntoken_digest = \"{token_digest}\""),
            1
        ),
        p = pool("p", &[backend.addr], ""),
        d = pool(
            "dead",
            &[dead],
            "max_in_flight = 10\n[pools.dead.outlier]\n[pools.dead.breaker]\n[pools.dead.retry_budget]\n"
        ),
        entry = keys::config_entry(&key.prefix, &key.digest_hex),
    );
    let gw = TestGateway::start(&config).await;
    Setup {
        gw,
        key,
        dead,
        _backend: backend,
    }
}

/// `method url` with the admin token: (status, content type, body).
async fn admin(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let c = client();
    let mut req = c.request(method.parse().unwrap(), gw.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn every_endpoint_answers_as_its_openapi_document_says() {
    let s = setup().await;
    let c = client();
    // Some traffic, so that usage, upstreams and metrics have content.
    for path in ["/v1/a", "/v2/b", "/internal"] {
        c.get(s.gw.url(path))
            .header("x-api-key", &s.key.key)
            .send()
            .await
            .unwrap();
    }
    c.get(s.gw.url("/flaky")).send().await.unwrap();
    eventually("the refusal counted in usage", || async {
        let (_, _, body) = admin(&s.gw, "GET", "/-/usage", Some(TOKEN)).await;
        body.contains("out_of_scope").then_some(())
    })
    .await;

    let doc = openapi();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 11);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let m = method.to_uppercase();
            // Purge needs a target; a tag purges nothing here.
            let target = match path.as_str() {
                "/-/cache" => "/-/cache?tag=none".to_string(),
                p => p.to_string(),
            };
            let (status, ct, body) = admin(&s.gw, &m, &target, Some(TOKEN)).await;
            assert_eq!(status, 200, "{m} {path}: {body}");
            check(&doc, path, method, status, &ct, &body);
            // Without the token: 401 where the document says so, else open.
            let (status, ct, body) = admin(&s.gw, &m, &target, None).await;
            let open = op["security"] == json!([]);
            assert_eq!(
                status,
                if open { 200 } else { 401 },
                "{m} {path} without token"
            );
            check(&doc, path, method, status, &ct, &body);
            // A wrong token is no better than none.
            if !open {
                let (status, _, _) = admin(&s.gw, &m, &target, Some("wrong")).await;
                assert_eq!(status, 401);
            }
        }
    }
    // Errors: bad usage filter (400), rejected reload (422), wrong method
    // (405 with Allow), unknown path (404): all problem+json.
    let (status, ct, body) = admin(&s.gw, "GET", "/-/usage?colour=red", Some(TOKEN)).await;
    assert_eq!(status, 400);
    check(&doc, "/-/usage", "get", status, &ct, &body);
    for (query, want) in [("", 400), ("?route=nope", 404), ("?path=/a", 400)] {
        let url = format!("/-/cache{query}");
        let (status, ct, body) = admin(&s.gw, "DELETE", &url, Some(TOKEN)).await;
        assert_eq!(status, want, "{url}: {body}");
        check(&doc, "/-/cache", "delete", status, &ct, &body);
    }
    // A dry run answers in the reload's form, and a bad parameter is a 400.
    for query in ["?dry_run=true", "?dry_run=true&force=false"] {
        let url = format!("/-/reload{query}");
        let (status, ct, body) = admin(&s.gw, "POST", &url, Some(TOKEN)).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            body.contains("\"dry_run\":true") && body.contains("\"config_file\":\"/"),
            "{body}"
        );
        check(&doc, "/-/reload", "post", status, &ct, &body);
    }
    for query in ["?dry_run=yes", "?force=true&force=true", "?colour=red"] {
        let url = format!("/-/reload{query}");
        let (status, ct, body) = admin(&s.gw, "POST", &url, Some(TOKEN)).await;
        assert_eq!(status, 400, "{url}: {body}");
        check(&doc, "/-/reload", "post", status, &ct, &body);
    }
    std::fs::write(&s.gw.config_path, "[[routes]\n").unwrap();
    let (status, ct, body) = admin(&s.gw, "POST", "/-/reload", Some(TOKEN)).await;
    assert_eq!(status, 422);
    check(&doc, "/-/reload", "post", status, &ct, &body);
    let r = c
        .delete(s.gw.admin_url("/-/usage"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (status, ct, _) = admin(&s.gw, "GET", "/-/nothing", Some(TOKEN)).await;
    assert_eq!((status, ct.as_str()), (404, "application/problem+json"));
}

#[tokio::test]
async fn config_is_effective_and_redacted_and_upstreams_show_the_last_error() {
    let s = setup().await;
    let (status, _, text) = admin(&s.gw, "GET", "/-/config", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let token_digest = keys::hex(&keys::digest(TOKEN.as_bytes()));
    assert!(!text.contains(&token_digest), "{text}");
    assert!(!text.contains(&s.key.digest_hex) && !text.contains(&s.key.key));
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["admin"]["token_digest"], "<redacted>");
    assert_eq!(config["consumers"][0]["keys"][0]["prefix"], s.key.prefix);
    // Defaults applied: the pool's connect timeout, the server settings.
    assert!(
        config["pools"]["p"]["timeouts"]["connect"].is_string(),
        "{config:#}"
    );
    assert!(config["server"]["threads"].as_u64().unwrap() >= 1);
    assert_eq!(
        config["routes"][0]["lifecycle"]["link"],
        "https://example.com/migrate-to-v2"
    );

    let r = client().get(s.gw.url("/flaky")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let (_, _, text) = admin(&s.gw, "GET", "/-/upstreams", Some(TOKEN)).await;
    let upstreams: Value = serde_json::from_str(&text).unwrap();
    let dead = upstreams["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dead")
        .unwrap();
    let backend = &dead["backends"][0];
    assert_eq!(backend["address"], s.dead.to_string());
    assert_eq!(backend["last_error"]["reason"], "connect", "{backend}");
    assert!(backend["last_error"]["at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        backend["recent_failures"][0]["kind"], "connect",
        "{backend}"
    );
    assert_eq!(backend["consecutive_failures"], 1);
    assert_eq!(dead["breaker"]["state"], "closed", "{dead}");
    assert_eq!(dead["breaker"]["window_failures"], 1);
    assert_eq!(dead["retry_budget"]["window_requests"], 1);
    let live = upstreams["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p")
        .unwrap();
    assert!(live["backends"][0]["last_error"].is_null());
    assert_eq!(live["healthy_backends"], 1);
}

#[tokio::test]
async fn readyz_is_ready_once_every_listener_accepts() {
    let s = setup().await;
    let (status, _, text) = admin(&s.gw, "GET", "/readyz", None).await;
    assert_eq!(status, 200, "{text}");
    let ready: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ready["listeners"][0], s.gw.proxy.to_string());
}

#[tokio::test]
async fn usage_answers_who_still_calls_a_deprecated_route_and_survives_reload() {
    let s = setup().await;
    let c = client();
    let call = |path: &'static str| {
        let (c, url, key) = (c.clone(), s.gw.url(path), s.key.key.clone());
        async move {
            c.get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // v1: 3 allowed by its rate limit, then 429.
    for want in [200, 200, 200, 429] {
        assert_eq!(call("/v1/x").await, want);
    }
    assert_eq!(call("/v2/x").await, 200);
    // Out of acme's scope: 403, counted as a refusal.
    assert_eq!(call("/internal").await, 403);
    let usage = |q: &'static str| {
        let gw = &s.gw;
        async move {
            let (status, _, body) = admin(gw, "GET", &format!("/-/usage{q}"), Some(TOKEN)).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let all = eventually("6 requests in acme's usage", || async {
        let u = usage("").await;
        let total: u64 = u["consumers"][0]["routes"]
            .as_array()?
            .iter()
            .map(|r| r["requests"].as_u64().unwrap_or(0))
            .sum();
        (total == 6).then_some(u)
    })
    .await;
    let acme = &all["consumers"][0];
    assert_eq!(acme["id"], "acme");
    let route = |u: &Value, id: &str| {
        u["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let v1 = route(acme, "v1");
    assert_eq!(v1["requests"], 4);
    assert_eq!(v1["refused"], json!({ "rate_limited": 1 }));
    assert_eq!(v1["deprecation"], 1_735_689_600);
    assert!(v1["last_seen"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        route(acme, "admin-only")["refused"],
        json!({ "out_of_scope": 1 })
    );
    // The daily quota counted the 4 admitted requests (not the refusals).
    assert_eq!(acme["quotas"][0]["used"], 4, "{acme}");
    assert_eq!(acme["quotas"][0]["limit"], 1000);

    // "Who still calls v1?": only deprecated routes.
    let deprecated = usage("?deprecated=true").await;
    let routes = deprecated["consumers"][0]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["route"], "v1");

    // A reload that keeps acme and v1 keeps the counts; a route that
    // leaves takes its cells with it.
    let text = std::fs::read_to_string(&s.gw.config_path).unwrap();
    let without_v2 = text.replace(
        "[[routes]]\nid = \"v2\"\npath = \"/v2\"\npool = \"p\"\nauth = \"api_key\"\n",
        "",
    );
    assert_ne!(text, without_v2);
    s.gw.write_config(&without_v2.replace("[\"v1\", \"v2\"]", "[\"v1\"]"));
    let (status, _, body) = admin(&s.gw, "POST", "/-/reload", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let after = usage("?consumer=acme").await;
    assert_eq!(route(&after["consumers"][0], "v1")["requests"], 4);
    assert!(route(&after["consumers"][0], "v2").is_null(), "{after}");
    assert!(!serde_json::to_string(&after).unwrap().contains(&s.key.key));
}

#[tokio::test]
async fn deprecated_routes_send_lifecycle_headers_and_retired_ones_answer_410() {
    let s = setup().await;
    let c = client();
    let r = c
        .get(s.gw.url("/v1/x"))
        .header("x-api-key", &s.key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["deprecation"], "@1735689600");
    assert_eq!(r.headers()["sunset"], "Thu, 01 Jan 2099 00:00:00 GMT");
    assert_eq!(
        r.headers()["link"],
        "<https://example.com/migrate-to-v2>; rel=\"deprecation\"; type=\"text/html\""
    );
    // A route without a lifecycle has none of them.
    let r = c
        .get(s.gw.url("/v2/x"))
        .header("x-api-key", &s.key.key)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("deprecation").is_none() && r.headers().get("sunset").is_none());
    // Past its sunset with sunset_action = "gone": 410, never forwarded.
    let r = c.get(s.gw.url("/v0/x")).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["sunset"], "Wed, 01 Jan 2020 00:00:00 GMT");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 410);
}

/// One admin request over raw HTTP/1.1 with the given `Host` and header
/// lines: the status.
async fn admin_raw(gw: &TestGateway, method: &str, path: &str, host: &str, lines: &str) -> u16 {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    common::raw_http1(gw.admin, req.as_bytes()).await.0
}

/// DNS rebinding and cross-site requests: only IP-literal, `localhost`
/// and configured `Host` names are answered; a browser's cross-site
/// write (foreign `Origin`, a form content type) is refused even on a
/// loopback admin API without a token; the read-only token reads only.
#[tokio::test]
async fn the_admin_api_refuses_rebinding_cross_site_writes_and_read_only_writes() {
    let backend = Backend::start("b").await;
    let open = TestGateway::start(&common::single_route("p", &[backend.addr], "", "")).await;
    let here = open.admin.to_string();
    assert_eq!(admin_raw(&open, "GET", "/-/routes", &here, "").await, 200);
    assert_eq!(
        admin_raw(&open, "GET", "/-/routes", "localhost", "").await,
        200
    );
    assert_eq!(
        admin_raw(&open, "GET", "/-/routes", "rebind.evil.example:9180", "").await,
        421
    );
    assert_eq!(
        admin_raw(&open, "GET", "/healthz", "rebind.evil.example", "").await,
        200
    );
    assert_eq!(admin_raw(&open, "POST", "/-/reload", &here, "").await, 200);
    for forged in [
        "Origin: http://evil.example\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: text/plain\r\n",
    ] {
        assert_eq!(
            admin_raw(&open, "POST", "/-/reload", &here, forged).await,
            403,
            "{forged}"
        );
        assert_eq!(
            admin_raw(&open, "DELETE", "/-/cache?route=r", &here, forged).await,
            403,
            "{forged}"
        );
    }

    let read = "read-only-token-for-tests";
    let config = common::single_route("p", &[backend.addr], "", "").replacen(
        "[admin]\naddress = \"127.0.0.1:0\"",
        &format!(
            "[admin]\naddress = \"127.0.0.1:0\"\ntoken_digest = \"{}\"\nread_token_digest = \"{}\"\nhosts = [\"admin.test\"]",
            keys::hex(&keys::digest(TOKEN.as_bytes())),
            keys::hex(&keys::digest(read.as_bytes()))
        ),
        1,
    );
    let gw = TestGateway::start(&config).await;
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        admin_raw(&gw, "GET", "/metrics", "admin.test", &bearer(read)).await,
        200
    );
    assert_eq!(
        admin_raw(&gw, "GET", "/metrics", "other.test", &bearer(TOKEN)).await,
        421
    );
    assert_eq!(
        admin_raw(&gw, "GET", "/-/consumers", "admin.test", "").await,
        401
    );
    assert_eq!(
        admin_raw(&gw, "POST", "/-/reload", "admin.test", &bearer(read)).await,
        403
    );
    assert_eq!(
        admin_raw(&gw, "POST", "/-/reload", "admin.test", &bearer(TOKEN)).await,
        200
    );
    let forged = format!("{}Origin: http://evil.example\r\n", bearer(TOKEN));
    assert_eq!(
        admin_raw(&gw, "POST", "/-/reload", "admin.test", &forged).await,
        403
    );
}

/// `check` refuses an admin API on a non-loopback address without a
/// token, and says why; an explicit opt-out is accepted.
#[test]
fn check_refuses_an_exposed_admin_api_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let exposed = common::base_config()
        .replacen("[admin]\naddress = \"127.0.0.1:0\"", "[admin]\naddress = \"0.0.0.0:19180\"", 1)
        + "[pools.p]\nbackends = [{ address = \"127.0.0.1:1\" }]\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n";
    std::fs::write(&file, &exposed).unwrap();
    let (code, _, err) = common::run_cli(&["check", file.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("0.0.0.0:19180 is not loopback and the admin API has no token"),
        "{err}"
    );
    let opted_out = exposed.replacen(
        "0.0.0.0:19180\"",
        "0.0.0.0:19180\"\nallow_unauthenticated = true",
        1,
    );
    std::fs::write(&file, &opted_out).unwrap();
    let (code, _, err) = common::run_cli(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
}
