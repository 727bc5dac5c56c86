//! Retries that never invent a 503: a request that fails on a reused
//! upstream connection the backend had closed is retried over a fresh
//! connection, to the same backend when it is the only one.

mod common;

use common::closing::ClosingBackend;
use common::{client, single_route, TestGateway};

#[tokio::test]
async fn a_backend_closing_kept_alive_connections_never_costs_a_request() {
    let backend = ClosingBackend::start().await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let c = client();
    let url = gw.url("/x");
    for i in 0..1000 {
        let r = c.get(&url).send().await.expect("request");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "request {i}: {body}\nlogs:\n{}", gw.logs());
    }
    // The path under test was taken: requests did land on stale connections.
    assert!(
        backend.dropped() >= 400,
        "only {} requests met a closed keep-alive connection",
        backend.dropped()
    );
    assert_eq!(backend.answered(), 1000);
    assert!(!gw.logs().contains("no healthy backend"), "{}", gw.logs());
    // Each of them counted as a retry of the pool.
    let metrics = gw.metrics_text().await;
    let retries = format!(
        r#"portcullis_upstream_retries_total{{pool="p",reason="stale_connection"}} {}"#,
        backend.dropped()
    );
    assert!(
        metrics.lines().any(|l| l == retries),
        "{retries} in:\n{metrics}"
    );
}

#[tokio::test]
async fn a_post_on_a_stale_connection_is_not_replayed() {
    let backend = ClosingBackend::start().await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let c = client();
    // The first request leaves a kept-alive connection in the pool …
    let r = c.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // … which the backend closes when the POST arrives: not idempotent, so
    // not sent again, and the client learns it failed.
    let r = c.post(gw.url("/x")).body("order").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(backend.answered(), 1);
    assert_eq!(backend.dropped(), 1);
}

#[tokio::test]
async fn the_retry_budget_bounds_stale_connection_retries() {
    let backend = ClosingBackend::start().await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "retries = 0", "")).await;
    let c = client();
    let r = c.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // With no retries allowed, the stale connection's failure is the answer.
    let r = c.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(backend.dropped(), 1);
}
