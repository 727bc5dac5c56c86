//! The client's stream, wrapped: what Pingora's sessions cannot do by
//! themselves.
//!
//! HTTP/1:
//! - `header_timeout`: the whole request head must arrive within it,
//!   counted from the accept (first request) or the head's first byte
//!   (later ones); else `408` with a problem+json body, and the connection
//!   is closed. Pingora only times out each read (60 s), so a client
//!   sending one byte a second was never cut off.
//! - `keepalive_timeout`: an idle keep-alive connection is closed
//!   (silently, like nginx) after it.
//! - Pingora's own refusals, written before any hook runs (a request head
//!   its parser rejects: bare `400` from `Server: Pingora`; `CONNECT`:
//!   `405`), are replaced by the gateway's problem+json answer.
//!
//! HTTP/2 (negotiated by ALPN, or on an `h2c` listener told from HTTP/1
//! by the connection's first bytes: see the `Peek` impl): the preface and
//! every header block must arrive within `header_timeout` of their first
//! byte (the preface: of the accept), or the connection is closed (see
//! `h2frames`); an unfinished header block stalls every stream of the
//! connection. Idle connections are Pingora's `h2_idle_timeout`, stalled
//! request bodies the per-stream `body_timeout`.
//!
//! The wrapper knows where an HTTP/1 request is from the proxy's hooks:
//! [`request_started`] (the head was read and parsed) and [`request_done`]
//! (the response is finished; the connection idles until the next head's
//! first byte). `body_timeout` is Pingora's per-read timeout, set per
//! request (see `proxy::client::apply_timeouts`).

mod h2frames;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora_core::protocols::{SocketDigest, TimingDigest};
use pingora_proxy::Session;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::problem::Problem;

/// Where the connection is: the low two bits of [`GuardedStream::phase`]
/// (the rest counts changes, so a timer armed for one head is never taken
/// for the next one's).
const HEAD: u32 = 0;
const BUSY: u32 = 1;
const IDLE: u32 = 2;
const PHASE_BITS: u32 = 0b11;

/// What the wrapper enforces, read from the config at accept.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
}

/// Counters of connections the wrapper refused.
#[derive(Clone)]
pub struct Refusals {
    pub header_timeout: IntCounter,
    pub bad_head: IntCounter,
}

pub struct GuardedStream {
    inner: Stream,
    phase: AtomicU32,
    /// The phase value `timer` was armed for. The timer is armed only
    /// when a read would wait: a head that arrives in one read costs none.
    timed: Option<u32>,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the current request head started: the accept, or its first byte.
    head_started: Instant,
    limits: Timeouts,
    /// An answer the wrapper writes itself, and how much of it is out.
    own: Option<(Bytes, usize)>,
    /// Pingora's own answer was replaced: its further writes are dropped
    /// (it closes the connection after them).
    replaced: bool,
    /// The head did not arrive in time: reads fail once the 408 is out.
    timed_out: bool,
    refusals: Refusals,
    /// HTTP/2: what the client is sending, and a count of the times it
    /// started being busy (the timer's token).
    h2: Option<(h2frames::FrameTracker, u32)>,
    /// An `h2c` listener's plain connection, not yet told HTTP/1 or 2.
    sniff: bool,
    /// Bytes read while telling them apart, and how many were passed on:
    /// reads return them first.
    prefix: Vec<u8>,
    prefix_read: usize,
}

