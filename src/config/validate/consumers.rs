//! Consumer checks: `[auth]`, `[[consumers]]` with their keys (digests,
//! prefixes, validity windows), scopes, rate limits and quotas; and the
//! rate and burst of any limit. Consumers may come from several files
//! (`consumer_files`); ids and key digests must be unique across all of
//! them, which [`Registry`] tracks from one file to the next.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use toml::Spanned;

use super::{is_name, is_token, Validator};
use crate::config::file::{
    AuthFile, ConsumerFile, ConsumerLimitFile, KeyFile, QuotaFile, ScopeFile,
};
use crate::config::model;
use crate::ratelimit::{Bucket, Period, Quota, Rate};

/// Longest key prefix accepted: a prefix is printed in the access log and
/// the admin API, so it must stay a small part of the key (generated keys
/// have 9-character prefixes out of 46 characters).
pub const MAX_PREFIX_LEN: usize = 12;

/// What was seen in the files validated so far: consumer ids and key
/// digests, with where they were defined.
#[derive(Default)]
pub(crate) struct Registry {
    ids: HashMap<String, String>,
    digests: HashMap<[u8; 32], String>,
}

/// Route ids and tags that scopes and limits may name.
pub(crate) struct RouteNames {
    pub ids: BTreeSet<String>,
    pub tags: BTreeSet<String>,
}

impl RouteNames {
    pub(crate) fn of(routes: &[model::RouteConfig]) -> RouteNames {
        RouteNames {
            ids: routes.iter().map(|r| r.id.clone()).collect(),
            tags: routes.iter().flat_map(|r| r.tags.iter().cloned()).collect(),
        }
    }
}

/// What a consumer id may be; `Err` is the rule, to show. The same check
/// for the config and for `portcullis keys new`.
pub fn consumer_id(id: &str) -> Result<(), &'static str> {
    if is_name(id) {
        Ok(())
    } else {
        Err("consumer ids may only contain letters, digits, '_', '.' and '-'")
    }
}

