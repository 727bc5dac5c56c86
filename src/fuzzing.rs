//! The properties the fuzz targets in `fuzz/` check, one function per
//! target, each taking arbitrary bytes. They live in the library so that
//! `tests/fuzz_corpus.rs` replays every corpus and every saved crash
//! through exactly the same checks in `make test`, and so that they are
//! compiled (and kept in step with the code) by every build. A panic is a
//! finding.

use std::io::Cursor;

use http::HeaderValue;
use pingora_core::protocols::http::v1::server::HttpSession;
use pingora_http::RequestHeader;

use crate::cache::key::normalize_query;
use crate::config::model::{ClientLimits, HostPattern, PathMatch, QueryKey, RouteConfig};
use crate::proxy::trace::TraceContext;
use crate::router::{strip_port, RouteLookup, Router, MAX_HOST_LEN};
use crate::target::{Ambiguous, PathRules};

/// The config parser and validator: never a panic; a refusal names at
/// least one error, each on a line of the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = crate::config::parse_str(text, "fuzz.toml") {
        assert!(!errors.0.is_empty(), "a refusal without an error");
        let lines = text.lines().count().max(1) + 1;
        for e in &errors.0 {
            assert!(
                e.line <= lines,
                "error line {} beyond the file: {e}",
                e.line
            );
        }
    }
}

/// Request ids: one accepted from a client is at most 128 visible ASCII
/// characters (it is echoed in headers and logs).
pub fn request_id(data: &[u8]) {
    if crate::request_id::is_well_formed_request_id(data) {
        assert!(data.len() <= 128);
        assert!(data.iter().all(|b| b.is_ascii_graphic()));
    }
}

/// API keys in a header, a bearer token or a query parameter (the first
/// byte picks which): an empty value is no key, and once removed for the
/// backend the key is nowhere in the request.
pub fn key_place(data: &[u8]) {
    use crate::auth::{presented_key, remove_key, KeyPlace};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let place = match selector % 3 {
        0 => KeyPlace::Header(http::HeaderName::from_static("x-api-key")),
        1 => KeyPlace::Bearer,
        _ => KeyPlace::Query("api_key".to_string()),
    };
    let Some(mut req) = key_request(&place, rest) else {
        return;
    };
    if let Some(key) = presented_key(&req, &place) {
        assert!(!key.is_empty(), "an empty value counts as no key");
    }
    if remove_key(&mut req, &place).is_ok() {
        assert!(
            presented_key(&req, &place).is_none(),
            "key still present upstream: {:?}",
            req.uri
        );
        if let KeyPlace::Query(name) = &place {
            let query = req.uri.query().unwrap_or("");
            assert!(
                !query.split('&').any(|p| p.split('=').next() == Some(name)),
                "parameter {name} still in {query:?}"
            );
        }
    }
}

fn key_request(place: &crate::auth::KeyPlace, rest: &[u8]) -> Option<RequestHeader> {
    use crate::auth::KeyPlace;
    match place {
        KeyPlace::Query(_) => {
            let mut target = b"/p?".to_vec();
            target.extend_from_slice(rest);
            RequestHeader::build("GET", &target, None).ok()
        }
        KeyPlace::Header(name) => {
            let mut req = RequestHeader::build("GET", b"/p", None).ok()?;
            req.insert_header(name.clone(), rest).ok()?;
            Some(req)
        }
        KeyPlace::Bearer => {
            let mut req = RequestHeader::build("GET", b"/p", None).ok()?;
            req.insert_header(http::header::AUTHORIZATION, rest).ok()?;
            Some(req)
        }
    }
}

/// The router against a reference matcher written from its documented
/// rules (`router/mod.rs`), by brute force over every route. Input: one
/// route per line (`HOSTS PATH METHODS`, hosts `-` for any, comma
/// separated, `*.` for wildcards; a path starting with `=` is exact;
/// methods comma separated or `-`), a blank line, then one request per
/// line (`HOST PATH METHOD`).
pub fn router(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (table, requests) = text.split_once("\n\n").unwrap_or((text, ""));
    let routes: Vec<RouteConfig> = table
        .lines()
        .take(32)
        .enumerate()
        .filter_map(|(i, l)| fuzz_route(i, l))
        .collect();
    let router = Router::build(&routes);
    for line in requests.lines().take(32) {
        let mut parts = line.split(' ');
        let host = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("/");
        let method = parts.next().unwrap_or("GET");
        let got = router.find(host, path, method);
        let want = reference_find(&routes, host, path, method);
        assert_eq!(got, want, "{host:?} {path:?} {method:?} in {routes:#?}");
    }
}

