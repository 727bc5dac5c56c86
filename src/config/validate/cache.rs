//! Cache checks: `[cache]` and each route's `[routes.cache]` (durations,
//! sizes, the key's query mode and header names).

use std::time::Duration;

use toml::Spanned;

use super::{is_token, Validator};
use crate::config::file::{CacheFile, CacheKeyFile, DurationText, RouteCacheFile, SharedCacheFile};
use crate::config::model;

/// Largest `[cache.shared] max_object_size`.
const MAX_SHARED_OBJECT_SIZE: u64 = 64 << 20;
const SIZE_EXAMPLES: &str = r#"write e.g. "512KiB", "8MiB" or "1GiB""#;

/// `text` as a byte count: digits with an optional binary unit (`B`,
/// `KiB`, `MiB`, `GiB`, `TiB`), spaces between allowed.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err("it does not start with a number".into());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| "the number is too large".to_string())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        u @ ("K" | "KB" | "k" | "kB" | "M" | "MB" | "G" | "GB") => {
            return Err(format!(
                "{u:?} is ambiguous: sizes are binary, write KiB, MiB or GiB"
            ))
        }
        u => return Err(format!("unknown size unit {u:?}")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| "the size is too large".to_string())
}

impl Validator<'_> {
    /// `[cache]`; `limit_store` lends `[cache.shared]` its Redis when
    /// that names none.
    pub(super) fn cache(
        &mut self,
        cache: Option<&CacheFile>,
        limit_store: &model::LimitStoreSettings,
    ) -> model::CacheSettings {
        let max_size = cache
            .and_then(|c| c.max_size.as_ref())
            .and_then(|s| self.size(s, "max_size", "cache"))
            .unwrap_or(model::DEFAULT_CACHE_MAX_SIZE);
        let shared = cache
            .and_then(|c| c.shared.as_ref())
            .and_then(|s| self.shared_cache(s, limit_store));
        model::CacheSettings { max_size, shared }
    }

    fn shared_cache(
        &mut self,
        f: &SharedCacheFile,
        limit_store: &model::LimitStoreSettings,
    ) -> Option<model::SharedCacheConfig> {
        const ITEM: &str = "cache.shared";
        if f.kind.get_ref() != "redis" {
            self.error(
                f.kind.span(),
                Some(ITEM),
                format!(
                    r#"kind: unknown tier {:?}; expected "redis""#,
                    f.kind.get_ref()
                ),
            );
            return None;
        }
        let (url, password, ca_file) = match (&f.url, limit_store) {
            // The limit store's Redis, as it is configured.
            (None, model::LimitStoreSettings::Redis(r))
                if f.password_file.is_none() && f.password_env.is_none() && f.ca_file.is_none() =>
            {
                (Some(r.url.clone()), r.password.clone(), r.ca_file.clone())
            }
            _ => self.redis_endpoint(
                ITEM,
                f.kind.span(),
                super::limit_store::RedisEndpointFile {
                    url: f.url.as_ref(),
                    password_file: f.password_file.as_ref(),
                    password_env: f.password_env.as_ref(),
                    ca_file: f.ca_file.as_ref(),
                },
            ),
        };
        let timeout = self.bounded(
            f.timeout.as_ref(),
            "timeout",
            super::limit_store::MAX_TIMEOUT,
            ITEM,
        );
        let max_object_size = f
            .max_object_size
            .as_ref()
            .and_then(|s| self.size(s, "max_object_size", ITEM))
            .unwrap_or(model::DEFAULT_SHARED_MAX_OBJECT_SIZE);
        if max_object_size > MAX_SHARED_OBJECT_SIZE {
            if let Some(s) = &f.max_object_size {
                self.error(
                    s.span(),
                    Some(ITEM),
                    "max_object_size must be at most 64MiB (a Redis value is read whole on every shared hit)",
                );
            }
        }
        Some(model::SharedCacheConfig {
            url: url?,
            password,
            ca_file,
            key_prefix: self.key_prefix(f.key_prefix.as_ref(), ITEM),
            timeout: timeout.unwrap_or(model::DEFAULT_LIMIT_STORE_TIMEOUT),
            max_object_size,
        })
    }

    /// A byte size, greater than zero.
    pub(super) fn size(&mut self, s: &Spanned<String>, what: &str, item: &str) -> Option<u64> {
        match parse_size(s.get_ref()) {
            Ok(0) => {
                self.error(
                    s.span(),
                    Some(item),
                    format!("{what} must be greater than 0"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(why) => {
                self.error(
                    s.span(),
                    Some(item),
                    format!(
                        "{what}: {:?} is not a size ({why}); {SIZE_EXAMPLES}",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// `[routes.cache]` of a route: `None` when absent or `enabled = false`.
    pub(super) fn route_cache(
        &mut self,
        cache: Option<&RouteCacheFile>,
        settings: &model::CacheSettings,
        auth: &model::RouteAuth,
        item: &str,
    ) -> Option<model::RouteCache> {
        let cache = cache?;
        let enabled = cache.enabled.as_ref().is_none_or(|e| *e.get_ref());
        let mut duration = |d: &Option<Spanned<DurationText>>, what: &str| {
            d.as_ref().and_then(|d| self.duration(d, what, Some(item)))
        };
        let ttl = duration(&cache.ttl, "cache.ttl");
        let stale_while_revalidate = duration(
            &cache.stale_while_revalidate,
            "cache.stale_while_revalidate",
        )
        .unwrap_or(Duration::ZERO);
        let stale_if_error =
            duration(&cache.stale_if_error, "cache.stale_if_error").unwrap_or(Duration::ZERO);
        let max_object_size = match &cache.max_object_size {
            None => model::DEFAULT_CACHE_MAX_OBJECT_SIZE.min(settings.max_size),
            Some(s) => {
                let size = self.size(s, "cache.max_object_size", item);
                if let Some(n) = size.filter(|n| *n > settings.max_size) {
                    self.error(
                        s.span(),
                        Some(item),
                        format!(
                            "cache.max_object_size ({n} bytes) is larger than [cache] max_size ({} bytes): such an object could never be kept",
                            settings.max_size
                        ),
                    );
                }
                size.unwrap_or(model::DEFAULT_CACHE_MAX_OBJECT_SIZE)
            }
        };
        let key_header = match auth.api_key() {
            Some(model::KeySource::Header(h)) => Some(h.as_str()),
            _ => None,
        };
        let key = self.cache_key(cache.key.as_ref(), key_header, item);
        let targeted_cache_control = cache.targeted_cache_control.as_ref().map(|t| {
            let name = t.get_ref().to_ascii_lowercase();
            if !is_token(&name) || matches!(name.as_str(), "cache-control" | "cdn-cache-control") {
                self.error(
                    t.span(),
                    Some(item),
                    format!("targeted_cache_control {:?} must be a header name of its own (e.g. \"Portcullis-Cache-Control\")", t.get_ref()),
                );
            }
            name
        });
        enabled.then_some(model::RouteCache {
            ttl,
            max_object_size,
            stale_while_revalidate,
            stale_if_error,
            shared: cache.shared.as_ref().is_some_and(|s| *s.get_ref()),
            key,
            cdn_cache_control: cache
                .cdn_cache_control
                .as_ref()
                .is_none_or(|c| *c.get_ref()),
            targeted_cache_control,
        })
    }

    fn cache_key(
        &mut self,
        key: Option<&CacheKeyFile>,
        key_header: Option<&str>,
        item: &str,
    ) -> model::CacheKeySpec {
        let Some(key) = key else {
            return model::CacheKeySpec::default();
        };
        let query = match &key.query {
            None => model::QueryKey::All,
            Some(q) => self.query_key(q, item),
        };
        let mut headers: Vec<String> = Vec::new();
        for h in &key.headers {
            let name = h.get_ref().to_ascii_lowercase();
            if !is_token(&name) {
                self.error(
                    h.span(),
                    Some(item),
                    format!(
                        "cache.key.headers: {:?} is not a valid header name",
                        h.get_ref()
                    ),
                );
            } else if matches!(name.as_str(), "authorization" | "cookie" | "x-api-key")
                || key_header.is_some_and(|k| k.eq_ignore_ascii_case(&name))
            {
                self.error(
                    h.span(),
                    Some(item),
                    format!(
                        "cache.key.headers: {name:?} carries credentials and cannot be part of a cache key; on key routes each consumer already has its own entries (shared = false)"
                    ),
                );
            } else if !headers.contains(&name) {
                headers.push(name);
            }
        }
        headers.sort();
        model::CacheKeySpec { query, headers }
    }

    fn query_key(&mut self, q: &Spanned<toml::Value>, item: &str) -> model::QueryKey {
        const HELP: &str = r#"cache.key.query must be "all", "sorted" or a list of parameter names, e.g. ["page", "sort"]"#;
        match q.get_ref() {
            toml::Value::String(s) if s == "all" => model::QueryKey::All,
            toml::Value::String(s) if s == "sorted" => model::QueryKey::Sorted,
            toml::Value::Array(items) => {
                let mut names: Vec<String> = Vec::new();
                for v in items {
                    match v.as_str() {
                        Some(n) if !n.is_empty() => {
                            if !names.iter().any(|x| x == n) {
                                names.push(n.to_string());
                            }
                        }
                        _ => {
                            self.error(q.span(), Some(item), HELP);
                            return model::QueryKey::All;
                        }
                    }
                }
                names.sort();
                model::QueryKey::Only(names)
            }
            _ => {
                self.error(q.span(), Some(item), HELP);
                model::QueryKey::All
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_binary_and_checked() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("10MB").unwrap_err().contains("MiB"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
