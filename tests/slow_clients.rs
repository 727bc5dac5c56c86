//! Slow and idle clients, over raw TCP against the real gateway and a real
//! backend: `[server.client]` header_timeout (slowloris: 408), body_timeout
//! (408), keepalive_timeout (idle connections closed), max_connections
//! (refused at accept), and Pingora's own parser refusals answered with
//! problem+json.
//!
//! The pauses here are the clients' behaviour under test (a byte every
//! 200 ms), not waits for the gateway: every wait for the gateway is a
//! read with a deadline.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::{eventually, read_response, sample, single_route, TestGateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

async fn gateway(backend: &Backend, client: &str) -> TestGateway {
    let config = single_route("p", &[backend.addr], "", "").replacen(
        "watch_config = false\n",
        &format!("watch_config = false\n[server.client]\n{client}\n"),
        1,
    );
    TestGateway::start(&config).await
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Read until the gateway closes the connection (at most 10 s): the text.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(res.is_ok(), "the gateway did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_problem(text: &str, status: u16) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status}: {text}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(!head.contains("server: pingora"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], status, "{v}");
}

async fn refused(gw: &TestGateway, reason: &str) -> f64 {
    let text = gw.metrics_text().await;
    sample(
        &text,
        &format!("portcullis_downstream_refused_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_header_timeout_with_408() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "header_timeout = \"1s\"").await;
    let mut s = connect(gw.proxy).await;
    let start = Instant::now();
    // A byte every 200 ms: every read is quick, the head never completes
    // within 1 s. Stop at the first failed write (the gateway closed).
    for b in GET.iter().cycle().take(50) {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), s.peek(&mut probe)).await
        {
            if n > 0 {
                break; // the answer is in
            }
        }
    }
    let text = read_to_close(&mut s).await;
    let took = start.elapsed();
    assert_problem(&text, 408);
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    assert!(took >= Duration::from_millis(900), "cut off after {took:?}");
    assert!(
        backend.hits() == 0,
        "the backend saw {} requests",
        backend.hits()
    );
    assert_eq!(refused(&gw, "header_timeout").await, 1.0);

    // A client that connects and sends nothing gets the same answer.
    let mut idle = connect(gw.proxy).await;
    assert_problem(&read_to_close(&mut idle).await, 408);
}

#[tokio::test]
async fn a_slow_head_within_header_timeout_is_served() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "header_timeout = \"3s\"").await;
    let mut s = connect(gw.proxy).await;
    for chunk in GET.chunks(6) {
        s.write_all(chunk).await.expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = read_response(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
}

#[tokio::test]
async fn keepalive_idle_time_is_not_header_time_and_idle_connections_are_closed() {
    let backend = Backend::start("b").await;
    let gw = gateway(
        &backend,
        "header_timeout = \"1s\"\nkeepalive_timeout = \"3s\"",
    )
    .await;
    let mut s = connect(gw.proxy).await;
    s.write_all(GET).await.expect("send");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200 "));
    // Idle longer than header_timeout, shorter than keepalive_timeout: the
    // next request is served on the same connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(GET).await.expect("send");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200 "));
    // Then idle: closed (without a response) after keepalive_timeout.
    let idle = Instant::now();
    let rest = read_to_close(&mut s).await;
    let took = idle.elapsed();
    assert_eq!(rest, "", "an idle connection is closed silently");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    assert_eq!(refused(&gw, "header_timeout").await, 0.0);
}

#[tokio::test]
async fn keepalive_timeout_zero_closes_after_each_response() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "keepalive_timeout = \"0s\"").await;
    let mut s = connect(gw.proxy).await;
    s.write_all(GET).await.expect("send");
    let text = read_to_close(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_after_body_timeout() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "body_timeout = \"1s\"").await;
    let mut s = connect(gw.proxy).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .expect("send");
    let start = Instant::now();
    let text = read_to_close(&mut s).await;
    let took = start.elapsed();
    assert_problem(&text, 408);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    // A body that keeps coming, slower overall than body_timeout, is fine.
    let mut s = connect(gw.proxy).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
        .await
        .expect("send");
    for b in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[*b]).await.expect("send");
    }
    let text = read_response(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
}

#[tokio::test]
async fn pingoras_own_refusals_get_problem_bodies() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "").await;
    let cases: [(&[u8], u16); 6] = [
        // Refused by Pingora's parser before any gateway code runs.
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ];
    for (bytes, status) in cases {
        let mut s = connect(gw.proxy).await;
        s.write_all(bytes).await.expect("send");
        let text = read_to_close(&mut s).await;
        assert_problem(&text, status);
    }
    assert_eq!(backend.hits(), 0);
    assert_eq!(refused(&gw, "bad_head").await, cases.len() as f64);
}

#[tokio::test]
async fn connections_over_max_connections_are_refused_at_accept() {
    let backend = Backend::start("b").await;
    let gw = gateway(&backend, "max_connections = 2").await;
    let mut held = vec![connect(gw.proxy).await, connect(gw.proxy).await];
    for s in &mut held {
        s.write_all(GET).await.expect("send");
        assert!(read_response(s).await.starts_with("HTTP/1.1 200 "));
    }
    // A third: closed at once, nothing answered.
    let mut third = connect(gw.proxy).await;
    let _ = third.write_all(GET).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {out:?}");
    assert_eq!(refused(&gw, "max_connections").await, 1.0);
    // One held connection closes: a new one is served.
    held.pop();
    eventually("a connection slot frees", || async {
        let mut s = connect(gw.proxy).await;
        s.write_all(GET).await.ok()?;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        (n > 0 && buf.starts_with(b"HTTP/1.1 200")).then_some(())
    })
    .await;
}
