//! Raw HTTP/2 over TLS for conformance tests: frames written and read by
//! hand, so a test can send what no well-behaved client would (bad
//! lengths, wrong stream ids, broken header blocks) and see exactly how the
//! gateway answers. HPACK is encoded as literal fields without indexing and
//! without Huffman coding, which every decoder must accept.
//!
//! The expectations follow h2spec's acceptance rules: a connection error
//! passes as a GOAWAY with the expected code or the connection closing; a
//! stream error as an RST_STREAM with the expected code, a GOAWAY with it,
//! or the connection closing.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// How long to wait for the gateway's answer to a frame.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub mod code {
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const COMPRESSION_ERROR: u32 = 0x9;
}

pub mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: u8, flags: u8, stream: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload: payload.into(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len() as u32;
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The error code of a GOAWAY or RST_STREAM.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::GOAWAY => 4,
            kind::RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// SETTINGS payload of `(id, value)` pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in pairs {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// WINDOW_UPDATE payload.
pub fn window_increment(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// PRIORITY payload: exclusive bit clear, `depends_on`, weight 16.
pub fn priority(depends_on: u32) -> Vec<u8> {
    let mut out = depends_on.to_be_bytes().to_vec();
    out.push(15);
    out
}

/// An HPACK integer with an `n`-bit prefix, the prefix byte's high bits
/// set to `high`.
fn hpack_int(out: &mut Vec<u8>, high: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing, names and values as
/// given (no lower-casing, so tests can send invalid names).
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The pseudo-header fields of a request to `path` on `authority`.
pub fn request(method: &str, path: &str, authority: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), method.into()),
        (":scheme".into(), "https".into()),
        (":path".into(), path.into()),
        (":authority".into(), authority.into()),
    ]
}

/// `fields` as the `&str` pairs [`header_block`] takes.
pub fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// How a case went: `Ok(None)` conforms; `Ok(Some((expected, got)))`
/// refused as required but with another error code; `Err` fails.
pub type Verdict = Result<Option<(u32, u32)>, String>;

/// What the connection did in answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Frame(Frame),
    Closed,
    TimedOut,
}

/// A TLS connection that negotiated `h2`.
pub struct Conn {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
    /// The server's first SETTINGS.
    pub server_settings: Vec<(u16, u32)>,
}

