//! `[routes.cors]`.

use toml::Spanned;

use super::{is_token, Validator};
use crate::config::file::CorsFile;
use crate::config::model::CorsConfig;

impl Validator<'_> {
    pub(super) fn cors(&mut self, f: &CorsFile, item: &str) -> Option<CorsConfig> {
        let mut ok = true;
        let mut origins = Vec::new();
        for o in f.allow_origins.get_ref() {
            match origin(o.get_ref()) {
                Ok(text) => origins.push(text),
                Err(why) => {
                    ok = false;
                    self.error(
                        o.span(),
                        Some(item),
                        format!("cors.allow_origins: {:?} {why}", o.get_ref()),
                    );
                }
            }
        }
        if f.allow_origins.get_ref().is_empty() {
            ok = false;
            self.error(
                f.allow_origins.span(),
                Some(item),
                "cors.allow_origins is empty: no browser origin could call the route; list the origins or remove the table",
            );
        }
        let credentials = f.allow_credentials.as_ref().is_some_and(|c| *c.get_ref());
        if credentials && origins.iter().any(|o| o == "*") {
            ok = false;
            let span = f.allow_credentials.as_ref().map_or(0..0, Spanned::span);
            self.error(
                span,
                Some(item),
                r#"cors: allow_credentials with allow_origins = ["*"] would let every site read answers made with a user's credentials; list the origins"#,
            );
        }
        let allow_methods = f.allow_methods.as_ref().map(|m| self.methods(m, item));
        let mut names = |list: &Option<Vec<Spanned<String>>>, key: &str, star: bool| {
            let mut out = Vec::new();
            for h in list.iter().flatten() {
                let text = h.get_ref();
                if (star && text == "*") || is_token(text) {
                    out.push(text.to_ascii_lowercase());
                } else {
                    ok = false;
                    self.error(
                        h.span(),
                        Some(item),
                        format!("cors.{key}: {text:?} is not a header name"),
                    );
                }
            }
            out
        };
        let allow_headers = names(&f.allow_headers, "allow_headers", true);
        let expose_headers = names(&f.expose_headers, "expose_headers", false);
        // At most a day, as every duration here (browsers cap theirs
        // lower: Chromium 2 h, Firefox 24 h).
        let max_age = f
            .max_age
            .as_ref()
            .and_then(|m| self.duration(m, "cors.max_age", Some(item)));
        ok.then_some(CorsConfig {
            allow_origins: origins,
            allow_methods,
            allow_headers,
            expose_headers,
            allow_credentials: credentials,
            max_age,
        })
    }
}

/// An allowed origin as the `Origin` field serializes one, lower-cased:
/// `*`, `scheme://host[:port]`, or `scheme://*.domain[:port]`.
fn origin(text: &str) -> Result<String, &'static str> {
    if text == "*" {
        return Ok(text.to_string());
    }
    if text == "null" {
        return Err("is not a safe origin to allow (sandboxed frames and local files send it)");
    }
    let lower = text.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(
            r#"is not an origin: write "https://app.example.com" (scheme, host, optional port)"#,
        );
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err("has no valid scheme");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
        return Err(
            "is not an origin: no path, query or user may follow the host (and no trailing /)",
        );
    }
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest.ends_with(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("has no valid port");
        }
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    let valid_host = !host.is_empty()
        && !host.contains('*')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !valid_host {
        return Err(
            r#"has no valid host (a wildcard may only be the first label: "https://*.example.com")"#,
        );
    }
    Ok(lower)
}
