//! Active health checks: ejection, recovery, and a fast 503 when a whole
//! pool is down.

mod common;

use std::time::{Duration, Instant};

use common::{base_config, client, eventually, Backend, TestGateway};
use serde_json::Value;

fn config(a: &Backend, b: &Backend, check: &str) -> String {
    format!(
        "{}[pools.p]\nbackends = [\"{}\", \"{}\"]\n\n[pools.p.health_check]\n{check}\ninterval = \"100ms\"\ntimeout = \"100ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
        base_config(),
        a.addr,
        b.addr
    )
}

async fn backends_hit(gw: &TestGateway, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client().get(gw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        out.push(body["backend"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn http_check_ejects_and_restores_a_backend() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = TestGateway::start(&config(
        &a,
        &b,
        "type = \"http\"\npath = \"/healthz\"\nexpected_status = \"200-299\"",
    ))
    .await;
    assert!(backends_hit(&gw, 10).await.contains(&"a".to_string()));

    a.set_health_status(503);
    gw.wait_backend_health("p", a.addr, false).await;
    let hits = backends_hit(&gw, 20).await;
    assert!(
        hits.iter().all(|h| h == "b"),
        "unhealthy backend still got traffic: {hits:?}"
    );
    // The same, as Prometheus sees it.
    let metrics = gw.metrics_text().await;
    for (backend, up) in [(a.addr, 0), (b.addr, 1)] {
        let line =
            format!("portcullis_upstream_backend_up{{backend=\"{backend}\",pool=\"p\"}} {up}");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let inflight = format!(
        "portcullis_upstream_backend_inflight_requests{{backend=\"{}\",pool=\"p\"}} 0",
        a.addr
    );
    assert!(metrics.lines().any(|l| l == inflight), "{inflight}");

    a.set_health_status(200);
    gw.wait_backend_health("p", a.addr, true).await;
    assert!(backends_hit(&gw, 10).await.contains(&"a".to_string()));
}

#[tokio::test]
async fn whole_pool_down_answers_503_fast() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = TestGateway::start(&config(&a, &b, "type = \"tcp\"")).await;
    a.stop();
    b.stop();
    let g = &gw;
    for addr in [a.addr, b.addr] {
        eventually("backend marked unhealthy", || async move {
            (g.backend_healthy("p", addr).await == Some(false)).then_some(())
        })
        .await;
    }
    let started = Instant::now();
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "503 took {:?}",
        started.elapsed()
    );
}
