//! Where a route sends its requests: `pool = "NAME"`, or a
//! `[[routes.split]]` between pools; and `[routes.mirror]`, where it
//! sends copies.

use std::collections::BTreeSet;

use toml::Spanned;

use super::{is_token, Validator};
use crate::config::file::{MirrorFile, RouteFile, SplitFile, StickyFile};
use crate::config::model::{
    MirrorConfig, RouteUpstream, SplitConfig, SplitSide, Sticky, DEFAULT_MIRROR_MAX_BODY_SIZE,
    DEFAULT_MIRROR_MAX_IN_FLIGHT,
};

impl Validator<'_> {
    pub(super) fn upstream(
        &mut self,
        route: &RouteFile,
        item: &str,
        pools: &BTreeSet<String>,
    ) -> RouteUpstream {
        match (&route.pool, &route.split) {
            (Some(pool), None) => {
                self.pool_ref(pool, item, pools);
                RouteUpstream::Pool(pool.get_ref().clone())
            }
            (None, Some(sides)) => RouteUpstream::Split(self.split(sides, item, pools, route)),
            (Some(pool), Some(_)) => {
                self.error(
                    pool.span(),
                    Some(item),
                    "a route has either pool or [[routes.split]], not both: list this pool as one side of the split",
                );
                RouteUpstream::Pool(pool.get_ref().clone())
            }
            (None, None) => {
                self.error(
                    route.id.span(),
                    Some(item),
                    "the route names no pool: add pool = \"NAME\" or [[routes.split]] entries",
                );
                RouteUpstream::Pool(String::new())
            }
        }
    }

    /// The reference is to a defined pool.
    fn pool_ref(&mut self, pool: &Spanned<String>, item: &str, pools: &BTreeSet<String>) {
        let name = pool.get_ref();
        if pools.contains(name) {
            return;
        }
        let defined = if pools.is_empty() {
            "no pools are defined".to_string()
        } else {
            let names: Vec<&str> = pools.iter().map(String::as_str).collect();
            format!("defined pools: {}", names.join(", "))
        };
        self.error(
            pool.span(),
            Some(item),
            format!("pool {name:?} is not defined ({defined})"),
        );
    }

    fn split(
        &mut self,
        sides: &[SplitFile],
        item: &str,
        pools: &BTreeSet<String>,
        route: &RouteFile,
    ) -> SplitConfig {
        let mut out = Vec::with_capacity(sides.len());
        let mut seen = BTreeSet::new();
        let mut total = 0i64;
        let mut sticky: Option<&Spanned<StickyFile>> = None;
        for side in sides {
            self.pool_ref(&side.pool, item, pools);
            if !seen.insert(side.pool.get_ref().as_str()) {
                self.error(
                    side.pool.span(),
                    Some(item),
                    format!(
                        "split: pool {:?} is listed twice; give it one entry with the sum of the weights",
                        side.pool.get_ref()
                    ),
                );
            }
            let weight = *side.weight.get_ref();
            if !(0..=100).contains(&weight) {
                self.error(
                    side.weight.span(),
                    Some(item),
                    format!("split: weight {weight} is not a percentage (0 to 100)"),
                );
            }
            total = total.saturating_add(weight);
            if let Some(s) = &side.sticky {
                match sticky {
                    Some(first) if first.get_ref() != s.get_ref() => {
                        let line = self.line_of(&first.span());
                        self.error(
                            s.span(),
                            Some(item),
                            format!("split: sticky is set for the whole split and differs from the one at line {line}; write it once"),
                        );
                    }
                    Some(_) => {}
                    None => sticky = Some(s),
                }
            }
            let match_headers = side
                .match_
                .as_ref()
                .map(|m| self.split_match(m, item))
                .unwrap_or_default();
            out.push(SplitSide {
                pool: side.pool.get_ref().clone(),
                weight: u8::try_from(weight.clamp(0, 100)).unwrap_or(0),
                match_headers,
            });
        }
        if sides.is_empty() {
            self.error(
                route.id.span(),
                Some(item),
                "split: no [[routes.split]] entries; a split needs at least one pool",
            );
        } else if total != 100 {
            let span = sides.last().map_or(0..0, |s| s.weight.span());
            self.error(
                span,
                Some(item),
                format!("split: the weights add up to {total}; they are percentages of the requests and must add up to 100"),
            );
        }
        SplitConfig {
            sides: out,
            sticky: sticky.and_then(|s| self.sticky(s, item)),
        }
    }

    fn sticky(&mut self, s: &Spanned<StickyFile>, item: &str) -> Option<Sticky> {
        let (sticky, name) = match s.get_ref() {
            StickyFile {
                cookie: Some(c),
                header: None,
            } => (Sticky::Cookie(c.clone()), c),
            StickyFile {
                cookie: None,
                header: Some(h),
            } => (Sticky::Header(h.to_ascii_lowercase()), h),
            _ => {
                self.error(
                    s.span(),
                    Some(item),
                    "split: sticky takes one of cookie = \"NAME\" (set by the gateway) or header = \"NAME\" (hashed)",
                );
                return None;
            }
        };
        if !is_token(name) {
            self.error(
                s.span(),
                Some(item),
                format!("split: sticky {name:?} is not a cookie or header name"),
            );
            return None;
        }
        Some(sticky)
    }

    fn split_match(
        &mut self,
        m: &Spanned<crate::config::file::SplitMatchFile>,
        item: &str,
    ) -> Vec<(String, String)> {
        let headers = &m.get_ref().header;
        if headers.is_empty() {
            self.error(
                m.span(),
                Some(item),
                "split: match.header is empty and would match every request; name a header and its value",
            );
        }
        let mut out = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if !is_token(name.get_ref()) {
                self.error(
                    name.span(),
                    Some(item),
                    format!("split: match {:?} is not a header name", name.get_ref()),
                );
                continue;
            }
            let v = value.get_ref();
            if v.is_empty() || v.trim() != v || http::HeaderValue::from_str(v).is_err() {
                self.error(
                    value.span(),
                    Some(item),
                    format!("split: match value {v:?} is not a header value (printable, without leading or trailing spaces)"),
                );
                continue;
            }
            out.push((name.get_ref().to_ascii_lowercase(), v.clone()));
        }
        out
    }
}