/// A client connector that trusts `cert` (DER) and offers ALPN `h2`.
pub fn connector(cert: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.to_vec()))
        .expect("test cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

impl Conn {
    /// TLS with ALPN `h2`, nothing sent yet.
    pub async fn open(addr: SocketAddr, connector: &TlsConnector, sni: &str) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from(sni.to_string()).expect("sni");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "h2 negotiated"
        );
        Conn {
            tls,
            buf: Vec::new(),
            server_settings: Vec::new(),
        }
    }

    /// Open, send the preface and our SETTINGS (`ours`), read the server's
    /// SETTINGS and acknowledge them.
    pub async fn ready(
        addr: SocketAddr,
        connector: &TlsConnector,
        sni: &str,
        ours: &[(u16, u32)],
    ) -> Conn {
        let mut c = Conn::open(addr, connector, sni).await;
        c.send_raw(PREFACE).await;
        c.send(Frame::new(kind::SETTINGS, 0, 0, settings(ours)))
            .await;
        loop {
            match c.recv().await {
                Answer::Frame(f) if f.kind == kind::SETTINGS && f.flags & flag::ACK == 0 => {
                    c.server_settings = f
                        .payload
                        .chunks_exact(6)
                        .map(|p| {
                            (
                                u16::from_be_bytes([p[0], p[1]]),
                                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                            )
                        })
                        .collect();
                    break;
                }
                Answer::Frame(_) => continue,
                other => panic!("no SETTINGS from the server: {other:?}"),
            }
        }
        c.send(Frame::new(kind::SETTINGS, flag::ACK, 0, Vec::new()))
            .await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // A server that already closed is an answer the test reads next.
        let _ = self.tls.write_all(bytes).await;
        let _ = self.tls.flush().await;
    }

    pub async fn send(&mut self, frame: Frame) {
        self.send_raw(&frame.encode()).await;
    }

    /// HEADERS with END_HEADERS (and END_STREAM when `end`) on `stream`.
    pub async fn send_headers(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) {
        let flags = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        self.send(Frame::new(
            kind::HEADERS,
            flags,
            stream,
            header_block(fields),
        ))
        .await;
    }

    /// A well-formed GET on `stream`.
    pub async fn send_get(&mut self, stream: u32, path: &str) {
        let fields = request("GET", path, "h2.test");
        self.send_headers(stream, &pairs(&fields), true).await;
    }

    /// The next frame, or `Closed` / `TimedOut`.
    pub async fn recv(&mut self) -> Answer {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Answer::Frame(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut chunk)).await {
                Err(_) => return Answer::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return Answer::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Without waiting: a GOAWAY or the connection's end already received
    /// (other frames are dropped), or `None`.
    pub async fn poll_closed(&mut self) -> Option<Answer> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tokio::time::timeout(
                std::time::Duration::from_millis(1),
                self.tls.read(&mut chunk),
            )
            .await
            {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(Answer::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        while self.buf.len() >= 9 {
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            if self.buf.len() < 9 + len {
                break;
            }
            if self.buf[3] == kind::GOAWAY {
                return Some(self.recv().await);
            }
            self.buf.drain(..9 + len);
        }
        None
    }

    /// Every frame until `done` returns true for one (included) or the
    /// connection closes or goes quiet.
    pub async fn until(&mut self, mut done: impl FnMut(&Frame) -> bool) -> (Vec<Frame>, Answer) {
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Answer::Frame(f) => {
                    let stop = done(&f);
                    seen.push(f.clone());
                    if stop {
                        return (seen, Answer::Frame(f));
                    }
                }
                end => return (seen, end),
            }
        }
    }

    /// A connection error `code`: a GOAWAY with it, or the connection
    /// closed. A GOAWAY with another code, after which the connection
    /// closes, is a *code deviation*: `Ok(Some((expected, got)))`.
    pub async fn expect_connection_error(&mut self, code: u32) -> Verdict {
        let (seen, end) = self.until(|f| f.kind == kind::GOAWAY).await;
        match end {
            Answer::Frame(f) if f.error_code() == Some(code) => Ok(None),
            Answer::Closed => Ok(None),
            Answer::Frame(f) if f.kind == kind::GOAWAY => self.closes_after(code, &f).await,
            other => Err(format!(
                "expected connection error {code:#x} (GOAWAY or close), got {other:?} after {seen:?}"
            )),
        }
    }

    /// A stream error `code` on `stream`: an RST_STREAM with it, a GOAWAY
    /// with it (RFC 9113 §5.4: a stream error may be treated as a
    /// connection error), or the connection closed. Another code is a code
    /// deviation, as for [`Conn::expect_connection_error`].
    pub async fn expect_stream_error(&mut self, stream: u32, code: u32) -> Verdict {
        let (seen, end) = self
            .until(|f| (f.kind == kind::RST_STREAM && f.stream == stream) || f.kind == kind::GOAWAY)
            .await;
        match end {
            Answer::Frame(f) if f.error_code() == Some(code) => Ok(None),
            Answer::Closed => Ok(None),
            Answer::Frame(f) if f.kind == kind::GOAWAY => self.closes_after(code, &f).await,
            Answer::Frame(f) => Ok(f.error_code().map(|got| (code, got))),
            other => Err(format!(
                "expected stream error {code:#x} on stream {stream}, got {other:?} after {seen:?}"
            )),
        }
    }

    /// After a GOAWAY with another code than `code`: the connection must
    /// close (it was refused, only the code differs).
    async fn closes_after(&mut self, code: u32, goaway: &Frame) -> Verdict {
        let got = goaway.error_code().unwrap_or(u32::MAX);
        match self.until(|_| false).await.1 {
            Answer::Closed => Ok(Some((code, got))),
            other => Err(format!(
                "GOAWAY {got:#x} (expected {code:#x}) and the connection stayed open: {other:?}"
            )),
        }
    }

    /// Either error, where the RFC allows a stream or a connection error.
    pub async fn expect_error(&mut self, stream: u32, code: u32) -> Verdict {
        self.expect_stream_error(stream, code).await
    }

    /// The connection stays usable: a PING is answered with its payload.
    pub async fn expect_alive(&mut self) -> Result<(), String> {
        let payload = *b"alive?!!";
        self.send(Frame::new(kind::PING, 0, 0, payload.to_vec()))
            .await;
        let (seen, end) = self
            .until(|f| f.kind == kind::PING && f.flags & flag::ACK != 0 || f.kind == kind::GOAWAY)
            .await;
        match end {
            Answer::Frame(f) if f.kind == kind::PING && f.payload == payload => Ok(()),
            other => Err(format!("expected a PING ACK, got {other:?} after {seen:?}")),
        }
    }

    /// A response on `stream`: its HEADERS (first byte 0x88 is `:status:
    /// 200` from HPACK's static table) through END_STREAM. The `:status` byte.
    pub async fn expect_response(&mut self, stream: u32) -> Result<u8, String> {
        let mut status = None;
        loop {
            match self.recv().await {
                Answer::Frame(f) if f.stream == stream && f.kind == kind::HEADERS => {
                    status.get_or_insert(f.payload.first().copied().unwrap_or(0));
                    if f.flags & flag::END_STREAM != 0 {
                        break;
                    }
                }
                Answer::Frame(f) if f.stream == stream && f.kind == kind::DATA => {
                    if f.flags & flag::END_STREAM != 0 {
                        break;
                    }
                }
                Answer::Frame(f) if f.stream == stream && f.kind == kind::RST_STREAM => {
                    return Err(format!("stream {stream} reset: {f:?}"));
                }
                Answer::Frame(f) if f.kind == kind::GOAWAY => {
                    return Err(format!("GOAWAY while waiting for stream {stream}: {f:?}"));
                }
                Answer::Frame(_) => continue,
                other => return Err(format!("no response on stream {stream}: {other:?}")),
            }
        }
        status.ok_or_else(|| format!("no HEADERS on stream {stream}"))
    }
}

