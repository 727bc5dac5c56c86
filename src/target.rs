//! The canonical request target: the one value that the router, the key
//! and scope checks, the limits, the cache key, the access log, `explain`
//! and the upstream request all read. It is computed once per request,
//! before anything decides on it, from the target as received; the
//! proxy then replaces the request's URI with it, so nothing later can
//! see another spelling of the same path.
//!
//! # Rules
//!
//! - **Form.** Origin-form (`/path?query`) is taken as is. Absolute-form
//!   (`http://host/path`) becomes origin-form when its scheme is the
//!   connection's (`https` on TLS, `http` otherwise), it names no user
//!   information and its authority is the `Host` header (case-insensitive,
//!   the scheme's default port optional). Anything else (`*`, `a`,
//!   authority-form) is refused.
//! - **Percent-encoding** (RFC 3986 §6.2.2): an encoded unreserved
//!   character (`A-Z a-z 0-9 - . _ ~`) is decoded; every other escape is
//!   kept, its hex digits upper-cased. A `%` not followed by two hex digits,
//!   an encoded NUL, and escapes whose decoded bytes are not UTF-8 (the
//!   overlong `%c0%ae` among them) are refused. Raw bytes that may not
//!   appear in a path (non-ASCII, `"`, `<`, `{`, …) are encoded; control
//!   characters and spaces are refused.
//! - **Ambiguous separators**: `%2F`, `%5C`, `\` and `;` mean different
//!   things to different backends (a second slash, a Windows separator, a
//!   Tomcat path parameter). [`Ambiguous::Reject`] (the default) refuses
//!   them; [`Ambiguous::Opaque`] keeps them as data: `%2F` and `%5C` stay
//!   encoded, `\` is encoded as `%5C`, `;` stays, and a segment that is a
//!   dot-segment before its first `;` (`..;x`) is refused.
//! - **Segments** (RFC 3986 §5.2.4): `.` and `..` are removed, after the
//!   decoding above (so `%2e%2E` is `..`); a `..` above the root is refused
//!   rather than clamped. Empty segments (`//`) are merged when
//!   [`PathRules::merge_slashes`] is on (the default, as in nginx).
//! - **The query** gets the same percent-encoding normalization, leniently:
//!   a `%` that starts no escape is taken for a literal `%` (`%25`), and
//!   `;`, `/` and `?` are data there.
//!
//! A target that is already canonical (the common case: ASCII letters,
//! digits and the usual punctuation, no escapes, no dot-segments) is
//! recognised in one pass without allocating.

use pingora_http::RequestHeader;

/// How the path's ambiguous separators (`%2F`, `%5C`, `\`, `;`) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ambiguous {
    /// The request is refused with 400.
    #[default]
    Reject,
    /// They are kept as data, never as separators.
    Opaque,
}

/// The switches of path normalization (`[server.client]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PathRules {
    /// `//` is one `/`.
    pub merge_slashes: bool,
    /// See [`Ambiguous`].
    pub ambiguous_paths: Ambiguous,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            merge_slashes: true,
            ambiguous_paths: Ambiguous::Reject,
        }
    }
}

/// Why a request target is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    #[error("The request target must be a path starting with '/' or an absolute http(s) URL.")]
    NotOriginForm,
    #[error("The request target's scheme does not match the connection.")]
    SchemeMismatch,
    #[error("The request target's host does not match the Host header.")]
    AuthorityMismatch,
    #[error("The request target must not contain user information.")]
    UserInfo,
    #[error("The request target contains an invalid percent-encoding.")]
    BadEscape,
    #[error("The request target contains a space, a control character or an encoded NUL.")]
    Control,
    #[error("The request target's percent-encoded bytes are not valid UTF-8.")]
    NotUtf8,
    #[error(
        "The request path contains an encoded slash or backslash, a backslash or a semicolon."
    )]
    Ambiguous,
    #[error("The request path climbs above the root.")]
    AboveRoot,
    #[error("The request path contains a dot-segment with parameters.")]
    DotSegmentParameters,
}