impl Validator<'_> {
    /// `[routes.mirror]`: a defined pool that is not one the route sends
    /// to already (every copy would reach it twice).
    pub(super) fn mirror(
        &mut self,
        f: &MirrorFile,
        item: &str,
        pools: &BTreeSet<String>,
        upstream: &RouteUpstream,
    ) -> Option<MirrorConfig> {
        let errors_before = self.errors.len();
        self.pool_ref(&f.pool, item, pools);
        let pool = f.pool.get_ref();
        if upstream.pools().contains(&pool.as_str()) {
            self.error(
                f.pool.span(),
                Some(item),
                format!("mirror: pool {pool:?} already takes this route's requests; each would reach it twice. Mirror to a separate (shadow) pool"),
            );
        }
        let percent = match &f.percent {
            None => 100,
            Some(p) => match u8::try_from(*p.get_ref()) {
                Ok(v) if v <= 100 => v,
                _ => {
                    self.error(
                        p.span(),
                        Some(item),
                        format!(
                            "mirror: percent {} is not a percentage (0 to 100)",
                            p.get_ref()
                        ),
                    );
                    0
                }
            },
        };
        let max_in_flight = match &f.max_in_flight {
            None => DEFAULT_MIRROR_MAX_IN_FLIGHT,
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(v) if (1..=100_000).contains(&v) => v,
                _ => {
                    self.error(
                        m.span(),
                        Some(item),
                        format!("mirror: max_in_flight {} must be 1 to 100000", m.get_ref()),
                    );
                    1
                }
            },
        };
        let include_body = f.include_body.as_ref().is_some_and(|b| *b.get_ref());
        let max_body_size = match &f.max_body_size {
            None => DEFAULT_MIRROR_MAX_BODY_SIZE,
            Some(s) => {
                if !include_body {
                    self.error(
                        s.span(),
                        Some(item),
                        "mirror: max_body_size applies only with include_body = true",
                    );
                }
                self.size(s, "mirror.max_body_size", item).unwrap_or(0)
            }
        };
        (self.errors.len() == errors_before).then(|| MirrorConfig {
            pool: pool.clone(),
            percent,
            include_body,
            max_body_size,
            max_in_flight,
        })
    }
}
