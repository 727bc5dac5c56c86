//! Slow clients on HTTP/2 and before the TLS handshake: an unfinished
//! header block or preface is cut off at `header_timeout`, a stalled
//! request body on any stream at `body_timeout` (408), a connection that
//! never finishes its TLS handshake at `handshake_timeout`; handshakes in
//! progress count against `max_connections` and in the connection gauge,
//! and their failures are logged once per 10 s, not once each.
//!
//! Every wait for the gateway is a read or a poll with a deadline.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::{eventually, sample, single_route, TestGateway};
use h2raw::{header_block, kind, Answer, Frame, H2Gateway};
use tokio::io::AsyncReadExt;

fn config(backend: &Backend, client: &str) -> String {
    single_route("p", &[backend.addr], "", "").replacen(
        "watch_config = false\n",
        &format!("watch_config = false\n[server.client]\n{client}\n"),
        1,
    )
}

async fn metric(gw: &TestGateway, name: &str) -> f64 {
    sample(&gw.metrics_text().await, name).unwrap_or(-1.0)
}

const HEADER_TIMEOUTS: &str = "portcullis_downstream_refused_total{reason=\"header_timeout\"}";
const HANDSHAKE_TIMEOUTS: &str =
    "portcullis_downstream_refused_total{reason=\"handshake_timeout\"}";

