//! A backend with a strict HTTP/1.1 parser that records every request it
//! reads, or that it could not read one: to see what the gateway really
//! forwarded (request smuggling tests). Answers `200 ok`, keep-alive.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One thing the backend read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Request {
        method: String,
        target: String,
        body: Vec<u8>,
    },
    /// Bytes a strict parser refuses (the reason).
    Malformed(String),
}

#[derive(Clone)]
pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let me = RawBackend {
            addr: listener.local_addr().expect("addr"),
            seen: Arc::default(),
        };
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        me
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn push(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(end) = fill_until(&mut stream, &mut buf, |b| find(b, b"\r\n\r\n")).await
            else {
                if !buf.is_empty() {
                    self.push(Seen::Malformed(format!(
                        "incomplete head {:?}",
                        String::from_utf8_lossy(&buf)
                    )));
                }
                return;
            };
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let parsed = match parse_head(&head[..end]) {
                Ok(p) => p,
                Err(why) => {
                    self.push(Seen::Malformed(why));
                    return;
                }
            };
            let body = match parsed.framing {
                Framing::Length(n) => {
                    if fill_until(&mut stream, &mut buf, |b| (b.len() >= n).then_some(n))
                        .await
                        .is_none()
                    {
                        self.push(Seen::Malformed("short body".into()));
                        return;
                    }
                    buf.drain(..n).collect()
                }
                Framing::Chunked => match read_chunked(&mut stream, &mut buf).await {
                    Ok(b) => b,
                    Err(why) => {
                        self.push(Seen::Malformed(why));
                        return;
                    }
                },
            };
            self.push(Seen::Request {
                method: parsed.method,
                target: parsed.target,
                body,
            });
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
}

struct Head {
    method: String,
    target: String,
    framing: Framing,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read until `done` finds what it needs in `buf`; `None` at EOF.
async fn fill_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(n) = done(buf) {
            return Some(n);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A strict reading: one request line, `name: value` fields with token
/// names, and exactly one unambiguous framing.
fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "head is not UTF-8".to_string())?;
    if text.contains('\n') && text.split("\r\n").any(|l| l.contains('\n')) {
        return Err("bare LF in head".into());
    }
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, "HTTP/1.1"] = parts[..] else {
        return Err(format!("bad request line {line:?}"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("bad method {method:?}"));
    }
    let (mut te, mut cl) = (Vec::new(), Vec::new());
    for field in lines {
        let Some((name, value)) = field.split_once(':') else {
            return Err(format!("bad field {field:?}"));
        };
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("bad field name {name:?}"));
        }
        match name.to_ascii_lowercase().as_str() {
            "transfer-encoding" => te.push(value.trim().to_string()),
            "content-length" => cl.push(value.trim().to_string()),
            _ => {}
        }
    }
    let framing = match (&te[..], &cl[..]) {
        ([], []) => Framing::Length(0),
        ([t], []) if t.eq_ignore_ascii_case("chunked") => Framing::Chunked,
        ([], [n]) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Framing::Length(n.parse().map_err(|_| format!("bad length {n:?}"))?)
        }
        _ => return Err(format!("ambiguous framing: te {te:?}, cl {cl:?}")),
    };
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        framing,
    })
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = fill_until(stream, buf, |b| find(b, b"\r\n"))
            .await
            .ok_or("eof in chunk size")?;
        let line: Vec<u8> = buf.drain(..end + 2).collect();
        let size_text = String::from_utf8_lossy(&line[..end]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            fill_until(stream, buf, |b| (b.len() >= 2).then_some(2))
                .await
                .ok_or("eof after last chunk")?;
            let crlf: Vec<u8> = buf.drain(..2).collect();
            return if crlf == b"\r\n" {
                Ok(body)
            } else {
                Err("trailers or garbage after last chunk".into())
            };
        }
        fill_until(stream, buf, |b| (b.len() >= size + 2).then_some(size + 2))
            .await
            .ok_or("eof in chunk")?;
        let data: Vec<u8> = buf.drain(..size + 2).collect();
        if &data[size..] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&data[..size]);
    }
}
