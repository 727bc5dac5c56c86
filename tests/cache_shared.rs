//! `[cache.shared] kind = "redis"`: two real gateway processes sharing a
//! real `redis-server`. A miss on one is a hit on the other, consumers
//! stay apart, large bodies stay local, purges and invalidations reach
//! both tiers of every instance, and a Redis outage degrades to the local
//! tier without failing a request.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{backend::Backend, client, eventually, sample, TestGateway};
use portcullis::keys;

struct Got {
    status: u16,
    cache: String,
    body: String,
}

/// The `Host` every request names: instances behind one balancer see the
/// same one (the listeners' ports differ here).
const HOST: &str = "api.test";

async fn get(gw: &TestGateway, path: &str, key: Option<&str>) -> Got {
    let mut req = client().get(gw.url(path)).header("host", HOST);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Got {
        status,
        cache,
        body: r.text().await.unwrap_or_default(),
    }
}

fn config(backend: std::net::SocketAddr, redis: &RedisServer, consumers: &str) -> String {
    format!(
        r#"{base}[cache.shared]
kind = "redis"
url = "{url}"
# Generous for a loaded test machine; the default is 20ms.
timeout = "2s"
max_object_size = "2KiB"

[pools.p]
backends = [{{ address = "{backend}" }}]

[[routes]]
id = "open"
path = "/o"
pool = "p"
[routes.cache]
ttl = "60s"

[[routes]]
id = "keyed"
path = "/k"
pool = "p"
auth = "api_key"
[routes.cache]
ttl = "60s"

{consumers}
"#,
        base = common::base_config(),
        url = redis.url(),
    )
}

async fn two(config: &str) -> (TestGateway, TestGateway) {
    (
        TestGateway::start(config).await,
        TestGateway::start(config).await,
    )
}

