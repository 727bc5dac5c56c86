//! Usage plans: which rate limits and quotas apply to a request.
//!
//! Compiled once per snapshot, per route ([`RouteLimits`]) and per consumer
//! ([`ConsumerLimits`]); at request time [`plan`] picks the ones that apply
//! and turns them into checks for the [`ratelimit`](crate::ratelimit) store.
//!
//! Every limit has a *policy* string naming where it is defined and what
//! it is (`consumer:acme:100/1s:200`). It is the counter's identity in the
//! store, so a counter survives a reload exactly when its definition did
//! not change; a quota's policy leaves the number out, so raising a quota
//! keeps what was used so far this period.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use smallvec::SmallVec;

use crate::config::model;
use crate::ratelimit::quota::Window;
use crate::ratelimit::{headers, Accuracy, Bucket, Check, Limit, LimitKey, Period, Subject};

/// Whose requests one counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Everyone's together (or one consumer's, when the policy names it).
    Shared,
    /// Each consumer apart.
    Consumer,
    /// Each client IP address apart.
    ClientIp,
}

/// One limit, ready to be checked.
#[derive(Debug, Clone)]
pub struct PlannedLimit {
    /// Name in `RateLimit-Policy` / `RateLimit` and in 429 bodies.
    pub name: Arc<str>,
    /// The counter's identity in the store.
    pub policy: Arc<str>,
    pub limit: Limit,
    pub per: Per,
    /// How a shared store keeps it (quotas: always exact).
    pub accuracy: Accuracy,
}

impl PlannedLimit {
    fn new(
        name: String,
        policy: String,
        limit: Limit,
        per: Per,
        accuracy: Accuracy,
    ) -> PlannedLimit {
        PlannedLimit {
            name: Arc::from(name),
            policy: Arc::from(policy),
            limit,
            per,
            accuracy,
        }
    }

    /// A one-line description for a 429 body, e.g.
    /// `rate limit "consumer": 100 requests per second, burst 200`.
    pub fn describe(&self) -> String {
        match self.limit {
            Limit::Bucket(b) => format!(
                "rate limit {:?}: {} requests per {}, burst {}",
                self.name,
                b.rate.count,
                period_text(b.rate.period),
                b.burst
            ),
            Limit::Quota(q) => format!(
                "{} quota of {} requests exhausted; it resets at the start of the next {} (UTC)",
                match q.period {
                    Period::Day => "daily",
                    Period::Month => "monthly",
                },
                q.limit,
                match q.period {
                    Period::Day => "day",
                    Period::Month => "month",
                }
            ),
        }
    }

    /// The check of this limit for a request by `consumer` (the id its
    /// per-consumer counters are kept under) from `ip`.
    pub fn check(&self, consumer: Option<&Arc<str>>, ip: Option<IpAddr>) -> Check {
        let subject = match (self.per, consumer, ip) {
            (Per::Consumer, Some(c), _) => Subject::Consumer(c.clone()),
            (Per::ClientIp, _, Some(ip)) => Subject::ClientIp(ip),
            _ => Subject::All,
        };
        Check {
            key: LimitKey {
                policy: self.policy.clone(),
                subject,
            },
            limit: self.limit,
            accuracy: self.accuracy,
        }
    }
}

fn period_text(p: std::time::Duration) -> String {
    match p.as_secs() {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        s => format!("{s} seconds"),
    }
}

/// `100/1s:200`: a bucket's part of a policy string.
fn bucket_text(b: &Bucket) -> String {
    format!(
        "{}/{}ms:{}",
        b.rate.count,
        b.rate.period.as_millis(),
        b.burst
    )
}

/// Names unique within one list: `route`, `route-2`, …
fn numbered(base: &str, seen: &mut Vec<String>) -> String {
    let mut name = base.to_string();
    let mut n = 1;
    while seen.contains(&name) {
        n += 1;
        name.clear();
        let _ = write!(name, "{base}-{n}");
    }
    seen.push(name.clone());
    name
}

/// The last `RateLimit-Policy` value made for a plan: it only changes
/// with the route (for a consumer's plans) and, for monthly quotas, the
/// month, so it is made once rather than on every request.
#[derive(Default)]
pub struct PolicyCache(ArcSwapOption<(u32, u64, HeaderValue)>);

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyCache")
    }
}

