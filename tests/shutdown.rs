//! Graceful shutdown: on SIGTERM the gateway stops accepting connections,
//! lets requests in flight finish within `grace_period`, then exits 0 —
//! with a WebSocket still open, which is closed rather than holding the
//! process up.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::{client, eventually, single_route, TestGateway};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_with_a_websocket_open() {
    let backend = Backend::start("b").await;
    let config = single_route("p", &[backend.addr], "", "").replacen(
        "watch_config = false\n",
        "watch_config = false\ngrace_period = \"3s\"\n",
        1,
    );
    let mut gw = TestGateway::start(&config).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.proxy))
        .await
        .expect("websocket through the gateway");
    ws.send(Message::text("before")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "echo: before");

    backend.hold(true);
    let url = gw.url("/held");
    let in_flight = tokio::spawn(async move {
        let r = client().get(url).send().await?;
        Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
    });
    eventually("the request held at the backend", || async {
        (backend.hits() == 1).then_some(())
    })
    .await;

    let terminated = Instant::now();
    gw.signal("TERM");
    // New connections are refused while the request in flight goes on.
    let proxy = gw.proxy;
    eventually("the listener closed", || async move {
        tokio::net::TcpStream::connect(proxy)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    backend.hold(false);
    let (status, body) = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(status, 200, "{body}");

    // The process exits by itself, WebSocket or not, after the grace period.
    assert_eq!(gw.exited().await, Some(0));
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(3 + 3 + 2), "exit took {took:?}");
    // The WebSocket was closed, not left hanging.
    let after = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(
            after,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_))))
        ),
        "{after:?}"
    );
}

/// With nothing in flight, SIGTERM ends the process at once, however long
/// `grace_period` is; a request in flight holds it only until it is done.
#[tokio::test]
async fn sigterm_exits_as_soon_as_no_request_is_in_flight() {
    let backend = Backend::start("b").await;
    // A grace period far longer than the deadlines below.
    let config = single_route("p", &[backend.addr], "", "").replacen(
        "watch_config = false\n",
        "watch_config = false\ngrace_period = \"60s\"\n",
        1,
    );

    // Idle, with a kept-alive client connection open.
    let mut gw = TestGateway::start(&config).await;
    let keep_alive = client();
    let r = keep_alive.get(gw.url("/before")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let terminated = Instant::now();
    gw.signal("TERM");
    assert_eq!(gw.exited().await, Some(0));
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(10), "idle exit took {took:?}");

    // Busy: the request in flight keeps the process up, its end ends it.
    let mut gw = TestGateway::start(&config).await;
    backend.hold(true);
    let url = gw.url("/held");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    eventually("the request held at the backend", || async {
        (backend.hits() == 2).then_some(())
    })
    .await;
    gw.signal("TERM");
    let proxy = gw.proxy;
    eventually("the listener closed", || async move {
        tokio::net::TcpStream::connect(proxy)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(gw.running(), "exited with a request in flight");
    let released = Instant::now();
    backend.hold(false);
    let r = in_flight
        .await
        .unwrap()
        .expect("the held request completes");
    assert_eq!(r.status(), 200);
    assert_eq!(gw.exited().await, Some(0));
    let took = released.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exit after the last request took {took:?}"
    );
}
