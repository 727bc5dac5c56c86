//! Loops: a pool that leads back into the gateway. `check` refuses pools
//! on the gateway's own listener or admin address; a loop it cannot see
//! (through another proxy) is stopped at the second pass by `Via`
//! (RFC 9110 §7.6.3) with a 508, instead of looping until a header grows
//! too large.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::backend::Backend;
use common::{base_config, pool, raw_http1, single_route, TestGateway};

#[test]
fn check_refuses_a_pool_on_the_gateways_own_listener_or_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    for (backend, says) in [
        (
            "127.0.0.1:18080",
            "is this gateway's own listener 0.0.0.0:18080",
        ),
        (
            "127.0.0.1:19180",
            "is this gateway's own admin address 127.0.0.1:19180",
        ),
    ] {
        let text = format!(
            "[[listeners]]\naddress = \"0.0.0.0:18080\"\n\n[admin]\naddress = \"127.0.0.1:19180\"\n\n[pools.p]\nbackends = [{{ address = \"{backend}\" }}]\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n"
        );
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = common::run_cli(&["check", file.to_str().unwrap()], None);
        assert_ne!(code, 0, "{backend}");
        assert!(
            err.contains(says) && err.contains("p.toml:8:"),
            "{backend}: {err}"
        );
    }
}

/// A forwarder on loopback that relays every connection to `target`
/// (set once the gateway is up), counting them.
struct Forwarder {
    addr: std::net::SocketAddr,
    target: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    connections: Arc<AtomicUsize>,
}

impl Forwarder {
    async fn start() -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let f = Forwarder {
            addr: listener.local_addr().unwrap(),
            target: Arc::default(),
            connections: Arc::default(),
        };
        let (target, connections) = (f.target.clone(), f.connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let Some(to) = target.get().copied() else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        f
    }
}

#[tokio::test]
async fn a_loop_through_another_proxy_is_stopped_at_the_second_pass_with_508() {
    let forwarder = Forwarder::start().await;
    let config = format!(
        "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"loop\"\n",
        base_config().replacen(
            "watch_config = false\n",
            "watch_config = false\nvia = \"edge-1\"\n",
            1
        ),
        pool("loop", &[forwarder.addr], "")
    );
    let gw = TestGateway::start(&config).await;
    forwarder.target.set(gw.proxy).unwrap();
    let (status, head, body) = raw_http1(
        gw.proxy,
        format!(
            "GET /x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            gw.proxy
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 508, "{head}\n{body}");
    assert!(
        body.contains("already passed through this gateway"),
        "{body}"
    );
    assert_eq!(
        forwarder.connections.load(Ordering::SeqCst),
        1,
        "one pass through the loop"
    );
}

#[tokio::test]
async fn forwarded_requests_carry_via_with_the_pseudonym() {
    let backend = Backend::start("b").await;
    let named = single_route("p", &[backend.addr], "", "").replacen(
        "watch_config = false\n",
        "watch_config = false\nvia = \"edge-1\"\n",
        1,
    );
    let gw = TestGateway::start(&named).await;
    let (_, _, body) = raw_http1(
        gw.proxy,
        b"GET /x HTTP/1.1\r\nHost: a\r\nVia: 1.0 upstream-cdn\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["headers"]["via"], "1.0 upstream-cdn, 1.1 edge-1", "{v}");

    let default = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let (_, _, body) = raw_http1(
        default.proxy,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let via = v["headers"]["via"].as_str().unwrap_or_default();
    assert!(via.starts_with("1.1 portcullis"), "{via}");
}