impl PolicyCache {
    fn get_or_make(
        &self,
        route: u32,
        month: u64,
        make: impl FnOnce() -> HeaderValue,
    ) -> HeaderValue {
        if let Some(cached) = &*self.0.load() {
            if cached.0 == route && cached.1 == month {
                return cached.2.clone();
            }
        }
        let value = make();
        self.0.store(Some(Arc::new((route, month, value.clone()))));
        value
    }
}

/// The `limit` labels a request on `route` can be refused with (429), as
/// `portcullis_rate_limited_total` names them: the route's own limits,
/// and on a key or token route the plans of `consumers` (or of `issuers`)
/// that can apply there and brute-force damping (`failed_attempts`).
pub fn refusal_labels(
    route: &model::RouteConfig,
    consumers: &[model::Consumer],
    issuers: &[model::JwtIssuer],
    failed_attempts: bool,
) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = route
        .rate_limits
        .iter()
        .map(|l| match l.per {
            model::LimitPer::Route => "route",
            model::LimitPer::Consumer => "route-consumer",
            model::LimitPer::ClientIp => "route-ip",
        })
        .collect();
    if route.auth != model::RouteAuth::None {
        let on_route = |l: &model::ConsumerLimit| {
            l.routes.contains(&route.id) || l.tags.iter().any(|t| route.tags.contains(t))
        };
        let plans = consumers
            .iter()
            .filter(|_| route.auth.api_key().is_some())
            .map(|c| (&c.rate_limits, &c.quotas))
            .chain(
                issuers
                    .iter()
                    .filter(|i| {
                        route
                            .auth
                            .jwt()
                            .is_some_and(|j| j.issuers.is_empty() || j.issuers.contains(&i.id))
                    })
                    .map(|i| (&i.rate_limits, &i.quotas)),
            );
        for (rate_limits, quotas) in plans {
            for l in rate_limits {
                if l.routes.is_empty() && l.tags.is_empty() {
                    labels.push("consumer");
                } else if on_route(l) {
                    labels.push("consumer-route");
                }
            }
            for q in quotas {
                labels.push(match q.period {
                    Period::Day => "daily-quota",
                    Period::Month => "monthly-quota",
                });
            }
        }
        if failed_attempts {
            labels.push("failed-attempts");
        }
    }
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// A route's own limits.
#[derive(Debug, Default)]
pub struct RouteLimits {
    pub limits: Vec<PlannedLimit>,
    policy: PolicyCache,
}

impl RouteLimits {
    pub fn build(route: &model::RouteConfig) -> RouteLimits {
        let mut seen = Vec::new();
        let limits = route
            .rate_limits
            .iter()
            .map(|l| {
                let (base, per, per_text) = match l.per {
                    model::LimitPer::Route => ("route", Per::Shared, "route"),
                    model::LimitPer::Consumer => ("route-consumer", Per::Consumer, "consumer"),
                    model::LimitPer::ClientIp => ("route-ip", Per::ClientIp, "client_ip"),
                };
                PlannedLimit::new(
                    numbered(base, &mut seen),
                    format!("route:{}:{per_text}:{}", route.id, bucket_text(&l.bucket)),
                    Limit::Bucket(l.bucket),
                    per,
                    l.accuracy,
                )
            })
            .collect();
        RouteLimits {
            limits,
            policy: PolicyCache::default(),
        }
    }
}

/// A consumer's limits: those on every call (including quotas), and those
/// on particular routes.
#[derive(Debug, Default)]
pub struct ConsumerLimits {
    /// The consumer's id: what its per-consumer counters are kept under.
    consumer: Arc<str>,
    everywhere: Vec<PlannedLimit>,
    /// (route index, limit), sorted by route index.
    on_route: Vec<(u32, PlannedLimit)>,
    policy: PolicyCache,
}

impl ConsumerLimits {
    /// The consumer's id, as its per-consumer counters are kept under.
    pub fn consumer(&self) -> &Arc<str> {
        &self.consumer
    }

    pub fn build(c: &model::Consumer, routes: &[model::RouteConfig]) -> ConsumerLimits {
        let mut out = ConsumerLimits::of(
            &format!("consumer:{}", c.id),
            &format!("quota:{}", c.id),
            &c.rate_limits,
            &c.quotas,
            routes,
            Per::Shared,
        );
        out.consumer = Arc::from(c.id.as_str());
        out
    }

