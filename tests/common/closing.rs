//! A backend that behaves like Node.js, gunicorn and most app servers with
//! short keep-alive timeouts, at its worst: it answers the first request on
//! a connection with keep-alive, then closes the connection without a word
//! when the next request arrives on it. Raw TCP, so the timing is exact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running closing backend; stops when the test's runtime ends.
pub struct ClosingBackend {
    pub addr: SocketAddr,
    /// Requests answered.
    answered: Arc<AtomicUsize>,
    /// Requests that arrived on a used connection and were dropped.
    dropped: Arc<AtomicUsize>,
}

impl ClosingBackend {
    pub async fn start() -> ClosingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind closing backend");
        let addr = listener.local_addr().expect("addr");
        let answered = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, d) = (answered.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, a.clone(), d.clone()));
            }
        });
        ClosingBackend {
            addr,
            answered,
            dropped,
        }
    }

    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Read one request head (and no body: the tests send none).
async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

async fn serve(
    mut conn: tokio::net::TcpStream,
    answered: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    if read_head(&mut conn).await.is_none() {
        return;
    }
    let body = r#"{"backend":"closing"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if conn.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    answered.fetch_add(1, Ordering::SeqCst);
    // Kept alive… until the next request shows up: then closed unanswered.
    if read_head(&mut conn).await.is_some() {
        dropped.fetch_add(1, Ordering::SeqCst);
    }
}
