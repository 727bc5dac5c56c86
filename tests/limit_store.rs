//! The shared limit store through real gateway processes and a real
//! `redis-server` on loopback: a quota exact across three gateways, an
//! exact rate limit, an approximate one within its published bound, and
//! Redis killed and restarted under `on_error` = deny, local and allow.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{base_config, client, eventually, pool, sample, Backend, TestGateway};
use portcullis::keys;

/// A consumer key: (the key, its config entry).
fn key() -> (String, String) {
    let k = keys::generate().expect("rng");
    let entry = format!(
        "{{ prefix = \"{}\", digest = \"{}\" }}",
        k.prefix, k.digest_hex
    );
    (k.key, entry)
}

/// A config with `[limit_store]` = `store`, routes `/q` (key-protected;
/// the consumer `acme` with `consumer_extra`) and `/r` (open, `route_extra`).
fn config(
    backend: &Backend,
    store: &str,
    key_entry: &str,
    consumer_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        r#"{}{}
[limit_store]
{store}

[[routes]]
id = "q"
path = "/q"
pool = "p"
auth = "api_key"

[[routes]]
id = "r"
path = "/r"
pool = "p"
{route_extra}

[[consumers]]
id = "acme"
keys = [{key_entry}]
scopes = [{{ routes = ["q"] }}]
{consumer_extra}
"#,
        base_config(),
        pool("p", &[backend.addr], ""),
    )
}

