//! What a client may send, over raw TCP against the real gateway and a
//! real backend: `Host` rules, transfer codings, `Content-Length` lists,
//! the `[server.client]` limits and a route's `max_body_size`. Each refusal
//! is a problem+json answer, and the backend never sees the request.

mod common;

use common::backend::Backend;
use common::{assert_problem, raw_http1 as raw, single_route, TestGateway};
use serde_json::Value;

const LIMITS: &str =
    "[server.client]\nmax_header_size = \"4KiB\"\nmax_headers = 20\nmax_uri_length = 64\n";

async fn gateway(backend: &Backend) -> TestGateway {
    // [server.client] is a sub-table: after the [server] keys.
    let config = single_route("p", &[backend.addr], "", "max_body_size = \"1KiB\"\n").replacen(
        "watch_config = false\n",
        &format!("watch_config = false\n{LIMITS}"),
        1,
    );
    TestGateway::start(&config).await
}

#[tokio::test]
async fn malformed_heads_are_refused_with_problem_bodies_before_the_backend() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend).await;
    let a = gw.proxy;
    assert_problem(&raw(a, b"GET / HTTP/1.1\r\n\r\n").await, 400, "need a Host");
    assert_problem(
        &raw(a, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n").await,
        400,
        "not a valid host",
    );
    assert_problem(
        &raw(
            a,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await,
        501,
        "Only the chunked transfer coding",
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(64));
    assert_problem(&raw(a, long.as_bytes()).await, 414, "too long");
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_problem(
        &raw(a, many.as_bytes()).await,
        431,
        "too many header fields",
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(4096)
    );
    assert_problem(&raw(a, big.as_bytes()).await, 431, "too large");
    assert_eq!(backend.hits(), 0);
    // HTTP/1.0 needs no Host; within the limits, requests pass.
    let (status, _, _) = raw(a, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    let ok = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "x".repeat(62)
    );
    assert_eq!(raw(a, ok.as_bytes()).await.0, 200);
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn a_content_length_list_of_one_value_is_forwarded_as_that_value() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend).await;
    let (status, _, body) = raw(
        gw.proxy,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["content-length"], "5");
    assert_eq!(echo["body_len"], 5);
}

#[tokio::test]
async fn max_body_size_refuses_declared_and_streamed_bodies() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend).await;
    let a = gw.proxy;
    // Declared too large: 413 at once, nothing read, nothing forwarded.
    assert_problem(
        &raw(
            a,
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n",
        )
        .await,
        413,
        "larger than 1024 bytes",
    );
    assert_eq!(backend.hits(), 0);
    // Chunked, growing past the limit while it streams: 413.
    let chunk = format!("258\r\n{}\r\n", "c".repeat(600));
    let chunked = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    assert_problem(
        &raw(a, chunked.as_bytes()).await,
        413,
        "larger than this API accepts",
    );
    // Within the limit, either way: forwarded whole.
    let small = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let (status, _, body) = raw(a, small.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["body_len"],
        600
    );
}