/// A route as validation would leave it: paths start with `/`, prefixes
/// have no trailing slash but the root, hosts and methods are tokens.
fn fuzz_route(i: usize, line: &str) -> Option<RouteConfig> {
    let mut parts = line.split(' ');
    let (hosts, path, methods) = (parts.next()?, parts.next()?, parts.next().unwrap_or("-"));
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    let hosts = match hosts {
        "-" => vec![],
        list => list
            .split(',')
            .map(|h| match h.strip_prefix("*.") {
                Some(s) if token(s) => Some(HostPattern::Wildcard(format!(
                    ".{}",
                    s.to_ascii_lowercase()
                ))),
                None if token(h) && !h.starts_with('*') => {
                    Some(HostPattern::Exact(h.to_ascii_lowercase()))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
    };
    let path = match path.strip_prefix('=') {
        Some(p) if p.starts_with('/') => PathMatch::Exact(p.to_string()),
        None if path.starts_with('/') => {
            let p = path.trim_end_matches('/');
            PathMatch::Prefix(if p.is_empty() {
                "/".into()
            } else {
                p.to_string()
            })
        }
        _ => return None,
    };
    let mut methods: Vec<String> = match methods {
        "-" | "" => vec![],
        list => list
            .split(',')
            .filter(|m| token(m))
            .map(str::to_string)
            .collect(),
    };
    methods.sort();
    methods.dedup();
    Some(RouteConfig::matching(format!("r{i}"), hosts, path, methods))
}

/// The documented matching rules, by brute force.
fn reference_find(routes: &[RouteConfig], host: &str, path: &str, method: &str) -> RouteLookup {
    let name = strip_port(host);
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let named = !name.is_empty() && name.len() <= MAX_HOST_LEN;
    // Host tiers in order: exact, wildcards longest suffix first, any host.
    let mut wildcards: Vec<&str> = routes
        .iter()
        .flat_map(|r| &r.hosts)
        .filter_map(|h| match h {
            HostPattern::Wildcard(s) => Some(s.as_str()),
            HostPattern::Exact(_) => None,
        })
        .filter(|s| named && name.len() > s.len() && name.ends_with(*s))
        .collect();
    wildcards.sort_by_key(|s| std::cmp::Reverse(s.len()));
    wildcards.dedup();
    let in_tier = |r: &RouteConfig, tier: Option<Tier<'_>>| match tier {
        Some(Tier::Exact) => r.hosts.iter().any(
            |h| matches!(h, HostPattern::Exact(e) if named && e.trim_end_matches('.') == name),
        ),
        Some(Tier::Wildcard(s)) => r
            .hosts
            .iter()
            .any(|h| matches!(h, HostPattern::Wildcard(w) if w == s)),
        None => r.hosts.is_empty(),
    };
    let tiers = std::iter::once(Some(Tier::Exact))
        .chain(wildcards.into_iter().map(|s| Some(Tier::Wildcard(s))))
        .chain(std::iter::once(None));
    let mut allowed: Vec<String> = Vec::new();
    let mut matched = false;
    for tier in tiers {
        // Slots in order: the exact path, prefixes longest first, the root.
        let mut slots: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut add = |len: usize, i: usize| match slots.iter_mut().find(|(l, _)| *l == len) {
            Some((_, v)) => v.push(i),
            None => slots.push((len, vec![i])),
        };
        let mut exact = Vec::new();
        for (i, r) in routes.iter().enumerate().filter(|(_, r)| in_tier(r, tier)) {
            match &r.path {
                PathMatch::Exact(p) if p == path => exact.push(i),
                PathMatch::Exact(_) => {}
                PathMatch::Prefix(p) if p == "/" => add(0, i),
                PathMatch::Prefix(p) => {
                    let below = path.as_bytes().get(p.len()).is_none_or(|&b| b == b'/');
                    if path.starts_with(p.as_str()) && below {
                        add(p.len(), i);
                    }
                }
            }
        }
        slots.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        let exact = (!exact.is_empty()).then_some((path.len(), exact));
        for (prefix_len, members) in exact.into_iter().chain(slots) {
            matched = true;
            // Routes listing the method beat any-method ones; then by index.
            let listing = members
                .iter()
                .copied()
                .filter(|&i| routes[i].methods.iter().any(|m| m == method));
            let any = members
                .iter()
                .copied()
                .filter(|&i| routes[i].methods.is_empty());
            if let Some(route) = listing.chain(any).next() {
                return RouteLookup::Found { route, prefix_len };
            }
            allowed.extend(members.iter().flat_map(|&i| routes[i].methods.clone()));
        }
    }
    if !matched {
        return RouteLookup::NotFound;
    }
    allowed.sort();
    allowed.dedup();
    RouteLookup::MethodNotAllowed { allowed }
}

#[derive(Clone, Copy)]
enum Tier<'a> {
    Exact,
    Wildcard(&'a str),
}

/// `traceparent`: never a panic; the gateway's own is well formed; a
/// continued trace keeps the client's trace id and flags, and feeding the
/// gateway's `traceparent` back continues the same trace.
pub fn traceparent(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Some(t) = trace_of(value) else {
        return;
    };
    let out = t.traceparent();
    let out = out.as_bytes();
    assert_eq!(out.len(), 55);
    let lower_hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    assert!(out.starts_with(b"00-") && out[35] == b'-' && out[52] == b'-');
    assert!(lower_hex(&out[3..35]) && lower_hex(&out[36..52]) && lower_hex(&out[53..55]));
    assert!(t.trace_id != [0; 16] && t.span_id != [0; 8]);
    if t.continued {
        assert_eq!(&out[3..35], &data[3..35], "the client's trace id is kept");
        assert_eq!(&out[53..55], &data[53..55], "the client's flags are kept");
    }
    let again = trace_of(HeaderValue::from_bytes(out).expect("ASCII")).expect("a request");
    assert!(again.continued, "the gateway's traceparent is valid");
    assert_eq!((again.trace_id, again.flags), (t.trace_id, t.flags));
}

fn trace_of(traceparent: HeaderValue) -> Option<TraceContext> {
    let mut req = RequestHeader::build("GET", b"/", None).ok()?;
    req.insert_header(crate::proxy::trace::TRACEPARENT, traceparent)
        .ok()?;
    Some(TraceContext::for_request(&req))
}

/// Cache key query modes: never a panic; applying a mode twice changes
/// nothing (where the input's escapes are well formed); `sorted` ignores
/// the order of the parameters; the request's `Cache-Control` parses.
pub fn cache_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let query = text.split_once('?').map_or("", |(_, q)| q);
    let well_formed = |s: &str| {
        let b = s.as_bytes();
        b.iter().enumerate().all(|(i, &c)| {
            c != b'%'
                || (b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
        })
    };
    let only = QueryKey::Only(vec!["a".into(), "b".into()]);
    for mode in [QueryKey::All, QueryKey::Sorted, only] {
        let q = normalize_query(query, &mode);
        if well_formed(query) {
            assert_eq!(normalize_query(&q, &mode), q, "query {query:?} ({mode:?})");
        }
    }
    let reversed: Vec<&str> = query.split('&').rev().collect();
    assert_eq!(
        normalize_query(&reversed.join("&"), &QueryKey::Sorted),
        normalize_query(query, &QueryKey::Sorted),
        "sorted keys of {query:?}"
    );
    if let (Ok(value), Ok(mut req)) = (
        HeaderValue::from_str(text),
        RequestHeader::build("GET", b"/", None),
    ) {
        if req
            .insert_header(http::header::CACHE_CONTROL, value)
            .is_ok()
        {
            let d = crate::cache::policy::request_directives(&req);
            if d.max_age == Some(0) {
                assert!(d.revalidate, "max-age=0 revalidates");
            }
        }
    }
}

/// The request-target normalizer against a reference written
/// differently (RFC 3986 §5.2.4's string-buffer algorithm over a fully
/// decoded token list): both refuse, or both give the same target, under
/// every combination of the switches; the result is canonical (normalizing
/// it again changes nothing), starts with `/`, holds no dot-segment and,
/// with slashes merged, no `//`.
pub fn request_target(data: &[u8]) {
    for merge_slashes in [true, false] {
        for ambiguous_paths in [Ambiguous::Reject, Ambiguous::Opaque] {
            let rules = PathRules {
                merge_slashes,
                ambiguous_paths,
            };
            let ours = crate::target::canonical(data, &rules)
                .map(|c| c.unwrap_or_else(|| String::from_utf8_lossy(data).into_owned()));
            let reference = reference_target(data, &rules);
            assert_eq!(
                ours.as_ref().ok(),
                reference.as_ref(),
                "{:?} under {rules:?}: ours {ours:?}",
                String::from_utf8_lossy(data)
            );
            let Ok(ours) = ours else { continue };
            let again = crate::target::canonical(ours.as_bytes(), &rules);
            assert!(
                again
                    .as_ref()
                    .is_ok_and(|a| a.as_ref().is_none_or(|a| *a == ours)),
                "{ours:?} normalized again: {again:?}"
            );
            let path = ours.split('?').next().unwrap_or_default();
            assert!(path.starts_with('/'), "{ours:?}");
            assert!(
                !path.split('/').any(|s| s == "." || s == ".."),
                "dot-segment left in {ours:?}"
            );
            assert!(!(merge_slashes && path.contains("//")), "{ours:?}");
        }
    }
}

/// One byte of a path, as sent.
#[derive(Clone, Copy)]
enum Token {
    Raw(u8),
    Escaped(u8),
}

/// The reference normalizer: `None` when the target is refused.
fn reference_target(data: &[u8], rules: &PathRules) -> Option<String> {
    let q = data.iter().position(|&b| b == b'?');
    let (path, query) = match q {
        Some(q) => (&data[..q], Some(&data[q + 1..])),
        None => (data, None),
    };
    if path.first() != Some(&b'/') {
        return None;
    }
    // 1. Decode everything into tokens.
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = std::str::from_utf8(path.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            tokens.push(Token::Escaped(u8::from_str_radix(hex, 16).ok()?));
            i += 3;
        } else {
            tokens.push(Token::Raw(path[i]));
            i += 1;
        }
    }
    // 2. The refusals that depend on single bytes, and UTF-8.
    let opaque = rules.ambiguous_paths == Ambiguous::Opaque;
    let mut decoded = Vec::new();
    for t in &tokens {
        match *t {
            Token::Escaped(0) => return None,
            Token::Raw(b) if b <= b' ' || b == 0x7f => return None,
            Token::Escaped(b'/' | b'\\') | Token::Raw(b'\\' | b';') if !opaque => return None,
            Token::Raw(b) | Token::Escaped(b) => decoded.push(b),
        }
    }
    String::from_utf8(decoded).ok()?;
    // 3. Re-encode: unreserved decoded, `/` raw a separator, the rest escaped.
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let literal = |b: u8| unreserved(b) || b"!$&'()*+,=:@".contains(&b);
    let mut encoded = String::new();
    for t in &tokens {
        match *t {
            Token::Raw(b'/') => encoded.push('/'),
            Token::Raw(b';') => encoded.push(';'),
            Token::Raw(b) | Token::Escaped(b) if unreserved(b) => encoded.push(char::from(b)),
            Token::Raw(b) if literal(b) => encoded.push(char::from(b)),
            Token::Raw(b) | Token::Escaped(b) => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    // 4. Tomcat's `..;` before anything is removed.
    if opaque
        && encoded.split('/').any(|seg| {
            let before = seg.split(';').next().unwrap_or_default();
            before.len() < seg.len() && (before == "." || before == "..")
        })
    {
        return None;
    }
    if rules.merge_slashes {
        while encoded.contains("//") {
            encoded = encoded.replace("//", "/");
        }
    }
    // 5. RFC 3986 §5.2.4, with a climb above the root refused.
    let mut input = encoded.as_str();
    let mut output = String::new();
    while !input.is_empty() {
        if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            if output.is_empty() {
                return None;
            }
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
            input = if input == "/.." { "/" } else { &input[3..] };
        } else {
            let next = input[1..].find('/').map_or(input.len(), |n| n + 1);
            output.push_str(&input[..next]);
            input = &input[next..];
        }
    }
    // 6. The query: escapes normalized, a stray `%` and other bytes encoded.
    if let Some(query) = query {
        output.push('?');
        let mut i = 0;
        while i < query.len() {
            let b = query[i];
            let escape = query
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match (b, escape) {
                (b'%', Some(c)) => {
                    if unreserved(c) {
                        output.push(char::from(c));
                    } else {
                        output.push_str(&format!("%{c:02X}"));
                    }
                    i += 3;
                    continue;
                }
                (b, _) if b <= b' ' || b == 0x7f => return None,
                (b, _) if literal(b) || b"/?;".contains(&b) => output.push(char::from(b)),
                (b, _) => output.push_str(&format!("%{b:02X}")),
            }
            i += 1;
        }
    }
    Some(output)
}

/// The HTTP/1 request path, bytes in → the gateway's decision: Pingora's
/// parser, then the gateway's strict checks and limits, then the router.
/// Never a panic; what is accepted is forwarded in one reading only: at
/// most one `Content-Length` (digits), never with `Transfer-Encoding`,
/// which is `chunked` alone; HTTP/1.1 has a `Host`.
pub fn http1(data: &[u8]) {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
    }
    RUNTIME.with(|rt| {
        if let Some(rt) = rt {
            rt.block_on(http1_decide(data));
        }
    });
}

async fn http1_decide(data: &[u8]) {
    let mut session = HttpSession::new(Box::new(Cursor::new(data.to_vec())));
    if !matches!(session.read_request().await, Ok(Some(_))) {
        return; // refused by Pingora's parser (400) or incomplete
    }
    let limits = ClientLimits::default();
    let mut req = session.req_header().clone();
    if let Err(refusal) = crate::decide::head::check(&req, &limits) {
        let status = refusal.problem().0.status();
        assert!(matches!(status, 400 | 414 | 431 | 501), "{refusal:?}");
        return;
    }
    crate::decide::head::normalize_content_length(&mut req);
    if crate::target::canonicalize(&mut req, false, &PathRules::default()).is_err() {
        return; // 400
    }
    let canonical = req.raw_path().to_vec();
    assert_eq!(
        crate::target::canonical(&canonical, &PathRules::default())
            .map(|c| c.is_none() || c.as_deref() == Some(&*String::from_utf8_lossy(&canonical))),
        Ok(true),
        "the target routed is not canonical: {:?}",
        String::from_utf8_lossy(&canonical)
    );
    let cl: Vec<&HeaderValue> = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .collect();
    let te: Vec<&HeaderValue> = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .collect();
    assert!(cl.len() <= 1, "Content-Length forwarded twice: {cl:?}");
    if let Some(v) = cl.first() {
        assert!(
            !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit),
            "Content-Length {v:?}"
        );
    }
    assert!(te.len() <= 1, "Transfer-Encoding forwarded twice: {te:?}");
    if let Some(v) = te.first() {
        let v = v.to_str().unwrap_or("").trim();
        assert!(v.eq_ignore_ascii_case("chunked"), "Transfer-Encoding {v:?}");
        assert!(cl.is_empty(), "both Content-Length and Transfer-Encoding");
    }
    if req.version == http::Version::HTTP_11 {
        assert!(
            req.headers.contains_key(http::header::HOST),
            "HTTP/1.1 without Host"
        );
    }
    let host = crate::router::request_host(&req);
    let path = req.uri.path();
    let router = Router::build(&[
        RouteConfig::matching("a".into(), vec![], PathMatch::Prefix("/v1".into()), vec![]),
        RouteConfig::matching(
            "b".into(),
            vec![HostPattern::Wildcard(".x.test".into())],
            PathMatch::Prefix("/".into()),
            vec!["GET".into()],
        ),
    ]);
    if let RouteLookup::Found { prefix_len, .. } = router.find(host, path, req.method.as_str()) {
        assert!(prefix_len <= path.len());
    }
}

