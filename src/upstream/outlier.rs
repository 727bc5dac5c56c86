//! Passive outlier ejection of one backend (Envoy's consecutive-failure
//! detector, nginx's `max_fails`).
//!
//! A backend whose last `consecutive_failures` attempts all failed
//! (connect failure, timeout, reset, or a status in `failure_statuses`) is
//! ejected for `base_ejection × times ejected`, capped at `max_ejection`.
//! When that time is up it gets traffic again *on trial*: its first
//! success restores it, its first failure ejects it again for longer. The
//! count of times ejected starts over once a backend has stayed in for
//! `max_ejection`. The pool (`Pool::attempt_failed`) decides
//! whether `max_ejection_percent` lets an ejection happen.
//!
//! This is separate from active health checks: a passing probe does not
//! end an ejection, and either can take a backend out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::nanos;
use crate::config::model;
use crate::metrics::FailureReason;

/// How many of a backend's last counted failures are kept for the admin API.
pub const RECENT_FAILURES: usize = 5;

/// An attempt that counted as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No response: connect, TLS, timeout, reset, other.
    Error(FailureReason),
    /// A response whose status is one of `failure_statuses`.
    Status(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(r) => f.write_str(r.as_str()),
            Failure::Status(s) => write!(f, "status {s}"),
        }
    }
}

/// One of the last failures, for the admin API.
#[derive(Debug, Clone, Copy)]
pub struct FailureRecord {
    pub at_nanos: u64,
    pub failure: Failure,
}

/// What a failure means for the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutlierVerdict {
    /// Counted; not (yet) a reason to eject.
    Counted,
    /// Eject it, for this reason (if the pool lets it).
    Eject(String),
}

#[derive(Default)]
struct Detail {
    recent: VecDeque<FailureRecord>,
    /// Why it is (or was last) out, or why it was kept in.
    why: Option<String>,
}

/// The ejection state of one backend; long-lived with its `BackendState`.
#[derive(Default)]
pub struct Ejection {
    consecutive: AtomicU32,
    /// Unix nanoseconds when the last ejection ends (or ended); 0: never ejected.
    until: AtomicU64,
    times: AtomicU32,
    /// Back after an ejection, without a success yet.
    trial: AtomicBool,
    detail: Mutex<Detail>,
}

/// What `GET /-/upstreams` shows of a backend's ejection state.
#[derive(Debug, Clone)]
pub struct EjectionView {
    pub ejected_until_nanos: Option<u64>,
    pub times_ejected: u32,
    pub on_trial: bool,
    pub consecutive_failures: u32,
    pub recent_failures: Vec<FailureRecord>,
    pub why: Option<String>,
}

impl Ejection {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the backend is ejected at `now`: one atomic load.
    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.until.load(Ordering::Relaxed)
    }

    /// An attempt succeeded: the run of failures ends, and a backend on
    /// trial is restored.
    pub fn succeeded(&self, now: u64) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        if self.trial.load(Ordering::Relaxed) && !self.is_ejected(now) {
            self.trial.store(false, Ordering::Relaxed);
            self.detail().why = Some("restored: a request succeeded after its ejection".into());
        }
    }

    /// Keep `failure` among the last few (for the admin API) without
    /// judging it (pools with a breaker but no outlier detection).
    pub fn note(&self, now: u64, failure: Failure) {
        let mut detail = self.detail();
        if detail.recent.len() == RECENT_FAILURES {
            detail.recent.pop_front();
        }
        detail.recent.push_back(FailureRecord {
            at_nanos: now,
            failure,
        });
    }

    /// An attempt failed at `now`.
    pub fn failed(&self, now: u64, failure: Failure, settings: &model::Outlier) -> OutlierVerdict {
        self.note(now, failure);
        if self.is_ejected(now) {
            // A late answer to an attempt made before the ejection.
            return OutlierVerdict::Counted;
        }
        let run = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if self.trial.load(Ordering::Relaxed) {
            return OutlierVerdict::Eject(format!("failed ({failure}) on trial after an ejection"));
        }
        if run >= settings.consecutive_failures {
            return OutlierVerdict::Eject(format!(
                "{run} consecutive failures, the last: {failure}"
            ));
        }
        OutlierVerdict::Counted
    }

    /// Eject it now; returns how long for.
    pub fn eject(&self, now: u64, settings: &model::Outlier, why: &str) -> Duration {
        let last_until = self.until.load(Ordering::Relaxed);
        let stayed_in =
            last_until != 0 && now.saturating_sub(last_until) > nanos(settings.max_ejection);
        let times = if stayed_in {
            1
        } else {
            self.times.load(Ordering::Relaxed) + 1
        };
        let took = (settings.base_ejection * times).min(settings.max_ejection);
        self.times.store(times, Ordering::Relaxed);
        self.until
            .store(now.saturating_add(nanos(took)), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.trial.store(true, Ordering::Relaxed);
        self.detail().why = Some(format!(
            "ejected for {} (ejection {times}): {why}",
            humantime::format_duration(took)
        ));
        took
    }

    /// It would have been ejected, but the pool keeps it in.
    pub fn kept_in(&self, why: String) {
        self.detail().why = Some(why);
    }

    pub fn view(&self, now: u64) -> EjectionView {
        let detail = self.detail();
        let until = self.until.load(Ordering::Relaxed);
        EjectionView {
            ejected_until_nanos: (now < until).then_some(until),
            times_ejected: self.times.load(Ordering::Relaxed),
            on_trial: self.trial.load(Ordering::Relaxed) && now >= until,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            recent_failures: detail.recent.iter().copied().collect(),
            why: detail.why.clone(),
        }
    }
}

