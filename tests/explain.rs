//! `explain` and the gateway decide with the same code: one table of
//! requests goes through `portcullis::explain` (with counters of its own)
//! and, in the same order, through a running gateway on the same config;
//! the answers must agree, for every status the decision can give —
//! 200, 400 (head rules, underscores), 401, 403 (scope, `[routes.ip]`), 404, 405, 410, 413,
//! 414, 429 (a limit per client IP, then failed-attempt damping), 501 and
//! 508.

mod common;

use common::{raw_http1, Backend, TestGateway};
use pingora_http::RequestHeader;
use portcullis::clock::{Clock, SystemClock};
use portcullis::decide::Arrival;
use portcullis::keys;
use portcullis::ratelimit::LocalStore;

const VIA: &str = "edge-test";

fn config(backend: std::net::SocketAddr, key: &keys::NewKey) -> String {
    format!(
        r#"[server]
watch_config = false
via = "{VIA}"

[server.client]
max_uri_length = 64
headers_with_underscores = "reject"

[[listeners]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[auth.failed_attempts]
rate = "2/m"
burst = 2

[pools.p]
backends = ["{backend}"]

[[routes]]
id = "open"
path = "/open"
methods = ["GET"]
pool = "p"

[[routes]]
id = "keyed"
path = "/keyed"
pool = "p"
auth = "api_key"

[[routes]]
id = "other"
path = "/other"
pool = "p"
auth = "api_key"

[[routes]]
id = "limited"
path = "/limited"
pool = "p"
rate_limits = [{{ rate = "1/m", burst = 1, per = "client_ip" }}]

[[routes]]
id = "small"
path = "/small"
pool = "p"
max_body_size = "10"

[[routes]]
id = "walled"
path = "/walled"
pool = "p"
[routes.ip]
deny = ["127.0.0.0/8", "::1"]

[[routes]]
id = "retired"
path = "/retired"
pool = "p"
deprecation = 2020-01-01
sunset = 2020-06-01
sunset_action = "gone"

[[consumers]]
id = "acme"
keys = [{}]
scopes = [{{ routes = ["keyed"] }}]
"#,
        keys::config_entry(&key.prefix, &key.digest_hex)
    )
}

/// A request: method, target, version and headers, as both sides get it.
fn request(method: &str, target: &str, http10: bool, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, target.as_bytes(), None).unwrap();
    if http10 {
        req.set_version(http::Version::HTTP_10);
    }
    for (n, v) in headers {
        req.append_header(n.to_string(), *v).unwrap();
    }
    req.append_header("connection", "close").unwrap();
    req
}

/// The bytes an HTTP/1.x client sends for `req` (no body).
fn wire(req: &RequestHeader) -> Vec<u8> {
    let version = if req.version == http::Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let mut out = format!(
        "{} {} {version}\r\n",
        req.method,
        String::from_utf8_lossy(req.raw_path())
    );
    for (n, v) in req.headers.iter() {
        out += &format!("{n}: {}\r\n", v.to_str().unwrap());
    }
    out += "\r\n";
    out.into_bytes()
}

#[tokio::test]
async fn explain_and_the_gateway_answer_a_table_of_requests_alike() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(backend.addr, &key)).await;
    let prepared = portcullis::reload::prepare_detached(&gw.config_path).expect("valid config");
    let store = LocalStore::new(1024);
    let arrival = Arrival {
        ip: Some("127.0.0.1".parse().unwrap()),
        tls: false,
        redirect_https: None,
        roll: 0,
    };
    let h = |v: &'static str| ("host", v);
    let k = key.key.clone();
    let long = format!("/open/{}", "x".repeat(80));
    let looped = format!("1.1 {VIA}");
    #[rustfmt::skip]
    let table: Vec<(RequestHeader, u16)> = vec![
        (request("GET", "/open/x", false, &[h("a")]), 200),
        (request("GET", "/open/./y/../x", false, &[h("a")]), 200),
        (request("DELETE", "/open", false, &[h("a")]), 405),
        (request("GET", "/nowhere", false, &[h("a")]), 404),
        (request("GET", "/open", false, &[]), 400),
        (request("GET", "/open", true, &[]), 200),
        (request("GET", "/open", false, &[h("a"), ("x_debug", "1")]), 400),
        (request("GET", &long, false, &[h("a")]), 414),
        (request("POST", "/open", false, &[h("a"), ("transfer-encoding", "gzip, chunked")]), 501),
        (request("GET", "/open", false, &[h("a"), ("via", &looped)]), 508),
        (request("GET", "/keyed", false, &[h("a")]), 401),
        (request("GET", "/keyed", false, &[h("a"), ("x-api-key", &k)]), 200),
        (request("GET", "/open/../keyed", false, &[h("a"), ("x-api-key", &k)]), 200),
        (request("GET", "/other", false, &[h("a"), ("x-api-key", &k)]), 403),
        (request("GET", "/limited", false, &[h("a")]), 200),
        (request("GET", "/limited", false, &[h("a")]), 429),
        (request("POST", "/small", false, &[h("a"), ("content-length", "11")]), 413),
        (request("POST", "/small", false, &[h("a"), ("content-length", "0")]), 200),
        (request("GET", "/retired", false, &[h("a")]), 410),
        (request("GET", "/walled", false, &[h("a")]), 403),
        // Two unknown keys use up the damping burst; then even a valid key
        // from this address gets 429.
        (request("GET", "/keyed", false, &[h("a"), ("x-api-key", "pk_nope.wrong")]), 401),
        (request("GET", "/keyed", false, &[h("a"), ("x-api-key", "pk_nope.wrong")]), 401),
        (request("GET", "/keyed", false, &[h("a"), ("x-api-key", &k)]), 429),
    ];
    let mut disagreements = Vec::new();
    for (req, expected) in &table {
        let now = SystemClock.now_nanos();
        let explained =
            portcullis::explain::explain(&prepared.snapshot, req, &arrival, now, &store).await;
        let (live, head, body) = raw_http1(gw.proxy, &wire(req)).await;
        let said = explained.refused.unwrap_or(200);
        let line = String::from_utf8_lossy(&wire(req))
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if said != live || live != *expected {
            disagreements.push(format!(
                "{line} (+{} headers): explain {said}, gateway {live}, expected {expected}\n{}{head}\n{body}",
                req.headers.len(),
                explained.text
            ));
        }
        // A 429 names its limit alike on both sides.
        if live == 429 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["limit"].as_str(),
                explained.limit.as_deref(),
                "{line}: {body}"
            );
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
    // `explain` says which rule refused the address.
    let walled = request("GET", "/walled", false, &[h("a")]);
    let now = SystemClock.now_nanos();
    let text = portcullis::explain::explain(&prepared.snapshot, &walled, &arrival, now, &store)
        .await
        .text;
    assert!(
        text.contains("deny 127.0.0.0/8, ::1/128: client 127.0.0.1 refused (403)"),
        "{text}"
    );
}