/// A gateway with a TLS listener (a certificate for `h2.test` made at test
/// time) in front of `backend`, and a connector that trusts it.
pub struct H2Gateway {
    pub gw: crate::common::TestGateway,
    pub connector: TlsConnector,
    _dir: tempfile::TempDir,
}

impl H2Gateway {
    pub async fn start(backend: SocketAddr) -> H2Gateway {
        Self::start_config(&crate::common::single_route("p", &[backend], "", "")).await
    }

    /// `config` (built on `base_config`) with its listener made TLS.
    pub async fn start_config(config: &str) -> H2Gateway {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["h2.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("h2.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("h2.key"), cert.signing_key.serialize_pem()).unwrap();
        let config = config.replacen(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n",
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"h2.pem\"\nkey = \"h2.key\"\n",
            1,
        );
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, config).unwrap();
        H2Gateway {
            gw: crate::common::TestGateway::start_file(&path).await,
            connector: connector(cert.cert.der()),
            _dir: dir,
        }
    }

    /// One request over a new HTTP/2 connection (the `h2` crate's client,
    /// which sends the target's bytes as they are): status and body.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let (status, _, body) = self.request_full(method, path_and_query, headers).await?;
        Ok((status, body))
    }

    /// As [`H2Gateway::request`], with the response's header fields.
    pub async fn request_full(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, http::HeaderMap, String), String> {
        let (status, fields, body) = self.request_bytes(method, path_and_query, headers).await?;
        Ok((status, fields, String::from_utf8_lossy(&body).into_owned()))
    }

    /// As [`H2Gateway::request_full`], the body as bytes.
    pub async fn request_bytes(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), String> {
        let tcp = tokio::net::TcpStream::connect(self.gw.proxy)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("h2.test").map_err(|e| e.to_string())?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (client, conn) = h2::client::handshake(tls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://h2.test{path_and_query}"));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(()).map_err(|e| e.to_string())?;
        let (resp, _) = client.send_request(req, true).map_err(|e| e.to_string())?;
        let resp = resp.await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let fields = resp.headers().clone();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok((status, fields, out))
    }

    /// A connection past the preface and SETTINGS exchange.
    pub async fn conn(&self) -> Conn {
        Conn::ready(self.gw.proxy, &self.connector, "h2.test", &[]).await
    }

    pub async fn conn_with(&self, ours: &[(u16, u32)]) -> Conn {
        Conn::ready(self.gw.proxy, &self.connector, "h2.test", ours).await
    }
}
