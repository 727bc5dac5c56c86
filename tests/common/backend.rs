//! A real HTTP backend on `127.0.0.1:0` (axum): echoes what it received as
//! JSON, and has endpoints for health, slowness, SSE and WebSocket tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::sync::Notify;

#[derive(Clone)]
struct Shared {
    name: String,
    hits: Arc<AtomicUsize>,
    health_status: Arc<AtomicU16>,
    release: Arc<Notify>,
    hold: tokio::sync::watch::Sender<bool>,
}

/// A running backend; stops when the test's runtime ends.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    health_status: Arc<AtomicU16>,
    /// Lets `/sse` send its last event and finish.
    pub release: Arc<Notify>,
    hold: tokio::sync::watch::Sender<bool>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Self::serve(name, listener)
    }

    /// Serve on an already bound listener (used to bring a backend back on the same port).
    pub fn serve(name: &str, listener: tokio::net::TcpListener) -> Backend {
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            name: name.to_string(),
            hits: Arc::new(AtomicUsize::new(0)),
            health_status: Arc::new(AtomicU16::new(200)),
            release: Arc::new(Notify::new()),
            hold: tokio::sync::watch::channel(false).0,
        };
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/slow", any(slow))
            .route("/sse", get(sse))
            .route("/ws", get(ws))
            .route("/doc", get(doc))
            .fallback(echo)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Backend {
            name: name.to_string(),
            addr,
            hits: shared.hits,
            health_status: shared.health_status,
            release: shared.release,
            hold: shared.hold,
            task: Arc::new(task),
        }
    }

    /// While held, echo requests are counted, then wait until released.
    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Status `/healthz` answers with.
    pub fn set_health_status(&self, status: u16) {
        self.health_status.store(status, Ordering::SeqCst);
    }

    /// Stop accepting connections (the port is closed).
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn healthz(State(s): State<Shared>) -> StatusCode {
    StatusCode::from_u16(s.health_status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

async fn slow(State(s): State<Shared>) -> &'static str {
    s.hits.fetch_add(1, Ordering::SeqCst);
    // Slower than any read timeout the tests configure: this is the
    // behaviour under test, not a wait for something.
    tokio::time::sleep(Duration::from_secs(10)).await;
    "late"
}

async fn sse(State(s): State<Shared>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let release = s.release.clone();
    let stream = async_stream(release);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// First event at once; the last only after the test releases it.
fn async_stream(
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<&'static str, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |state| {
        let release = release.clone();
        async move {
            match state {
                0 => Some((Ok("data: first\n\n"), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok("data: last\n\n"), 2))
                }
                _ => None,
            }
        }
    })
}

async fn ws(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {}", t.as_str()).into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// `GET /doc?size=N&type=T&encoding=E&cc=C&etag=X&stream=1`: a
/// compressible body of `size` bytes (JSON-like text, the same on every
/// call for the same size) as `type` (default `application/json`), with
/// `Content-Encoding: E`, `Cache-Control: C` and `ETag: "X"` when given;
/// `stream=1` sends it in 1 KiB chunks without `Content-Length`.
async fn doc(State(s): State<Shared>, req: Request) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/").replace("%20", " ")))
        .collect();
    let size: usize = query
        .get("size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let body = document(size);
    let mut r = Response::builder().header(
        "content-type",
        query.get("type").map_or("application/json", String::as_str),
    );
    for (param, field) in [("encoding", "content-encoding"), ("cc", "cache-control")] {
        if let Some(v) = query.get(param) {
            r = r.header(field, v.as_str());
        }
    }
    if let Some(tag) = query.get("etag") {
        r = r.header("etag", format!("\"{tag}\""));
    }
    if query.get("stream").is_some_and(|v| v == "1") {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(1024).map(|c| Ok(c.to_vec())).collect();
        return r
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
    }
    r.body(Body::from(body)).unwrap()
}

/// `size` bytes of repetitive JSON-like text.
pub fn document(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"order {i}\",\"state\":\"open\"}},").as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

async fn echo(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> impl IntoResponse {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mut hold = s.hold.subscribe();
    let _ = hold.wait_for(|held| !*held).await;
    let (parts, body) = req.into_parts();
    let body_len = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    let headers: BTreeMap<String, String> = header_map(&parts.headers);
    // `x-echo-status: 503` makes the answer a 503.
    let status = parts
        .headers
        .get("x-echo-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let body = serde_json::json!({
        "backend": s.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": body_len,
        // The gateway's side of the connection: one value per upstream connection.
        "peer": peer.to_string(),
    });
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-backend", "yes"),
            ("x-internal", "secret"),
        ],
        body.to_string(),
    )
}

fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in h {
        let v = v.to_str().unwrap_or("").to_string();
        out.entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}
