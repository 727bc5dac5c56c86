//! Streaming passes through unbuffered: WebSocket upgrades, server-sent
//! events, and request bodies.

mod common;

use common::{client, single_route, Backend, Gateway, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

async fn gateway(b: &Backend) -> Gateway {
    Gateway::start(&single_route("p", &[b.addr], "", "")).await
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
