//! Request smuggling: the classic CL.TE, TE.CL, TE.TE (obfuscated
//! `Transfer-Encoding`), CL.CL and header-obfuscation payloads, sent over
//! raw TCP. Behind the gateway a backend with a strict HTTP/1.1 parser
//! records what it read: for every payload it must see exactly one
//! well-formed request or none, never the smuggled one, and the next
//! request on the reused upstream connection must arrive intact.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::rawlog::{RawBackend, Seen};
use common::{single_route, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a misframing would leave in the backend's stream as a request of
/// its own.
const SMUGGLED: &str = "GPOST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nx=1";

async fn send(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// (name, header lines after `Host`, body)
fn payloads() -> Vec<(&'static str, String, String)> {
    let last = "0\r\n\r\n";
    let chunked_smuggle = format!("{}{last}", chunk(SMUGGLED));
    let mut cases = vec![
        // CL.TE: a CL-reader forwards the smuggled tail as a new request.
        (
            "CL.TE",
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                last.len() + SMUGGLED.len()
            ),
            format!("{last}{SMUGGLED}"),
        ),
        // TE.CL: a CL-reader stops after "xx\r\n".
        (
            "TE.CL",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n".to_string(),
            chunked_smuggle.clone(),
        ),
        (
            "CL.CL differing",
            "Content-Length: 5\r\nContent-Length: 60\r\n".to_string(),
            format!("hello{SMUGGLED}"),
        ),
        (
            "CL list differing",
            "Content-Length: 5, 60\r\n".to_string(),
            format!("hello{SMUGGLED}"),
        ),
        (
            "CL plus sign",
            "Content-Length: +5\r\n".to_string(),
            format!("hello{SMUGGLED}"),
        ),
        (
            "CL hex",
            "Content-Length: 0x5\r\n".to_string(),
            format!("hello{SMUGGLED}"),
        ),
        (
            "CL space before colon",
            "Content-Length : 5\r\n".to_string(),
            format!("hello{SMUGGLED}"),
        ),
    ];
    let te_variants = [
        ("TE.TE xchunked", "Transfer-Encoding: xchunked\r\n"),
        (
            "TE.TE space before colon",
            "Transfer-Encoding : chunked\r\n",
        ),
        (
            "TE.TE second field",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
        ),
        ("TE.TE tab", "Transfer-Encoding:\tchunked\r\n"),
        (
            "TE.TE leading space",
            "X: y\r\n Transfer-Encoding: chunked\r\n",
        ),
        ("TE.TE obs-fold", "Transfer-Encoding:\r\n chunked\r\n"),
        ("TE.TE bare LF", "X: y\nTransfer-Encoding: chunked\r\n"),
        (
            "TE.TE identity first",
            "Transfer-Encoding: identity, chunked\r\n",
        ),
        (
            "TE.TE chunked then identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        ("TE.TE quoted", "Transfer-Encoding: \"chunked\"\r\n"),
        ("TE.TE upper case", "Transfer-Encoding: CHUNKED\r\n"),
    ];
    for (name, te) in te_variants {
        cases.push((
            name,
            format!("Content-Length: 4\r\n{te}"),
            chunked_smuggle.clone(),
        ));
    }
    cases
}

fn well_formed_and_not_smuggled(seen: &[Seen]) -> Result<(), String> {
    for s in seen {
        match s {
            Seen::Malformed(why) => return Err(format!("backend read malformed bytes: {why}")),
            Seen::Request { method, target, .. }
                if method == "GPOST" || target.contains("smuggled") =>
            {
                return Err(format!("smuggled request reached the backend: {s:?}"))
            }
            _ => {}
        }
    }
    Ok(())
}

#[tokio::test]
async fn no_payload_reaches_the_backend_in_two_readings() {
    let backend = RawBackend::start().await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let mut report = Vec::new();
    for (name, headers, body) in payloads() {
        let before = backend.seen().len();
        let payload =
            format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n{body}");
        let status = send(gw.proxy, payload.as_bytes()).await;
        // The next request on the (kept-alive) upstream connection arrives intact.
        let next = send(
            gw.proxy,
            b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        let seen = backend.seen()[before..].to_vec();
        if let Err(why) = well_formed_and_not_smuggled(&seen) {
            panic!("{name}: {why}\n{seen:?}");
        }
        assert_eq!(next, 200, "{name}: the request after it got {next}");
        let (case, after) = seen.split_at(seen.len() - 1);
        assert_eq!(
            after,
            [Seen::Request {
                method: "GET".into(),
                target: "/next".into(),
                body: vec![]
            }],
            "{name}"
        );
        assert!(
            case.len() <= 1,
            "{name}: the backend read {} requests: {case:?}",
            case.len()
        );
        if status == 200 {
            assert_eq!(
                case.len(),
                1,
                "{name}: answered 200 without reaching the backend"
            );
        } else {
            assert!(
                case.is_empty(),
                "{name}: refused with {status} but forwarded: {case:?}"
            );
        }
        report.push(format!("{name}: {status}, forwarded {}", case.len()));
    }
    // Print the table docs/http.md quotes (cargo test -- --nocapture).
    println!("{}", report.join("\n"));
}

#[tokio::test]
async fn te_cl_is_read_as_chunked_and_forwarded_as_exactly_that_body() {
    let backend = RawBackend::start().await;
    let gw = TestGateway::start(&single_route("p", &[backend.addr], "", "")).await;
    let body = format!("{}0\r\n\r\n", chunk(SMUGGLED));
    let payload = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
    );
    assert_eq!(send(gw.proxy, payload.as_bytes()).await, 200);
    assert_eq!(
        backend.seen(),
        [Seen::Request {
            method: "POST".into(),
            target: "/".into(),
            body: SMUGGLED.as_bytes().to_vec()
        }]
    );
}
