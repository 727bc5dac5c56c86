//! `[routes.cors]`, compiled: which origins, methods and headers a route
//! lets browsers use across origins (the Fetch standard's CORS protocol),
//! and the response fields that say so.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-
//!   Method`) is answered by the gateway: `204` with the allowance when the
//!   origin, the method and every requested header are allowed, else a
//!   `403` problem without CORS fields. No key is asked for (a browser
//!   sends none on a preflight) and the backend never sees it.
//! - An actual request from an allowed origin gets
//!   `Access-Control-Allow-Origin` echoing that one origin (`*` only for
//!   `allow_origins = ["*"]`, which `check` refuses with credentials),
//!   `-Allow-Credentials` and `-Expose-Headers`; from any other origin,
//!   none. Every response of a CORS route carries `Vary: Origin`, and the
//!   fields are added after the cache (stored responses never hold them),
//!   so one origin's answer is never served to another.

use std::time::Duration;

use http::HeaderValue;

use crate::config::model::CorsConfig;

/// The fields of an answer: name and value.
pub type Fields = Vec<(&'static str, HeaderValue)>;

/// Why a preflight was refused (the problem's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightRefusal {
    Origin,
    Method,
    Headers,
}

impl PreflightRefusal {
    pub fn detail(self) -> &'static str {
        match self {
            PreflightRefusal::Origin => "The origin is not allowed by this API's CORS policy.",
            PreflightRefusal::Method => "The method is not allowed by this API's CORS policy.",
            PreflightRefusal::Headers => {
                "A requested header is not allowed by this API's CORS policy."
            }
        }
    }
}

/// An origin pattern: `https://*.example.com[:port]`, matching any
/// subdomain (not the bare domain).
#[derive(Debug, Clone)]
struct Wildcard {
    /// `https://`
    scheme: String,
    /// `.example.com`
    suffix: String,
    /// `:8443`, or empty.
    port: String,
}

/// A route's CORS policy at run time.
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    wildcards: Vec<Wildcard>,
    credentials: bool,
    /// `None`: any method (the route allows any).
    methods: Option<Vec<String>>,
    methods_value: Option<HeaderValue>,
    /// `None`: any header (`allow_headers = ["*"]`).
    headers: Option<Vec<String>>,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    max_age_value: Option<HeaderValue>,
}

const VARY_PREFLIGHT: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");
const STAR: HeaderValue = HeaderValue::from_static("*");

fn joined(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

impl Cors {
    /// `route_methods`: the route's `methods` (empty: any), the default of
    /// `allow_methods`. Values were validated by `check`.
    pub fn build(config: &CorsConfig, route_methods: &[String]) -> Cors {
        let mut origins = Vec::new();
        let mut wildcards = Vec::new();
        let mut any_origin = false;
        for o in &config.allow_origins {
            if o == "*" {
                any_origin = true;
            } else if let Some((scheme, rest)) = o.split_once("://*") {
                let (suffix, port) = match rest.rfind(':') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                wildcards.push(Wildcard {
                    scheme: format!("{scheme}://"),
                    suffix: suffix.to_string(),
                    port: port.to_string(),
                });
            } else {
                origins.push(o.clone());
            }
        }
        let methods = match (&config.allow_methods, route_methods) {
            (Some(m), _) => Some(m.clone()),
            (None, []) => None,
            (None, r) => Some(r.to_vec()),
        };
        let any_header = config.allow_headers.iter().any(|h| h == "*");
        Cors {
            any_origin,
            origins,
            wildcards,
            credentials: config.allow_credentials,
            methods_value: methods.as_deref().and_then(joined),
            methods,
            headers_value: (!any_header)
                .then(|| joined(&config.allow_headers))
                .flatten(),
            headers: (!any_header).then(|| config.allow_headers.clone()),
            expose_value: joined(&config.expose_headers),
            max_age_value: config
                .max_age
                .map(|d: Duration| HeaderValue::from(d.as_secs())),
        }
    }

    /// Whether `origin` (an `Origin` field's value) may read responses.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        if origin == "null" {
            return false;
        }
        if self.any_origin {
            return true;
        }
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        !self.wildcards.is_empty() && {
            let origin = origin.to_ascii_lowercase();
            self.wildcards.iter().any(|w| w.matches(&origin))
        }
    }

    /// The `Access-Control-Allow-Origin` of an answer to `origin`, an
    /// allowed one: that origin, or `*`.
    pub fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            STAR
        } else {
            origin.clone()
        }
    }

    /// The fields of an actual response whose
    /// `Access-Control-Allow-Origin` is `allow_origin`.
    pub fn actual(&self, allow_origin: &HeaderValue) -> Fields {
        let mut out = Fields::with_capacity(3);
        out.push(("access-control-allow-origin", allow_origin.clone()));
        if self.credentials {
            out.push(("access-control-allow-credentials", TRUE));
        }
        if let Some(v) = &self.expose_value {
            out.push(("access-control-expose-headers", v.clone()));
        }
        out
    }

    /// [`Cors::actual`]'s fields, set on `resp` (no list built).
    pub fn apply(
        &self,
        resp: &mut pingora_http::ResponseHeader,
        allow_origin: &HeaderValue,
    ) -> pingora_error::Result<()> {
        resp.insert_header("access-control-allow-origin", allow_origin.clone())?;
        if self.credentials {
            resp.insert_header("access-control-allow-credentials", TRUE)?;
        }
        if let Some(v) = &self.expose_value {
            resp.insert_header("access-control-expose-headers", v.clone())?;
        }
        Ok(())
    }

    /// The `204` answer to a preflight from `origin` for `method` with
    /// the request header names `requested` (`Access-Control-Request-
    /// Headers`), or why it is refused.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        method: &[u8],
        requested: Option<&HeaderValue>,
    ) -> Result<Fields, PreflightRefusal> {
        if !self.allows_origin(origin.as_bytes()) {
            return Err(PreflightRefusal::Origin);
        }
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m.as_bytes() == method) {
                return Err(PreflightRefusal::Method);
            }
        }
        let requested = requested.map(|v| v.as_bytes()).unwrap_or(b"");
        if let Some(allowed) = &self.headers {
            let ok = requested
                .split(|&b| b == b',')
                .map(|h| h.trim_ascii())
                .filter(|h| !h.is_empty())
                .all(|h| allowed.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(h)));
            if !ok {
                return Err(PreflightRefusal::Headers);
            }
        }
        let mut out = Fields::with_capacity(6);
        out.push(("access-control-allow-origin", self.allow_origin(origin)));
        if self.credentials {
            out.push(("access-control-allow-credentials", TRUE));
        }
        let methods = match &self.methods_value {
            Some(v) => v.clone(),
            // Any method: the one asked for.
            None => HeaderValue::from_bytes(method).unwrap_or(STAR),
        };
        out.push(("access-control-allow-methods", methods));
        match (&self.headers, &self.headers_value) {
            (Some(_), Some(v)) => out.push(("access-control-allow-headers", v.clone())),
            (Some(_), None) => {}
            // Any header: the ones asked for.
            (None, _) if !requested.is_empty() => {
                if let Ok(v) = HeaderValue::from_bytes(requested) {
                    out.push(("access-control-allow-headers", v));
                }
            }
            (None, _) => {}
        }
        if let Some(v) = &self.max_age_value {
            out.push(("access-control-max-age", v.clone()));
        }
        out.push(("vary", VARY_PREFLIGHT));
        Ok(out)
    }
}

