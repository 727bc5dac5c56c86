//! Checks of what keeps a failing pool from taking the gateway down with
//! it: outlier ejection, the circuit breaker, the retry budget,
//! `max_in_flight`, fallback pools (which must not loop) and a route's
//! `retry_on`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::file::{
    BreakerFile, DurationText, OutlierFile, PoolFile, RetryBudgetFile, StatusText,
};
use crate::config::model;

impl Validator<'_> {
    /// `fallback`, `max_in_flight`, `outlier`, `breaker`, `retry_budget`
    /// of one pool, set on `out`.
    pub(super) fn resilience(&mut self, pool: &PoolFile, item: &str, out: &mut model::PoolConfig) {
        out.fallback = pool.fallback.as_ref().map(|f| f.get_ref().clone());
        out.max_in_flight = pool.max_in_flight.as_ref().map(|m| {
            self.positive(m, "max_in_flight", item);
            *m.get_ref()
        });
        out.outlier = pool.outlier.as_ref().map(|o| self.outlier(o, item));
        out.breaker = pool.breaker.as_ref().map(|b| self.breaker(b, item));
        out.retry_budget = pool
            .retry_budget
            .as_ref()
            .map(|b| self.retry_budget(b, item));
    }

    fn positive(&mut self, v: &Spanned<u32>, key: &str, item: &str) -> u32 {
        if *v.get_ref() == 0 {
            self.error(
                v.span(),
                Some(item),
                format!("{key} must be greater than 0"),
            );
        }
        *v.get_ref()
    }

    pub(super) fn duration_or(
        &mut self,
        v: &Option<Spanned<DurationText>>,
        key: &str,
        item: &str,
        default: Duration,
    ) -> Duration {
        v.as_ref()
            .and_then(|s| self.duration(s, key, Some(item)))
            .unwrap_or(default)
    }

    fn ratio(&mut self, v: &Spanned<f64>, key: &str, item: &str, zero_ok: bool) -> f64 {
        let r = *v.get_ref();
        let ok = r <= 1.0 && (r > 0.0 || (zero_ok && r == 0.0));
        if !ok {
            let range = if zero_ok {
                "0 to 1"
            } else {
                "above 0, at most 1"
            };
            self.error(
                v.span(),
                Some(item),
                format!("{key} must be a fraction {range} (0.5 = 50%), got {r}"),
            );
        }
        r
    }

    fn outlier(&mut self, o: &OutlierFile, item: &str) -> model::Outlier {
        let consecutive_failures = o
            .consecutive_failures
            .as_ref()
            .map_or(model::DEFAULT_OUTLIER_CONSECUTIVE_FAILURES, |c| {
                self.positive(c, "outlier.consecutive_failures", item)
            });
        let base_ejection = self.duration_or(
            &o.base_ejection,
            "outlier.base_ejection",
            item,
            model::DEFAULT_BASE_EJECTION,
        );
        let max_ejection = self.duration_or(
            &o.max_ejection,
            "outlier.max_ejection",
            item,
            model::DEFAULT_MAX_EJECTION.max(base_ejection),
        );
        if max_ejection < base_ejection {
            if let Some(m) = &o.max_ejection {
                self.error(
                    m.span(),
                    Some(item),
                    "outlier.max_ejection must not be shorter than outlier.base_ejection",
                );
            }
        }
        let max_ejection_percent = match &o.max_ejection_percent {
            Some(p) if *p.get_ref() > 100 => {
                self.error(
                    p.span(),
                    Some(item),
                    format!(
                        "outlier.max_ejection_percent must be 0 to 100, got {}",
                        p.get_ref()
                    ),
                );
                model::DEFAULT_MAX_EJECTION_PERCENT
            }
            Some(p) => *p.get_ref(),
            None => model::DEFAULT_MAX_EJECTION_PERCENT,
        };
        model::Outlier {
            consecutive_failures,
            base_ejection,
            max_ejection,
            max_ejection_percent,
            failure_statuses: self.failure_statuses(&o.failure_statuses, "outlier", item),
        }
    }

    fn breaker(&mut self, b: &BreakerFile, item: &str) -> model::BreakerConfig {
        let consecutive_failures = b
            .consecutive_failures
            .as_ref()
            .map_or(model::DEFAULT_BREAKER_CONSECUTIVE_FAILURES, |c| {
                *c.get_ref()
            });
        let failure_rate = b
            .failure_rate
            .as_ref()
            .map_or(model::DEFAULT_BREAKER_FAILURE_RATE, |r| {
                self.ratio(r, "breaker.failure_rate", item, false)
            });
        let min_requests = b
            .min_requests
            .as_ref()
            .map_or(model::DEFAULT_BREAKER_MIN_REQUESTS, |m| {
                self.positive(m, "breaker.min_requests", item)
            });
        let window = self.duration_or(
            &b.window,
            "breaker.window",
            item,
            model::DEFAULT_BREAKER_WINDOW,
        );
        let open_for = self.duration_or(
            &b.open_for,
            "breaker.open_for",
            item,
            model::DEFAULT_OPEN_FOR,
        );
        let max_open_for = self.duration_or(
            &b.max_open_for,
            "breaker.max_open_for",
            item,
            model::DEFAULT_MAX_OPEN_FOR.max(open_for),
        );
        if max_open_for < open_for {
            if let Some(m) = &b.max_open_for {
                self.error(
                    m.span(),
                    Some(item),
                    "breaker.max_open_for must not be shorter than breaker.open_for",
                );
            }
        }
        let probe_requests = b
            .probe_requests
            .as_ref()
            .map_or(model::DEFAULT_PROBE_REQUESTS, |p| {
                self.positive(p, "breaker.probe_requests", item)
            });
        model::BreakerConfig {
            consecutive_failures,
            failure_rate,
            min_requests,
            window,
            open_for,
            max_open_for,
            probe_requests,
            failure_statuses: self.failure_statuses(&b.failure_statuses, "breaker", item),
        }
    }

    fn retry_budget(&mut self, b: &RetryBudgetFile, item: &str) -> model::RetryBudgetConfig {
        model::RetryBudgetConfig {
            ratio: b
                .ratio
                .as_ref()
                .map_or(model::DEFAULT_RETRY_BUDGET_RATIO, |r| {
                    self.ratio(r, "retry_budget.ratio", item, true)
                }),
            min_per_second: b
                .min_per_second
                .as_ref()
                .map_or(model::DEFAULT_RETRY_BUDGET_MIN_PER_SECOND, |m| *m.get_ref()),
        }
    }

    /// `["5xx", "429", "500-504"]`; default every 5xx.
    fn failure_statuses(
        &mut self,
        list: &Option<Vec<Spanned<StatusText>>>,
        table: &str,
        item: &str,
    ) -> model::StatusSet {
        let Some(list) = list else {
            return model::StatusSet::server_errors();
        };
        let ranges = list
            .iter()
            .filter_map(|s| {
                let range = status_range(&s.get_ref().0);
                if range.is_none() {
                    self.error(
                        s.span(),
                        Some(item),
                        format!(
                            r#"invalid {table}.failure_statuses entry {:?}; expected "5xx", a status like "503" or a range like "500-504", within 400-599"#,
                            s.get_ref().0
                        ),
                    );
                }
                range
            })
            .collect();
        model::StatusSet(ranges)
    }

    /// `retry_on` of a route.
    pub(super) fn retry_on(
        &mut self,
        list: Option<&[Spanned<String>]>,
        item: &str,
    ) -> model::RetryOn {
        let mut out = model::RetryOn::default();
        for entry in list.unwrap_or_default() {
            match entry.get_ref().as_str() {
                "connect" => {}
                "reset" => out.reset = true,
                "timeout" => out.timeout = true,
                other => match status_range(other) {
                    Some((lo, hi)) => out.statuses.extend(lo..=hi),
                    None => self.error(
                        entry.span(),
                        Some(item),
                        format!(
                            r#"unknown retry_on entry {other:?}; expected "connect", "reset", "timeout", "5xx" or a status like "503" (400-599)"#
                        ),
                    ),
                },
            }
        }
        out.statuses.sort_unstable();
        out.statuses.dedup();
        out
    }

    /// Every `fallback` names another pool, and no chain of fallbacks
    /// comes back to where it started.
    pub(super) fn fallbacks(&mut self, pools: &BTreeMap<Spanned<String>, PoolFile>) {
        let names: BTreeMap<&str, &PoolFile> = pools
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v))
            .collect();
        for (name, pool) in &names {
            let Some(fallback) = &pool.fallback else {
                continue;
            };
            let item = format!("pool {name:?}");
            let target = fallback.get_ref().as_str();
            if !names.contains_key(target) {
                self.error(
                    fallback.span(),
                    Some(&item),
                    format!("fallback pool {target:?} is not defined"),
                );
                continue;
            }
            let mut chain = vec![*name];
            let mut at = target;
            loop {
                if chain.contains(&at) {
                    chain.push(at);
                    self.error(
                        fallback.span(),
                        Some(&item),
                        format!("fallback pools loop: {}", chain.join(" -> ")),
                    );
                    break;
                }
                chain.push(at);
                match names.get(at).and_then(|p| p.fallback.as_ref()) {
                    Some(next) => at = next.get_ref().as_str(),
                    None => break,
                }
            }
        }
    }
}

/// `"5xx"`, `"503"`, `"500-504"` within 400-599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    if let Some(class) = text.strip_suffix("xx") {
        let c = class.parse::<u16>().ok().filter(|c| (4..=5).contains(c))?;
        return Some((c * 100, c * 100 + 99));
    }
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (400..=599).contains(n))
    };
    match (parse(lo)?, parse(hi)?) {
        (l, h) if l <= h => Some((l, h)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::status_range;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("5xx"), Some((500, 599)));
        assert_eq!(status_range("4xx"), Some((400, 499)));
        assert_eq!(status_range("503"), Some((503, 503)));
        assert_eq!(status_range("500-504"), Some((500, 504)));
        assert_eq!(status_range("200"), None);
        assert_eq!(status_range("504-500"), None);
        assert_eq!(status_range("3xx"), None);
    }
}
