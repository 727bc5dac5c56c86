//! `[routes.compression]` against a real backend: the coding negotiated
//! from `Accept-Encoding` (q-values, the route's preference), bodies that
//! decode to exactly what the origin sent (with and without
//! `Content-Length`, over HTTP/1.1 and HTTP/2), `Vary`, weakened `ETag`,
//! and what is never compressed: small bodies, other types, encoded
//! bodies, `no-transform`, ranges, `HEAD`. Cached objects are stored
//! once, as the origin sent them, and compressed on the way out for each
//! client.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use std::io::Read;

use common::backend::{document, Backend};
use common::{base_config, pool, scrape_until, TestGateway};

fn config(backend: std::net::SocketAddr) -> String {
    format!(
        r#"{base}{pool}
[[routes]]
id = "api"
path = "/api"
pool = "p"
strip_prefix = true
[routes.compression]
algorithms = ["zstd", "br", "gzip"]
min_size = "1KiB"
types = ["application/json", "text/*"]
level = {{ gzip = 6 }}

[[routes]]
id = "cached"
path = "/cached"
pool = "p"
strip_prefix = true
[routes.cache]
ttl = "60s"
[routes.compression]

[[routes]]
id = "plain"
path = "/plain"
pool = "p"
strip_prefix = true
"#,
        base = base_config(),
        pool = pool("p", &[backend], ""),
    )
}

/// The same config behind a plain HTTP/1.1 listener and a TLS one that
/// speaks HTTP/2.
struct Gateways {
    h1: TestGateway,
    h2: h2raw::H2Gateway,
}

