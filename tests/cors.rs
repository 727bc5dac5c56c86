//! `[routes.cors]` with the header sets a browser sends: a preflight on a
//! key-protected route answered by the gateway (no key, no backend), the
//! actual request's fields echoing one allowed origin, refusals, subdomain
//! patterns, and cached responses that never carry one origin's fields to
//! another.

mod common;

use common::{backend::Backend, client, eventually, sample, TestGateway};
use portcullis::keys;

const APP: &str = "https://app.example.com";

fn config(backend: std::net::SocketAddr, key: &keys::NewKey) -> String {
    format!(
        r#"{base}[pools.p]
backends = [{{ address = "{backend}" }}]

[[routes]]
id = "api"
path = "/api"
methods = ["GET", "POST"]
pool = "p"
auth = "api_key"
[routes.cors]
allow_origins = ["{APP}", "https://*.example.org"]
allow_headers = ["content-type", "x-api-key"]
expose_headers = ["ratelimit", "ratelimit-policy"]
allow_credentials = true
max_age = "10m"

[[routes]]
id = "pub"
path = "/pub"
pool = "p"
[routes.cors]
allow_origins = ["{APP}"]
[routes.cache]
ttl = "60s"

[[routes]]
id = "plain"
path = "/plain"
pool = "p"

[[consumers]]
id = "acme"
keys = [{entry}]
scopes = [{{ routes = ["*"] }}]
"#,
        base = common::base_config(),
        entry = keys::config_entry(&key.prefix, &key.digest_hex),
    )
}