impl Validator<'_> {
    pub(super) fn auth(&mut self, auth: Option<&AuthFile>) -> model::AuthSettings {
        let default_attempts = Rate::parse(model::DEFAULT_FAILED_ATTEMPTS_RATE)
            .ok()
            .map(|rate| Bucket {
                rate,
                burst: model::DEFAULT_FAILED_ATTEMPTS_BURST,
            });
        let mut settings = model::AuthSettings {
            consumer_header: model::DEFAULT_CONSUMER_HEADER.to_string(),
            realm: model::DEFAULT_REALM.to_string(),
            failed_attempts: default_attempts,
        };
        let Some(auth) = auth else {
            return settings;
        };
        let item = Some("auth");
        if let Some(h) = &auth.consumer_header {
            if is_token(h.get_ref()) {
                settings.consumer_header = h.get_ref().to_ascii_lowercase();
            } else {
                self.error(
                    h.span(),
                    item,
                    format!(
                        "consumer_header {:?} is not a valid header name",
                        h.get_ref()
                    ),
                );
            }
        }
        if let Some(r) = &auth.realm {
            let ok = !r.get_ref().is_empty()
                && r.get_ref()
                    .bytes()
                    .all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\');
            if ok {
                settings.realm = r.get_ref().clone();
            } else {
                self.error(
                    r.span(),
                    item,
                    "realm must be visible ASCII and spaces, without '\"' or '\\'",
                );
            }
        }
        if let Some(f) = &auth.failed_attempts {
            if f.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
                settings.failed_attempts = None;
            } else if let Some(rate) = &f.rate {
                // burst defaults to the rate's count, as for every limit.
                settings.failed_attempts =
                    self.bucket(rate, f.burst.as_ref(), "failed_attempts", "auth");
            } else if let (Some(b), Some(default)) = (&f.burst, settings.failed_attempts) {
                if *b.get_ref() == 0 {
                    self.error(b.span(), item, "failed_attempts: burst must be at least 1");
                } else {
                    settings.failed_attempts = Some(Bucket {
                        burst: *b.get_ref(),
                        ..default
                    });
                }
            }
        }
        settings
    }

    /// `rate` and `burst` of a limit as a GCRA bucket; `burst` defaults to
    /// the rate's count (a whole period's worth at once).
    pub(super) fn bucket(
        &mut self,
        rate: &Spanned<String>,
        burst: Option<&Spanned<u32>>,
        key: &str,
        item: &str,
    ) -> Option<Bucket> {
        let parsed = match Rate::parse(rate.get_ref()) {
            Ok(r) => r,
            Err(why) => {
                self.error(
                    rate.span(),
                    Some(item),
                    format!("{key}: rate {:?} {why}", rate.get_ref()),
                );
                return None;
            }
        };
        let burst = match burst {
            Some(b) if *b.get_ref() == 0 => {
                self.error(
                    b.span(),
                    Some(item),
                    format!("{key}: burst must be at least 1"),
                );
                return None;
            }
            Some(b) => *b.get_ref(),
            None => parsed.count,
        };
        Some(Bucket {
            rate: parsed,
            burst,
        })
    }

    /// Validate the consumers of one file, against the routes and what
    /// earlier files defined.
    pub(crate) fn consumers(
        &mut self,
        consumers: &[ConsumerFile],
        routes: &RouteNames,
        registry: &mut Registry,
    ) -> Vec<model::Consumer> {
        consumers
            .iter()
            .map(|c| self.consumer(c, routes, registry))
            .collect()
    }

    fn consumer(
        &mut self,
        c: &ConsumerFile,
        routes: &RouteNames,
        registry: &mut Registry,
    ) -> model::Consumer {
        let id = c.id.get_ref();
        let item = format!("consumer {id:?}");
        let item = item.as_str();
        let (line, _) = self.loc.line_col(c.id.span().start);
        let defined_at = format!("{}:{line}", self.loc.file());
        if let Err(rule) = consumer_id(id) {
            self.error(c.id.span(), Some(item), rule);
        }
        if let Some(first) = registry.ids.get(id) {
            self.error(
                c.id.span(),
                Some(item),
                format!("duplicate consumer id {id:?} (first defined at {first})"),
            );
        } else {
            registry.ids.insert(id.clone(), defined_at.clone());
        }
        let keys = c
            .keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| self.key(k, i + 1, item, registry))
            .collect();
        let scopes = match &c.scopes {
            None => {
                self.error(
                    c.id.span(),
                    Some(item),
                    r#"scopes is required: list what the consumer may call, e.g. scopes = [{ routes = ["orders"], methods = ["GET"] }], or scopes = [{ routes = ["*"] }] for every route"#,
                );
                Vec::new()
            }
            Some(scopes) => scopes
                .get_ref()
                .iter()
                .map(|s| self.scope(s, item, routes))
                .collect(),
        };
        let (rate_limits, quotas) = self.limits(&c.rate_limits, c.quota.as_ref(), item, routes);
        let mut metadata = BTreeMap::new();
        for (k, v) in &c.metadata {
            metadata.insert(k.clone(), v.get_ref().clone());
        }
        model::Consumer {
            id: id.clone(),
            name: c.name.as_ref().map(|n| n.get_ref().clone()),
            metadata,
            disabled: c.disabled,
            keys,
            scopes,
            rate_limits,
            quotas,
            defined_at,
        }
    }

    fn key(
        &mut self,
        k: &KeyFile,
        number: usize,
        item: &str,
        registry: &mut Registry,
    ) -> Option<model::ApiKey> {
        let prefix = k.prefix.get_ref();
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        // An invalid prefix is never quoted back: it may be a key pasted
        // into the wrong field.
        if !prefix_ok {
            self.error(
                k.prefix.span(),
                Some(item),
                format!("key {number}: prefix must be 1 to {MAX_PREFIX_LEN} letters, digits, '_', '-' or '.' (it is printed by `portcullis keys new`)"),
            );
        }
        let named = if prefix_ok {
            format!("key {number} ({prefix})")
        } else {
            format!("key {number}")
        };
        let digest = match crate::keys::parse_digest(k.digest.get_ref()) {
            Some(d) => d,
            None => {
                // The value is not echoed: it may be a key pasted by mistake.
                self.error(
                    k.digest.span(),
                    Some(item),
                    format!("{named}: digest must be the SHA-256 of the key as 64 hex digits (`portcullis keys hash` prints it); never put the key itself in the config"),
                );
                return None;
            }
        };
        if prefix_ok && crate::keys::digest(prefix.as_bytes()) == digest {
            self.error(
                k.prefix.span(),
                Some(item),
                format!("key {number}: the prefix is the whole key; write only its first characters (the prefix names the key in logs and the admin API)"),
            );
        }
        let here = format!("{item}, {named}");
        if let Some(first) = registry.digests.get(&digest) {
            self.error(
                k.digest.span(),
                Some(item),
                format!("{named} has the same digest as {first}: every key must be unique"),
            );
        } else {
            registry.digests.insert(digest, here);
        }
        let not_before = k
            .not_before
            .as_ref()
            .and_then(|t| self.datetime(t, "not_before", number, item));
        let expires = k
            .expires
            .as_ref()
            .and_then(|t| self.datetime(t, "expires", number, item));
        if let (Some(nb), Some(ex), Some(span)) = (not_before, expires, k.expires.as_ref()) {
            if ex <= nb {
                self.error(
                    span.span(),
                    Some(item),
                    format!("{named}: expires must be later than not_before"),
                );
            }
        }
        Some(model::ApiKey {
            digest,
            prefix: prefix.clone(),
            not_before,
            expires,
        })
    }

    /// A TOML date-time with an offset (or a bare date, read as midnight
    /// UTC) as Unix seconds.
    fn datetime(
        &mut self,
        t: &Spanned<toml::value::Datetime>,
        key: &str,
        number: usize,
        item: &str,
    ) -> Option<i64> {
        match unix_seconds(t.get_ref()) {
            Ok(s) => Some(s),
            Err(why) => {
                self.error(t.span(), Some(item), format!("key {number}: {key} {why}"));
                None
            }
        }
    }

    fn scope(&mut self, s: &ScopeFile, item: &str, routes: &RouteNames) -> model::Scope {
        if s.routes.is_empty() && s.tags.is_empty() {
            // Point at the first method if there is one; the item otherwise.
            let span = s.methods.first().map(|m| m.span()).unwrap_or(0..0);
            self.error(
                span,
                Some(item),
                r#"a scope needs routes or tags (routes = ["*"] for every route)"#,
            );
        }
        model::Scope {
            routes: self.route_refs(&s.routes, item, routes, "scopes", true),
            tags: self.tag_refs(&s.tags, item, routes, "scopes"),
            methods: self.methods(&s.methods, item),
        }
    }

    /// A consumer's (or an issuer's) `rate_limits` and `quota`.
    pub(super) fn limits(
        &mut self,
        rate_limits: &[ConsumerLimitFile],
        quota: Option<&QuotaFile>,
        item: &str,
        routes: &RouteNames,
    ) -> (Vec<model::ConsumerLimit>, Vec<Quota>) {
        let rate_limits = rate_limits
            .iter()
            .filter_map(|l| self.consumer_limit(l, item, routes))
            .collect();
        let mut quotas = Vec::new();
        if let Some(q) = quota {
            for (period, value) in [(Period::Day, &q.day), (Period::Month, &q.month)] {
                let Some(value) = value else { continue };
                if *value.get_ref() == 0 {
                    self.error(
                        value.span(),
                        Some(item),
                        "quota must be at least 1 request (remove it for no quota, or set disabled = true)",
                    );
                    continue;
                }
                quotas.push(Quota {
                    period,
                    limit: *value.get_ref(),
                });
            }
        }
        (rate_limits, quotas)
    }

    fn consumer_limit(
        &mut self,
        l: &ConsumerLimitFile,
        item: &str,
        routes: &RouteNames,
    ) -> Option<model::ConsumerLimit> {
        let bucket = self.bucket(&l.rate, l.burst.as_ref(), "rate_limits", item);
        let route_ids = self.route_refs(&l.routes, item, routes, "rate_limits", false);
        let tags = self.tag_refs(&l.tags, item, routes, "rate_limits");
        let accuracy = self.limit_accuracy(l.accuracy.as_ref(), item);
        Some(model::ConsumerLimit {
            bucket: bucket?,
            routes: route_ids,
            tags,
            accuracy,
        })
    }

    fn route_refs(
        &mut self,
        refs: &[Spanned<String>],
        item: &str,
        routes: &RouteNames,
        key: &str,
        star: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for r in refs {
            let id = r.get_ref();
            let known = routes.ids.contains(id) || (star && id == "*");
            if !known {
                self.error(
                    r.span(),
                    Some(item),
                    format!("{key}: route {id:?} is not defined"),
                );
                continue;
            }
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }

    fn tag_refs(
        &mut self,
        refs: &[Spanned<String>],
        item: &str,
        routes: &RouteNames,
        key: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for t in refs {
            let tag = t.get_ref();
            if !routes.tags.contains(tag) {
                self.error(
                    t.span(),
                    Some(item),
                    format!("{key}: no route has the tag {tag:?}"),
                );
                continue;
            }
            if !out.contains(tag) {
                out.push(tag.clone());
            }
        }
        out
    }
}

