//! `[limit_store]`: where rate-limit and quota counters live, and the
//! `accuracy` of each rate limit.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::file::LimitStoreFile;
use crate::config::model::{self, LimitStoreSettings, OnStoreError, RedisStoreConfig};
use crate::ratelimit::Accuracy;

const ITEM: &str = "limit_store";

/// The connection keys of a table that names a Redis.
pub(super) struct RedisEndpointFile<'a> {
    pub url: Option<&'a Spanned<String>>,
    pub password_file: Option<&'a Spanned<String>>,
    pub password_env: Option<&'a Spanned<String>>,
    pub ca_file: Option<&'a Spanned<String>>,
}

/// Longest `timeout`: a limit check waits for Redis at most this long.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `sync_interval`: the error bound grows with it.
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Most `instances`.
const MAX_INSTANCES: u32 = 10_000;

impl Validator<'_> {
    /// `[limit_store]`; sets the default accuracy later limits resolve to.
    pub(super) fn limit_store(&mut self, file: Option<&LimitStoreFile>) -> LimitStoreSettings {
        let Some(f) = file else {
            return LimitStoreSettings::Local;
        };
        let kind = f.kind.as_ref().map_or("local", |k| k.get_ref().as_str());
        if let Some(k) = &f.kind {
            if !matches!(kind, "local" | "redis") {
                self.error(
                    k.span(),
                    Some(ITEM),
                    format!(r#"kind: unknown store {kind:?}; expected "local" or "redis""#),
                );
                return LimitStoreSettings::Local;
            }
        }
        let accuracy = f
            .accuracy
            .as_ref()
            .and_then(|a| self.accuracy(a, ITEM))
            .unwrap_or_default();
        self.default_accuracy = accuracy;
        if kind == "local" {
            let redis_only = [
                ("url", f.url.as_ref().map(Spanned::span)),
                ("password_file", f.password_file.as_ref().map(Spanned::span)),
                ("password_env", f.password_env.as_ref().map(Spanned::span)),
                ("ca_file", f.ca_file.as_ref().map(Spanned::span)),
                ("on_error", f.on_error.as_ref().map(Spanned::span)),
                ("instances", f.instances.as_ref().map(Spanned::span)),
                ("sync_interval", f.sync_interval.as_ref().map(Spanned::span)),
                ("key_prefix", f.key_prefix.as_ref().map(Spanned::span)),
                ("timeout", f.timeout.as_ref().map(Spanned::span)),
            ];
            for (key, span) in redis_only {
                if let Some(span) = span {
                    self.error(
                        span,
                        Some(ITEM),
                        format!(r#"{key} only applies to kind = "redis""#),
                    );
                }
            }
            return LimitStoreSettings::Local;
        }
        let (url, password, ca_file) = self.redis_endpoint(
            ITEM,
            f.kind.as_ref().map_or(0..0, Spanned::span),
            RedisEndpointFile {
                url: f.url.as_ref(),
                password_file: f.password_file.as_ref(),
                password_env: f.password_env.as_ref(),
                ca_file: f.ca_file.as_ref(),
            },
        );
        let timeout = self.bounded(f.timeout.as_ref(), "timeout", MAX_TIMEOUT, ITEM);
        let sync_interval = self.bounded(
            f.sync_interval.as_ref(),
            "sync_interval",
            MAX_SYNC_INTERVAL,
            ITEM,
        );
        let on_error = match f.on_error.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "local")) => OnStoreError::Local,
            Some((_, "allow")) => OnStoreError::Allow,
            Some((_, "deny")) => OnStoreError::Deny,
            Some((o, other)) => {
                self.error(
                    o.span(),
                    Some(ITEM),
                    format!(
                        r#"on_error: unknown behaviour {other:?}; expected "local", "allow" or "deny""#
                    ),
                );
                OnStoreError::Local
            }
        };
        let instances = match &f.instances {
            None => 1,
            Some(n) if (1..=MAX_INSTANCES).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.error(
                    n.span(),
                    Some(ITEM),
                    format!("instances must be from 1 to {MAX_INSTANCES}"),
                );
                1
            }
        };
        let key_prefix = self.key_prefix(f.key_prefix.as_ref(), ITEM);
        LimitStoreSettings::Redis(RedisStoreConfig {
            url: url.unwrap_or_default(),
            password,
            ca_file,
            timeout: timeout.unwrap_or(model::DEFAULT_LIMIT_STORE_TIMEOUT),
            on_error,
            instances,
            accuracy,
            sync_interval: sync_interval.unwrap_or(model::DEFAULT_SYNC_INTERVAL),
            key_prefix,
        })
    }

    /// `url`: required, `redis://` or `rediss://`, no password in it.
    fn redis_url(
        &mut self,
        item: &str,
        kind: std::ops::Range<usize>,
        url: Option<&Spanned<String>>,
    ) -> Option<String> {
        let Some(u) = url else {
            self.error(
                kind,
                Some(item),
                r#"kind = "redis" needs url (e.g. "redis://127.0.0.1:6379/0")"#,
            );
            return None;
        };
        let text = u.get_ref();
        if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
            self.error(
                u.span(),
                Some(item),
                format!(r#"url {text:?} is not a Redis URL: write "redis://host:port/db" or "rediss://…" for TLS"#),
            );
            return None;
        }
        match redis::parse_redis_url(text) {
            None => {
                self.error(u.span(), Some(item), "url is not a valid URL");
                None
            }
            Some(parsed) if parsed.password().is_some() => {
                // The text is not repeated: it holds the secret.
                self.error(
                    u.span(),
                    Some(item),
                    "url holds a password: never inline; use password_file or password_env",
                );
                None
            }
            Some(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
                self.error(u.span(), Some(item), "url names no host");
                None
            }
            Some(_) => Some(text.clone()),
        }
    }

    /// A Redis's `url`, password (`password_file` | `password_env`) and
    /// `ca_file`, as `[limit_store]` and `[cache.shared]` name them.
    pub(super) fn redis_endpoint(
        &mut self,
        item: &str,
        kind: std::ops::Range<usize>,
        f: RedisEndpointFile<'_>,
    ) -> (
        Option<String>,
        Option<model::SecretSource>,
        Option<std::path::PathBuf>,
    ) {
        let url = self.redis_url(item, kind, f.url);
        let password = match (f.password_file, f.password_env) {
            (Some(a), Some(_)) => {
                self.error(
                    a.span(),
                    Some(item),
                    "password_file and password_env are both set: keep one",
                );
                None
            }
            (Some(p), None) => Some(model::SecretSource::File(self.resolve_path(p.get_ref()))),
            (None, Some(e)) if e.get_ref().is_empty() || e.get_ref().contains('=') => {
                self.error(
                    e.span(),
                    Some(item),
                    "password_env must name an environment variable",
                );
                None
            }
            (None, Some(e)) => Some(model::SecretSource::Env(e.get_ref().clone())),
            (None, None) => None,
        };
        let ca_file = f.ca_file.map(|p| self.resolve_path(p.get_ref()));
        if let (Some(ca), Some(u)) = (f.ca_file, &url) {
            if !u.starts_with("rediss://") {
                self.error(
                    ca.span(),
                    Some(item),
                    "ca_file only applies to a rediss:// url (TLS)",
                );
            }
        }
        (url, password, ca_file)
    }

    /// `key_prefix`: at most 64 visible ASCII characters, no braces (they
    /// would make a Redis Cluster hash tag).
    pub(super) fn key_prefix(&mut self, prefix: Option<&Spanned<String>>, item: &str) -> String {
        match prefix {
            None => model::DEFAULT_KEY_PREFIX.to_string(),
            Some(p)
                if p.get_ref().len() <= 64
                    && p.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}') =>
            {
                p.get_ref().clone()
            }
            Some(p) => {
                self.error(
                    p.span(),
                    Some(item),
                    "key_prefix: at most 64 visible ASCII characters, without { or }",
                );
                String::new()
            }
        }
    }

    pub(super) fn bounded(
        &mut self,
        s: Option<&Spanned<crate::config::file::DurationText>>,
        what: &str,
        max: Duration,
        item: &str,
    ) -> Option<Duration> {
        let s = s?;
        let d = self.duration(s, what, Some(item))?;
        if d > max {
            self.error(
                s.span(),
                Some(item),
                format!(
                    "{what} must be at most {}",
                    humantime_serde::re::humantime::format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// `accuracy` of a limit (or the store's default).
    pub(super) fn accuracy(&mut self, a: &Spanned<String>, item: &str) -> Option<Accuracy> {
        match a.get_ref().as_str() {
            "exact" => Some(Accuracy::Exact),
            "approximate" => Some(Accuracy::Approximate),
            other => {
                self.error(
                    a.span(),
                    Some(item),
                    format!(r#"accuracy: unknown {other:?}; expected "exact" or "approximate""#),
                );
                None
            }
        }
    }

    /// A limit's own `accuracy`, else the store's default.
    pub(super) fn limit_accuracy(&mut self, a: Option<&Spanned<String>>, item: &str) -> Accuracy {
        a.and_then(|a| self.accuracy(a, item))
            .unwrap_or(self.default_accuracy)
    }
}
