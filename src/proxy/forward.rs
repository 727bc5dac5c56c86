//! What the gateway adds to and changes in a forwarded request: request id,
//! `X-Forwarded-*`, path rewrite, header rules, and the consistent-hash key.

use http::{HeaderName, HeaderValue, Uri};
use pingora_error::{OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::config::model::{ForwardingHeader, HashKey};
use crate::policy::{HeaderOps, PathRewrite};

pub use crate::request_id::REQUEST_ID;
// Names the gateway adds to every request are `HeaderName`s built at
// compile time: inserting one skips parsing the name again.
pub use crate::client_addr::X_FORWARDED_FOR;
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// Drop an `Upgrade: h2c` request (RFC 7540 §3.2, removed in RFC 9113):
/// forwarded, a backend could switch the connection to HTTP/2 and the
/// gateway would tunnel requests it never sees. The request goes on as
/// plain HTTP/1.1. Returns whether anything was removed.
pub fn drop_h2c_upgrade(req: &mut RequestHeader) -> bool {
    let h2c = req.headers.get_all(http::header::UPGRADE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    });
    if !h2c {
        return false;
    }
    req.remove_header(&http::header::UPGRADE);
    req.remove_header("http2-settings");
    // `Connection: Upgrade, HTTP2-Settings` named the removed headers.
    req.remove_header(&http::header::CONNECTION);
    true
}

/// What the gateway knows of the client, read once from the connection
/// and the request head in `early_request_filter`.
#[derive(Debug, Default, Clone)]
pub struct ClientFacts {
    /// The client's address (`crate::client_addr`): the peer, or the
    /// address a trusted proxy's forwarding header names.
    pub ip: Option<std::net::IpAddr>,
    /// The connection's peer (on a `proxy_protocol` listener, the PROXY
    /// header's source); none on a Unix socket.
    pub peer: Option<std::net::IpAddr>,
    /// The peer is a trusted proxy: its forwarding headers are extended,
    /// not replaced.
    pub peer_trusted: bool,
    /// The request came over TLS.
    pub tls: bool,
    /// On a TLS listener with client certificates: the header that carries
    /// the verified subject, and the subject (none without a certificate).
    pub identity: Option<(http::HeaderName, Option<HeaderValue>)>,
    /// The protocol version the request came in, as `Via` names it.
    pub version: &'static str,
    /// A trusted proxy's `X-Forwarded-Proto`, `-Host` and `-Port`, when it
    /// sent well-formed ones: passed on instead of the gateway's own (the
    /// proxy in front saw the client's scheme and host; the gateway saw
    /// the proxy's).
    pub relayed: Option<Box<Relayed>>,
}

/// What a trusted proxy said about the client's request.
#[derive(Debug, Default, Clone)]
pub struct Relayed {
    pub proto: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
    pub port: Option<HeaderValue>,
}

impl Relayed {
    /// The well-formed `X-Forwarded-Proto`, `-Host` and `-Port` of
    /// `headers` (each on one line), if any.
    fn of(headers: &http::HeaderMap) -> Option<Box<Relayed>> {
        let one = |name: &HeaderName, ok: fn(&str) -> bool| {
            let mut all = headers.get_all(name).iter();
            let value = all.next()?;
            (all.next().is_none() && value.to_str().is_ok_and(|v| list_of(v, ok)))
                .then(|| value.clone())
        };
        let relayed = Relayed {
            proto: one(&X_FORWARDED_PROTO, |p| {
                p.eq_ignore_ascii_case(HTTP) || p.eq_ignore_ascii_case(HTTPS)
            }),
            host: one(&X_FORWARDED_HOST, |h| {
                http::uri::Authority::try_from(h).is_ok_and(|a| !a.as_str().contains('@'))
            }),
            port: one(&X_FORWARDED_PORT, |p| p.parse::<u16>().is_ok_and(|n| n > 0)),
        };
        (relayed.proto.is_some() || relayed.host.is_some() || relayed.port.is_some())
            .then(|| Box::new(relayed))
    }
}

/// `value` is a comma-separated list whose every element passes `ok`.
fn list_of(value: &str, ok: fn(&str) -> bool) -> bool {
    value.split(',').all(|e| ok(e.trim()))
}

/// The connection's peer address (none on a Unix socket). IPv4-mapped
/// IPv6 addresses (a dual-stack listener) are read as IPv4.
pub fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