/// Read frames until the gateway closes the connection; how long it took.
async fn closed_within(conn: &mut h2raw::Conn, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match conn.recv().await {
            Answer::Closed => return start.elapsed(),
            Answer::Frame(f) if f.kind == kind::GOAWAY => return start.elapsed(),
            _ => assert!(start.elapsed() < limit, "still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn an_unfinished_header_block_closes_the_connection_at_header_timeout() {
    let backend = Backend::start("b").await;
    let gw = H2Gateway::start_config(&config(&backend, "header_timeout = \"1s\"")).await;
    let mut conn = gw.conn().await;
    // HEADERS without END_HEADERS, and no CONTINUATION ever.
    let fields = [(":method", "GET"), (":scheme", "https"), (":path", "/")];
    conn.send(Frame::new(kind::HEADERS, 0, 1, header_block(&fields)))
        .await;
    let took = closed_within(&mut conn, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert_eq!(backend.hits(), 0);
    assert_eq!(metric(&gw.gw, HEADER_TIMEOUTS).await, 1.0);
    // The gateway still serves.
    let (status, _) = gw
        .request("GET", "/x", &[])
        .await
        .expect("a fresh connection");
    assert_eq!(status, 200);
}

/// On an `h2c` listener (cleartext, prior knowledge) the bytes read to
/// tell HTTP/2 from HTTP/1 pass through the frame tracker too: an
/// unfinished header block closes the connection at `header_timeout`,
/// while a connection that finished its blocks is not timed.
#[tokio::test]
async fn on_an_h2c_listener_header_blocks_are_timed_as_over_tls() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start("b").await;
    let listener = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";
    let config = config(&backend, "header_timeout = \"1s\"").replacen(
        listener,
        &format!("{listener}h2c = true\n"),
        1,
    );
    let gw = TestGateway::start(&config).await;
    let open = |block: Option<Vec<u8>>| async move {
        let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
        let mut bytes = h2raw::PREFACE.to_vec();
        bytes.extend(Frame::new(kind::SETTINGS, 0, 0, Vec::new()).encode());
        bytes.extend(block.unwrap_or_default());
        s.write_all(&bytes).await.unwrap();
        s
    };
    // SETTINGS only: idle, not closed at header_timeout.
    let mut idle = open(None).await;
    // HEADERS without END_HEADERS, and no CONTINUATION ever.
    let fields = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
    let start = Instant::now();
    let mut stalled = open(Some(
        Frame::new(kind::HEADERS, 0, 1, header_block(&fields)).encode(),
    ))
    .await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), stalled.read_to_end(&mut out))
        .await
        .expect("closed at header_timeout")
        .ok();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    eventually("one header timeout counted", || async {
        (metric(&gw, HEADER_TIMEOUTS).await == 1.0).then_some(())
    })
    .await;
    // The idle one outlived it: it still answers a PING.
    idle.write_all(&Frame::new(kind::PING, 0, 0, vec![7; 8]).encode())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(8), idle.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the idle connection was closed");
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(8).any(|w| w == [7; 8]) {
            break;
        }
    }
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn a_connection_that_never_sends_the_preface_is_closed_at_header_timeout() {
    let backend = Backend::start("b").await;
    let gw = H2Gateway::start_config(&config(&backend, "header_timeout = \"1s\"")).await;
    let mut conn = h2raw::Conn::open(gw.gw.proxy, &gw.connector, "h2.test").await;
    let took = closed_within(&mut conn, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert_eq!(metric(&gw.gw, HEADER_TIMEOUTS).await, 1.0);
}

/// Ten POST streams on one connection announce a body and never send
/// it: each is answered 408 at `body_timeout`, as HTTP/1.1 is, and the
/// connection goes on serving.
#[tokio::test]
async fn stalled_request_bodies_on_http2_streams_get_408_at_body_timeout() {
    let backend = Backend::start("b").await;
    let gw = H2Gateway::start_config(&config(&backend, "body_timeout = \"1s\"")).await;
    let tcp = tokio::net::TcpStream::connect(gw.gw.proxy).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("h2.test").unwrap();
    let tls = gw.connector.connect(name, tcp).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let start = Instant::now();
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let mut ready = client.clone().ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri("https://h2.test/upload")
            .header("content-length", "100")
            .body(())
            .unwrap();
        let (resp, body) = ready.send_request(req, false).unwrap();
        pending.push(resp);
        bodies.push(body); // kept open, never written
    }
    for resp in pending {
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("an answer in time")
            .expect("a response, not a reset");
        assert_eq!(resp.status(), 408);
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The same connection serves the next request.
    let mut ready = client.ready().await.unwrap();
    let req = http::Request::builder()
        .uri("https://h2.test/after")
        .body(())
        .unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
}

/// Connections that never finish their TLS handshake: counted from the
/// accept (gauge and `max_connections`), closed at `handshake_timeout`,
/// counted by reason, and logged once, not once each.
#[tokio::test]
async fn tls_handshakes_are_timed_counted_and_logged_once() {
    let backend = Backend::start("b").await;
    let gw = H2Gateway::start_config(&config(
        &backend,
        "handshake_timeout = \"1s\"\nmax_connections = 3",
    ))
    .await;
    let proxy = gw.gw.proxy;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(proxy).await.unwrap());
    }
    let gauge = format!("portcullis_downstream_open_connections{{listener=\"{proxy}\"}}");
    eventually("three handshakes counted as open", || async {
        (metric(&gw.gw, &gauge).await == 3.0).then_some(())
    })
    .await;
    // A fourth, a real client, is over max_connections: closed at accept.
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("h2.test").unwrap();
    assert!(gw.connector.connect(name, tcp).await.is_err());
    let max = "portcullis_downstream_refused_total{reason=\"max_connections\"}";
    assert_eq!(metric(&gw.gw, max).await, 1.0);
    // The silent ones are closed at handshake_timeout.
    let start = Instant::now();
    for s in &mut silent {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(8));
    eventually("three handshake timeouts counted", || async {
        (metric(&gw.gw, HANDSHAKE_TIMEOUTS).await == 3.0).then_some(())
    })
    .await;
    let (status, _) = gw.request("GET", "/x", &[]).await.expect("served again");
    assert_eq!(status, 200);
    gw.gw
        .wait_for_log("handshakes (TLS or PROXY protocol) failed or timed out")
        .await;
    let lines = gw
        .gw
        .logs()
        .matches("handshakes (TLS or PROXY protocol) failed or timed out")
        .count();
    assert_eq!(lines, 1, "{}", gw.gw.logs());
    assert!(
        !gw.gw.logs().contains("Downstream handshake"),
        "Pingora's per-connection line"
    );
}