/// What Chromium sends on a cross-site `fetch` (besides `Host`).
fn browser(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.to_string()),
        ("referer", format!("{origin}/orders")),
        ("sec-fetch-mode", "cors".into()),
        ("sec-fetch-site", "cross-site".into()),
        ("sec-fetch-dest", "empty".into()),
        ("accept", "*/*".into()),
        ("accept-language", "en-GB,en;q=0.9".into()),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into(),
        ),
    ]
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().request(method.parse().unwrap(), gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn varies_on_origin(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin"))
}

#[tokio::test]
async fn preflights_are_answered_by_the_gateway_and_actual_responses_echo_one_origin() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(backend.addr, &key)).await;

    // The preflight of `fetch(url, {method: "POST", headers: {"content-type":
    // "application/json", "x-api-key": …}, credentials: "include"})`: no key
    // on it, and none needed.
    let mut preflight = browser(APP);
    preflight.push(("access-control-request-method", "POST".into()));
    preflight.push((
        "access-control-request-headers",
        "content-type,x-api-key".into(),
    ));
    let (status, headers, body) = send(&gw, "OPTIONS", "/api/orders", &preflight).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        h(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        h(&headers, "access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        h(&headers, "access-control-allow-headers"),
        Some("content-type, x-api-key")
    );
    assert_eq!(h(&headers, "access-control-max-age"), Some("600"));
    assert!(varies_on_origin(&headers));
    assert_eq!(backend.hits(), 0, "a preflight reached the backend");

    // Refused preflights: another origin, a method or a header not
    // allowed; a 403 problem with no CORS fields.
    for (origin, method, asked) in [
        ("https://evil.example", "POST", "content-type"),
        (APP, "DELETE", "content-type"),
        (APP, "POST", "content-type,x-debug"),
        ("null", "GET", ""),
    ] {
        let mut headers = browser(origin);
        headers.push(("access-control-request-method", method.into()));
        if !asked.is_empty() {
            headers.push(("access-control-request-headers", asked.into()));
        }
        let (status, got, body) = send(&gw, "OPTIONS", "/api/orders", &headers).await;
        assert_eq!(status, 403, "{origin} {method} {asked}: {body}");
        assert_eq!(h(&got, "content-type"), Some("application/problem+json"));
        assert!(h(&got, "access-control-allow-origin").is_none(), "{origin}");
    }
    assert_eq!(backend.hits(), 0);

    // The actual request: one origin echoed, credentials, exposed fields.
    let mut actual = browser(APP);
    actual.push(("x-api-key", key.key.clone()));
    actual.push(("content-type", "application/json".into()));
    let (status, headers, _) = send(&gw, "POST", "/api/orders", &actual).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        h(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        h(&headers, "access-control-expose-headers"),
        Some("ratelimit, ratelimit-policy")
    );
    assert!(varies_on_origin(&headers));
    // A subdomain pattern.
    let mut sub = browser("https://shop.eu.example.org");
    sub.push(("x-api-key", key.key.clone()));
    let (_, headers, _) = send(&gw, "GET", "/api/orders", &sub).await;
    assert_eq!(
        h(&headers, "access-control-allow-origin"),
        Some("https://shop.eu.example.org")
    );
    // The gateway's own 401 is readable by the allowed origin.
    let (status, headers, _) = send(&gw, "GET", "/api/orders", &browser(APP)).await;
    assert_eq!(status, 401);
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    // Another origin: served (CORS is the browser's to enforce) without
    // any CORS field.
    let mut evil = browser("https://evil.example");
    evil.push(("x-api-key", key.key.clone()));
    let (status, headers, _) = send(&gw, "GET", "/api/orders", &evil).await;
    assert_eq!(status, 200);
    assert!(h(&headers, "access-control-allow-origin").is_none());
    assert!(varies_on_origin(&headers));

    // A route without CORS: OPTIONS is a request like any other.
    let mut options = browser(APP);
    options.push(("access-control-request-method", "GET".into()));
    let before = backend.hits();
    let (status, headers, _) = send(&gw, "OPTIONS", "/plain", &options).await;
    assert_eq!(status, 200);
    assert!(h(&headers, "access-control-allow-origin").is_none());
    assert_eq!(backend.hits(), before + 1);

    // Counted and logged.
    let text = gw.metrics_text().await;
    let count = |r: &str| {
        sample(
            &text,
            &format!("portcullis_cors_requests_total{{result=\"{r}\",route=\"api\"}}"),
        )
    };
    assert_eq!(count("preflight"), Some(1.0), "{text}");
    assert_eq!(count("preflight_refused"), Some(4.0));
    assert_eq!(count("allowed"), Some(3.0));
    assert_eq!(count("origin_refused"), Some(1.0));
    let preflight_line = eventually("the preflight's log line", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains("\"method\":\"OPTIONS\"") && l.contains("\"status\":204"))
            .map(str::to_string)
    })
    .await;
    assert!(
        preflight_line.contains("\"cors\":\"preflight\""),
        "{preflight_line}"
    );
}

/// The fields are added after the cache: a response stored for one
/// origin is served to every other with its own fields, or none.
#[tokio::test]
async fn cached_responses_carry_only_the_asking_origins_fields() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(backend.addr, &key)).await;
    let (status, headers, first) = send(&gw, "GET", "/pub/x", &browser(APP)).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    assert!(
        h(&headers, "cache-status").is_some_and(|c| c.contains("stored")),
        "{headers:?}"
    );

    let (_, headers, body) = send(&gw, "GET", "/pub/x", &browser("https://evil.example")).await;
    assert!(
        h(&headers, "cache-status").is_some_and(|c| c.contains("hit")),
        "{headers:?}"
    );
    assert_eq!(body, first);
    assert!(
        h(&headers, "access-control-allow-origin").is_none(),
        "{headers:?}"
    );
    assert!(varies_on_origin(&headers));

    let (_, headers, _) = send(&gw, "GET", "/pub/x", &[]).await;
    assert!(h(&headers, "cache-status").is_some_and(|c| c.contains("hit")));
    assert!(h(&headers, "access-control-allow-origin").is_none());

    let (_, headers, _) = send(&gw, "GET", "/pub/x", &browser(APP)).await;
    assert!(h(&headers, "cache-status").is_some_and(|c| c.contains("hit")));
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(backend.hits(), 1);
}