    /// The limits each consumer of a bearer-token issuer has, each
    /// consumer counted apart.
    pub fn build_issuer(i: &model::JwtIssuer, routes: &[model::RouteConfig]) -> ConsumerLimits {
        ConsumerLimits::of(
            &format!("jwt:{}", i.id),
            &format!("jwt-quota:{}", i.id),
            &i.rate_limits,
            &i.quotas,
            routes,
            Per::Consumer,
        )
    }

    /// Limits whose policies start with `owner` (`quota_owner` for
    /// quotas), counting as `per` says.
    fn of(
        owner: &str,
        quota_owner: &str,
        rate_limits: &[model::ConsumerLimit],
        quotas: &[crate::ratelimit::Quota],
        routes: &[model::RouteConfig],
        per: Per,
    ) -> ConsumerLimits {
        let mut out = ConsumerLimits::default();
        let mut seen = Vec::new();
        let mut seen_on_route = Vec::new();
        for l in rate_limits {
            let limit = Limit::Bucket(l.bucket);
            if l.routes.is_empty() && l.tags.is_empty() {
                out.everywhere.push(PlannedLimit::new(
                    numbered("consumer", &mut seen),
                    format!("{owner}:{}", bucket_text(&l.bucket)),
                    limit,
                    per,
                    l.accuracy,
                ));
                continue;
            }
            let name = numbered("consumer-route", &mut seen_on_route);
            for (i, r) in routes.iter().enumerate() {
                let listed = l.routes.contains(&r.id) || r.tags.iter().any(|t| l.tags.contains(t));
                if listed {
                    out.on_route.push((
                        i as u32,
                        PlannedLimit::new(
                            name.clone(),
                            format!("{owner}:route:{}:{}", r.id, bucket_text(&l.bucket)),
                            limit,
                            per,
                            l.accuracy,
                        ),
                    ));
                }
            }
        }
        for q in quotas {
            let (name, period) = match q.period {
                Period::Day => ("daily-quota", "day"),
                Period::Month => ("monthly-quota", "month"),
            };
            out.everywhere.push(PlannedLimit::new(
                name.to_string(),
                format!("{quota_owner}:{period}"),
                Limit::Quota(*q),
                per,
                Accuracy::Exact,
            ));
        }
        out.on_route.sort_by_key(|(r, _)| *r);
        out
    }

    /// The consumer's quotas.
    pub fn quotas(&self) -> impl Iterator<Item = &PlannedLimit> {
        self.everywhere
            .iter()
            .filter(|l| matches!(l.limit, Limit::Quota(_)))
    }

    fn for_route(&self, route: u32) -> impl Iterator<Item = &PlannedLimit> {
        let start = self.on_route.partition_point(|(r, _)| *r < route);
        self.on_route[start..]
            .iter()
            .take_while(move |(r, _)| *r == route)
            .map(|(_, l)| l)
            .chain(self.everywhere.iter())
    }
}

/// The limits that apply to one request, in the order they are checked
/// (the route's, then the consumer's; quotas last), and their checks.
pub struct Plan<'a> {
    pub limits: SmallVec<[&'a PlannedLimit; 6]>,
    pub checks: SmallVec<[Check; 6]>,
    route: u32,
    /// The consumer's cache when there is a consumer, else the route's.
    policy: &'a PolicyCache,
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// `RateLimit-Policy` of this plan at `now_nanos`.
    pub fn policy_header(&self, now_nanos: u64) -> HeaderValue {
        let month = Window::of(Period::Month, now_nanos / 1_000_000_000).index;
        self.policy.get_or_make(self.route, month, || {
            headers::policy_value(self.limits.iter().map(|l| (&*l.name, l.limit)), now_nanos)
        })
    }

    /// `RateLimit` for the states the store reported, in plan order.
    pub fn state_header(&self, states: &[crate::ratelimit::CheckState]) -> HeaderValue {
        headers::ratelimit_value(
            self.limits
                .iter()
                .map(|l| &*l.name)
                .zip(states.iter().copied()),
        )
    }
}