/// The request target in origin-form, with the authority of an
/// absolute-form target.
#[derive(Debug, PartialEq, Eq)]
pub struct OriginForm<'a> {
    pub path_and_query: std::borrow::Cow<'a, [u8]>,
    /// The authority an absolute-form target named (already checked
    /// against `Host` when there is one).
    pub authority: Option<&'a [u8]>,
}

/// The target as origin-form. `host` is the `Host` header, if any; `tls`
/// whether the connection is TLS.
pub fn origin_form<'a>(
    target: &'a [u8],
    host: Option<&[u8]>,
    tls: bool,
) -> Result<OriginForm<'a>, TargetRefusal> {
    if target.first() == Some(&b'/') {
        return Ok(OriginForm {
            path_and_query: target.into(),
            authority: None,
        });
    }
    let (scheme, rest) = split_scheme(target).ok_or(TargetRefusal::NotOriginForm)?;
    let https = if scheme.eq_ignore_ascii_case(b"https") {
        true
    } else if scheme.eq_ignore_ascii_case(b"http") {
        false
    } else {
        return Err(TargetRefusal::NotOriginForm);
    };
    if https != tls {
        return Err(TargetRefusal::SchemeMismatch);
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?'))
        .unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.contains(&b'@') {
        return Err(TargetRefusal::UserInfo);
    }
    if authority.is_empty() {
        return Err(TargetRefusal::NotOriginForm);
    }
    let default_port: &[u8] = if https { b"443" } else { b"80" };
    if let Some(host) = host {
        if !same_authority(authority, host, default_port) {
            return Err(TargetRefusal::AuthorityMismatch);
        }
    }
    let path_and_query = match path_and_query.first() {
        Some(b'/') => path_and_query.into(),
        _ => {
            let mut p = Vec::with_capacity(path_and_query.len() + 1);
            p.push(b'/');
            p.extend_from_slice(path_and_query);
            p.into()
        }
    };
    Ok(OriginForm {
        path_and_query,
        authority: Some(authority),
    })
}

/// Replace the request's target with its canonical origin-form (see
/// this module), which everything after this reads: the router, the key
/// checks, the cache key, the access log and the upstream request. An
/// absolute-form target's authority becomes `Host` when there is none.
pub fn canonicalize(
    req: &mut RequestHeader,
    tls: bool,
    rules: &PathRules,
) -> Result<(), TargetRefusal> {
    if req.version == http::Version::HTTP_2 {
        // The `:path`; `:scheme` and `:authority` stay on the URI.
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let Some(canonical) = canonical(pq.as_bytes(), rules)? else {
            return Ok(());
        };
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(canonical.parse().map_err(|_| TargetRefusal::BadEscape)?);
        let uri = http::Uri::from_parts(parts).map_err(|_| TargetRefusal::BadEscape)?;
        req.set_uri(uri);
        return Ok(());
    }
    let raw = req.raw_path();
    // Only an absolute-form target is compared with `Host`.
    let host = match raw.first() {
        Some(b'/') => None,
        _ => req.headers.get(http::header::HOST).map(|h| h.as_bytes()),
    };
    let form = origin_form(raw, host, tls)?;
    let canonical = canonical(&form.path_and_query, rules)?;
    let new = match canonical {
        Some(c) => c,
        None if form.authority.is_some() || !req.raw_path_is_utf8() => {
            String::from_utf8_lossy(&form.path_and_query).into_owned()
        }
        None => return Ok(()),
    };
    let authority = match (form.authority, host) {
        (Some(a), None) => {
            Some(http::HeaderValue::from_bytes(a).map_err(|_| TargetRefusal::NotOriginForm)?)
        }
        _ => None,
    };
    let uri: http::Uri = new.parse().map_err(|_| TargetRefusal::BadEscape)?;
    req.set_uri(uri);
    if let Some(authority) = authority {
        req.insert_header(http::header::HOST, authority)
            .map_err(|_| TargetRefusal::NotOriginForm)?;
    }
    Ok(())
}

/// `scheme` and what follows `://`.
fn split_scheme(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = target.iter().position(|&b| b == b':')?;
    let (scheme, rest) = target.split_at(colon);
    let first_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    let rest_ok = scheme
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = rest.strip_prefix(b"://")?;
    (first_ok && rest_ok).then_some((scheme, rest))
}