/// Bearer tokens and key sets: neither parsing a key set nor verifying a
/// token ever panics, and a token that passes names a consumer that is
/// safe in a header and a log line, and has not expired.
pub fn jwt(data: &[u8]) {
    use crate::jwt::{verify, KeySet};
    let _ = KeySet::parse(data);
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::jwt::header(token);
    if let Ok(v) = verify(token, fuzz_jwt_keys(), &fuzz_jwt_expected(), FUZZ_JWT_NOW) {
        assert!(!v.consumer.is_empty() && v.consumer.len() <= 256);
        assert!(v
            .consumer
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' '));
        assert!(v.expires_at + 30 >= FUZZ_JWT_NOW);
    }
}

/// The issuer, audience and time of the `jwt` target's expectations.
pub const FUZZ_JWT_ISSUER: &str = "https://login.example.com/";
pub const FUZZ_JWT_AUDIENCE: &str = "orders-api";
pub const FUZZ_JWT_NOW: u64 = 1_800_000_000;

/// What the `jwt` target expects of a token: its issuer and audience,
/// every algorithm, 30 s of leeway, the consumer in `sub`.
pub fn fuzz_jwt_expected() -> crate::jwt::Expected<'static> {
    static AUDIENCES: std::sync::OnceLock<[String; 1]> = std::sync::OnceLock::new();
    crate::jwt::Expected {
        issuer: FUZZ_JWT_ISSUER,
        audiences: AUDIENCES.get_or_init(|| [FUZZ_JWT_AUDIENCE.to_string()]),
        algorithms: &crate::jwt::Alg::ALL,
        leeway: 30,
        consumer_claim: "sub",
        scopes_claim: "scope",
    }
}

