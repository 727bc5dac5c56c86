//! Process logging: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Pingora's own `log` records are bridged in.
//!
//! Every line is redacted on its way out, whoever wrote it (Pingora's
//! "Fail to proxy: … GET /q?api_key=…" included): the values of the query
//! parameters routes read API keys from (`key_from = "query:NAME"`, set
//! by [`redact_query_params`] whenever a config is committed), anything
//! shaped like a generated key (`pk_` and 43 base64url characters: all
//! but its non-secret prefix), and `Bearer` credentials.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

static QUERY_PARAMS: std::sync::LazyLock<ArcSwap<Vec<String>>> =
    std::sync::LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The query parameters that carry API keys in the config now serving.
pub fn redact_query_params(names: Vec<String>) {
    QUERY_PARAMS.store(Arc::new(names));
}

/// Stderr, each write redacted (the formatter writes a whole line at once).
struct Redacting;

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let params = QUERY_PARAMS.load();
        std::io::stderr().write_all(redact(&text, &params).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `line` with its secrets replaced (see the module docs).
pub fn redact<'a>(line: &'a str, params: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(line);
    for name in params {
        if out.contains(name.as_str()) {
            out = Cow::Owned(redact_param(&out, name));
        }
    }
    if out.contains(crate::keys::KEY_MARK) {
        out = Cow::Owned(redact_keys(&out));
    }
    if out.to_ascii_lowercase().contains("bearer ") {
        out = Cow::Owned(redact_bearer(&out));
    }
    out
}

/// Where a value in a URL, a header dump or a log field ends.
fn ends_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '"' | '\'' | ',' | ';' | '#' | ')' | '>' | '\\')
}

/// `name=value` after `?`, `&` or a separator: the value replaced.
fn redact_param(line: &str, name: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let needle = format!("{name}=");
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().next_back();
        let starts_param = before.is_none_or(|c| matches!(c, '?' | '&' | ';') || ends_value(c));
        let value_at = i + needle.len();
        out.push_str(&rest[..value_at]);
        rest = &rest[value_at..];
        if starts_param {
            let end = rest.find(ends_value).unwrap_or(rest.len());
            if end > 0 {
                out.push_str(REDACTED);
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Generated keys: the prefix kept, the rest replaced.
fn redact_keys(line: &str) -> String {
    use crate::keys::{KEY_MARK, PREFIX_LEN};
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(KEY_MARK) {
        let tail = &rest[i..];
        let len = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            .count();
        // A generated key is 46 characters; anything of that shape and at
        // least 20 characters is treated as one.
        if len >= 20 {
            out.push_str(&rest[..i + PREFIX_LEN]);
            out.push('…');
            out.push_str(REDACTED);
            rest = &tail[len..];
        } else {
            out.push_str(&rest[..i + KEY_MARK.len()]);
            rest = &tail[KEY_MARK.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// `Bearer TOKEN` (any case): the token replaced.
fn redact_bearer(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find("bearer ") {
        let value_at = at + i + "bearer ".len();
        out.push_str(&line[at..value_at]);
        let end = line[value_at..]
            .find(ends_value)
            .map_or(line.len(), |e| value_at + e);
        if end > value_at {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&line[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parameters_keys_and_bearer_tokens_are_redacted() {
        let params = vec!["api_key".to_string()];
        let line =
            "Fail to proxy: Upstream ConnectRefused, GET /q?x=1&api_key=s3cret-value&y=2, Host: a";
        assert_eq!(
            redact(line, &params),
            "Fail to proxy: Upstream ConnectRefused, GET /q?x=1&api_key=REDACTED&y=2, Host: a"
        );
        assert_eq!(
            redact("GET /q?api_key=abc HTTP/1.1", &params),
            "GET /q?api_key=REDACTED HTTP/1.1"
        );
        // Another parameter whose name ends the same is left alone.
        assert_eq!(redact("/q?my_api_key=1", &params), "/q?my_api_key=1");
        let key = crate::keys::generate().unwrap();
        let dump = format!("headers: {{\"x-api-key\": \"{}\"}}", key.key);
        let redacted = redact(&dump, &[]);
        assert!(!redacted.contains(&key.key), "{redacted}");
        assert!(
            redacted.contains(&format!("{}…REDACTED", key.prefix)),
            "{redacted}"
        );
        assert_eq!(
            redact("\"authorization\": \"Bearer tok.en-1\"", &[]),
            "\"authorization\": \"Bearer REDACTED\""
        );
        assert_eq!(redact("nothing here", &params), "nothing here");
    }
}
