//! The exchange between the gateway and an origin for a request without a
//! body, which Pingora patch `pingora-proxy/0004` serves in turn in one task
//! rather than through the general path's two task pipes: a client that
//! goes away while the origin thinks (over HTTP/1.1 and HTTP/2), an origin
//! that stops mid-body, interim responses, and answers that arrive in many
//! pieces. Each origin here is scripted byte by byte, so what it sees of the
//! gateway's connection is observed, not inferred.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, raw_http1, single_route, TestGateway};
use h2raw::{Frame, H2Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a scripted origin saw: connections accepted, request heads read,
/// and connections the gateway closed (read of 0 or an error).
#[derive(Clone, Default)]
struct Seen {
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Seen {
    fn get(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }
}

/// Read one request head (up to the blank line) off `conn`; false when the
/// gateway closed the connection first.
async fn read_head(conn: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// Wait until the gateway closes `conn`, then count it in `seen.closed`.
async fn until_closed(mut conn: TcpStream, seen: &Seen) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = conn.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
    seen.closed.fetch_add(1, Ordering::SeqCst);
}

/// An origin that, on every connection, reads request heads and answers
/// each with the pieces `answer(i)` gives, where `i` counts requests over
/// all connections: each piece is its own write, with a yield after it so
/// the gateway can read them one by one. `None` means: write nothing more
/// and hold the connection until the gateway closes it.
async fn origin(answer: fn(usize) -> Option<Vec<Vec<u8>>>) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let me = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            me.connections.fetch_add(1, Ordering::SeqCst);
            let me = me.clone();
            tokio::spawn(async move {
                while read_head(&mut conn).await {
                    let i = me.requests.fetch_add(1, Ordering::SeqCst);
                    let Some(pieces) = answer(i) else {
                        return until_closed(conn, &me).await;
                    };
                    for piece in pieces {
                        if conn.write_all(&piece).await.is_err() {
                            me.closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                me.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// A route whose upstream read timeout (60 s) is far beyond the tests'
/// deadline, so anything that ends an exchange sooner is the gateway
/// reacting, not a timer.
fn patient_route(addr: SocketAddr) -> String {
    single_route("p", &[addr], "", "[routes.timeouts]\nread = \"60s\"\n")
}

#[tokio::test]
async fn a_client_that_goes_away_while_the_origin_thinks_ends_the_exchange() {
    let (addr, seen) = origin(|_| None).await;
    let gw = TestGateway::start(&patient_route(addr)).await;
    let mut client = TcpStream::connect(gw.proxy).await.unwrap();
    client
        .write_all(b"GET /think HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    eventually("the origin has the request", || async {
        (Seen::get(&seen.requests) == 1).then_some(())
    })
    .await;
    drop(client);
    // Without a watch on the client while the origin is awaited, the
    // gateway would hold the origin's connection for the 60 s read timeout.
    eventually("the gateway closes the origin's connection", || async {
        (Seen::get(&seen.closed) == 1).then_some(())
    })
    .await;
    // The exchange is logged as one the client gave up on.
    let line = eventually("the access log line", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains("\"path\":\"/think\""))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains("\"status\":499"), "{line}");
}

#[tokio::test]
async fn an_http2_stream_reset_while_the_origin_thinks_ends_the_exchange() {
    let (addr, seen) = origin(|_| None).await;
    let h2 = H2Gateway::start_config(&patient_route(addr)).await;
    let mut conn = h2.conn().await;
    conn.send_get(1, "/think").await;
    eventually("the origin has the request", || async {
        (Seen::get(&seen.requests) == 1).then_some(())
    })
    .await;
    // RST_STREAM (type 3) with CANCEL (8): the client no longer wants it,
    // while its connection stays open.
    conn.send(Frame::new(3, 0, 1, 8u32.to_be_bytes())).await;
    eventually("the gateway closes the origin's connection", || async {
        (Seen::get(&seen.closed) == 1).then_some(())
    })
    .await;
    conn.send_get(3, "/after").await;
    // The origin holds this one too; the connection to the client is alive.
    conn.expect_alive().await.unwrap();
}

#[tokio::test]
async fn an_origin_that_stops_mid_body_truncates_the_answer_and_its_connection_is_not_reused() {
    // The first answer promises 100 bytes, sends 10 and then nothing; the
    // second, on whichever connection it arrives, is whole.
    let (addr, seen) = origin(|i| {
        Some(vec![if i == 0 {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole".to_vec()
        }])
    })
    .await;
    let config = single_route("p", &[addr], "", "[routes.timeouts]\nread = \"300ms\"\n");
    let gw = TestGateway::start(&config).await;

    let (status, head, body) = raw_http1(gw.proxy, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-length: 100"), "{head}");
    // The client gets the ten bytes and a closed connection, never a
    // padded or re-framed body.
    assert_eq!(body, "0123456789");

    let (status, _, body) = raw_http1(
        gw.proxy,
        b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "whole"));
    // 90 bytes of the first answer may still come on the first
    // connection, so the second request went on a new one.
    assert_eq!(Seen::get(&seen.connections), 2);
}

#[tokio::test]
async fn interim_responses_come_before_the_answer_on_a_connection_that_stays_open() {
    let (addr, _seen) = origin(|_| {
        Some(vec![
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ])
    })
    .await;
    let gw = TestGateway::start(&patient_route(addr)).await;
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !seen.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("the answer in time")
                .unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        let hints = text.find("http/1.1 103").expect("the 103 is forwarded");
        let answer = text.find("http/1.1 200").expect("the 200 follows");
        assert!(hints < answer, "{text}");
        assert!(text.contains("link: </a.css>; rel=preload"), "{text}");
    }
}

#[tokio::test]
async fn an_answer_written_in_many_pieces_arrives_whole() {
    // A chunked answer in 66 writes: the head, 64 chunks of 16 KiB, the
    // last chunk.
    let (addr, _seen) = origin(|_| {
        let mut pieces = vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()];
        for i in 0..64u8 {
            let mut frame = format!("{:x}\r\n", 16 * 1024).into_bytes();
            frame.extend_from_slice(&[b'a' + i % 26; 16 * 1024]);
            frame.extend_from_slice(b"\r\n");
            pieces.push(frame);
        }
        pieces.push(b"0\r\n\r\n".to_vec());
        Some(pieces)
    })
    .await;
    let gw = TestGateway::start(&patient_route(addr)).await;
    for _ in 0..2 {
        let r = common::client().get(gw.url("/big")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 64 * 16 * 1024);
        for (i, piece) in body.chunks(16 * 1024).enumerate() {
            let want = b'a' + (i as u8) % 26;
            assert!(piece.iter().all(|b| *b == want), "piece {i} is not whole");
        }
    }
}