impl ClientFacts {
    pub fn of(session: &Session, trusted: &crate::config::model::TrustedProxies) -> ClientFacts {
        let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let identity = ssl
            .and_then(|ssl| ssl.extension.get::<crate::tls::ClientIdentity>())
            .and_then(|i| Some((i.header.clone()?, i.subject.clone())));
        let peer = peer_ip(session);
        let headers = &session.req_header().headers;
        let peer_trusted = peer.is_some_and(|p| trusted.trusts(p));
        ClientFacts {
            ip: peer.map(|p| crate::client_addr::client(p, headers, trusted)),
            peer,
            peer_trusted,
            relayed: peer_trusted.then(|| Relayed::of(headers)).flatten(),
            tls: ssl.is_some(),
            identity,
            version: match session.req_header().version {
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2",
                http::Version::HTTP_09 => "0.9",
                _ => "1.1",
            },
        }
    }
}

/// Everything that shapes the headers of a forwarded request.
pub struct Forwarding<'a> {
    pub snapshot: &'a crate::snapshot::Snapshot,
    pub route: &'a crate::snapshot::Route,
    pub consumer: Option<u32>,
    /// The caller a bearer token named.
    pub bearer: Option<&'a crate::bearer::Bearer>,
    pub client: &'a ClientFacts,
    pub request_id: &'a HeaderValue,
    pub trace: &'a super::trace::TraceContext,
}

/// The headers of the request the backend sees: the client's copies of
/// the headers the gateway owns removed (see `owned.rs`), the API key
/// taken off and the consumer put on, `X-Forwarded-*`, the request id,
/// the trace context, the client certificate's subject, then the route's
/// header rules. The one place that decides them: the upstream request
/// and the cache's `Vary` matching (RFC 9111 §4.1 compares the request
/// that produced a stored response, which for a gateway is this one) both
/// run it.
pub fn shape(upstream: &mut RequestHeader, f: &Forwarding<'_>) -> Result<()> {
    let rfc7239 = f.snapshot.config.server.trusted_proxies.header == ForwardingHeader::Forwarded;
    // Owned, so stripped below; a trusted proxy's is extended.
    let forwarded = (rfc7239 && f.client.peer_trusted)
        .then(|| joined(upstream, &http::header::FORWARDED))
        .flatten();
    super::owned::strip(upstream, &f.snapshot.owned_headers);
    // Room for what is added below, so each header map grows once at most.
    upstream.reserve_headers(FIELDS_ADDED + f.route.request_headers.set.len());
    set_consumer(upstream, f.snapshot, f.route, f.consumer)?;
    set_bearer(upstream, f.snapshot, f.route, f.bearer)?;
    set_forwarded(upstream, f.client, f.request_id)?;
    if rfc7239 {
        if let Some(peer) = f.client.peer {
            let element = forwarded_element(peer, f.client.tls);
            upstream.insert_header(
                http::header::FORWARDED,
                append(forwarded.as_ref(), &element),
            )?;
        }
    }
    f.trace.apply(upstream)?;
    if let Some((header, Some(subject))) = &f.client.identity {
        upstream.insert_header(header.clone(), subject.clone())?;
    }
    add_via(upstream, f.snapshot.via.get(f.client.version))?;
    apply_header_ops(upstream, &f.route.request_headers)
}

/// The fields `shape` may add besides the route's own: `X-Forwarded-For`,
/// `-Proto`, `-Host`, `X-Request-Id`, `traceparent`, `Via`, the consumer
/// the client certificate's subject and `Forwarded`.
const FIELDS_ADDED: usize = 9;