/// `a` and `b` name the same host and port (the default port may be left out).
fn same_authority(a: &[u8], b: &[u8], default_port: &[u8]) -> bool {
    let (ha, pa) = split_port(a);
    let (hb, pb) = split_port(b);
    let pa = pa.unwrap_or(default_port);
    let pb = pb.unwrap_or(default_port);
    ha.eq_ignore_ascii_case(hb) && pa == pb
}

/// `host` and `port` of `host[:port]` (`[v6]:port` too).
fn split_port(authority: &[u8]) -> (&[u8], Option<&[u8]>) {
    let after_literal = authority
        .iter()
        .rposition(|&b| b == b']')
        .map_or(0, |i| i + 1);
    match authority[after_literal..].iter().position(|&b| b == b':') {
        Some(i) => {
            let colon = after_literal + i;
            (&authority[..colon], Some(&authority[colon + 1..]))
        }
        None => (authority, None),
    }
}

/// The canonical form of an origin-form `path_and_query`, or `None` when
/// it already is canonical.
pub fn canonical(
    path_and_query: &[u8],
    rules: &PathRules,
) -> Result<Option<String>, TargetRefusal> {
    let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
        None => (path_and_query, None),
    };
    if path.first() != Some(&b'/') {
        return Err(TargetRefusal::NotOriginForm);
    }
    let path_done = is_canonical_path(path, rules);
    let query_done = query.is_none_or(is_canonical_query);
    if path_done && query_done {
        return Ok(None);
    }
    let mut out = if path_done {
        // ASCII by construction.
        String::from_utf8_lossy(path).into_owned()
    } else {
        normalize_path(path, rules)?
    };
    if let Some(q) = query {
        out.push('?');
        if query_done {
            out.push_str(&String::from_utf8_lossy(q));
        } else {
            normalize_query(q, &mut out)?;
        }
    }
    Ok(Some(out))
}

/// The canonical path of `path` (no query), for values that are not
/// requests: route paths in the config, purge requests.
pub fn canonical_path(path: &str, rules: &PathRules) -> Result<String, TargetRefusal> {
    if path.contains(['?', '#']) {
        return Err(TargetRefusal::NotOriginForm);
    }
    Ok(canonical(path.as_bytes(), rules)?.unwrap_or_else(|| path.to_string()))
}

/// `path?query` made canonical and split in two, for targets that are
/// not requests: purge requests, invalidation by `Location`.
pub fn canonical_split(
    path_and_query: &str,
    rules: &PathRules,
) -> Result<(String, Option<String>), TargetRefusal> {
    let whole =
        canonical(path_and_query.as_bytes(), rules)?.unwrap_or_else(|| path_and_query.to_string());
    Ok(match whole.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (whole, None),
    })
}

/// Bytes a canonical path may hold literally: unreserved, sub-delims but
/// `;`, `:` and `@` (RFC 3986 `pchar`), and `/`.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One pass: only literal path bytes, no `//` (when merging), no
/// dot-segment, so nothing would change.
fn is_canonical_path(path: &[u8], rules: &PathRules) -> bool {
    let mut segment_start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'/' {
            let segment = &path[segment_start..i];
            if is_dot_segment(segment) || (rules.merge_slashes && segment.is_empty()) {
                return false;
            }
            segment_start = i + 1;
        } else if !is_path_byte(b) {
            return false;
        }
    }
    !is_dot_segment(&path[segment_start..])
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Bytes a canonical query may hold literally: path bytes, `;`, `?`.
fn is_canonical_query(query: &[u8]) -> bool {
    query
        .iter()
        .all(|&b| is_path_byte(b) || matches!(b, b';' | b'?'))
}