impl Wildcard {
    fn matches(&self, origin: &str) -> bool {
        let Some(rest) = origin.strip_prefix(&self.scheme) else {
            return false;
        };
        let (host, port) = match rest.rfind(':') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let Some(sub) = host.strip_suffix(&self.suffix) else {
            return false;
        };
        port == self.port
            && !sub.is_empty()
            && sub
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::build(
            &CorsConfig {
                allow_origins: origins.iter().map(|s| s.to_string()).collect(),
                allow_methods: None,
                allow_headers: vec!["content-type".into(), "x-api-key".into()],
                expose_headers: vec!["ratelimit".into()],
                allow_credentials: credentials,
                max_age: Some(Duration::from_secs(600)),
            },
            &["GET".to_string(), "POST".to_string()],
        )
    }

    #[test]
    fn origins_match_exactly_or_by_subdomain_pattern() {
        let c = cors(
            &[
                "https://app.example.com",
                "https://*.example.org",
                "http://*.local.test:8080",
            ],
            false,
        );
        for ok in [
            "https://app.example.com",
            "https://APP.example.com",
            "https://a.example.org",
            "https://a.b.example.org",
            "http://x.local.test:8080",
        ] {
            assert!(c.allows_origin(ok.as_bytes()), "{ok}");
        }
        for no in [
            "https://example.org",
            "http://a.example.org",
            "https://a.example.org:444",
            "https://evilexample.org",
            "https://app.example.com.evil.net",
            "https://app.example.co",
            "http://x.local.test",
            "http://x.local.test:8081",
            "null",
            "",
        ] {
            assert!(!c.allows_origin(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn preflights_check_origin_method_and_every_requested_header() {
        let c = cors(&["https://app.example.com"], true);
        let origin = HeaderValue::from_static("https://app.example.com");
        let asked = HeaderValue::from_static("Content-Type, X-API-Key");
        let ok = c.preflight(&origin, b"POST", Some(&asked)).unwrap();
        let get = |n: &str| ok.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(get("access-control-allow-methods").unwrap(), "GET, POST");
        assert_eq!(
            get("access-control-allow-headers").unwrap(),
            "content-type, x-api-key"
        );
        assert_eq!(get("access-control-allow-credentials").unwrap(), "true");
        assert_eq!(get("access-control-max-age").unwrap(), "600");
        assert_eq!(
            c.preflight(&origin, b"DELETE", None),
            Err(PreflightRefusal::Method)
        );
        let extra = HeaderValue::from_static("content-type, x-debug");
        assert_eq!(
            c.preflight(&origin, b"GET", Some(&extra)),
            Err(PreflightRefusal::Headers)
        );
        let other = HeaderValue::from_static("https://evil.example");
        assert_eq!(
            c.preflight(&other, b"GET", None),
            Err(PreflightRefusal::Origin)
        );
        // `*` without credentials answers `*`.
        let any = cors(&["*"], false);
        assert_eq!(any.allow_origin(&other), "*");
    }
}
