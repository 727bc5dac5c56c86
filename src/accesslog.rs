//! The access log: one JSON object per request, on one line.
//!
//! Request threads format the line and hand it to a dedicated writer
//! thread through a bounded queue; they never wait on the disk. When the
//! queue is full the line is dropped and counted (a metric), which is the
//! trade-off nginx's buffered log makes too, the other way round.
//!
//! Lines carry no secrets: the path without its query (a query can hold an
//! API key), the consumer id and the key's non-secret prefix, never a key
//! or a digest. The file is reopened on every reload, so `logrotate` can
//! move it away and signal a reload.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::model::AccessLogTarget;

/// Lines that may wait for the writer before new ones are dropped.
pub const QUEUE_LINES: usize = 65_536;

/// While lines keep coming, the writer collects them this long and then
/// writes them in one go (nginx's `flush=` of a buffered log, shorter). A
/// line per wake-up and a `write` per line cost more than formatting it.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

enum Message {
    Line(Vec<u8>),
    /// Write to this from now on (opened by whoever asked for the reopen).
    Reopen(Box<dyn Write + Send>),
    /// Write out everything queued before this, then acknowledge.
    Flush(SyncSender<()>),
}

/// The process's access log.
pub struct AccessLog {
    tx: Option<SyncSender<Message>>,
    /// Lines lost: the queue was full, or writing failed (disk full).
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Open `target` and start the writer thread for it (nothing for
    /// `Off`). A file that cannot be opened for appending is an error: the
    /// log never silently moves to stdout.
    pub fn start(target: &AccessLogTarget) -> Result<AccessLog, OpenError> {
        let dropped = Arc::new(AtomicU64::new(0));
        if *target == AccessLogTarget::Off {
            return Ok(AccessLog { tx: None, dropped });
        }
        let out = open(target)?;
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let lost = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, out, lost));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access log writer; access logging is off");
            return Ok(AccessLog { tx: None, dropped });
        }
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    /// Whether lines are written at all (skip formatting when not).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queue one line (without its newline).
    pub fn write(&self, line: Vec<u8>) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(Message::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reopen (or switch to) `target`: after a reload, for logrotate.
    /// Starting or stopping the log altogether needs a restart. When
    /// `target` cannot be opened the log keeps going to the file it was
    /// writing, and the error says why.
    pub fn reopen(&self, target: &AccessLogTarget) -> Result<(), OpenError> {
        if let Some(tx) = &self.tx {
            let out = open(target)?;
            // Blocking send: a reload may wait for the writer, a request never does.
            let _ = tx.send(Message::Reopen(out));
        }
        Ok(())
    }

    /// Write out every line queued so far and wait (up to 5 s) until that
    /// is done: at shutdown, so no line is lost with the process.
    pub fn close(&self) {
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = sync_channel(1);
            if tx.send(Message::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(std::time::Duration::from_secs(5));
            }
        }
    }

    /// Lines dropped because the writer fell behind or could not write
    /// them (a full disk).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The access-log file could not be opened for appending.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {} for appending: {error}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

fn open(target: &AccessLogTarget) -> Result<Box<dyn Write + Send>, OpenError> {
    match target {
        AccessLogTarget::File(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|f| {
                Box::new(std::io::BufWriter::with_capacity(64 * 1024, f)) as Box<dyn Write + Send>
            })
            .map_err(|error| OpenError {
                path: path.clone(),
                error,
            }),
        _ => Ok(Box::new(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ))),
    }
}

/// Idle, the writer blocks until a line comes (one wake-up). Busy, it
/// takes whatever queued up every [`FLUSH_INTERVAL`] and writes it in one
/// batch, so request threads do not wake it line by line; once an interval
/// brings nothing it goes back to blocking. A quiet gateway's lines show up
/// within one interval.
fn writer(rx: Receiver<Message>, out: Box<dyn Write + Send>, dropped: Arc<AtomicU64>) {
    let mut sink = Sink {
        out,
        failed: false,
        dropped,
    };
    while let Ok(message) = rx.recv() {
        sink.handle(message);
        loop {
            std::thread::sleep(FLUSH_INTERVAL);
            let mut taken = 0usize;
            loop {
                match rx.try_recv() {
                    Ok(message) => {
                        sink.handle(message);
                        taken += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        sink.flush();
                        return;
                    }
                }
            }
            sink.flush();
            if taken == 0 {
                break;
            }
        }
    }
    sink.flush();
}

