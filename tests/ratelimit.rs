//! Rate limits, quotas and brute-force damping through the real gateway.
//!
//! Limits here are per minute or per day, so a refill (20 s or more) never
//! happens during a test: the counts are exact without any clock. Timing
//! tolerance is tested in the engine's unit tests with explicit time.

mod common;

use common::{base_config, client, pool, Backend, TestGateway};
use portcullis::keys;
use serde_json::Value;

struct Key {
    key: String,
    entry: String,
}

fn new_key() -> Key {
    let k = keys::generate().expect("rng");
    Key {
        entry: keys::config_entry(&k.prefix, &k.digest_hex),
        key: k.key,
    }
}

fn consumer(id: &str, key: &Key, extra: &str) -> String {
    format!(
        "\n[[consumers]]\nid = \"{id}\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n{extra}\n",
        key.entry
    )
}

async fn get(
    gw: &TestGateway,
    path: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(gw.url(path));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(Value::Null))
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn anonymous_route_limited_per_client_ip_with_headers() {
    let backend = Backend::start("b").await;
    let config = format!(
        "{}{}[[routes]]\nid = \"open\"\npath = \"/\"\npool = \"p\"\nrate_limits = [{{ rate = \"2/m\", per = \"client_ip\" }}]\n",
        base_config(),
        pool("p", &[backend.addr], "")
    );
    let gw = TestGateway::start(&config).await;
    let (status, h, _) = get(&gw, "/", None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "ratelimit-policy"), "\"route-ip\";q=2;w=60");
    assert!(
        header(&h, "ratelimit").starts_with("\"route-ip\";r=1;t="),
        "{h:?}"
    );
    let (status, h, _) = get(&gw, "/", None).await;
    assert_eq!(status, 200);
    assert!(
        header(&h, "ratelimit").starts_with("\"route-ip\";r=0;t="),
        "{h:?}"
    );

    let (status, h, body) = get(&gw, "/", None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(header(&h, "content-type"), "application/problem+json");
    let retry: u64 = header(&h, "retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(header(&h, "ratelimit-policy"), "\"route-ip\";q=2;w=60");
    assert_eq!(body["limit"], "route-ip");
    assert_eq!(
        body["detail"],
        "rate limit \"route-ip\": 2 requests per minute, burst 2."
    );
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn consumer_limits_quotas_and_per_consumer_route_limits() {
    let backend = Backend::start("b").await;
    let (a, b, c) = (new_key(), new_key(), new_key());
    let config = format!(
        r#"{}{}
[[routes]]
id = "search"
path = "/search"
pool = "p"
auth = "api_key"
tags = ["expensive"]
rate_limits = [{{ rate = "2/m", per = "consumer" }}]

[[routes]]
id = "other"
path = "/other"
pool = "p"
auth = "api_key"
{}{}{}"#,
        base_config(),
        pool("p", &[backend.addr], ""),
        consumer("a", &a, ""),
        consumer("b", &b, "quota = { day = 3 }"),
        consumer(
            "c",
            &c,
            "rate_limits = [{ rate = \"1/m\", tags = [\"expensive\"] }]"
        ),
    );
    let gw = TestGateway::start(&config).await;

    // The route's per-consumer limit counts each consumer apart.
    assert_eq!(get(&gw, "/search", Some(&a.key)).await.0, 200);
    assert_eq!(get(&gw, "/search", Some(&a.key)).await.0, 200);
    let (status, _, body) = get(&gw, "/search", Some(&a.key)).await;
    assert_eq!(status, 429);
    assert_eq!(body["limit"], "route-consumer");
    assert_eq!(get(&gw, "/other", Some(&a.key)).await.0, 200);

    // b's daily quota: 3 requests over every route, then 429 naming it.
    assert_eq!(get(&gw, "/search", Some(&b.key)).await.0, 200);
    let (status, h, _) = get(&gw, "/other", Some(&b.key)).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "ratelimit-policy"),
        "\"daily-quota\";q=3;w=86400"
    );
    assert!(
        header(&h, "ratelimit").starts_with("\"daily-quota\";r=1;t="),
        "{h:?}"
    );
    assert_eq!(get(&gw, "/other", Some(&b.key)).await.0, 200);
    let (status, h, body) = get(&gw, "/other", Some(&b.key)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["limit"], "daily-quota");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("daily quota of 3 requests exhausted"),
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    let retry: u64 = header(&h, "retry-after").parse().unwrap();
    assert!(retry.abs_diff(to_midnight) <= 2, "{retry} vs {to_midnight}");

    // c's own limit on routes tagged "expensive", on top of the route's.
    let (status, h, _) = get(&gw, "/search", Some(&c.key)).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "ratelimit-policy"),
        "\"route-consumer\";q=2;w=60, \"consumer-route\";q=1;w=60"
    );
    let (status, _, body) = get(&gw, "/search", Some(&c.key)).await;
    assert_eq!(status, 429);
    assert_eq!(body["limit"], "consumer-route");
    assert_eq!(get(&gw, "/other", Some(&c.key)).await.0, 200);
}

