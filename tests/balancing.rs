//! Load balancing through the real gateway: weighted round robin,
//! consistent hashing across a reload that removes a backend, and
//! least-requests preferring the idle backend; the upstream keep-alive
//! pool bound.

mod common;

use std::collections::{HashMap, HashSet};

use common::{base_config, client, eventually, Backend, TestGateway};
use serde_json::Value;

async fn backend_of(gw: &TestGateway, path: &str, header: Option<(&str, &str)>) -> String {
    let mut req = client().get(gw.url(path));
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let body: Value = req.send().await.unwrap().json().await.unwrap();
    body["backend"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn weighted_round_robin_distribution() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let config = format!(
        "{}[pools.p]\nbackends = [{{ address = \"{}\", weight = 5 }}, {{ address = \"{}\", weight = 3 }}, {{ address = \"{}\", weight = 2 }}]\nbalance = \"round_robin\"\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
        base_config(),
        a.addr,
        b.addr,
        c.addr
    );
    let gw = TestGateway::start(&config).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        *counts.entry(backend_of(&gw, "/x", None).await).or_default() += 1;
    }
    // Weighted round robin is exact over whole cycles; allow a little slack.
    for (name, expected) in [("a", 500usize), ("b", 300), ("c", 200)] {
        let got = counts.get(name).copied().unwrap_or(0);
        assert!(
            got.abs_diff(expected) <= 20,
            "{name}: got {got}, expected ~{expected}: {counts:?}"
        );
    }
}

#[tokio::test]
async fn consistent_hash_keeps_keys_when_a_backend_leaves() {
    let backends = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let config_with = |bs: &[&Backend]| {
        let list: Vec<String> = bs.iter().map(|b| format!("\"{}\"", b.addr)).collect();
        format!(
            "{}[pools.p]\nbackends = [{}]\nbalance = \"consistent_hash\"\nhash_key = \"header:x-user\"\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
            base_config(),
            list.join(", ")
        )
    };
    let all: Vec<&Backend> = backends.iter().collect();
    let gw = TestGateway::start(&config_with(&all)).await;
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut before = HashMap::new();
    for k in &keys {
        let first = backend_of(&gw, "/", Some(("x-user", k))).await;
        // The same key always lands on the same backend.
        assert_eq!(backend_of(&gw, "/", Some(("x-user", k))).await, first);
        before.insert(k.clone(), first);
    }

    // Remove each backend in turn. Ketama moves only the removed backend's
    // keys; which share that is depends on where its points fall on the
    // ring (the ports are random), so the 70% bar is checked on the mean.
    let mut shares = Vec::new();
    for removed in 0..all.len() {
        let kept: Vec<&Backend> = (0..all.len())
            .filter(|&i| i != removed)
            .map(|i| all[i])
            .collect();
        gw.write_config(&config_with(&kept));
        let (status, body) = gw.reload().await;
        assert_eq!(status, 200, "{body}");
        let gone = &all[removed].name;
        let mut stayed = 0;
        for k in &keys {
            let now = backend_of(&gw, "/", Some(("x-user", k))).await;
            assert_ne!(&now, gone, "removed backend still used");
            if before[k] == now {
                stayed += 1;
            }
        }
        // Minimal remapping: every key not on the removed backend stays.
        let not_on_removed = before.values().filter(|b| *b != gone).count();
        assert_eq!(
            stayed, not_on_removed,
            "keys of other backends moved when {gone} left"
        );
        let share = stayed as f64 / keys.len() as f64;
        assert!(
            share >= 0.55,
            "only {:.0}% of keys stayed when {gone} left",
            share * 100.0
        );
        shares.push(share);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!(
        mean >= 0.70,
        "on average only {:.0}% of keys stayed put",
        mean * 100.0
    );
}

#[tokio::test]
async fn least_requests_prefers_the_idle_backend() {
    let busy = Backend::start("busy").await;
    let idle = Backend::start("idle").await;
    busy.hold(true);
    let config = format!(
        "{}[pools.p]\nbackends = [\"{}\", \"{}\"]\nbalance = \"least_requests\"\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
        base_config(),
        busy.addr,
        idle.addr
    );
    let gw = TestGateway::start(&config).await;
    // Send requests one after another. The first that lands on `busy` hangs
    // there (in flight); from then on every request must go to `idle`.
    let mut pending = Vec::new();
    for _ in 0..30 {
        let url = gw.url("/work");
        let before = busy.hits();
        let task = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
        let idle_hits = idle.hits();
        let (b, i) = (&busy, &idle);
        eventually("request reached a backend", || async move {
            (b.hits() > before || i.hits() > idle_hits).then_some(())
        })
        .await;
        if busy.hits() > before {
            pending.push(task);
        } else {
            assert_eq!(task.await.unwrap().unwrap(), 200);
        }
    }
    // Exactly one in an ideal world; a request arriving while the previous
    // one's bookkeeping is still finishing can see a tie. Round robin or
    // random would send ~15 there.
    assert!(
        busy.hits() >= 1 && busy.hits() <= 3,
        "busy got {}",
        busy.hits()
    );
    assert_eq!(idle.hits() + busy.hits(), 30);
    busy.hold(false);
    for t in pending {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
}

/// `n` requests in flight together (the backend holds them until all have
/// arrived), so each needs its own upstream connection; returns the
/// gateway-side addresses of those connections.
async fn concurrent_round(gw: &TestGateway, backend: &Backend, n: usize) -> HashSet<String> {
    backend.hold(true);
    let before = backend.hits();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = gw.url("/c");
            tokio::spawn(async move { client().get(url).send().await?.json::<Value>().await })
        })
        .collect();
    eventually("all requests reached the backend", || async {
        (backend.hits() >= before + n).then_some(())
    })
    .await;
    backend.hold(false);
    let mut peers = HashSet::new();
    for t in tasks {
        let body = t.await.unwrap().unwrap();
        peers.insert(body["peer"].as_str().unwrap().to_string());
    }
    peers
}

#[tokio::test]
async fn upstream_keepalive_bounds_the_idle_connections_kept() {
    let backend = Backend::start("b").await;
    let config = common::single_route("p", &[backend.addr], "", "").replace(
        "watch_config = false",
        "watch_config = false\nupstream_keepalive = 1",
    );
    let gw = TestGateway::start(&config).await;
    let first = concurrent_round(&gw, &backend, 4).await;
    assert_eq!(first.len(), 4, "four requests in flight, four connections");
    let second = concurrent_round(&gw, &backend, 4).await;
    assert_eq!(second.len(), 4);
    // With the default pool (128) all four would be reused; with one idle
    // connection kept, at most one is.
    let reused = first.intersection(&second).count();
    assert!(
        reused <= 1,
        "{reused} connections reused: {first:?} {second:?}"
    );
}