struct Sink {
    out: Box<dyn Write + Send>,
    /// A write error was logged; not again until the next reopen.
    failed: bool,
    /// Shared with [`AccessLog::dropped`]: lines that could not be written.
    dropped: Arc<AtomicU64>,
}

impl Sink {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Line(mut line) => {
                line.push(b'\n');
                if let Err(e) = self.out.write_all(&line) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.failed_with(&e);
                }
            }
            Message::Reopen(out) => {
                self.flush();
                self.out = out;
                self.failed = false;
            }
            Message::Flush(done) => {
                self.flush();
                let _ = done.try_send(());
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed_with(&e);
        }
    }

    /// Log a write error once (until the next reopen): a full disk must
    /// not flood the log, nor stop the gateway.
    fn failed_with(&mut self, e: &std::io::Error) {
        if !self.failed {
            tracing::error!(error = %e, "cannot write the access log; lines are dropped and counted");
            self.failed = true;
        }
    }
}

/// The TLS side of a request's connection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tls<'a> {
    /// As nginx's `$ssl_protocol` names it: `TLSv1.3`, `TLSv1.2`.
    pub version: &'a str,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<&'a str>,
    /// The protocol ALPN negotiated (`h2`, `http/1.1`), if any.
    pub alpn: Option<&'a str>,
}

/// One request, as the access log records it.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub request_id: &'a str,
    /// The client's address (`crate::client_addr`).
    pub client: Option<std::net::IpAddr>,
    /// The connection's peer: a trusted proxy, or the client itself.
    pub peer: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    /// Without the query.
    pub path: &'a str,
    pub protocol: &'a str,
    /// 0 when no response was sent.
    pub status: u16,
    pub route: Option<&'a str>,
    pub upstream: Option<std::net::SocketAddr>,
    /// Connect attempts (more than 1 after retries).
    pub attempts: usize,
    pub duration: std::time::Duration,
    pub bytes_sent: usize,
    pub consumer: Option<&'a str>,
    pub key_prefix: Option<&'a str>,
    /// The issuer of the bearer token that named `consumer`.
    pub issuer: Option<&'a str>,
    pub auth_failure: Option<&'a str>,
    pub limit: Option<&'a str>,
    /// Verified client certificate subject (TLS listeners with client_auth).
    pub client_cert_subject: Option<&'a str>,
    /// The error that ended the request, if any (no internal detail).
    pub error: Option<&'a str>,
    /// W3C trace id (32 hex digits): the client's, or a new one.
    pub trace_id: &'a str,
    /// From choosing the backend that answered to its response head.
    pub upstream_ttfb: Option<std::time::Duration>,
    /// Request body bytes received from the client.
    pub bytes_received: usize,
    /// `None` on plain-HTTP listeners.
    pub tls: Option<Tls<'a>>,
    /// What the response cache did (`hit`, `miss`, …); `None` off caching
    /// routes.
    pub cache: Option<&'a str>,
    /// The pool that took the request (the route's, or a fallback).
    pub pool: Option<&'a str>,
    /// Breaker, ejection, concurrency, retry-budget and fallback decisions
    /// that shaped the request (`breaker_open`, `fallback`, …).
    pub decisions: Vec<&'static str>,
    /// What the route's CORS policy made of the request (`preflight`,
    /// `preflight_refused`, `allowed`, `origin_refused`); `None` without
    /// one or without `Origin`.
    pub cors: Option<&'static str>,
    /// On a route with a traffic split: the side's pool, and why
    /// (`match`, `sticky`, `weight`).
    pub split: Option<&'a str>,
    pub split_by: Option<&'static str>,
    /// `[routes.mirror]`: `sent`, `dropped` or `too_large` for a sampled
    /// request; `None` otherwise.
    pub mirror: Option<&'static str>,
    /// `[routes.compression]`: the coding the body was sent in, when the
    /// gateway compressed it.
    pub compression: Option<&'static str>,
}