/// Append the gateway's `Via` entry (RFC 9110 §7.6.3), as one field; the
/// common request has none yet and takes the prebuilt entry as it is.
fn add_via(upstream: &mut RequestHeader, entry: &HeaderValue) -> Result<()> {
    if !upstream.headers.contains_key(http::header::VIA) {
        return upstream.insert_header(http::header::VIA, entry.clone());
    }
    let mut value = Vec::new();
    for prev in upstream.headers.get_all(http::header::VIA) {
        value.extend_from_slice(prev.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(entry.as_bytes());
    upstream.insert_header(http::header::VIA, value)
}

/// Whether [`shape`] may change the header `name` (lower case): then a
/// `Vary` on it must be matched against the shaped request.
pub fn shapes(name: &str, f: &Forwarding<'_>) -> bool {
    name.contains('_')
        || matches!(
            name,
            "x-forwarded-for"
                | "x-request-id"
                | "traceparent"
                | "tracestate"
                | "authorization"
                | "via"
        )
        || super::owned::is_owned(name, &f.snapshot.owned_headers)
        || f.client.identity.as_ref().is_some_and(|(h, _)| h == name)
        || f.route.request_headers.remove.iter().any(|h| h == name)
        || f.route.request_headers.set.iter().any(|(h, _)| h == name)
        || f.route.auth.as_ref().is_some_and(|a| match &a.source {
            crate::auth::KeyPlace::Header(h) => h == name,
            _ => false,
        }) || f.route.bearer.as_ref().is_some_and(|b| {
        b.forward_claims.iter().any(|(h, _)| h == name)
            || name == "cookie"
            || matches!(&b.token_from, crate::config::model::TokenSource::Header(h) if h == name)
    })
}

/// On a route taking bearer tokens: take the token off (unless the route
/// keeps it), remove the client's copies of the claim headers, then name
/// the token's consumer and set its claims.
fn set_bearer(
    upstream: &mut RequestHeader,
    snapshot: &crate::snapshot::Snapshot,
    route: &crate::snapshot::Route,
    bearer: Option<&crate::bearer::Bearer>,
) -> Result<()> {
    let Some(route_bearer) = &route.bearer else {
        return Ok(());
    };
    for (header, _) in &route_bearer.forward_claims {
        upstream.remove_header(header);
    }
    let Some(bearer) = bearer else {
        return Ok(());
    };
    route_bearer.remove_token(upstream)?;
    upstream.insert_header(
        snapshot.consumer_header.clone(),
        bearer.header_value.clone(),
    )?;
    for (header, claim) in &route_bearer.forward_claims {
        if let Some(value) = bearer.claim_value(claim) {
            upstream.insert_header(header.clone(), value)?;
        }
    }
    Ok(())
}

/// Take the API key off a key-protected route's request and name the
/// consumer instead (the client's consumer header is gone already: see
/// [`shape`]).
fn set_consumer(
    upstream: &mut RequestHeader,
    snapshot: &crate::snapshot::Snapshot,
    route: &crate::snapshot::Route,
    consumer: Option<u32>,
) -> Result<()> {
    let Some(auth) = &route.auth else {
        return Ok(());
    };
    // A token the route keeps stays, even where keys are read too.
    let kept_token = route.bearer.as_ref().is_some_and(|b| {
        b.keep_token
            && b.token_from == crate::config::model::TokenSource::Bearer
            && matches!(auth.source, crate::auth::KeyPlace::Bearer)
    });
    if consumer.is_some() || !kept_token {
        crate::auth::remove_key(upstream, &auth.source)?;
    }
    if let Some(c) = consumer.and_then(|c| snapshot.consumers.consumer(c)) {
        upstream.insert_header(snapshot.consumer_header.clone(), c.header_value.clone())?;
    }
    Ok(())
}

/// `X-Forwarded-For`, `-Proto`, `-Host` (the `Host` the client sent,
/// which `upstream` still carries) and the request id. The peer's address
/// is appended to a trusted proxy's `X-Forwarded-For` and replaces anyone
/// else's (a client's chain is never passed on as if checked); a trusted
/// proxy's well-formed `-Proto`, `-Host` and `-Port` are passed on.
pub fn set_forwarded(
    upstream: &mut RequestHeader,
    client: &ClientFacts,
    request_id: &HeaderValue,
) -> Result<()> {
    if let Some(peer) = client.peer {
        let prev = client
            .peer_trusted
            .then(|| joined(upstream, &X_FORWARDED_FOR))
            .flatten();
        let mut text = [0u8; 45];
        let xff = append(prev.as_ref(), ip_text(peer, &mut text));
        upstream.insert_header(X_FORWARDED_FOR, xff)?;
    } else {
        upstream.remove_header(&X_FORWARDED_FOR);
    }
    let relayed = client.relayed.as_deref();
    match relayed.and_then(|r| r.proto.clone()) {
        Some(proto) => upstream.insert_header(X_FORWARDED_PROTO, proto)?,
        None => {
            let proto = if client.tls { HTTPS } else { HTTP };
            upstream.insert_header(X_FORWARDED_PROTO, HeaderValue::from_static(proto))?;
        }
    }
    if let Some(host) = relayed.and_then(|r| r.host.clone()) {
        upstream.insert_header(X_FORWARDED_HOST, host)?;
    } else if let Some(host) = upstream.headers.get(http::header::HOST).cloned() {
        upstream.insert_header(X_FORWARDED_HOST, host)?;
    } else if let Some(authority) = upstream.uri.authority().map(|a| a.as_str().to_string()) {
        upstream.insert_header(X_FORWARDED_HOST, authority)?;
    }
    if let Some(port) = relayed.and_then(|r| r.port.clone()) {
        upstream.insert_header(X_FORWARDED_PORT, port)?;
    }
    // A client id kept as is is already on the request: don't insert it twice.
    if upstream.headers.get(REQUEST_ID) != Some(request_id) {
        upstream.insert_header(REQUEST_ID, request_id.clone())?;
    }
    Ok(())
}

const HTTP: &str = "http";
const HTTPS: &str = "https";

/// Every line of `name` as one comma-separated value (none when absent or
/// blank): a chain sent on several lines is one chain.
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<HeaderValue> {
    let mut lines = req
        .headers
        .get_all(name)
        .iter()
        .filter(|v| !v.as_bytes().trim_ascii().is_empty());
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(first.clone());
    };
    let mut buf = bytes::BytesMut::from(first.as_bytes());
    for v in std::iter::once(second).chain(lines) {
        buf.extend_from_slice(b", ");
        buf.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_maybe_shared(buf.freeze()).ok()
}

/// `ip` as text in `buf` (an IPv6 address is at most 45 characters), with
/// no allocation.
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 45]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// `prev, entry` (or `entry`), built in one buffer: the header value is
/// the only allocation.
fn append(prev: Option<&HeaderValue>, entry: &str) -> HeaderValue {
    let prev = prev.map(|v| v.as_bytes());
    let mut buf = bytes::BytesMut::with_capacity(prev.map_or(0, |p| p.len() + 2) + entry.len());
    if let Some(p) = prev {
        buf.extend_from_slice(p);
        buf.extend_from_slice(b", ");
    }
    buf.extend_from_slice(entry.as_bytes());
    // `prev` came from a valid header value and `entry` is ASCII.
    HeaderValue::from_maybe_shared(buf.freeze()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// This hop's RFC 7239 element: `for=` the peer (an IPv6 address quoted
/// and bracketed, §6), `proto=` the scheme it used.
fn forwarded_element(peer: std::net::IpAddr, tls: bool) -> String {
    let proto = if tls { HTTPS } else { HTTP };
    match peer {
        std::net::IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
        std::net::IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
    }
}

/// The upstream path for `path` when `prefix_len` bytes of it matched the route.
pub fn rewritten_path(path: &str, prefix_len: usize, rewrite: &PathRewrite) -> Option<String> {
    let rest = path.get(prefix_len..)?;
    let new = match rewrite {
        PathRewrite::None => return None,
        PathRewrite::Strip => rest.to_string(),
        PathRewrite::Replace(to) if to == "/" => rest.to_string(),
        PathRewrite::Replace(to) => format!("{to}{rest}"),
    };
    Some(if new.is_empty() {
        "/".to_string()
    } else if !new.starts_with('/') {
        format!("/{new}")
    } else {
        new
    })
}

/// Apply the route's path rewrite to the upstream request, keeping the query.
pub fn rewrite_path(
    upstream: &mut RequestHeader,
    prefix_len: usize,
    rewrite: &PathRewrite,
) -> Result<()> {
    let Some(path) = rewritten_path(upstream.uri.path(), prefix_len, rewrite) else {
        return Ok(());
    };
    let pq = match upstream.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let uri: Uri = pq
        .parse()
        .or_err_with(pingora_error::ErrorType::InternalError, || {
            format!("the rewritten path {pq:?} is not a valid URI")
        })?;
    upstream.set_uri(uri);
    Ok(())
}

/// Hop-by-hop fields a response never carries past the gateway (RFC 9110
/// §7.6.1), beside those its `Connection` names. `Connection` itself is
/// Pingora's to write for the client (it replaces it on every response,
/// hits included); `Transfer-Encoding` is the framing's, which Pingora
/// redoes for the client.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(name, "keep-alive" | "proxy-connection" | "te" | "upgrade")
}

/// The backend's response head made the gateway's, before anything reads
/// or stores it: a status outside 100–599 is refused (502); the version
/// is the gateway's own (`HTTP/1.1`: an HTTP/1.0 backend's status line
/// never reaches a client); hop-by-hop fields, those `Connection` names
/// included, are removed (not on a `101`, whose `Upgrade` and
/// `Connection` are the switch); a response without `Date` gets the time
/// it was received (§6.6.1), so a stored copy keeps it.
///
/// One pass over the field names; a field is only removed when present
/// (the common response has none to remove and costs no allocation).
pub fn upstream_response(resp: &mut ResponseHeader) -> Result<()> {
    let status = resp.status.as_u16();
    if !(100..=599).contains(&status) {
        return Err(super::errors::invalid_upstream_status(status));
    }
    resp.set_version(http::Version::HTTP_11);
    let mut dated = false;
    let mut gone: smallvec::SmallVec<[http::HeaderName; 2]> = smallvec::SmallVec::new();
    // Names `Connection` lists beyond the fixed ones (`keep-alive` and
    // `close`, the usual, need no second pass).
    let mut named: smallvec::SmallVec<[&str; 2]> = smallvec::SmallVec::new();
    for (name, value) in &resp.headers {
        if name == http::header::DATE {
            dated = true;
        } else if status == 101 {
            // The switch's `Upgrade` and `Connection` stay.
            continue;
        } else if name == http::header::CONNECTION {
            let tokens = value.to_str().unwrap_or_default().split(',').map(str::trim);
            named.extend(tokens.filter(|t| {
                !t.is_empty() && !t.eq_ignore_ascii_case("close") && !is_hop_by_hop(t)
            }));
        } else if is_hop_by_hop(name.as_str()) {
            gone.push(name.clone());
        }
    }
    if !named.is_empty() {
        let listed = resp.headers.keys().filter(|n| {
            n != &http::header::CONNECTION
                && named.iter().any(|t| t.eq_ignore_ascii_case(n.as_str()))
        });
        gone.extend(listed.cloned());
    }
    drop(named);
    for name in &gone {
        resp.remove_header(name);
    }
    if status >= 200 && !dated {
        resp.insert_header(
            http::header::DATE,
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )?;
    }
    Ok(())
}

/// A request or response header that route header rules can edit.
pub trait EditHeaders {
    fn remove(&mut self, name: &http::HeaderName);
    fn insert(&mut self, name: http::HeaderName, value: HeaderValue) -> Result<()>;
}

impl EditHeaders for RequestHeader {
    fn remove(&mut self, name: &http::HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: http::HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

impl EditHeaders for ResponseHeader {
    fn remove(&mut self, name: &http::HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: http::HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

/// Apply header rules: `remove` first, then `set` (replacing any value).
pub fn apply_header_ops(headers: &mut impl EditHeaders, ops: &HeaderOps) -> Result<()> {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone())?;
    }
    Ok(())
}

/// A CORS route's response, after the cache (stored responses never hold
/// these): the backend's own `Access-Control-*` fields removed (the
/// gateway owns them on such a route), the policy's added for an allowed
/// origin, and `Vary: Origin` on every response.
pub fn set_cors(
    resp: &mut ResponseHeader,
    cors: &crate::policy::Cors,
    outcome: &crate::decide::CorsOutcome,
) -> Result<()> {
    let theirs = |n: &HeaderName| n.as_str().starts_with("access-control-");
    if resp.headers.keys().any(theirs) {
        let names: Vec<HeaderName> = resp.headers.keys().filter(|n| theirs(n)).cloned().collect();
        for name in names {
            resp.remove_header(&name);
        }
    }
    if let crate::decide::CorsOutcome::Allowed(allow_origin) = outcome {
        cors.apply(resp, allow_origin)?;
    }
    add_vary(resp, "Origin")
}

/// A split's sticky cookie, for a client given a bucket just now.
pub fn set_split_cookie(
    resp: &mut ResponseHeader,
    route: &crate::snapshot::Route,
    choice: Option<crate::policy::split::Choice>,
    tls: bool,
) -> Result<()> {
    let rolled = choice.and_then(|c| c.set_cookie);
    if let Some(cookie) = route
        .split
        .as_ref()
        .zip(rolled)
        .and_then(|(split, bucket)| split.cookie(bucket, tls))
    {
        resp.append_header(http::header::SET_COOKIE, cookie)?;
    }
    Ok(())
}

/// `name` added to `Vary` unless it (or `*`) is there already.
pub fn add_vary(resp: &mut ResponseHeader, name: &str) -> Result<()> {
    let present = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.eq_ignore_ascii_case(name.as_bytes())
        });
    if !present {
        resp.append_header(http::header::VARY, name)?;
    }
    Ok(())
}

/// The bytes a consistent-hash pool hashes for this request. Empty when the
/// header or cookie is absent (such requests all land on one backend).
pub fn hash_key<'a>(
    session: &'a Session,
    key: &HashKey,
    client: Option<std::net::IpAddr>,
    client_ip: &'a mut String,
) -> &'a [u8] {
    let req = session.req_header();
    match key {
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes())
            .unwrap_or(b""),
        HashKey::Path => req.uri.path().as_bytes(),
        HashKey::ClientIp => {
            if let Some(ip) = client {
                *client_ip = ip.to_string();
            }
            client_ip.as_bytes()
        }
        HashKey::Cookie(name) => crate::cookie::find(&req.headers, name)
            .map(str::as_bytes)
            .unwrap_or(b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserving_headers_makes_room_in_the_map() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("host", "a.test").unwrap();
        req.reserve_headers(FIELDS_ADDED);
        let room = req.headers.capacity() - req.headers.len();
        assert!(room >= FIELDS_ADDED, "room for {room} more");
    }

    #[test]
    fn forwarded_headers_extend_a_trusted_chain_and_replace_any_other() {
        let facts = |peer: &str, trusted: bool, tls: bool| ClientFacts {
            peer: Some(peer.parse().unwrap()),
            peer_trusted: trusted,
            tls,
            ..ClientFacts::default()
        };
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("host", "api.example.com").unwrap();
        req.append_header(X_FORWARDED_FOR, "203.0.113.1").unwrap();
        req.append_header(X_FORWARDED_FOR, "198.51.100.2").unwrap();
        let id = HeaderValue::from_static("id1");
        let mut trusted = req.clone();
        set_forwarded(&mut trusted, &facts("10.1.2.3", true, true), &id).unwrap();
        assert_eq!(
            trusted.headers[X_FORWARDED_FOR],
            "203.0.113.1, 198.51.100.2, 10.1.2.3"
        );
        assert_eq!(trusted.headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(trusted.headers[X_FORWARDED_PROTO], "https");
        assert_eq!(trusted.headers[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(trusted.headers[REQUEST_ID], "id1");

        set_forwarded(&mut req, &facts("::1", false, false), &id).unwrap();
        assert_eq!(req.headers[X_FORWARDED_FOR], "::1");
        assert_eq!(req.headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(req.headers[X_FORWARDED_PROTO], "http");

        // A trusted proxy's well-formed -Proto, -Host and -Port are its
        // client's, passed on; malformed ones give way to the gateway's.
        let mut sent = http::HeaderMap::new();
        sent.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        sent.insert(
            X_FORWARDED_HOST,
            HeaderValue::from_static("shop.example:8443"),
        );
        sent.insert(X_FORWARDED_PORT, HeaderValue::from_static("8443"));
        let relayed = ClientFacts {
            relayed: Relayed::of(&sent),
            ..facts("10.1.2.3", true, false)
        };
        let mut req2 = RequestHeader::build("GET", b"/x", None).unwrap();
        req2.insert_header("host", "api.internal").unwrap();
        set_forwarded(&mut req2, &relayed, &id).unwrap();
        assert_eq!(req2.headers[X_FORWARDED_PROTO], "https");
        assert_eq!(req2.headers[X_FORWARDED_HOST], "shop.example:8443");
        assert_eq!(req2.headers[X_FORWARDED_PORT], "8443");
        for (name, bad) in [
            (X_FORWARDED_PROTO, "javascript"),
            (X_FORWARDED_PROTO, "https, gopher"),
            (X_FORWARDED_HOST, "user@evil.example"),
            (X_FORWARDED_HOST, "a b"),
            (X_FORWARDED_PORT, "0"),
            (X_FORWARDED_PORT, "443x"),
        ] {
            let mut sent = http::HeaderMap::new();
            sent.insert(name.clone(), HeaderValue::from_static(bad));
            assert!(Relayed::of(&sent).is_none(), "{name}: {bad}");
        }
        let mut twice = http::HeaderMap::new();
        twice.append(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        twice.append(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        assert!(Relayed::of(&twice).is_none(), "two lines: which is right?");
        let mut chain = http::HeaderMap::new();
        chain.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https, http"));
        assert!(Relayed::of(&chain).is_some_and(|r| r.proto.is_some()));

        assert_eq!(
            forwarded_element("2001:db8::1".parse().unwrap(), true),
            r#"for="[2001:db8::1]";proto=https"#
        );
    }

    #[test]
    fn via_is_appended_and_a_loop_is_seen() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("via", "1.0 fred, 1.1 p.example (Apache)")
            .unwrap();
        let entry = HeaderValue::from_static("2 portcullis-a");
        add_via(&mut req, &entry).unwrap();
        assert_eq!(
            req.headers["via"],
            "1.0 fred, 1.1 p.example (Apache), 2 portcullis-a"
        );
        let mut first = RequestHeader::build("GET", b"/x", None).unwrap();
        add_via(&mut first, &entry).unwrap();
        assert_eq!(first.headers["via"], "2 portcullis-a");
        use crate::decide::head::has_looped;
        assert!(has_looped(&req, "portcullis-a"));
        assert!(has_looped(&req, "FRED"));
        assert!(!has_looped(&req, "portcullis-b"));
        assert!(!has_looped(&req, "1.1"));
    }

    #[test]
    fn upstream_responses_lose_hop_by_hop_fields_and_keep_their_date() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.set_version(http::Version::HTTP_10);
        r.insert_header("connection", "keep-alive, X-Secret, x-other")
            .unwrap();
        r.insert_header("x-secret", "1").unwrap();
        r.insert_header("X-Other", "1").unwrap();
        r.insert_header("keep-alive", "timeout=5").unwrap();
        r.insert_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap();
        r.insert_header("x-kept", "1").unwrap();
        upstream_response(&mut r).unwrap();
        assert_eq!(r.version, http::Version::HTTP_11);
        let mut names: Vec<&str> = r.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["connection", "date", "x-kept"]);
        assert_eq!(r.headers["date"], "Sun, 06 Nov 1994 08:49:37 GMT");
        let mut undated = ResponseHeader::build(204, None).unwrap();
        upstream_response(&mut undated).unwrap();
        assert!(undated.headers.contains_key("date"));
        let mut switch = ResponseHeader::build(101, None).unwrap();
        switch.insert_header("connection", "upgrade").unwrap();
        switch.insert_header("upgrade", "websocket").unwrap();
        upstream_response(&mut switch).unwrap();
        assert_eq!(switch.headers["upgrade"], "websocket");
        let mut odd = ResponseHeader::build(200, None).unwrap();
        odd.set_status(999).unwrap();
        assert!(upstream_response(&mut odd).is_err());
    }

    #[test]
    fn h2c_upgrade_is_dropped_and_websocket_kept() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("upgrade", "foo, H2C").unwrap();
        req.insert_header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
            .unwrap();
        req.insert_header("connection", "Upgrade, HTTP2-Settings")
            .unwrap();
        assert!(drop_h2c_upgrade(&mut req));
        assert!(req.headers.get("upgrade").is_none());
        assert!(req.headers.get("http2-settings").is_none());
        assert!(req.headers.get("connection").is_none());

        let mut ws = RequestHeader::build("GET", b"/", None).unwrap();
        ws.insert_header("upgrade", "websocket").unwrap();
        assert!(!drop_h2c_upgrade(&mut ws));
        assert_eq!(ws.headers["upgrade"], "websocket");
    }

    #[test]
    fn path_rewrites() {
        let strip = PathRewrite::Strip;
        assert_eq!(
            rewritten_path("/v1/users/7", 3, &strip).as_deref(),
            Some("/users/7")
        );
        assert_eq!(rewritten_path("/v1", 3, &strip).as_deref(), Some("/"));
        let to = PathRewrite::Replace("/api".into());
        assert_eq!(
            rewritten_path("/v1/users", 3, &to).as_deref(),
            Some("/api/users")
        );
        assert_eq!(rewritten_path("/v1", 3, &to).as_deref(), Some("/api"));
        assert_eq!(rewritten_path("/v1/x", 3, &PathRewrite::None), None);
    }
}