#[tokio::test]
async fn repeated_invalid_keys_from_one_address_are_damped() {
    let backend = Backend::start("b").await;
    let good = new_key();
    let config = format!(
        r#"{}{}
[auth.failed_attempts]
rate = "3/m"

[[routes]]
id = "keyed"
path = "/keyed"
pool = "p"
auth = "api_key"

[[routes]]
id = "open"
path = "/open"
pool = "p"
{}"#,
        base_config(),
        pool("p", &[backend.addr], ""),
        consumer("a", &good, ""),
    );
    let gw = TestGateway::start(&config).await;
    // A missing key is not a guess: never damped.
    for _ in 0..5 {
        assert_eq!(get(&gw, "/keyed", None).await.0, 401);
    }
    for i in 0..3 {
        let (status, _, _) = get(&gw, "/keyed", Some(&format!("pk_guess{i}"))).await;
        assert_eq!(status, 401, "guess {i}");
    }
    // From now on this address is refused before its key is looked at.
    let (status, h, body) = get(&gw, "/keyed", Some(&good.key)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["limit"], "failed-attempts");
    assert!(header(&h, "retry-after").parse::<u64>().unwrap() >= 1);
    // Routes without keys are not affected.
    assert_eq!(get(&gw, "/open", None).await.0, 200);
}

#[tokio::test]
async fn reload_changing_one_consumer_keeps_the_others_counters() {
    let backend = Backend::start("b").await;
    let (a, b) = (new_key(), new_key());
    let config = |b_rate: &str| {
        format!(
            "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\nauth = \"api_key\"\n{}{}",
            base_config(),
            pool("p", &[backend.addr], ""),
            consumer("a", &a, "rate_limits = [{ rate = \"3/m\" }]"),
            consumer(
                "b",
                &b,
                &format!("rate_limits = [{{ rate = \"{b_rate}\" }}]")
            ),
        )
    };
    let gw = TestGateway::start(&config("3/m")).await;
    for _ in 0..2 {
        assert_eq!(get(&gw, "/", Some(&a.key)).await.0, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&gw, "/", Some(&b.key)).await.0, 200);
    }
    assert_eq!(get(&gw, "/", Some(&b.key)).await.0, 429);

    gw.write_config(&config("5/m"));
    assert_eq!(gw.reload().await.0, 200);
    // b's limit changed: a fresh counter of 5.
    for i in 0..5 {
        assert_eq!(get(&gw, "/", Some(&b.key)).await.0, 200, "b request {i}");
    }
    assert_eq!(get(&gw, "/", Some(&b.key)).await.0, 429);
    // a's did not: one request left of its 3.
    assert_eq!(get(&gw, "/", Some(&a.key)).await.0, 200);
    assert_eq!(get(&gw, "/", Some(&a.key)).await.0, 429);
}