/// A query component with its `%XX` escapes decoded, and `+` read as a
/// space when `plus_is_space` (form encoding); borrowed when there is
/// nothing to decode. `None` when a `%` is not followed by two hex digits.
/// The one percent-decoder of the crate (key parameters, admin queries).
pub fn percent_decode(v: &[u8], plus_is_space: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
    let plus = |b: u8| plus_is_space && b == b'+';
    if !v.iter().any(|&b| b == b'%' || plus(b)) {
        return Some(std::borrow::Cow::Borrowed(v));
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' => {
                let (h, l) = (hex(*v.get(i + 1)?)?, hex(*v.get(i + 2)?)?);
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            b if plus(b) => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(std::borrow::Cow::Owned(out))
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// The slow path: every segment normalized, then dot-segments removed.
fn normalize_path(path: &[u8], rules: &PathRules) -> Result<String, TargetRefusal> {
    let opaque = rules.ambiguous_paths == Ambiguous::Opaque;
    // Every segment's canonical bytes (after the leading '/').
    let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
    // The whole path decoded, to check that escapes make UTF-8.
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 1;
    while i < path.len() {
        let b = path[i];
        let segment = segments.last_mut().ok_or(TargetRefusal::NotOriginForm)?;
        match b {
            b'/' => {
                decoded.push(b);
                segments.push(Vec::new());
            }
            b'%' => {
                let (Some(h), Some(l)) = (
                    path.get(i + 1).copied().and_then(hex),
                    path.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(TargetRefusal::BadEscape);
                };
                let c = h << 4 | l;
                decoded.push(c);
                if c == 0 {
                    return Err(TargetRefusal::Control);
                } else if is_unreserved(c) {
                    segment.push(c);
                } else if matches!(c, b'/' | b'\\') && !opaque {
                    return Err(TargetRefusal::Ambiguous);
                } else {
                    push_escaped(segment, c);
                }
                i += 3;
                continue;
            }
            b'\\' | b';' if !opaque => return Err(TargetRefusal::Ambiguous),
            b'\\' => {
                decoded.push(b);
                push_escaped(segment, b);
            }
            b';' => {
                decoded.push(b);
                segment.push(b);
            }
            0..=0x20 | 0x7f => return Err(TargetRefusal::Control),
            _ if is_path_byte(b) => {
                decoded.push(b);
                segment.push(b);
            }
            _ => {
                decoded.push(b);
                push_escaped(segment, b);
            }
        }
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(TargetRefusal::NotUtf8);
    }
    let last = segments.len() - 1;
    let mut kept: Vec<&[u8]> = Vec::with_capacity(segments.len());
    for (n, segment) in segments.iter().enumerate() {
        let at_end = n == last;
        if opaque {
            let before_params = segment.split(|&b| b == b';').next().unwrap_or_default();
            if before_params.len() < segment.len() && is_dot_segment(before_params) {
                return Err(TargetRefusal::DotSegmentParameters);
            }
        }
        match segment.as_slice() {
            b"." => {}
            b".." => {
                if kept.pop().is_none() {
                    return Err(TargetRefusal::AboveRoot);
                }
            }
            b"" if rules.merge_slashes && !at_end => continue,
            s => {
                kept.push(s);
                continue;
            }
        }
        // A trailing `.` or `..` leaves a trailing slash (`/a/b/..` → `/a/`).
        if at_end {
            kept.push(b"");
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &kept {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    // Every byte pushed is ASCII.
    String::from_utf8(out).map_err(|_| TargetRefusal::NotUtf8)
}

/// The query's escapes normalized, raw bytes that may not appear encoded.
fn normalize_query(query: &[u8], out: &mut String) -> Result<(), TargetRefusal> {
    let mut bytes = Vec::with_capacity(query.len());
    let mut i = 0;
    while i < query.len() {
        let b = query[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                query.get(i + 1).copied().and_then(hex),
                query.get(i + 2).copied().and_then(hex),
            ) {
                let c = h << 4 | l;
                if is_unreserved(c) {
                    bytes.push(c);
                } else {
                    push_escaped(&mut bytes, c);
                }
                i += 3;
                continue;
            }
            // Not an escape: a literal `%` (a lenient query), encoded so
            // that no decoding can join it to what follows.
            push_escaped(&mut bytes, b);
        } else if matches!(b, 0..=0x20 | 0x7f) {
            return Err(TargetRefusal::Control);
        } else if is_path_byte(b) || matches!(b, b';' | b'?') {
            bytes.push(b);
        } else {
            push_escaped(&mut bytes, b);
        }
        i += 1;
    }
    // Every byte pushed is ASCII.
    out.push_str(&String::from_utf8_lossy(&bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(target: &str) -> Result<String, TargetRefusal> {
        canon_with(target, &PathRules::default())
    }

    fn canon_with(target: &str, rules: &PathRules) -> Result<String, TargetRefusal> {
        Ok(canonical(target.as_bytes(), rules)?.unwrap_or_else(|| target.to_string()))
    }

    const OPAQUE: PathRules = PathRules {
        merge_slashes: true,
        ambiguous_paths: Ambiguous::Opaque,
    };

    #[test]
    fn canonical_targets_are_kept_without_a_copy() {
        let rules = PathRules::default();
        for t in [
            "/",
            "/v1/hello",
            "/a/b/",
            "/a.b/c..d/...",
            "/x?y=1&z=/a/../b;c",
            "/~user/@me:1,2+3=4*(5)'!$",
        ] {
            assert_eq!(canonical(t.as_bytes(), &rules), Ok(None), "{t}");
        }
    }

    #[test]
    fn dot_segments_are_removed_and_may_not_climb_above_the_root() {
        for (t, want) in [
            ("/pub/../pub/admin/users", "/pub/admin/users"),
            ("/pub/%2e%2e/pub/admin", "/pub/admin"),
            ("/pub/%2E%2E/pub/admin", "/pub/admin"),
            ("/pub/.%2e/x", "/x"),
            ("/pub/./admin", "/pub/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/.", "/"),
            ("/a/..", "/"),
        ] {
            assert_eq!(canon(t).as_deref(), Ok(want), "{t}");
        }
        for t in [
            "/..",
            "/docs/../../secret/keys",
            "/a/%2e%2e/%2e%2e/b",
            "/../x",
        ] {
            assert_eq!(canon(t), Err(TargetRefusal::AboveRoot), "{t}");
        }
    }

    #[test]
    fn percent_decoding_of_query_components() {
        let d = |v: &str, form| percent_decode(v.as_bytes(), form).map(|c| c.into_owned());
        assert!(matches!(
            percent_decode(b"plain", true),
            Some(std::borrow::Cow::Borrowed(_))
        ));
        assert_eq!(d("a%2Fb%41+c", true).unwrap(), b"a/bA c");
        assert_eq!(d("a+b", false).unwrap(), b"a+b");
        assert_eq!(d("50%", true), None);
        assert_eq!(d("%g1", false), None);
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(canon("/c/%63ache/600").as_deref(), Ok("/c/cache/600"));
        assert_eq!(canon("/a%7eb/%41").as_deref(), Ok("/a~b/A"));
        assert_eq!(canon("/a%3fb").as_deref(), Ok("/a%3Fb"));
        assert_eq!(canon("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        // Double encoding stays one level deep: `%25` is data.
        assert_eq!(canon("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"));
        assert_eq!(canon("/x?q=%63%2f%zz").as_deref(), Ok("/x?q=c%2F%25zz"));
        assert_eq!(canon("/x?q=%%41b").as_deref(), Ok("/x?q=%25Ab"));
        for t in ["/100%", "/x%zz", "/x%2", "/%g0"] {
            assert_eq!(canon(t), Err(TargetRefusal::BadEscape), "{t}");
        }
        assert_eq!(canon("/a%00b"), Err(TargetRefusal::Control));
        assert_eq!(canon("/%c0%ae%c0%ae/x"), Err(TargetRefusal::NotUtf8));
        assert_eq!(canon("/%ff"), Err(TargetRefusal::NotUtf8));
    }

    #[test]
    fn raw_bytes_outside_a_path_are_encoded_or_refused() {
        let raw = canonical("/caf\u{e9}/\"<x>\"".as_bytes(), &PathRules::default());
        assert_eq!(raw, Ok(Some("/caf%C3%A9/%22%3Cx%3E%22".into())));
        assert_eq!(
            canonical(b"/a\xff", &PathRules::default()),
            Err(TargetRefusal::NotUtf8)
        );
        assert_eq!(canon("/a b"), Err(TargetRefusal::Control));
        assert_eq!(canon("/a\tb"), Err(TargetRefusal::Control));
        assert_eq!(canon("/x?a b"), Err(TargetRefusal::Control));
    }

    #[test]
    fn slashes_are_merged_unless_switched_off() {
        assert_eq!(canon("//a///b//").as_deref(), Ok("/a/b/"));
        assert_eq!(canon("/pub//admin").as_deref(), Ok("/pub/admin"));
        let keep = PathRules {
            merge_slashes: false,
            ..PathRules::default()
        };
        assert_eq!(canon_with("/a//b", &keep).as_deref(), Ok("/a//b"));
        assert_eq!(canon_with("/a//..", &keep).as_deref(), Ok("/a/"));
    }

    #[test]
    fn ambiguous_separators_are_refused_or_kept_opaque() {
        for t in [
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/docs/..\\..\\secret",
            "/a;b",
            "/pub/..;/admin",
        ] {
            assert_eq!(canon(t), Err(TargetRefusal::Ambiguous), "{t}");
        }
        assert_eq!(canon_with("/a%2fb", &OPAQUE).as_deref(), Ok("/a%2Fb"));
        assert_eq!(canon_with("/a\\b", &OPAQUE).as_deref(), Ok("/a%5Cb"));
        assert_eq!(canon_with("/a;v=1/b", &OPAQUE).as_deref(), Ok("/a;v=1/b"));
        assert_eq!(
            canon_with("/docs/..\\..\\x", &OPAQUE).as_deref(),
            Ok("/docs/..%5C..%5Cx")
        );
        for t in ["/pub/..;/admin", "/a/.;x/b"] {
            assert_eq!(
                canon_with(t, &OPAQUE),
                Err(TargetRefusal::DotSegmentParameters),
                "{t}"
            );
        }
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let ok = |t: &str, host: Option<&str>, tls: bool| {
            origin_form(t.as_bytes(), host.map(str::as_bytes), tls)
                .map(|o| String::from_utf8(o.path_and_query.into_owned()).unwrap())
        };
        assert_eq!(ok("/a?b", Some("h"), false).as_deref(), Ok("/a?b"));
        assert_eq!(
            ok("http://Api.Example:80/x?y", Some("api.example"), false).as_deref(),
            Ok("/x?y")
        );
        assert_eq!(ok("HTTP://h", Some("h"), false).as_deref(), Ok("/"));
        assert_eq!(ok("http://h?q=1", Some("h"), false).as_deref(), Ok("/?q=1"));
        assert_eq!(ok("https://h/x", Some("h:443"), true).as_deref(), Ok("/x"));
        assert_eq!(ok("http://h/x", None, false).as_deref(), Ok("/x"));
        assert_eq!(
            ok("https://h/x", Some("h"), false),
            Err(TargetRefusal::SchemeMismatch)
        );
        assert_eq!(
            ok("http://other/x", Some("h"), false),
            Err(TargetRefusal::AuthorityMismatch)
        );
        assert_eq!(
            ok("http://h:8080/x", Some("h"), false),
            Err(TargetRefusal::AuthorityMismatch)
        );
        assert_eq!(
            ok("http://u@h/x", Some("h"), false),
            Err(TargetRefusal::UserInfo)
        );
        for t in ["*", "a", "h:80", "ftp://h/x", "http:/x", "http:///x"] {
            assert_eq!(
                ok(t, Some("h"), false),
                Err(TargetRefusal::NotOriginForm),
                "{t}"
            );
        }
        let v6 = origin_form(b"http://[::1]:80/x", Some(b"[::1]"), false).unwrap();
        assert_eq!(v6.authority, Some(&b"[::1]:80"[..]));
    }

    #[test]
    fn canonical_is_idempotent() {
        for rules in [PathRules::default(), OPAQUE] {
            for t in [
                "/a/./b/../c//d%7e%2a?x=%7e",
                "/%2e%2e%2f",
                "/x/..",
                "/caf\u{e9}",
                "/a;b/%5c",
            ] {
                if let Ok(once) = canon_with(t, &rules) {
                    assert_eq!(canon_with(&once, &rules), Ok(once.clone()), "{t}");
                }
            }
        }
    }
}