/// Send `n` requests to `path` spread over `gateways`, `concurrency` at a
/// time: the statuses.
async fn spread(
    gateways: &[&TestGateway],
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
    concurrency: usize,
) -> Vec<u16> {
    let urls: Vec<String> = gateways.iter().map(|g| g.url(path)).collect();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (urls, headers, next) = (urls.clone(), headers.clone(), next.clone());
            tokio::spawn(async move {
                let c = client();
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    let mut req = c.get(&urls[i % urls.len()]);
                    for (a, b) in &headers {
                        req = req.header(a, b);
                    }
                    out.push(req.send().await.expect("request").status().as_u16());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

/// Three gateway processes on `config`.
async fn three(config: &str) -> [TestGateway; 3] {
    [
        TestGateway::start(config).await,
        TestGateway::start(config).await,
        TestGateway::start(config).await,
    ]
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_and_an_exact_limit_are_exact_across_three_gateways() {
    let secret = "s3cret-not-in-any-log";
    let redis = RedisServer::start_with_password(Some(secret));
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("redis.pass");
    std::fs::write(&password_file, format!("{secret}\n")).expect("write");
    let (api_key, entry) = key();
    let store = format!(
        "kind = \"redis\"\nurl = \"{}\"\npassword_file = \"{}\"\ntimeout = \"2s\"\non_error = \"deny\"",
        redis.url(),
        password_file.display()
    );
    let config = config(
        &backend,
        &store,
        &entry,
        "quota = { day = 30 }",
        "rate_limits = [{ rate = \"7/m\", per = \"route\", accuracy = \"exact\" }]",
    );
    let gateways = three(&config).await;
    let gws: Vec<&TestGateway> = gateways.iter().collect();

    // 90 calls for a quota of 30, 12 at a time over three instances.
    let statuses = spread(&gws, "/q", &[("x-api-key", &api_key)], 90, 12).await;
    assert_eq!(count(&statuses, 200), 30, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 60, "{statuses:?}");
    // And no more later, on any of them.
    for gw in &gateways {
        let r = client()
            .get(gw.url("/q"))
            .header("x-api-key", &api_key)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 429);
        let body: serde_json::Value = r.json().await.expect("problem");
        assert_eq!(body["limit"], "daily-quota");
    }

    // An exact rate limit: 7 a minute for everyone, whichever instance.
    let statuses = spread(&gws, "/r", &[], 30, 6).await;
    assert_eq!(count(&statuses, 200), 7, "{statuses:?}");

    // Keys carry a hash tag, so a quota's period keys share a slot.
    let keys = redis
        .command(&["KEYS", "portcullis:*"])
        .expect("redis answers");
    assert!(keys.contains("portcullis:{quota:acme:day|*}:"), "{keys}");
    assert!(
        keys.contains("portcullis:{route:r:route:7/60000ms:7|*}"),
        "{keys}"
    );

    // The store is up; the password appears nowhere.
    for gw in &gateways {
        let text = gw.metrics_text().await;
        assert_eq!(sample(&text, "portcullis_limit_store_up"), Some(1.0));
        assert!(!text.contains(secret));
        assert!(!gw.logs().contains(secret) && !gw.stdout().contains(secret));
        let (_, running) = common::get_json(&gw.admin_url("/-/config")).await;
        assert!(!running.to_string().contains(secret), "{running}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approximate_rate_limit_stays_within_its_published_bound() {
    let redis = RedisServer::start();
    let backend = Backend::start("b").await;
    let (_, entry) = key();
    // 100/s with a burst of 100, batches every 100 ms: an allowance of 10
    // requests per instance between batches.
    let store = format!(
        "kind = \"redis\"\nurl = \"{}\"\ntimeout = \"2s\"\nsync_interval = \"100ms\"\naccuracy = \"approximate\"",
        redis.url()
    );
    let config = config(
        &backend,
        &store,
        &entry,
        "",
        "rate_limits = [{ rate = \"100/s\", burst = 100, per = \"route\" }]",
    );
    let gateways = three(&config).await;
    let gws: Vec<&TestGateway> = gateways.iter().collect();
    let start = Instant::now();
    let statuses = spread(&gws, "/r", &[], 900, 24).await;
    let elapsed = start.elapsed().as_secs_f64();
    let passed = count(&statuses, 200) as f64;
    let refused = count(&statuses, 429);
    eprintln!("passed {passed} refused {refused} in {elapsed:.2}s");
    // The published bound: burst + rate × elapsed + instances × allowance.
    let bound = 100.0 + 100.0 * elapsed + 3.0 * 10.0;
    assert!(
        passed <= bound,
        "{passed} passed in {elapsed:.2}s, over the bound {bound:.0}"
    );
    assert!(passed >= 100.0, "the burst passes: {passed}");
    assert_eq!(passed as usize + refused, 900, "only 200 or 429");
    // Per-instance counting would have let (almost) all through.
    assert!(refused > 0, "the limit refused nothing in {elapsed:.2}s");
    // The batches reached Redis.
    let synced: f64 = {
        let mut total = 0.0;
        for gw in &gateways {
            let text = gw.metrics_text().await;
            total += sample(&text, "portcullis_limit_store_synced_requests_total").unwrap_or(0.0);
        }
        total
    };
    assert!(synced > 0.0);
}

/// `/r` status and whether it carried `RateLimit`.
async fn get_r(gw: &TestGateway) -> (u16, bool, Option<String>) {
    let r = client().get(gw.url("/r")).send().await.expect("request");
    let limited = r.headers().contains_key("ratelimit");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), limited, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_follows_on_error_and_recovery_needs_no_restart() {
    let mut redis = RedisServer::start();
    let backend = Backend::start("b").await;
    let (_, entry) = key();
    let gateway = |on_error: &str, prefix: &str| {
        config(
            &backend,
            &format!(
                "kind = \"redis\"\nurl = \"{}\"\ntimeout = \"200ms\"\non_error = \"{on_error}\"\ninstances = 2\nkey_prefix = \"{prefix}\"",
                redis.url()
            ),
            &entry,
            "",
            "rate_limits = [{ rate = \"4/m\", per = \"route\" }]",
        )
    };
    let deny = TestGateway::start(&gateway("deny", "d:")).await;
    let local = TestGateway::start(&gateway("local", "l:")).await;
    let allow = TestGateway::start(&gateway("allow", "a:")).await;
    for gw in [&deny, &local, &allow] {
        let (status, limited, _) = get_r(gw).await;
        assert_eq!((status, limited), (200, true));
    }

    redis.kill();

    // deny: 503 problem with Retry-After, answered within the timeout.
    let started = Instant::now();
    let (status, _, retry) = get_r(&deny).await;
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // local: the limit divided by instances (4/m over 2: 2 each).
    let mut local_statuses = Vec::new();
    for _ in 0..4 {
        local_statuses.push(get_r(&local).await.0);
    }
    assert_eq!(local_statuses, [200, 200, 429, 429]);
    // allow: everything passes, with no RateLimit it cannot know.
    for _ in 0..6 {
        assert_eq!(get_r(&allow).await.0, 200);
    }
    assert!(
        !get_r(&allow).await.1,
        "no RateLimit while nothing is known"
    );

    let text = deny.metrics_text().await;
    assert_eq!(sample(&text, "portcullis_limit_store_up"), Some(0.0));
    assert!(
        sample(
            &text,
            r#"portcullis_limit_store_fallbacks_total{on_error="deny"}"#
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let errors = sample(
        &text,
        r#"portcullis_limit_store_errors_total{reason="error"}"#,
    )
    .unwrap_or(0.0)
        + sample(
            &text,
            r#"portcullis_limit_store_errors_total{reason="timeout"}"#,
        )
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{text}");

    // Back, empty: each gateway recovers by itself.
    redis.restart();
    eventually("the deny gateway passes again", || async {
        (get_r(&deny).await.0 == 200).then_some(())
    })
    .await;
    eventually("the allow gateway counts again", || async {
        get_r(&allow).await.1.then_some(())
    })
    .await;
    let text = deny.metrics_text().await;
    assert_eq!(sample(&text, "portcullis_limit_store_up"), Some(1.0));
}

/// `rediss://` with `ca_file`: the gateway checks the server's
/// certificate against the file, and limits are counted over TLS; a CA
/// that did not sign the server's certificate leaves the store
/// unreachable (`on_error = "deny"`: 503).
#[tokio::test]
async fn a_rediss_store_is_checked_against_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, cert: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let c = dir.path().join(format!("{name}.pem"));
        let k = dir.path().join(format!("{name}.key"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    };
    let (cert, cert_key) = write(
        "redis",
        &rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap(),
    );
    let (other, _) = write(
        "other",
        &rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap(),
    );
    let redis = RedisServer::start_tls(&cert, &cert_key);
    let backend = Backend::start("b").await;
    let (_, entry) = key();
    let limit =
        "rate_limits = [{ rate = \"3/m\", burst = 3, per = \"route\", accuracy = \"exact\" }]";
    let store = |ca: &std::path::Path| {
        format!(
            "kind = \"redis\"\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"2s\"\non_error = \"deny\"\nkey_prefix = \"{}:\"",
            redis.tls_url(),
            ca.display(),
            ca.file_stem().unwrap().to_string_lossy()
        )
    };
    let gw = TestGateway::start(&config(&backend, &store(&cert), &entry, "", limit)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            client()
                .get(gw.url("/r"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Counted in Redis (read on its plain port).
    let keys = redis.command(&["KEYS", "redis:*"]).unwrap_or_default();
    assert!(keys.contains("redis:{"), "{keys}");

    let wrong = TestGateway::start(&config(&backend, &store(&other), &entry, "", limit)).await;
    let r = client().get(wrong.url("/r")).send().await.unwrap();
    assert_eq!(
        r.status(),
        503,
        "a Redis whose certificate the CA did not sign was used"
    );
    let text = wrong.metrics_text().await;
    assert_eq!(
        sample(&text, "portcullis_limit_store_up"),
        Some(0.0),
        "{text}"
    );
}
