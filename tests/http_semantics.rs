//! HTTP semantics at the gateway, against origins that answer with exact
//! bytes: hop-by-hop response fields (RFC 9110 §7.6.1), the status line a
//! client sees (its version, a status outside 100–599), pipelined
//! requests (RFC 9112 §9.3.2), and the connection after a stale answer.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{raw_http1, single_route, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An origin that answers every request head it reads with `answer`, on
/// a connection kept open; with `fail` set, it closes instead.
#[derive(Clone)]
struct Scripted {
    addr: SocketAddr,
    fail: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(answer: &'static [u8]) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = Scripted {
            addr: listener.local_addr().unwrap(),
            fail: Arc::default(),
            requests: Arc::default(),
        };
        let me = s.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            me.requests.fetch_add(1, Ordering::SeqCst);
                            if me.fail.load(Ordering::SeqCst) {
                                return;
                            }
                            if conn.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        s
    }
}

fn get(host: &str) -> String {
    format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn fields_the_backends_connection_header_names_never_reach_the_client_nor_the_cache() {
    let origin = Scripted::start(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nCache-Control: max-age=60\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let config = format!(
        "{}[cache]\nmax_size = \"1MiB\"\n\n[routes.cache]\n",
        single_route("p", &[origin.addr], "", "")
    );
    let gw = TestGateway::start(&config).await;
    for round in ["miss", "hit"] {
        let (status, head, body) = raw_http1(gw.proxy, get("a").as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{round}");
        assert!(head.contains("x-kept: yes"), "{round}: {head}");
        for hop in ["x-hop", "keep-alive:", "proxy-connection"] {
            assert!(!head.contains(hop), "{round}: {hop} in {head}");
        }
    }
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        1,
        "the second was a hit"
    );
}

#[tokio::test]
async fn the_client_sees_http_1_1_and_a_502_for_a_status_outside_100_to_599() {
    let old = Scripted::start(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gw = TestGateway::start(&single_route("p", &[old.addr], "", "")).await;
    let (status, head, _) = raw_http1(gw.proxy, get("a").as_bytes()).await;
    assert_eq!(status, 200);
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let odd = Scripted::start(b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok").await;
    let gw = TestGateway::start(&single_route("p", &[odd.addr], "", "")).await;
    let answer = raw_http1(gw.proxy, get("a").as_bytes()).await;
    common::assert_problem(&answer, 502, "");
}

/// Three requests in one write are answered in order on one connection,
/// which then serves a fourth.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_a_connection_that_stays_open() {
    let backend = common::backend::Backend::start("b").await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let one = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    let burst = format!("{}{}{}", one("/1"), one("/2"), one("/3"));
    s.write_all(burst.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.matches("\"path\":").count() < 3 {
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("three answers in time")
            .unwrap();
        assert!(n > 0, "closed with {seen}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let paths: Vec<&str> = seen
        .split("\"path\":\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap_or(""))
        .collect();
    assert_eq!(paths, ["/1", "/2", "/3"]);
    assert!(
        !seen.to_ascii_lowercase().contains("connection: close"),
        "{seen}"
    );
    s.write_all(one("/4").as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
        .await
        .expect("a fourth answer")
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
}

/// When the origin drops the connection and a stale copy answers, the
/// answer does not announce a keep-alive the gateway will not honour.
#[tokio::test]
async fn a_stale_answer_after_an_origin_failure_says_connection_close() {
    let origin = Scripted::start(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-if-error=600\r\nETag: \"1\"\r\nContent-Length: 5\r\n\r\nstale",
    )
    .await;
    let config = format!(
        "{}[cache]\nmax_size = \"1MiB\"\n\n[routes.cache]\n",
        single_route("p", &[origin.addr], "retries = 0", "")
    );
    let gw = TestGateway::start(&config).await;
    let (status, _, _) = raw_http1(gw.proxy, get("a").as_bytes()).await;
    assert_eq!(status, 200);
    origin.fail.store(true, Ordering::SeqCst);
    let keep_alive = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let (status, head, body) = raw_http1(gw.proxy, keep_alive.as_bytes()).await;
    assert_eq!((status, body.as_str()), (200, "stale"), "{head}");
    assert!(
        head.contains("cache-status: portcullis; hit; fwd=stale"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
}