impl Entry<'_> {
    /// The JSON line (without a newline), timestamped `now`.
    pub fn to_json(&self, now: SystemTime) -> Vec<u8> {
        let mut b = Vec::with_capacity(384);
        b.extend_from_slice(b"{\"ts\":\"");
        write_rfc3339_millis(&mut b, now);
        b.push(b'"');
        field_str(&mut b, "request_id", Some(self.request_id));
        field_str(&mut b, "trace_id", Some(self.trace_id));
        let client = self.client.map(|ip| ip.to_string());
        field_str(&mut b, "client", client.as_deref());
        let peer = self.peer.map(|ip| ip.to_string());
        field_str(&mut b, "peer", peer.as_deref());
        field_str(&mut b, "method", Some(self.method));
        field_str(&mut b, "host", Some(self.host));
        field_str(&mut b, "path", Some(self.path));
        field_str(&mut b, "protocol", Some(self.protocol));
        let _ = write!(b, ",\"status\":{}", self.status);
        field_str(&mut b, "route", self.route);
        let upstream = self.upstream.map(|a| a.to_string());
        field_str(&mut b, "upstream", upstream.as_deref());
        let _ = write!(
            b,
            ",\"attempts\":{},\"duration_ms\":{:.3}",
            self.attempts,
            self.duration.as_secs_f64() * 1000.0,
        );
        match self.upstream_ttfb {
            Some(t) => {
                let _ = write!(b, ",\"upstream_ttfb_ms\":{:.3}", t.as_secs_f64() * 1000.0);
            }
            None => b.extend_from_slice(b",\"upstream_ttfb_ms\":null"),
        }
        let _ = write!(
            b,
            ",\"bytes_received\":{},\"bytes_sent\":{}",
            self.bytes_received, self.bytes_sent
        );
        field_str(&mut b, "consumer", self.consumer);
        field_str(&mut b, "key_prefix", self.key_prefix);
        field_str(&mut b, "issuer", self.issuer);
        field_str(&mut b, "auth_failure", self.auth_failure);
        field_str(&mut b, "limit", self.limit);
        field_str(&mut b, "client_cert_subject", self.client_cert_subject);
        field_str(&mut b, "error", self.error);
        field_str(&mut b, "cache", self.cache);
        field_str(&mut b, "pool", self.pool);
        b.extend_from_slice(b",\"decisions\":[");
        for (i, d) in self.decisions.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            let _ = serde_json::to_writer(&mut b, d);
        }
        b.push(b']');
        field_str(&mut b, "cors", self.cors);
        field_str(&mut b, "split", self.split);
        field_str(&mut b, "split_by", self.split_by);
        field_str(&mut b, "mirror", self.mirror);
        field_str(&mut b, "compression", self.compression);
        let tls = self.tls.unwrap_or_default();
        field_str(&mut b, "tls_version", self.tls.map(|t| t.version));
        field_str(&mut b, "tls_sni", tls.sni);
        field_str(&mut b, "tls_alpn", tls.alpn);
        b.push(b'}');
        b
    }
}

/// `,"name":"value"` (JSON-escaped), or `,"name":null`.
fn field_str(b: &mut Vec<u8>, name: &str, value: Option<&str>) {
    b.push(b',');
    b.push(b'"');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\":");
    match value {
        Some(v) => {
            let _ = serde_json::to_writer(&mut *b, v);
        }
        None => b.extend_from_slice(b"null"),
    }
}

/// `2026-11-24T16:01:02.123Z`
fn write_rfc3339_millis(b: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        b,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_millis()
    );
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where a file-backed log is, for messages.
pub fn describe(target: &AccessLogTarget) -> String {
    match target {
        AccessLogTarget::Off => "off".into(),
        AccessLogTarget::Stdout => "stdout".into(),
        AccessLogTarget::File(p) => PathBuf::from(p).display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_json_with_every_field() {
        let e = Entry {
            request_id: "abc",
            client: Some("10.0.0.1".parse().unwrap()),
            method: "GET",
            host: "api.example.com",
            path: "/v1/\"quoted\"\n",
            protocol: "HTTP/1.1",
            status: 200,
            route: Some("orders"),
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            attempts: 1,
            duration: Duration::from_micros(1500),
            bytes_sent: 42,
            consumer: Some("acme"),
            key_prefix: Some("pk_abcdef"),
            issuer: None,
            decisions: vec!["breaker_probe", "backend_ejected"],
            ..Entry::default()
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_518_000_123);
        let line = e.to_json(t);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["ts"], "2026-11-24T11:00:00.123Z");
        assert_eq!(v["path"], "/v1/\"quoted\"\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream"], "127.0.0.1:9001");
        assert_eq!(v["consumer"], "acme");
        assert!(v["auth_failure"].is_null());
        assert_eq!(
            v["decisions"],
            serde_json::json!(["breaker_probe", "backend_ejected"])
        );
        assert!(!line.contains(&b'\n'));
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(21_243), (2028, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