/// How many backends of `n` may be ejected at once under `percent`.
pub fn max_ejected(n: usize, percent: u32) -> usize {
    n * percent as usize / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;

    fn settings() -> model::Outlier {
        model::Outlier {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejection_percent: 50,
            failure_statuses: model::StatusSet::server_errors(),
        }
    }

    const RESET: Failure = Failure::Error(FailureReason::Reset);

    #[test]
    fn ejects_after_consecutive_failures_for_longer_each_time() {
        let s = settings();
        let e = Ejection::default();
        assert_eq!(e.failed(T0, RESET, &s), OutlierVerdict::Counted);
        e.succeeded(T0);
        assert_eq!(e.failed(T0, RESET, &s), OutlierVerdict::Counted);
        assert_eq!(
            e.failed(T0, Failure::Status(503), &s),
            OutlierVerdict::Counted
        );
        let OutlierVerdict::Eject(why) = e.failed(T0, RESET, &s) else {
            panic!("the third failure in a row ejects");
        };
        assert_eq!(e.eject(T0, &s, &why), Duration::from_secs(10));
        assert!(e.is_ejected(T0 + 9 * S));
        assert!(!e.is_ejected(T0 + 10 * S));
        // Back on trial: one failure ejects it again, for 2 × base.
        let t1 = T0 + 10 * S;
        assert!(e.view(t1).on_trial);
        let OutlierVerdict::Eject(why) = e.failed(t1, RESET, &s) else {
            panic!("a failure on trial ejects");
        };
        assert!(why.contains("on trial"), "{why}");
        assert_eq!(e.eject(t1, &s, &why), Duration::from_secs(20));
        // Third time: 30 s capped at 25 s.
        let t2 = t1 + 20 * S;
        let OutlierVerdict::Eject(why) = e.failed(t2, RESET, &s) else {
            panic!()
        };
        assert_eq!(e.eject(t2, &s, &why), Duration::from_secs(25));
        let view = e.view(t2);
        assert_eq!(view.times_ejected, 3);
        assert_eq!(view.ejected_until_nanos, Some(t2 + 25 * S));
        assert_eq!(view.recent_failures.len(), 5);
        assert!(view.why.unwrap().contains("ejected for 25s (ejection 3)"));
    }

    #[test]
    fn a_success_on_trial_restores_and_a_long_stay_resets_the_count() {
        let s = settings();
        let e = Ejection::default();
        e.eject(T0, &s, "test");
        let back = T0 + 10 * S;
        e.succeeded(back);
        assert!(!e.view(back).on_trial);
        // Restored: it takes a full run of failures again.
        assert_eq!(e.failed(back, RESET, &s), OutlierVerdict::Counted);
        // After staying in longer than max_ejection, the next ejection is a first one.
        let much_later = back + 26 * S;
        assert_eq!(e.eject(much_later, &s, "test"), Duration::from_secs(10));
        assert_eq!(e.view(much_later).times_ejected, 1);
    }

    #[test]
    fn failures_while_ejected_do_not_extend_it() {
        let s = settings();
        let e = Ejection::default();
        e.eject(T0, &s, "test");
        assert_eq!(e.failed(T0 + S, RESET, &s), OutlierVerdict::Counted);
        assert_eq!(e.view(T0 + S).ejected_until_nanos, Some(T0 + 10 * S));
    }

    #[test]
    fn max_ejection_percent_rounds_down() {
        assert_eq!(max_ejected(2, 50), 1);
        assert_eq!(max_ejected(1, 50), 0);
        assert_eq!(max_ejected(3, 50), 1);
        assert_eq!(max_ejected(10, 100), 10);
    }
}
