//! HTTP/2 defences, over raw frames on real TLS: the concurrent-stream and
//! header-list limits the gateway advertises and enforces, rapid reset
//! (CVE-2023-44487) and CONTINUATION floods. After each attack the gateway
//! still serves a fresh connection.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use common::backend::Backend;
use common::eventually;
use h2raw::{flag, header_block, kind, pairs, request, setting, Answer, Conn, Frame, H2Gateway};

const CANCEL: u32 = 0x8;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

async fn still_serves(h2: &H2Gateway) {
    let mut c = h2.conn().await;
    c.send_get(1, "/after").await;
    assert_eq!(
        c.expect_response(1).await,
        Ok(0x88),
        "a fresh connection gets a 200"
    );
}

#[tokio::test]
async fn concurrent_streams_and_header_list_size_are_limited() {
    let backend = Backend::start("b").await;
    let h2 = H2Gateway::start(backend.addr).await;
    let mut c = h2.conn().await;
    assert!(
        c.server_settings
            .contains(&(setting::MAX_CONCURRENT_STREAMS, 100)),
        "{:?}",
        c.server_settings
    );
    assert!(
        c.server_settings.contains(&(MAX_HEADER_LIST_SIZE, 65536)),
        "{:?}",
        c.server_settings
    );

    // 100 requests held at the backend: the 101st stream is refused.
    backend.hold(true);
    for i in 0..100 {
        c.send_get(2 * i + 1, "/held").await;
    }
    eventually("100 requests at the backend", || async {
        (backend.hits() == 100).then_some(())
    })
    .await;
    c.send_get(201, "/one-too-many").await;
    let (_, end) = c
        .until(|f| f.kind == kind::RST_STREAM && f.stream == 201 || f.kind == kind::GOAWAY)
        .await;
    match end {
        Answer::Frame(f) if f.kind == kind::RST_STREAM => {
            // REFUSED_STREAM or PROTOCOL_ERROR (RFC 9113 §5.1.2).
            assert!(matches!(f.error_code(), Some(0x7) | Some(0x1)), "{f:?}");
        }
        other => panic!("stream 201 not refused: {other:?}"),
    }
    backend.hold(false);
    assert_eq!(c.expect_response(1).await, Ok(0x88));
    assert_eq!(backend.hits(), 100);

    // A header list over 64 KiB is not forwarded.
    let mut c = h2.conn().await;
    let mut fields = request("GET", "/big", "h2.test");
    let big = "v".repeat(16_000);
    for i in 0..5 {
        fields.push((format!("x-big-{i}"), big.clone()));
    }
    let block = header_block(&pairs(&fields));
    // Split over CONTINUATION frames (max frame size 16 KiB).
    let mut chunks = block.chunks(16_000).peekable();
    let first = chunks.next().unwrap().to_vec();
    c.send(Frame::new(kind::HEADERS, flag::END_STREAM, 1, first))
        .await;
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        c.send(Frame::new(kind::CONTINUATION, flags, 1, chunk.to_vec()))
            .await;
    }
    let (seen, end) = c
        .until(|f| {
            f.stream == 1 && (f.kind == kind::HEADERS || f.kind == kind::RST_STREAM)
                || f.kind == kind::GOAWAY
        })
        .await;
    match end {
        // `:status: 431` from the codec: a literal with the indexed name
        // `:status` (0x48) and the Huffman-coded value "431" (0x83 = 3 bytes).
        Answer::Frame(f) if f.kind == kind::HEADERS => {
            assert_eq!(f.payload, [0x48, 0x83, 0x69, 0x90, 0xff], "{f:?}");
            assert!(f.flags & flag::END_STREAM != 0);
        }
        Answer::Frame(_) | Answer::Closed => {}
        Answer::TimedOut => panic!("no answer to an oversized header list: {seen:?}"),
    }
    assert_eq!(backend.hits(), 100);
    still_serves(&h2).await;
}

#[tokio::test]
async fn rapid_reset_is_cut_off() {
    let backend = Backend::start("b").await;
    let h2 = H2Gateway::start(backend.addr).await;
    let mut c = h2.conn().await;
    let fields = request("GET", "/reset", "h2.test");
    let block = header_block(&pairs(&fields));
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(
            Frame::new(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                id,
                block.clone(),
            )
            .encode(),
        );
        burst.extend(Frame::new(kind::RST_STREAM, 0, id, CANCEL.to_be_bytes().to_vec()).encode());
    }
    c.send_raw(&burst).await;
    let (seen, end) = c.until(|f| f.kind == kind::GOAWAY).await;
    match end {
        // ENHANCE_YOUR_CALM, or the connection closed.
        Answer::Frame(ref f) => assert_eq!(f.error_code(), Some(0xb), "{f:?}"),
        Answer::Closed => {}
        Answer::TimedOut => panic!(
            "1000 HEADERS+RST_STREAM pairs and no GOAWAY: {} frames",
            seen.len()
        ),
    }
    println!(
        "rapid reset: {end:?} after {} frames; {} requests reached the backend",
        seen.len(),
        backend.hits()
    );
    // Only a small share of the cancelled requests got to the backend.
    assert!(
        backend.hits() < 200,
        "{} requests reached the backend",
        backend.hits()
    );
    still_serves(&h2).await;
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let backend = Backend::start("b").await;
    let h2 = H2Gateway::start(backend.addr).await;
    let mut c: Conn = h2.conn().await;
    let fields = request("GET", "/flood", "h2.test");
    c.send(Frame::new(
        kind::HEADERS,
        0,
        1,
        header_block(&pairs(&fields)),
    ))
    .await;
    // Header fields that never end: 16 KiB CONTINUATION frames, 8 MiB in all.
    let piece = header_block(&[("x-flood", &"f".repeat(16_000))]);
    let mut answer = Answer::TimedOut;
    let mut sent = 0;
    for _ in 0..512 {
        c.send(Frame::new(kind::CONTINUATION, 0, 1, piece.clone()))
            .await;
        sent += 1;
        if let Some(end) = c.poll_closed().await {
            answer = end;
            break;
        }
    }
    println!("CONTINUATION flood: {answer:?} after {sent} frames of 16 KB");
    if matches!(answer, Answer::TimedOut) {
        answer = c.until(|f| f.kind == kind::GOAWAY).await.1;
    }
    assert!(
        matches!(&answer, Answer::Closed)
            || matches!(&answer, Answer::Frame(f) if f.kind == kind::GOAWAY),
        "{answer:?}"
    );
    assert_eq!(backend.hits(), 0);
    still_serves(&h2).await;
}
