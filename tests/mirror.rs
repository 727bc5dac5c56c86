//! `[routes.mirror]` against real backends: the shadow pool gets the
//! request as the backend sees it (key off, consumer on, marked as a
//! mirror, body included up to its bound), a sampled share of it, and
//! nothing it does — hang, refuse connections, answer 500 — delays or
//! changes the real answer; copies beyond `max_in_flight` are dropped and
//! counted; the consumer's usage and the cache see only real requests.

mod common;

use std::time::{Duration, Instant};

use common::flaky::{Flaky, Mode};
use common::{base_config, client, eventually, pool, sample, scrape_until, TestGateway};
use portcullis::keys;

fn config(
    primary: &Flaky,
    shadow: &Flaky,
    dead: std::net::SocketAddr,
    key: &keys::NewKey,
) -> String {
    format!(
        r#"{base}{primary_pool}{shadow_pool}{dead_pool}
[[routes]]
id = "orders"
path = "/orders"
pool = "primary"
auth = "api_key"
[routes.mirror]
pool = "shadow"
include_body = true
max_body_size = "1KiB"

[[routes]]
id = "sampled"
path = "/sampled"
pool = "primary"
[routes.mirror]
pool = "shadow"
percent = 10

[[routes]]
id = "cached"
path = "/cached"
pool = "primary"
[routes.cache]
ttl = "60s"
[routes.mirror]
pool = "shadow"

[[routes]]
id = "hanging"
path = "/hanging"
pool = "primary"
[routes.mirror]
pool = "shadow"
max_in_flight = 2

[[routes]]
id = "refused"
path = "/refused"
pool = "primary"
[routes.mirror]
pool = "dead"

[[consumers]]
id = "acme"
keys = [{entry}]
scopes = [{{ routes = ["*"] }}]
"#,
        base = base_config(),
        primary_pool = pool("primary", &[primary.addr], ""),
        shadow_pool = pool("shadow", &[shadow.addr], "timeouts = { read = \"60s\" }\n"),
        dead_pool = pool("dead", &[dead], ""),
        entry = keys::config_entry(&key.prefix, &key.digest_hex),
    )
}

/// A port nothing listens on.
fn dead_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let method: reqwest::Method = method.parse().unwrap();
    let mut req = client().request(method, gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    if !body.is_empty() {
        req = req.body(body.to_string());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let from = r
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, from)
}