/// The plan for a call of route `route_index` (with `route` its limits) by
/// `consumer` (when authenticated: the id its per-consumer counters are
/// kept under, and its limits) from `ip`.
pub fn plan<'a>(
    route: &'a RouteLimits,
    route_index: usize,
    consumer: Option<(&Arc<str>, &'a ConsumerLimits)>,
    ip: Option<IpAddr>,
) -> Plan<'a> {
    let mut limits: SmallVec<[&PlannedLimit; 6]> = route.limits.iter().collect();
    let index = u32::try_from(route_index).unwrap_or(u32::MAX);
    if let Some((_, c)) = consumer {
        limits.extend(c.for_route(index));
    }
    let who = consumer.map(|(id, _)| id);
    let checks = limits.iter().map(|l| l.check(who, ip)).collect();
    let consumer = consumer.map(|(_, c)| c);
    Plan {
        limits,
        checks,
        route: index,
        policy: consumer.map_or(&route.policy, |c| &c.policy),
    }
}

/// The limit behind brute-force damping: failed key attempts per client
/// address.
pub fn failed_attempts(bucket: Bucket) -> PlannedLimit {
    PlannedLimit::new(
        "failed-attempts".to_string(),
        format!("auth-failures:{}", bucket_text(&bucket)),
        Limit::Bucket(bucket),
        Per::ClientIp,
        Accuracy::PerInstance,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Quota, Rate};

    fn bucket(count: u32, burst: u32) -> Bucket {
        Bucket {
            rate: Rate {
                count,
                period: std::time::Duration::from_secs(1),
            },
            burst,
        }
    }

    fn config() -> crate::config::Config {
        let src = r#"
[pools.p]
backends = ["127.0.0.1:1"]
[[routes]]
id = "a"
path = "/a"
pool = "p"
auth = "api_key"
tags = ["t"]
rate_limits = [{ rate = "10/s", per = "route" }, { rate = "5/s", per = "consumer" }, { rate = "1/s", per = "route" }]
[[routes]]
id = "b"
path = "/b"
pool = "p"
auth = "api_key"
[[consumers]]
id = "c1"
scopes = [{ routes = ["*"] }]
rate_limits = [{ rate = "100/s" }, { rate = "2/s", tags = ["t"] }]
quota = { day = 1000 }
"#;
        crate::config::parse_str(src, "f.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn plans_combine_route_and_consumer_limits() {
        let config = config();
        let index = crate::auth::ConsumerIndex::build(
            &config.consumers,
            &config.routes,
            &crate::usage::UsageTable::default(),
        );
        let consumer = index.consumer(0);
        let a = RouteLimits::build(&config.routes[0]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let p = plan(
            &a,
            0,
            consumer.map(|c| (c.limits.consumer(), &c.limits)),
            Some(ip),
        );
        let names: Vec<&str> = p.limits.iter().map(|l| &*l.name).collect();
        assert_eq!(
            names,
            [
                "route",
                "route-consumer",
                "route-2",
                "consumer-route",
                "consumer",
                "daily-quota"
            ]
        );
        assert_eq!(p.checks[0].key.subject, Subject::All);
        assert_eq!(p.checks[1].key.subject, Subject::Consumer(Arc::from("c1")));
        assert_eq!(&*p.checks[3].key.policy, "consumer:c1:route:a:2/1000ms:2");
        assert_eq!(&*p.checks[5].key.policy, "quota:c1:day");
        assert_eq!(
            p.checks[5].limit,
            Limit::Quota(Quota {
                period: Period::Day,
                limit: 1000
            })
        );
        // Route b has no limits of its own and no consumer-route limit.
        let b = RouteLimits::build(&config.routes[1]);
        let p = plan(
            &b,
            1,
            consumer.map(|c| (c.limits.consumer(), &c.limits)),
            Some(ip),
        );
        let names: Vec<&str> = p.limits.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["consumer", "daily-quota"]);
        // Anonymous: only the route's.
        assert_eq!(plan(&a, 0, None, Some(ip)).limits.len(), 3);
    }

    #[test]
    fn descriptions_name_the_limit() {
        let l = PlannedLimit::new(
            "consumer".into(),
            "x".into(),
            Limit::Bucket(bucket(100, 200)),
            Per::Shared,
            Accuracy::Approximate,
        );
        assert_eq!(
            l.describe(),
            r#"rate limit "consumer": 100 requests per second, burst 200"#
        );
        let q = PlannedLimit::new(
            "daily-quota".into(),
            "y".into(),
            Limit::Quota(Quota {
                period: Period::Day,
                limit: 5,
            }),
            Per::Shared,
            Accuracy::Exact,
        );
        assert!(q
            .describe()
            .starts_with("daily quota of 5 requests exhausted"));
    }
}
