//! Upstream failures: retry on connect refused, 502 and 504 mapping, each
//! with a problem+json body.

mod common;

use common::{client, single_route, Backend, TestGateway};
use serde_json::Value;

/// An address nothing listens on: bind a port, then close it.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn connect_refused_is_retried_on_another_backend() {
    let live = Backend::start("live").await;
    let dead = dead_addr();
    let config = single_route("p", &[dead, live.addr], "retries = 1", "");
    let gw = TestGateway::start(&config).await;
    for _ in 0..20 {
        let r = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "round robin hit the dead backend and was not retried"
        );
    }
    assert_eq!(live.hits(), 20);
    // Every request that met the dead backend first was retried, once.
    let metrics = gw.metrics_text().await;
    let retries: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"portcullis_upstream_retries_total{pool="p",reason="connect"} "#)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no connect retries in:\n{metrics}"));
    assert!((10..=20).contains(&retries), "{retries} retries");
    // The pool leaves the config: its series are no longer exported.
    gw.write_config(&single_route("q", &[live.addr], "", ""));
    assert_eq!(gw.reload().await.0, 200);
    let metrics = gw.metrics_text().await;
    assert!(!metrics.contains(r#"pool="p""#), "{metrics}");
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let b = Backend::start("b").await;
    let config = single_route("p", &[b.addr], "", "");
    let gw = TestGateway::start(&config).await;
    let mut peers = std::collections::BTreeSet::new();
    for _ in 0..30 {
        // A new client connection each time: reuse must come from the gateway's pool.
        let c = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let body: Value = c
            .get(gw.url("/x"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        peers.insert(body["peer"].as_str().unwrap().to_string());
    }
    assert!(
        peers.len() <= 2,
        "30 sequential requests used {} upstream connections",
        peers.len()
    );
}

#[tokio::test]
async fn refused_without_retry_budget_is_502_problem() {
    let dead = dead_addr();
    let config = single_route("p", &[dead], "retries = 0", "");
    let gw = TestGateway::start(&config).await;
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], 502);
    assert!(
        !text.contains(&dead.to_string()),
        "problem body leaks the backend address"
    );
}

#[tokio::test]
async fn backend_closing_without_an_answer_is_502() {
    // A backend that accepts and closes every connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
            drop(conn);
        }
    });
    let config = single_route("p", &[addr], "", "");
    let gw = TestGateway::start(&config).await;
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn read_timeout_is_504_problem() {
    let slow = Backend::start("slow").await;
    let config = single_route(
        "p",
        &[slow.addr],
        "[pools.p.timeouts]\nread = \"5s\"",
        "[routes.timeouts]\nread = \"200ms\"\n",
    );
    let gw = TestGateway::start(&config).await;
    let started = std::time::Instant::now();
    let r = client().get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    // The route's 200ms override applies, not the pool's 5s.
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["title"], "Gateway Timeout");
}

#[tokio::test]
async fn total_deadline_is_504() {
    let slow = Backend::start("slow").await;
    let config = single_route(
        "p",
        &[slow.addr],
        "[pools.p.timeouts]\ntotal = \"300ms\"",
        "",
    );
    let gw = TestGateway::start(&config).await;
    let started = std::time::Instant::now();
    let r = client().get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
