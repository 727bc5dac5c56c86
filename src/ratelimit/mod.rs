//! TEMPORARY stand-in with the agreed interface; replaced by the real
//! engine (GCRA on atomics, calendar quotas, moka-bounded store).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smallvec::SmallVec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let err =
            || r#"is not a rate: write e.g. "100/s", "10/m", "5000/h" or "100000/d""#.to_string();
        let (n, unit) = text.trim().split_once('/').ok_or_else(err)?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 {
            return Err(err());
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(err()),
        };
        Ok(Rate { count, period })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub rate: Rate,
    pub burst: u32,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub period: Period,
    pub limit: u64,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Bucket(Bucket),
    Quota(Quota),
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    All,
    Consumer(Arc<str>),
    ClientIp(IpAddr),
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub policy: Arc<str>,
    pub subject: Subject,
}
#[derive(Debug, Clone)]
pub struct Check {
    pub key: LimitKey,
    pub limit: Limit,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    pub remaining: u64,
    pub reset_secs: u64,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed(SmallVec<[CheckState; 4]>),
    Denied {
        index: usize,
        retry_after_secs: u64,
        states: SmallVec<[CheckState; 4]>,
    },
}

#[async_trait::async_trait]
pub trait LimitStore: Send + Sync + 'static {
    async fn acquire(&self, checks: &[Check], now_nanos: u64) -> Outcome;
    async fn peek(&self, checks: &[Check], now_nanos: u64) -> Outcome;
}

pub const DEFAULT_MAX_COUNTERS: u64 = 1_000_000;

#[derive(Default)]
pub struct LocalStore {
    tat: Mutex<HashMap<LimitKey, u64>>,
}

impl LocalStore {
    pub fn new(_max: u64) -> LocalStore {
        LocalStore::default()
    }
    fn run(&self, checks: &[Check], now: u64, charge: bool) -> Outcome {
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let mut states = SmallVec::new();
        let mut new = Vec::new();
        for (i, c) in checks.iter().enumerate() {
            let Limit::Bucket(b) = c.limit else {
                states.push(CheckState {
                    remaining: 1,
                    reset_secs: 1,
                });
                continue;
            };
            let t = b.rate.period.as_nanos() as u64 / b.rate.count as u64;
            let tau = t * (b.burst as u64 - 1);
            let tat = map.get(&c.key).copied().unwrap_or(now).max(now);
            if tat - now > tau {
                return Outcome::Denied {
                    index: i,
                    retry_after_secs: ((tat - now - tau) / 1_000_000_000).max(1),
                    states,
                };
            }
            let next = tat + t;
            states.push(CheckState {
                remaining: (now + tau + t - next) / t,
                reset_secs: (next - now).div_ceil(1_000_000_000),
            });
            new.push((c.key.clone(), next));
        }
        if charge {
            map.extend(new);
        }
        Outcome::Allowed(states)
    }
}

#[async_trait::async_trait]
impl LimitStore for LocalStore {
    async fn acquire(&self, checks: &[Check], now: u64) -> Outcome {
        self.run(checks, now, true)
    }
    async fn peek(&self, checks: &[Check], now: u64) -> Outcome {
        self.run(checks, now, false)
    }
}

pub mod headers {
    use super::{CheckState, Limit};
    pub fn policy_value(policies: &[(&str, Limit)]) -> http::HeaderValue {
        let v: Vec<String> = policies
            .iter()
            .map(|(n, l)| match l {
                Limit::Bucket(b) => format!("\"{n}\";q={}", b.burst),
                Limit::Quota(q) => format!("\"{n}\";q={}", q.limit),
            })
            .collect();
        http::HeaderValue::from_str(&v.join(", ")).unwrap_or(http::HeaderValue::from_static(""))
    }
    pub fn ratelimit_value(states: &[(&str, CheckState)]) -> http::HeaderValue {
        let v: Vec<String> = states
            .iter()
            .map(|(n, s)| format!("\"{n}\";r={};t={}", s.remaining, s.reset_secs))
            .collect();
        http::HeaderValue::from_str(&v.join(", ")).unwrap_or(http::HeaderValue::from_static(""))
    }
}

pub mod clock {
    pub trait Clock: Send + Sync + 'static {
        fn now_nanos(&self) -> u64;
    }
    pub struct SystemClock;
    impl Clock for SystemClock {
        fn now_nanos(&self) -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        }
    }
}