#[tokio::test]
async fn a_miss_on_one_instance_is_a_hit_on_the_other_and_purges_reach_both() {
    let redis = RedisServer::start();
    let backend = Backend::start("b").await;
    let (alice, bob) = (keys::generate().unwrap(), keys::generate().unwrap());
    let consumers = format!(
        "[[consumers]]\nid = \"alice\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n\n[[consumers]]\nid = \"bob\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        keys::config_entry(&alice.prefix, &alice.digest_hex),
        keys::config_entry(&bob.prefix, &bob.digest_hex),
    );
    let (a, b) = two(&config(backend.addr, &redis, &consumers)).await;

    // Stored by A (local and Redis), found by B in Redis: the origin is
    // asked once, and B serves A's very response.
    let first = get(&a, "/o/1", None).await;
    assert_eq!(first.status, 200);
    assert_eq!(backend.hits(), 1);
    let stores = r#"portcullis_cache_shared_stores_total{result="stored"}"#;
    common::scrape_until(&a, &[format!("{stores} 1")]).await;
    let second = get(&b, "/o/1", None).await;
    assert!(second.cache.contains("hit"), "{}", second.cache);
    assert_eq!(second.body, first.body);
    assert_eq!(backend.hits(), 1, "B went to the origin");
    let text = b.metrics_text().await;
    let lookups = |r: &str| format!("portcullis_cache_shared_lookups_total{{result=\"{r}\"}}");
    assert_eq!(sample(&text, &lookups("hit")), Some(1.0), "{text}");
    assert_eq!(sample(&text, "portcullis_cache_shared_up"), Some(1.0));

    // Per-consumer entries stay per consumer across instances.
    let alices = get(&a, "/k/1", Some(&alice.key)).await;
    assert_eq!(alices.status, 200);
    assert_eq!(backend.hits(), 2);
    let bobs = get(&b, "/k/1", Some(&bob.key)).await;
    assert!(!bobs.cache.contains("; hit"), "{}", bobs.cache);
    assert_eq!(backend.hits(), 3, "bob must not get alice's entry");
    assert!(
        bobs.body.contains("bob") && !bobs.body.contains("alice"),
        "{}",
        bobs.body
    );
    common::scrape_until(&a, &[format!("{stores} 2")]).await;
    let alice_on_b = get(&b, "/k/1", Some(&alice.key)).await;
    assert!(alice_on_b.cache.contains("hit"), "{}", alice_on_b.cache);
    assert_eq!(alice_on_b.body, alices.body);
    assert_eq!(backend.hits(), 3);
    // Without a key: refused before the cache, on either instance.
    assert_eq!(get(&b, "/k/1", None).await.status, 401);

    // A body over [cache.shared] max_object_size stays in the local tier.
    let big = format!("/o/big?q={}", "x".repeat(3000));
    get(&a, &big, None).await;
    let hits = backend.hits();
    assert!(get(&a, &big, None).await.cache.contains("hit"));
    let too_large = r#"portcullis_cache_shared_stores_total{result="too_large"}"#;
    assert_eq!(sample(&a.metrics_text().await, too_large), Some(1.0));
    get(&b, &big, None).await;
    assert_eq!(
        backend.hits(),
        hits + 1,
        "B had to fetch the large body itself"
    );

    // A purge on A: gone from A, from Redis, and (through the purge
    // channel) from B's local tier.
    let purged = client()
        .delete(a.admin_url("/-/cache?route=open&path=%2Fo%2F1"))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let before = backend.hits();
    let refetched = eventually("B's copy of /o/1 purged", || async {
        let got = get(&b, "/o/1", None).await;
        (!got.cache.contains("; hit")).then_some(got)
    })
    .await;
    assert_ne!(refetched.body, first.body);
    assert_eq!(backend.hits(), before + 1);
    // B's new copy is in Redis for A, whose own copy was purged.
    common::scrape_until(&b, &[format!("{stores} 2")]).await;
    let on_a = get(&a, "/o/1", None).await;
    assert!(on_a.cache.contains("hit"), "{}", on_a.cache);
    assert_eq!(on_a.body, refetched.body);

    // An unsafe method through B invalidates the URL everywhere too.
    let posted = client()
        .post(b.url("/o/1"))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let before = backend.hits();
    eventually("A's copy of /o/1 invalidated", || async {
        let got = get(&a, "/o/1", None).await;
        (!got.cache.contains("; hit")).then_some(())
    })
    .await;
    assert_eq!(backend.hits(), before + 1);

    // A purge of the whole route reaches Redis even for objects this
    // instance never held: B stored /o/2, A purges the route, and A's
    // lookup in Redis finds nothing.
    get(&b, "/o/2", None).await;
    common::scrape_until(&b, &[format!("{stores} 3")]).await;
    let r = client()
        .delete(a.admin_url("/-/cache?route=open"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = backend.hits();
    let got = get(&a, "/o/2", None).await;
    assert!(!got.cache.contains("; hit"), "{}", got.cache);
    assert_eq!(backend.hits(), before + 1);
}

#[tokio::test]
async fn a_redis_outage_degrades_to_the_local_tier_and_recovers() {
    let mut redis = RedisServer::start();
    let backend = Backend::start("b").await;
    let (a, b) = two(&config(backend.addr, &redis, "")).await;
    assert!(get(&a, "/o/warm", None).await.status == 200);
    redis.kill();

    // Every request is answered, within the timeout, from the local tier
    // or the origin.
    for i in 0..5 {
        let started = Instant::now();
        let got = get(&a, &format!("/o/down{i}"), None).await;
        assert_eq!(got.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let again = get(&a, &format!("/o/down{i}"), None).await;
        assert!(again.cache.contains("hit"), "local tier: {}", again.cache);
    }
    assert!(get(&a, "/o/warm", None).await.cache.contains("hit"));
    let text = a.metrics_text().await;
    assert_eq!(
        sample(&text, "portcullis_cache_shared_up"),
        Some(0.0),
        "{text}"
    );
    let errors = r#"portcullis_cache_shared_lookups_total{result="error"}"#;
    assert!(sample(&text, errors).unwrap_or(0.0) >= 1.0, "{text}");

    // Redis back (empty): the tier is used again, with no restart.
    redis.restart();
    // A's write to Redis is in the background: wait until it is counted
    // (stored, or failed while the breaker was still open) before B looks.
    let settled = |text: &str| {
        let n = |r: &str| {
            sample(
                text,
                &format!("portcullis_cache_shared_stores_total{{result=\"{r}\"}}"),
            )
            .unwrap_or(0.0)
        };
        n("stored") + n("error")
    };
    let mut n = 0;
    eventually("a hit through Redis after it came back", || {
        n += 1;
        let path = format!("/o/back{n}");
        let (a, b) = (&a, &b);
        async move {
            let before = settled(&a.metrics_text().await);
            get(a, &path, None).await;
            common::eventually_within(Duration::from_secs(10), "A's write settled", || async {
                (settled(&a.metrics_text().await) > before).then_some(())
            })
            .await;
            let got = get(b, &path, None).await;
            got.cache.contains("hit").then_some(())
        }
    })
    .await;
    assert_eq!(
        sample(&b.metrics_text().await, "portcullis_cache_shared_up"),
        Some(1.0)
    );
}
