//! Upstream and connection metrics, scraped from the real gateway after
//! real traffic to real loopback backends.

mod common;

use std::net::SocketAddr;

use common::{base_config, client, pool, scrape_until, Backend, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn upstream_responses_failures_and_latency_per_backend_and_pool() {
    let live = Backend::start("live").await;
    let dead = closed_port();
    let config = |backends: &[SocketAddr]| {
        format!(
            "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
            base_config(),
            pool("p", backends, "balance = \"round_robin\"\nretries = 1")
        )
    };
    let gw = TestGateway::start(&config(&[live.addr, dead])).await;
    let c = client();
    for _ in 0..4 {
        let r = c.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "a connect failure is retried on the live one"
        );
    }
    let r = c
        .get(gw.url("/x"))
        .header("x-echo-status", "503")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let (p, l, d) = ("p", live.addr, dead);
    let text = scrape_until(
        &gw,
        &[
            format!(
                r#"portcullis_upstream_requests_total{{backend="{l}",code="200",pool="{p}"}} 4"#
            ),
            format!(
                r#"portcullis_upstream_requests_total{{backend="{l}",code="503",pool="{p}"}} 1"#
            ),
            format!(r#"portcullis_upstream_response_duration_seconds_count{{pool="{p}"}} 5"#),
        ],
    )
    .await;
    // Round robin over two backends: the dead one was tried, and failed to
    // connect, about half the time; each failure was retried.
    let failures = value(
        &text,
        &format!(
            r#"portcullis_upstream_failures_total{{backend="{d}",pool="{p}",reason="connect"}}"#
        ),
    );
    assert!(failures >= 1.0, "{text}");
    assert_eq!(
        value(
            &text,
            &format!(r#"portcullis_upstream_retries_total{{pool="{p}",reason="connect"}}"#)
        ),
        failures
    );
    // The dead backend never answered: its only status series is the zero
    // one every backend starts with.
    let dead_codes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!(r#"backend="{d}",code="#)))
        .collect();
    assert_eq!(
        dead_codes,
        [format!(
            r#"portcullis_upstream_requests_total{{backend="{d}",code="200",pool="{p}"}} 0"#
        )],
        "{text}"
    );

    // The dead backend leaves the config: its series go, the live one's stay.
    gw.write_config(&config(&[live.addr]));
    assert_eq!(gw.reload().await.0, 200);
    let text = gw.metrics_text().await;
    assert!(!text.contains(&d.to_string()), "{text}");
    assert!(text.contains(&format!(
        r#"portcullis_upstream_requests_total{{backend="{l}",code="200",pool="{p}"}} 4"#
    )));

    // The pool leaves: all of its series go.
    gw.write_config(&format!(
        "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"q\"\n",
        base_config(),
        pool("q", &[live.addr], "")
    ));
    assert_eq!(gw.reload().await.0, 200);
    let text = gw.metrics_text().await;
    assert!(!text.contains("pool=\"p\""), "{text}");
}

/// The value of the sample whose name and labels are `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn open_connections_are_counted_per_listener() {
    let backend = Backend::start("b").await;
    let config = common::single_route("p", &[backend.addr], "", "");
    let gw = TestGateway::start(&config).await;
    let listener = gw.listeners[0].trim_start_matches("http://").to_string();
    let gauge =
        |n: usize| format!("portcullis_downstream_open_connections{{listener=\"{listener}\"}} {n}");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&listener).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        open.push(s);
    }
    // Kept alive and idle: still open.
    scrape_until(&gw, &[gauge(3)]).await;
    drop(open);
    scrape_until(&gw, &[gauge(0)]).await;
}
