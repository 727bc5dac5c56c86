//! Who may use the admin API: tokens for reading and writing, the `Host`
//! names it answers (DNS rebinding), and requests a browser could send
//! from another site (cross-site request forgery).
//!
//! - **Host**: an IP literal (any port), `localhost` or a name in `[admin]
//!   hosts`. A rebinding attack points a name of the attacker's at the
//!   admin address; the browser then sends that name, which is refused
//!   (`421`). Requests without `Host` (HTTP/1.0) are not a browser's.
//! - **Cross-site writes**: a state-changing request (`POST`, `PUT`,
//!   `PATCH`, `DELETE`) is refused (`403`) when it carries an `Origin`
//!   other than the admin API's own, `Sec-Fetch-Site` other than
//!   `same-origin`/`none`, or a body type an HTML form can send
//!   (`application/x-www-form-urlencoded`, `multipart/form-data`,
//!   `text/plain`): a browser sends those cross-site without asking.
//!   `curl -X POST` sends none of them.
//! - **Tokens**: with `token_digest`, every endpoint but the health probes
//!   needs `Authorization: Bearer`. The token of `token_digest` may do
//!   everything; the one of `read_token_digest` only `GET` and `HEAD`.

use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::Method;
use pingora_http::RequestHeader;
use subtle::ConstantTimeEq;

use crate::config::model::AdminSettings;

/// Why a request is refused, with its status and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// 421: not a `Host` this admin API answers.
    Host,
    /// 403: a state-changing request a browser could forge.
    CrossSite,
    /// 401: no token, or not one of ours.
    Unauthenticated,
    /// 403: the read-only token on a state-changing endpoint.
    ReadOnly,
}

impl AdminRefusal {
    pub fn status(self) -> http::StatusCode {
        match self {
            AdminRefusal::Host => http::StatusCode::MISDIRECTED_REQUEST,
            AdminRefusal::CrossSite | AdminRefusal::ReadOnly => http::StatusCode::FORBIDDEN,
            AdminRefusal::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            AdminRefusal::Host => "The admin API answers IP addresses, localhost and the names in [admin] hosts only.",
            AdminRefusal::CrossSite => "State-changing admin requests may not come from a browser on another site (Origin, Sec-Fetch-Site or a form content type).",
            AdminRefusal::Unauthenticated => "This admin endpoint needs Authorization: Bearer with the admin token.",
            AdminRefusal::ReadOnly => "The read-only admin token may not change anything; use the admin token.",
        }
    }
}

/// Whether `method` changes state.
pub fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Check `req` against `settings`; `open` endpoints (health probes) need
/// neither a token nor an allowed `Host`.
pub fn check(
    req: &RequestHeader,
    settings: &AdminSettings,
    open: bool,
) -> Result<(), AdminRefusal> {
    if open {
        return Ok(());
    }
    if !host_allowed(req, settings) {
        return Err(AdminRefusal::Host);
    }
    let write = writes(&req.method);
    if write && cross_site(req) {
        return Err(AdminRefusal::CrossSite);
    }
    let Some(full) = settings.token_digest else {
        return Ok(());
    };
    let presented = crate::auth::presented_key(req, &crate::auth::KeyPlace::Bearer)
        .map(|t| crate::keys::digest(&t));
    let Some(presented) = presented else {
        return Err(AdminRefusal::Unauthenticated);
    };
    if bool::from(presented.ct_eq(&full)) {
        return Ok(());
    }
    match settings.read_token_digest {
        Some(read) if bool::from(presented.ct_eq(&read)) => {
            if write {
                Err(AdminRefusal::ReadOnly)
            } else {
                Ok(())
            }
        }
        _ => Err(AdminRefusal::Unauthenticated),
    }
}

/// An IP literal, `localhost` or a configured name, any port; or no `Host`.
fn host_allowed(req: &RequestHeader, settings: &AdminSettings) -> bool {
    let Some(host) = req
        .headers
        .get(HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"))
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
    else {
        return true;
    };
    let name = crate::router::strip_port(host);
    let name = name.trim_end_matches('.');
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    literal.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || settings.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// What a browser sends with a request another site made it send.
fn cross_site(req: &RequestHeader) -> bool {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header(ORIGIN.as_str()) {
        let own = header(HOST.as_str()).map(|h| format!("http://{h}"));
        if own.as_deref() != Some(origin) {
            return true;
        }
    }
    if header("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    header(CONTENT_TYPE.as_str()).is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "text/plain",
        ]
        .iter()
        .any(|f| essence.eq_ignore_ascii_case(f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: Option<&str>, read: Option<&str>) -> AdminSettings {
        let d = |t: &str| crate::keys::digest(t.as_bytes());
        AdminSettings {
            address: "127.0.0.1:9180".parse().unwrap(),
            token_digest: token.map(d),
            read_token_digest: read.map(d),
            allow_unauthenticated: false,
            hosts: vec!["admin.internal".into()],
        }
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/-/reload", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_configured() {
        let s = settings(None, None);
        for host in [
            "127.0.0.1:9180",
            "10.1.2.3",
            "[::1]:9180",
            "localhost:9180",
            "Admin.Internal",
            "admin.internal.",
        ] {
            assert_eq!(
                check(&req("GET", &[("host", host)]), &s, false),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:9180",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(
                check(&req("GET", &[("host", host)]), &s, false),
                Err(AdminRefusal::Host),
                "{host}"
            );
            assert_eq!(
                check(&req("GET", &[("host", host)]), &s, true),
                Ok(()),
                "open: {host}"
            );
        }
        assert_eq!(check(&req("GET", &[]), &s, false), Ok(()));
    }

    #[test]
    fn writes_a_browser_could_forge_are_refused() {
        let s = settings(None, None);
        let host = ("host", "127.0.0.1:9180");
        for extra in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-type", "text/plain;charset=UTF-8"),
            ("content-type", "multipart/form-data; boundary=x"),
        ] {
            assert_eq!(
                check(&req("POST", &[host, extra]), &s, false),
                Err(AdminRefusal::CrossSite),
                "{extra:?}"
            );
            assert_eq!(
                check(&req("GET", &[host, extra]), &s, false),
                Ok(()),
                "reads: {extra:?}"
            );
        }
        for fine in [
            ("origin", "http://127.0.0.1:9180"),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ] {
            assert_eq!(
                check(&req("POST", &[host, fine]), &s, false),
                Ok(()),
                "{fine:?}"
            );
        }
    }

    #[test]
    fn the_read_token_reads_and_the_admin_token_writes() {
        let s = settings(Some("w-token"), Some("r-token"));
        let bearer = |t: &str| format!("Bearer {t}");
        let with = |m: &str, t: &str| req(m, &[("authorization", &bearer(t))]);
        assert_eq!(check(&with("GET", "r-token"), &s, false), Ok(()));
        assert_eq!(
            check(&with("POST", "r-token"), &s, false),
            Err(AdminRefusal::ReadOnly)
        );
        assert_eq!(check(&with("DELETE", "w-token"), &s, false), Ok(()));
        assert_eq!(check(&with("GET", "w-token"), &s, false), Ok(()));
        assert_eq!(
            check(&with("GET", "nope"), &s, false),
            Err(AdminRefusal::Unauthenticated)
        );
        assert_eq!(
            check(&req("GET", &[]), &s, false),
            Err(AdminRefusal::Unauthenticated)
        );
    }
}