/// Unix seconds of a TOML date-time; the error completes `KEY …`.
pub(super) fn unix_seconds(t: &toml::value::Datetime) -> Result<i64, String> {
    let Some(date) = t.date else {
        return Err("needs a date, e.g. 2027-01-01T00:00:00Z".into());
    };
    let days = days_from_civil(date.year as i64, date.month as i64, date.day as i64);
    let (secs_of_day, offset_minutes) = match (t.time, t.offset) {
        (None, _) => (0, 0),
        (Some(_), None) => {
            return Err(
                "needs a UTC offset (the gateway's clock is UTC), e.g. 2027-01-01T00:00:00Z".into(),
            )
        }
        (Some(time), Some(offset)) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => minutes as i64,
            };
            (
                time.hour as i64 * 3600 + time.minute as i64 * 60 + time.second as i64,
                minutes,
            )
        }
    };
    Ok(days * 86_400 + secs_of_day - offset_minutes * 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            days_from_civil(2028, 2, 29) + 1,
            days_from_civil(2028, 3, 1)
        );
        let t: toml::value::Datetime = "2026-11-24T12:00:00+01:00".parse().unwrap();
        assert_eq!(unix_seconds(&t), Ok(1_795_518_000));
        let t: toml::value::Datetime = "2026-11-24".parse().unwrap();
        assert_eq!(unix_seconds(&t), Ok(1_795_478_400));
        let t: toml::value::Datetime = "2026-11-24T12:00:00".parse().unwrap();
        assert!(unix_seconds(&t).unwrap_err().contains("UTC offset"));
    }
}