impl Gateways {
    async fn start(config: &str) -> Gateways {
        Gateways {
            h1: TestGateway::start(config).await,
            h2: h2raw::H2Gateway::start_config(config).await,
        }
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body decoded per its `Content-Encoding`.
    fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.header("content-encoding") {
            None => out.clone_from(&self.body),
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            Some("br") => {
                brotli::Decompressor::new(&self.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("valid brotli");
            }
            Some("zstd") => out = zstd::decode_all(&self.body[..]).expect("valid zstd"),
            Some(other) => panic!("unexpected coding {other}"),
        }
        out
    }
}

async fn get(gw: &Gateways, path: &str, headers: &[(&str, &str)], h2: bool) -> Answer {
    get_with(gw, "GET", path, headers, h2).await
}

/// `method path` over HTTP/2 or HTTP/1.1, by a client that does not
/// decode on its own: the test sees the bytes sent.
async fn get_with(
    gw: &Gateways,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    h2: bool,
) -> Answer {
    if h2 {
        let (status, headers, body) = gw
            .h2
            .request_bytes(method, path, headers)
            .await
            .expect("h2 request");
        return Answer {
            status,
            headers,
            body,
        };
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .unwrap();
    let mut req = client.request(method.parse().unwrap(), gw.h1.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.expect("request");
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.expect("body").to_vec(),
    }
}

#[tokio::test]
async fn negotiated_codings_decode_to_the_origins_bytes() {
    let backend = Backend::start("b").await;
    let gw = Gateways::start(&config(backend.addr)).await;
    let doc = document(20_000);
    for h2 in [false, true] {
        for (accept, coding) in [
            ("gzip, deflate, br, zstd", "zstd"),
            ("gzip, br", "br"),
            ("gzip", "gzip"),
            ("br;q=0.5, gzip;q=0.9", "gzip"),
            ("*", "zstd"),
            ("zstd;q=0, *;q=0.3", "br"),
        ] {
            for path in ["/api/doc?size=20000", "/api/doc?size=20000&stream=1"] {
                let a = get(&gw, path, &[("accept-encoding", accept)], h2).await;
                let what = format!("{accept} {path} h2={h2}");
                assert_eq!(a.status, 200, "{what}");
                assert_eq!(a.header("content-encoding"), Some(coding), "{what}");
                assert_eq!(a.header("vary"), Some("Accept-Encoding"), "{what}");
                assert_eq!(a.header("content-length").map(|_| ()), None, "{what}");
                if !h2 {
                    // Framed, so the connection stays open for the next.
                    assert_eq!(a.header("transfer-encoding"), Some("chunked"), "{what}");
                }
                assert!(
                    a.body.len() < doc.len() / 4,
                    "{what}: {} bytes",
                    a.body.len()
                );
                assert_eq!(a.decoded(), doc, "{what}");
            }
        }
    }
    // No Accept-Encoding, or none the route has: as the origin sent it,
    // still with Vary.
    for accept in [None, Some("identity"), Some("deflate"), Some("gzip;q=0")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
        let a = get(&gw, "/api/doc?size=20000", &headers, false).await;
        assert_eq!(a.header("content-encoding"), None, "{accept:?}");
        assert_eq!(a.header("content-length"), Some("20000"));
        assert_eq!(a.header("vary"), Some("Accept-Encoding"));
        assert_eq!(a.body, doc);
    }
    let text = scrape_until(
        &gw.h1,
        &[r#"portcullis_compressed_responses_total{coding="gzip",route="api"} 4"#],
    )
    .await;
    let bytes_in = common::sample(
        &text,
        r#"portcullis_compression_bytes_total{coding="gzip",route="api",stage="in"}"#,
    )
    .unwrap_or(0.0);
    assert_eq!(bytes_in, 4.0 * 20_000.0);
    assert!(gw.h1.stdout().contains(r#""compression":"zstd""#));
}

#[tokio::test]
async fn what_is_never_compressed() {
    let backend = Backend::start("b").await;
    let gw = Gateways::start(&config(backend.addr)).await;
    let gzip = [("accept-encoding", "gzip")];
    let untouched = |a: &Answer, what: &str| {
        assert_eq!(a.status, 200, "{what}");
        assert_eq!(a.header("content-encoding"), None, "{what}");
    };
    // Below min_size, a type not listed, a stream of events.
    untouched(&get(&gw, "/api/doc?size=1000", &gzip, false).await, "small");
    untouched(
        &get(&gw, "/api/doc?size=9000&type=image%2Fpng", &gzip, false).await,
        "image",
    );
    untouched(
        &get(
            &gw,
            "/api/doc?size=9000&type=text%2Fevent-stream&stream=1",
            &gzip,
            false,
        )
        .await,
        "event stream",
    );
    // Already encoded by the origin: passed through as it is.
    let a = get(&gw, "/api/doc?size=9000&encoding=br", &gzip, false).await;
    assert_eq!(a.header("content-encoding"), Some("br"));
    assert_eq!(a.body, document(9000));
    // The origin forbids transformation.
    untouched(
        &get(&gw, "/api/doc?size=9000&cc=no-transform", &gzip, false).await,
        "no-transform",
    );
    // A route without the policy.
    let a = get(&gw, "/plain/doc?size=9000", &gzip, false).await;
    untouched(&a, "plain route");
    assert_eq!(a.header("vary"), None);
    // HEAD: the head of the identity response.
    let a = get_with(&gw, "HEAD", "/api/doc?size=9000", &gzip, false).await;
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.header("content-length"), Some("9000"));
    // HTTP/1.0 cannot take a chunked body: sent as it is.
    let (status, head, body) = common::raw_http1(
        gw.h1.proxy,
        b"GET /api/doc?size=9000 HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 9000);
    // A strong ETag is weakened when the bytes change.
    let a = get(&gw, "/api/doc?size=9000&etag=v7", &gzip, false).await;
    assert_eq!(a.header("etag"), Some("W/\"v7\""));
    let a = get(&gw, "/api/doc?size=9000&etag=v7", &[], false).await;
    assert_eq!(a.header("etag"), Some("\"v7\""));
}

#[tokio::test]
async fn a_cached_object_is_stored_once_and_compressed_per_client() {
    let backend = Backend::start("b").await;
    let gw = Gateways::start(&config(backend.addr)).await;
    let doc = document(8000);
    let path = "/cached/doc?size=8000&etag=c1";
    // Stored from a gzip client's request...
    let first = get(&gw, path, &[("accept-encoding", "gzip")], false).await;
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert_eq!(first.decoded(), doc);
    // ...served from the store to each client in its own coding.
    for (accept, coding) in [
        (Some("br"), Some("br")),
        (None, None),
        (Some("zstd"), Some("zstd")),
        (Some("gzip"), Some("gzip")),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
        for h2 in [false, true] {
            let a = get(&gw, path, &headers, h2).await;
            assert_eq!(a.header("content-encoding"), coding, "{accept:?}");
            assert_eq!(a.decoded(), doc, "{accept:?}");
        }
    }
    // One object in each gateway (the HTTP/1.1 one and the HTTP/2 one).
    assert_eq!(backend.hits(), 2, "stored once per gateway");
    // Revalidating with the weakened ETag a compressed answer carried:
    // 304, without a body or a coding.
    let a = get(
        &gw,
        path,
        &[("accept-encoding", "gzip"), ("if-none-match", "W/\"c1\"")],
        false,
    )
    .await;
    assert_eq!(a.status, 304);
    assert_eq!(a.header("content-encoding"), None);
    assert!(a.body.is_empty());
    // A range of the stored object: the identity bytes, never compressed.
    let a = get(
        &gw,
        path,
        &[("accept-encoding", "gzip"), ("range", "bytes=0-99")],
        false,
    )
    .await;
    assert_eq!(a.status, 206);
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.body, doc[..100]);
}
