//! Streaming passes through unbuffered: WebSocket upgrades, server-sent
//! events, and request bodies.

mod common;

use common::{client, single_route, Backend, TestGateway, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

async fn gateway(b: &Backend) -> TestGateway {
    TestGateway::start(&single_route("p", &[b.addr], "", "")).await
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let b = Backend::start("ws").await;
    let gw = gateway(&b).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.proxy))
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.into_text().unwrap().as_str(),
            format!("echo: hello {i}")
        );
    }
    ws.close(None).await.unwrap();
}

/// On a caching route (with a `ttl` that would store any 200), an upgrade
/// is never answered from the cache: every handshake reaches the backend.
#[tokio::test]
async fn websocket_upgrades_bypass_a_caching_route() {
    let b = Backend::start("ws").await;
    let gw = TestGateway::start(&format!(
        "{}\n[routes.cache]\nttl = \"60s\"\n",
        single_route("p", &[b.addr], "", "")
    ))
    .await;
    for round in 0..2 {
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.proxy))
            .await
            .expect("websocket handshake through the caching route");
        assert_eq!(resp.status(), 101, "round {round}");
        assert_eq!(resp.headers()["cache-status"], "portcullis; fwd=bypass");
        ws.send(Message::text("ping")).await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), "echo: ping");
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn sse_first_event_arrives_before_the_backend_finishes() {
    let b = Backend::start("sse").await;
    let gw = gateway(&b).await;
    let r = client().get(gw.url("/sse")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    // The backend holds its last event until released: the first must
    // already be here, or the gateway is buffering.
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("first event was buffered")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    b.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: last\n\n");
}

#[tokio::test]
async fn large_request_body_streams_to_the_backend() {
    let b = Backend::start("body").await;
    let gw = gateway(&b).await;
    // 8 MiB in chunks, sent as a stream (chunked encoding).
    let chunks = (0..128).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; 64 * 1024]));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client()
        .post(gw.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["body_len"], 128 * 64 * 1024);
}

/// End to end: Pingora 0.9 already drops these headers for a non-WebSocket
/// upgrade, and `forward::drop_h2c_upgrade` (unit-tested) does it before
/// routing whatever Pingora does; this guards the property across both.
#[tokio::test]
async fn h2c_upgrade_is_never_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b").await;
    let gw = gateway(&b).await;
    let mut conn = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    conn.write_all(
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"backend\"") {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        !text.contains("\"upgrade\"") && !text.contains("http2-settings"),
        "{text}"
    );
}
