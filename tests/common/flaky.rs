//! A backend that can be told to fail: answer 200 with its name, answer
//! a given status, reset the connection after reading the request, or
//! read the request and never answer. Raw HTTP/1.1 over tokio TCP on
//! `127.0.0.1:0`, keep-alive, request bodies framed by `Content-Length`.
//! Every request it reads (head and body) is kept for the test to look at.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the backend does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the backend's name as the body.
    Ok,
    /// This status, with a short body.
    Status(u16),
    /// Close the connection with a TCP reset after reading the request.
    Reset,
    /// Read the request and never answer.
    Hang,
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// Send the head and part of the body, then reset the connection.
    ResetMidBody,
    /// Send the head and part of the body, then go quiet.
    StallMidBody,
    /// 200 (keep-alive, no `Connection: close`), then close the
    /// connection: the gateway's pooled connection is dead on reuse.
    CloseAfterResponse,
    /// Alternate: one request answered 200, the next reset.
    Flap,
}

impl Mode {
    fn encode(self) -> u32 {
        match self {
            Mode::Ok => 0,
            Mode::Reset => 1,
            Mode::Hang => 2,
            Mode::Garbage => 3,
            Mode::ResetMidBody => 4,
            Mode::StallMidBody => 5,
            Mode::CloseAfterResponse => 6,
            Mode::Flap => 7,
            Mode::Status(s) => u32::from(s),
        }
    }

    fn decode(v: u32) -> Mode {
        match v {
            0 => Mode::Ok,
            1 => Mode::Reset,
            2 => Mode::Hang,
            3 => Mode::Garbage,
            4 => Mode::ResetMidBody,
            5 => Mode::StallMidBody,
            6 => Mode::CloseAfterResponse,
            7 => Mode::Flap,
            s => Mode::Status(s as u16),
        }
    }
}

#[derive(Clone)]
pub struct Flaky {
    pub name: String,
    pub addr: SocketAddr,
    mode: Arc<AtomicU32>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request as the backend read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request line and header fields, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Flaky {
    pub async fn start(name: &str) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let flaky = Flaky {
            name: name.to_string(),
            addr: listener.local_addr().expect("addr"),
            mode: Arc::new(AtomicU32::new(0)),
            hits: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let me = flaky.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(me.clone().serve(stream));
            }
        });
        flaky
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode.encode(), Ordering::SeqCst);
    }

    /// Requests received (whatever was done with them).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Every request read so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let length = Seen {
                head: head.clone(),
                body: Vec::new(),
            }
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(0);
            while buf.len() < length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..length).collect();
            self.seen.lock().unwrap().push(Seen { head, body });
            let hit = self.hits.fetch_add(1, Ordering::SeqCst);
            let mode = match Mode::decode(self.mode.load(Ordering::SeqCst)) {
                Mode::Flap if hit % 2 == 1 => Mode::Reset,
                Mode::Flap => Mode::Ok,
                m => m,
            };
            let (status, body) = match mode {
                Mode::Ok | Mode::CloseAfterResponse | Mode::Flap => (200, self.name.clone()),
                Mode::Status(s) => (s, format!("{} failing", self.name)),
                Mode::Reset => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                Mode::Hang => return drain(stream).await,
                Mode::Garbage => {
                    let _ = stream.write_all(b"SSH-2.0-not-http\r\n\r\n").await;
                    return;
                }
                Mode::ResetMidBody | Mode::StallMidBody => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789";
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.flush().await;
                    if mode == Mode::StallMidBody {
                        return drain(stream).await;
                    }
                    let _ = stream.set_zero_linger();
                    return;
                }
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {}\r\n\r\n",
                body.len(),
                self.name
            );
            // One write: head and body in two would wait on the peer's
            // delayed ACK (Nagle), 40 ms per keep-alive request.
            let answer = format!("{head}{body}");
            if stream.write_all(answer.as_bytes()).await.is_err()
                || mode == Mode::CloseAfterResponse
            {
                return;
            }
        }
    }
}

/// Read until the peer (the gateway) gives up and closes the connection.
async fn drain(mut stream: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