fn mirrored(text: &str, route: &str, result: &str) -> usize {
    sample(
        text,
        &format!(r#"portcullis_mirror_requests_total{{result="{result}",route="{route}"}}"#),
    )
    .unwrap_or(0.0) as usize
}

#[tokio::test]
async fn the_shadow_gets_the_forwarded_request_and_the_client_never_knows() {
    let primary = Flaky::start("primary").await;
    let shadow = Flaky::start("shadow").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(&primary, &shadow, dead_port(), &key)).await;
    // A client's own mirror mark, in both spellings, reaches no backend.
    let auth = [
        ("x-api-key", key.key.as_str()),
        ("content-type", "application/json"),
        ("x-portcullis-mirror", "forged"),
        ("x_portcullis_mirror", "forged"),
    ];

    let (status, from) = send(&gw, "POST", "/orders/7?x=1", &auth, r#"{"qty":2}"#).await;
    assert_eq!((status, from.as_str()), (200, "primary"));
    let copy = eventually("the copy at the shadow", || async {
        shadow.seen().first().cloned()
    })
    .await;
    let real = primary.seen()[0].clone();
    assert!(
        copy.head.starts_with("POST /orders/7?x=1 HTTP/1.1\r\n"),
        "{}",
        copy.head
    );
    assert_eq!(copy.body, br#"{"qty":2}"#);
    assert_eq!(copy.header("content-length").as_deref(), Some("9"));
    assert_eq!(
        copy.header("x-portcullis-mirror").as_deref(),
        Some("orders")
    );
    assert_eq!(
        real.header("x-portcullis-mirror"),
        None,
        "the real request is not marked"
    );
    assert!(
        !real.head.contains("forged") && !copy.head.contains("forged"),
        "{}",
        real.head
    );
    // As the backend saw it: the key never leaves the gateway, the
    // consumer and the request id are the real request's.
    assert!(!copy
        .head
        .to_ascii_lowercase()
        .contains(&key.key.to_ascii_lowercase()));
    assert_eq!(copy.header("x-api-key"), None);
    assert_eq!(copy.header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(copy.header("x-request-id"), real.header("x-request-id"));
    let line = eventually("the access log line", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains(r#""route":"orders""#))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains(r#""mirror":"sent""#), "{line}");

    // A body over max_body_size: the real request goes, the copy does not.
    let big = "x".repeat(2_000);
    assert_eq!(send(&gw, "POST", "/orders/8", &auth, &big).await.0, 200);
    assert_eq!(primary.seen().last().unwrap().body.len(), 2_000);
    // A bodiless request is copied without one.
    assert_eq!(send(&gw, "GET", "/orders/9", &auth, "").await.0, 200);
    let text = scrape_until(
        &gw,
        &[
            r#"portcullis_mirror_requests_total{result="2xx",route="orders"} 2"#,
            r#"portcullis_mirror_requests_total{result="too_large",route="orders"} 1"#,
        ],
    )
    .await;
    assert_eq!(mirrored(&text, "orders", "dropped"), 0);
    let copies = shadow.seen();
    assert_eq!(copies.len(), 2);
    assert!(copies[1].head.starts_with("GET /orders/9 "));
    assert!(copies[1].body.is_empty());
    assert_eq!(copies[1].header("content-length"), None);

    // The consumer's usage counts its 3 real requests, not the copies.
    let (_, usage) = common::get_json(&gw.admin_url("/-/usage?consumer=acme")).await;
    assert_eq!(usage["consumers"][0]["routes"][0]["requests"], 3, "{usage}");

    // percent = 10: about a tenth of 1,000 requests (binomial, σ ≈ 9.5;
    // ±5σ).
    for _ in 0..1_000 {
        assert_eq!(send(&gw, "GET", "/sampled", &[], "").await.0, 200);
    }
    let text = eventually("the sampled copies answered", || async {
        let text = gw.metrics_text().await;
        let sent = sample(
            &text,
            r#"portcullis_mirror_requests_total{result="2xx",route="sampled"}"#,
        )?;
        (shadow.hits() == 2 + sent as usize).then_some(text)
    })
    .await;
    let sent = mirrored(&text, "sampled", "2xx");
    assert!((52..=148).contains(&sent), "{sent} of 1000 copied at 10 %");

    // A cached route: the miss is copied; the hit never reaches a backend,
    // so neither real nor shadow sees it, and the shadow's answer (which
    // would differ) is never what the cache holds.
    let before = (primary.hits(), shadow.hits());
    assert_eq!(
        send(&gw, "GET", "/cached/a", &[], "").await,
        (200, "primary".into())
    );
    assert_eq!(
        send(&gw, "GET", "/cached/a", &[], "").await,
        (200, "primary".into())
    );
    eventually("the miss's copy", || async {
        (shadow.hits() == before.1 + 1).then_some(())
    })
    .await;
    assert_eq!(primary.hits(), before.0 + 1, "the second was a hit");
}

#[tokio::test]
async fn a_hanging_refusing_or_failing_shadow_never_touches_the_real_answer() {
    let primary = Flaky::start("primary").await;
    let shadow = Flaky::start("shadow").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(&primary, &shadow, dead_port(), &key)).await;

    // The shadow reads and never answers (its read timeout is 60 s): two
    // copies wait, every other one is dropped, and every real request is
    // answered at once.
    shadow.set(Mode::Hang);
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(
            send(&gw, "GET", "/hanging", &[], "").await,
            (200, "primary".into())
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the real request waited"
        );
    }
    scrape_until(
        &gw,
        &[r#"portcullis_mirror_requests_total{result="dropped",route="hanging"} 8"#],
    )
    .await;
    eventually("the two copies at the shadow", || async {
        (shadow.hits() == 2).then_some(())
    })
    .await;
    let line = eventually("a dropped copy in the log", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains(r#""mirror":"dropped""#))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains(r#""status":200"#), "{line}");

    // The shadow pool refuses connections: counted as failed.
    for _ in 0..5 {
        assert_eq!(
            send(&gw, "POST", "/refused", &[], "payload").await,
            (200, "primary".into())
        );
    }
    scrape_until(
        &gw,
        &[r#"portcullis_mirror_requests_total{result="failed",route="refused"} 5"#],
    )
    .await;

    // The shadow answers 500: counted; the client still gets the real 200.
    shadow.set(Mode::Status(500));
    let before = shadow.hits();
    // Refused by the gateway (no key): never copied.
    for _ in 0..3 {
        assert_eq!(send(&gw, "GET", "/orders/1", &[], "").await.0, 401);
    }
    let key_auth = [("x-api-key", key.key.as_str())];
    for _ in 0..3 {
        assert_eq!(
            send(&gw, "GET", "/orders/1", &key_auth, "").await,
            (200, "primary".into())
        );
    }
    scrape_until(
        &gw,
        &[r#"portcullis_mirror_requests_total{result="5xx",route="orders"} 3"#],
    )
    .await;
    assert_eq!(
        shadow.hits(),
        before + 3,
        "refused requests are never copied"
    );
    // The shadow pool's failures are not the real pools' business.
    let (_, upstreams) = common::get_json(&gw.admin_url("/-/upstreams")).await;
    let primary_pool = upstreams["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "primary"))
        .cloned()
        .expect("pool primary");
    assert_eq!(primary_pool["usable_backends"], 1);
}