/// The `jwt` target's key set: one Ed25519 key (kid `fuzz`) from a fixed
/// seed, so a corpus can hold tokens that verify.
pub fn fuzz_jwt_keys() -> &'static crate::jwt::KeySet {
    static KEYS: std::sync::OnceLock<crate::jwt::KeySet> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use base64::Engine;
        use ring::signature::KeyPair;
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fuzz_jwt_signer().public_key());
        let doc = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"fuzz","x":"{x}"}}]}}"#);
        crate::jwt::KeySet::parse(doc.as_bytes()).unwrap_or_default()
    })
}

/// The private half of [`fuzz_jwt_keys`] (a fixed seed: for the corpus
/// and its test only).
pub fn fuzz_jwt_signer() -> ring::signature::Ed25519KeyPair {
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32])
        .unwrap_or_else(|_| unreachable!("a 32-byte seed is always accepted"))
}

#[cfg(test)]
mod tests {
    /// The token `fuzz/corpus/jwt/valid` holds: signed by the `jwt`
    /// target's fixed key, for its issuer and audience (Ed25519
    /// signatures are deterministic, so it is rebuilt and compared).
    /// `PORTCULLIS_WRITE_FUZZ_CORPUS=1` writes it.
    #[test]
    fn the_jwt_corpus_holds_a_token_that_verifies() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let claims = serde_json::json!({
            "iss": FUZZ_JWT_ISSUER, "aud": FUZZ_JWT_AUDIENCE, "sub": "fuzz-user",
            "exp": 4_000_000_000u64, "scope": "orders:read",
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"fuzz","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = fuzz_jwt_signer().sign(input.as_bytes());
        let want = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/jwt/valid");
        if std::env::var_os("PORTCULLIS_WRITE_FUZZ_CORPUS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        assert_eq!(std::fs::read_to_string(path).unwrap(), want);
        let v =
            crate::jwt::verify(&want, fuzz_jwt_keys(), &fuzz_jwt_expected(), FUZZ_JWT_NOW).unwrap();
        assert_eq!(v.consumer, "fuzz-user");
        jwt(want.as_bytes());
    }

    use super::*;

    #[test]
    fn the_reference_matcher_agrees_on_the_documented_examples() {
        router(b"- /v1 -\n*.example.com / GET\napi.example.com =/v1/x POST\n\napi.example.com /v1/x POST\na.b.example.com /v10 GET\nexample.com /v1/ DELETE\napi.example.com:8080 /v1/x GET\n");
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_garbage_is_not() {
        traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        traceparent(b"00-zzzz");
    }

    #[test]
    fn the_http1_path_decides_without_panicking() {
        http1(b"GET /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello");
        http1(b"POST / HTTP/1.1\r\nHost: a.x.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n");
        cache_key(b"/a%7e/%41?b=2&a=1");
    }

    #[test]
    fn the_reference_normalizer_agrees_on_the_documented_examples() {
        for t in [
            "/pub/../pub/admin/users",
            "/pub/%2e%2e/x",
            "/a//b/./c/..",
            "/a%2fb",
            "/..;/x",
            "/c/%63ache?x=%7e%zz",
            "/%c0%ae",
            "/..",
            "//",
        ] {
            request_target(t.as_bytes());
        }
    }
}