impl GuardedStream {
    /// Wrap a client stream just accepted (after its TLS handshake);
    /// `header_timeout` starts now. `h2c`: its listener also speaks HTTP/2
    /// with prior knowledge.
    pub fn new(inner: Stream, limits: Timeouts, refusals: Refusals, h2c: bool) -> Self {
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2))
            .then(|| (h2frames::FrameTracker::default(), 0));
        Self {
            sniff: h2c && h2.is_none() && inner.get_ssl_digest().is_none(),
            prefix: Vec::new(),
            prefix_read: 0,
            h2,
            inner,
            phase: AtomicU32::new(HEAD),
            timed: None,
            timer: None,
            head_started: Instant::now(),
            limits,
            own: None,
            replaced: false,
            timed_out: false,
            refusals,
        }
    }

    fn set_phase(&self, phase: u32) {
        let old = self.phase.load(Ordering::Relaxed);
        let next = (old & !PHASE_BITS).wrapping_add(PHASE_BITS + 1) | phase;
        self.phase.store(next, Ordering::Relaxed);
    }

    /// Arm the timer for the phase value `now` unless it already is.
    fn arm(&mut self, now: u32) {
        if self.timed == Some(now) {
            return;
        }
        let deadline = match now & PHASE_BITS {
            HEAD => self.head_started + self.limits.header,
            IDLE => Instant::now() + self.limits.keepalive,
            // No timer while a request is served.
            _ => return,
        };
        self.arm_at(now, deadline);
    }

    /// Arm the timer for `deadline`, known by `token`.
    fn arm_at(&mut self, token: u32, deadline: Instant) {
        self.timed = Some(token);
        match self.timer.as_mut() {
            Some(t) => t.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// A read would wait: arm the phase's timer; whether it has expired
    /// (else it wakes the task when it does).
    fn arm_expired(&mut self, now: u32, cx: &mut Context<'_>) -> bool {
        self.arm(now);
        self.timer_expired(cx)
    }

    fn timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    /// Read from the client: what telling HTTP/1 from 2 read first.
    fn poll_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let rest = &self.prefix[self.prefix_read..];
        if rest.is_empty() || buf.remaining() == 0 {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.prefix_read += n;
        if self.prefix_read == self.prefix.len() {
            self.prefix = Vec::new();
            self.prefix_read = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// An `h2c` listener's connection: whether it opens with the HTTP/2
    /// preface. Reads until the bytes differ from it or complete it, the
    /// client stops sending, or `header_timeout` (then HTTP/1, whose head
    /// is late: 408), keeping what it read for the session.
    async fn opens_with_preface(&mut self) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let preface = h2frames::PREFACE;
        let deadline = self.head_started + self.limits.header;
        let mut chunk = [0u8; h2frames::PREFACE.len()];
        while self.prefix.len() < preface.len() && preface.starts_with(&self.prefix) {
            let want = preface.len() - self.prefix.len();
            let read = self.inner.read(&mut chunk[..want]);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) | Err(_) => return Ok(false),
                Ok(Ok(n)) => self.prefix.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(self.prefix == preface)
    }

    /// HTTP/2: pass the read on, follow the frames, and fail the read
    /// when the client stays busy (preface, frame header, header block)
    /// past `header_timeout`.
    fn poll_read_h2(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(head_timed_out()));
        }
        let before = buf.filled().len();
        let result = self.poll_inner(cx, buf);
        let Some((tracker, started)) = self.h2.as_mut() else {
            return result;
        };
        match result {
            Poll::Ready(Ok(())) => {
                let was_busy = tracker.busy();
                tracker.feed(&buf.filled()[before..]);
                if !was_busy && tracker.busy() {
                    *started = started.wrapping_add(1);
                    self.head_started = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if tracker.busy() => {
                let token = *started;
                if self.timed != Some(token) {
                    self.arm_at(token, self.head_started + self.limits.header);
                }
                if !self.timer_expired(cx) {
                    return Poll::Pending;
                }
                tracing::debug!(
                    "HTTP/2 preface or header block not received within header_timeout: closed"
                );
                self.refusals.header_timeout.inc();
                self.timed_out = true;
                Poll::Ready(Err(head_timed_out()))
            }
            other => other,
        }
    }

    /// Write out the wrapper's own answer, if any, and flush it.
    fn poll_own(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { inner, own, .. } = self;
        while let Some((bytes, written)) = own.as_mut() {
            if *written == bytes.len() {
                ready!(Pin::new(&mut *inner).poll_flush(cx))?;
                *own = None;
                break;
            }
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Before any hook ran for this request, a write is Pingora's own
    /// error response: answer with the gateway's problem instead.
    fn intercept(&mut self, buf: &[u8]) {
        if self.h2.is_some()
            || self.replaced
            || self.phase.load(Ordering::Relaxed) & PHASE_BITS == BUSY
        {
            return;
        }
        if let Some(problem) = pingora_status(buf).and_then(Problem::for_pingora_status) {
            self.refusals.bad_head.inc();
            self.own = Some((problem.http1_response(), 0));
            self.replaced = true;
        }
    }
}

/// What reads return once the head did not arrive in time.
fn head_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request head not received within header_timeout",
    )
}

/// The status of an HTTP/1 response head at the start of `buf`.
fn pingora_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The wrapper under a session's HTTP/1 stream, if any.
fn guarded(session: &Session) -> Option<&GuardedStream> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<GuardedStream>()
}

/// The request head was read: no header timeout until the next request.
pub fn request_started(session: &Session) {
    if let Some(g) = guarded(session) {
        g.set_phase(BUSY);
    }
}

/// The response is finished: the connection idles (keepalive_timeout)
/// until the next request's first byte.
pub fn request_done(session: &Session) {
    if let Some(g) = guarded(session) {
        g.set_phase(IDLE);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.h2.is_some() {
            return this.poll_read_h2(cx, buf);
        }
        if this.timed_out {
            ready!(this.poll_own(cx))?;
            return Poll::Ready(Err(head_timed_out()));
        }
        let now = this.phase.load(Ordering::Relaxed);
        if now & PHASE_BITS == BUSY {
            return this.poll_inner(cx, buf);
        }
        let before = buf.filled().len();
        match this.poll_inner(cx, buf) {
            Poll::Ready(Ok(())) => {
                if now & PHASE_BITS == IDLE && buf.filled().len() > before {
                    // The next request's first byte: its head is timed now.
                    this.set_phase(HEAD);
                    this.head_started = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.arm_expired(now, cx) => {
                if now & PHASE_BITS == IDLE {
                    // End of stream: Pingora closes the idle connection.
                    return Poll::Ready(Ok(()));
                }
                tracing::debug!("request head not received within header_timeout: 408");
                this.refusals.header_timeout.inc();
                this.timed_out = true;
                this.replaced = true;
                this.own = Some((Problem::RequestTimeout.http1_response(), 0));
                ready!(this.poll_own(cx))?;
                Poll::Ready(Err(head_timed_out()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.intercept(buf);
        if this.replaced {
            ready!(this.poll_own(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.intercept(first);
        }
        if this.replaced {
            ready!(this.poll_own(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_own(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_own(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        if let Err(e) = std::future::poll_fn(|cx| self.poll_own(cx)).await {
            tracing::debug!(error = %e, "could not write the answer before closing");
        }
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Pingora asks before it starts a plain connection's session when some
/// listener is `h2c` (`HttpServerOptions::h2c`), and speaks HTTP/2 when
/// `buf` holds the preface. Answered here rather than by the socket's
/// peek, which waits for 24 bytes with no deadline: an HTTP/1.0 request
/// can be shorter (`GET / HTTP/1.0\r\n\r\n`) and would never be answered.
#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        buf.fill(0);
        if std::mem::take(&mut self.sniff) && self.opens_with_preface().await? {
            self.h2 = Some((h2frames::FrameTracker::default(), 0));
            let n = buf.len().min(h2frames::PREFACE.len());
            buf[..n].copy_from_slice(&h2frames::PREFACE[..n]);
        }
        Ok(true)
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &(self.phase.load(Ordering::Relaxed) & PHASE_BITS))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_pingoras_answer() {
        assert_eq!(pingora_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(pingora_status(b"HTTP/1.0 405 Method"), Some(405));
        assert_eq!(pingora_status(b"HTTP/1.1 4"), None);
        assert_eq!(pingora_status(b"hello"), None);
    }
}
