//! A pool's circuit breaker: closed → open → half-open → closed.
//!
//! - **Closed**: every attempt passes. It trips when `consecutive_failures`
//!   attempts in a row failed, or when at least `min_requests` attempts in
//!   the last `window` failed at `failure_rate` or more.
//! - **Open** for `open_for`: nothing passes; the caller answers 503 with
//!   `Retry-After`, serves stale, or uses the fallback pool.
//! - **Half-open**: `probe_requests` attempts pass. When all of them
//!   succeed it closes (and forgets its counts); the first that fails
//!   opens it again for twice as long as last time, up to `max_open_for`.
//!
//! The closed fast path is two atomic loads on admission and one or two
//! atomic adds per outcome; the mutex is taken only on transitions and in
//! half-open. Time comes in as Unix nanoseconds from the caller, so tests
//! drive it with a manual clock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::window::SlidingWindow;
use crate::clock::nanos;
use crate::config::model;

pub use crate::metrics::BreakerState;

fn state_of(v: u8) -> BreakerState {
    match v {
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// Whether an attempt may go to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Pass,
    /// Half-open: go ahead as one of the probes; its outcome decides.
    Probe,
    /// Open, or half-open with every probe out: try again after this.
    Refused { retry_after: Duration },
}

/// A change of state, for metrics and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: BreakerState,
    pub reason: String,
}

/// What `GET /-/upstreams` shows of a breaker.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakerView {
    pub state: BreakerState,
    /// Unix nanoseconds of the last transition (or of the breaker's start).
    #[serde(skip)]
    pub since_nanos: u64,
    /// Why it last opened or closed.
    pub reason: Option<String>,
    /// Unix nanoseconds when an open breaker turns half-open.
    #[serde(skip)]
    pub open_until_nanos: Option<u64>,
    /// How long the next (or current) opening lasts.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    pub trips: u64,
    pub consecutive_failures: u32,
    /// Attempts and failures within `window`.
    pub window_requests: u64,
    pub window_failures: u64,
}

struct Inner {
    since: u64,
    reason: Option<String>,
    open_for: Duration,
    probes_admitted: u32,
    probes_succeeded: u32,
    trips: u64,
}

pub struct Breaker {
    settings: model::BreakerConfig,
    state: AtomicU8,
    open_until: AtomicU64,
    consecutive: AtomicU32,
    window: SlidingWindow,
    inner: Mutex<Inner>,
}

/// Half-open with every probe out: ask the client to come back in a second.
const PROBES_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Breaker {
    pub fn new(settings: model::BreakerConfig, now: u64) -> Breaker {
        Breaker {
            window: SlidingWindow::new(settings.window),
            inner: Mutex::new(Inner {
                since: now,
                reason: None,
                open_for: settings.open_for,
                probes_admitted: 0,
                probes_succeeded: 0,
                trips: 0,
            }),
            settings,
            state: AtomicU8::new(BreakerState::Closed as u8),
            open_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
        }
    }

    pub fn settings(&self) -> &model::BreakerConfig {
        &self.settings
    }

    pub fn state(&self) -> BreakerState {
        state_of(self.state.load(Ordering::Acquire))
    }

    /// Unix nanoseconds when an open breaker lets probes through; `None`
    /// unless it is open.
    pub fn open_until(&self) -> Option<u64> {
        (self.state() == BreakerState::Open).then(|| self.open_until.load(Ordering::Acquire))
    }

    /// Whether a response with `status` counts as a failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.settings.failure_statuses.contains(status)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May an attempt go to the pool at `now`? An open breaker whose time
    /// is up turns half-open here (the returned transition).
    pub fn admit(&self, now: u64) -> (Admission, Option<Transition>) {
        match self.state() {
            BreakerState::Closed => (Admission::Pass, None),
            BreakerState::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    let retry_after = Duration::from_nanos(until - now);
                    return (Admission::Refused { retry_after }, None);
                }
                let mut inner = self.inner();
                let mut transition = None;
                if self.state() == BreakerState::Open {
                    self.state
                        .store(BreakerState::HalfOpen as u8, Ordering::Release);
                    inner.since = now;
                    inner.probes_admitted = 0;
                    inner.probes_succeeded = 0;
                    transition = Some(Transition {
                        to: BreakerState::HalfOpen,
                        reason: format!(
                            "open time ({}) is up: letting {} probe requests through",
                            humantime::format_duration(inner.open_for),
                            self.settings.probe_requests
                        ),
                    });
                }
                (self.probe(&mut inner, now), transition)
            }
            BreakerState::HalfOpen => {
                let mut inner = self.inner();
                (self.probe(&mut inner, now), None)
            }
        }
    }

    fn probe(&self, inner: &mut Inner, now: u64) -> Admission {
        match self.state() {
            BreakerState::Closed => Admission::Pass,
            BreakerState::HalfOpen if inner.probes_admitted < self.settings.probe_requests => {
                inner.probes_admitted += 1;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::Refused {
                retry_after: PROBES_BUSY_RETRY_AFTER,
            },
            BreakerState::Open => Admission::Refused {
                retry_after: Duration::from_nanos(
                    self.open_until.load(Ordering::Acquire).saturating_sub(now),
                ),
            },
        }
    }

    /// A probe admitted by [`Breaker::admit`] ended without an outcome
    /// (the client went away, the request was served otherwise): its
    /// place goes to another request.
    pub fn release_probe(&self) {
        let mut inner = self.inner();
        if self.state() == BreakerState::HalfOpen && inner.probes_admitted > inner.probes_succeeded
        {
            inner.probes_admitted -= 1;
        }
    }

    /// The outcome of an attempt admitted at `admission`.
    pub fn record(&self, now: u64, failed: bool, admission: Admission) -> Option<Transition> {
        self.window.add(now, 1, u64::from(failed));
        let consecutive = if failed {
            self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        match (self.state(), admission) {
            (BreakerState::Closed, _) if failed => {
                let why = self.trip_reason(now, consecutive)?;
                let mut inner = self.inner();
                (self.state() == BreakerState::Closed)
                    .then(|| self.open(&mut inner, now, why, false))
            }
            (BreakerState::HalfOpen, Admission::Probe) => {
                let mut inner = self.inner();
                if self.state() != BreakerState::HalfOpen {
                    return None;
                }
                if failed {
                    return Some(self.open(&mut inner, now, "a probe request failed".into(), true));
                }
                inner.probes_succeeded += 1;
                if inner.probes_succeeded < self.settings.probe_requests {
                    return None;
                }
                self.window.clear();
                self.consecutive.store(0, Ordering::Relaxed);
                self.state
                    .store(BreakerState::Closed as u8, Ordering::Release);
                inner.since = now;
                inner.open_for = self.settings.open_for;
                let reason = format!("{} probe requests succeeded", self.settings.probe_requests);
                inner.reason = Some(reason.clone());
                Some(Transition {
                    to: BreakerState::Closed,
                    reason,
                })
            }
            _ => None,
        }
    }

    /// Why a closed breaker should trip after a failure, if it should.
    fn trip_reason(&self, now: u64, consecutive: u32) -> Option<String> {
        let s = &self.settings;
        if s.consecutive_failures > 0 && consecutive >= s.consecutive_failures {
            return Some(format!("{consecutive} consecutive failures"));
        }
        let (requests, failures) = self.window.totals(now);
        let rate = failures as f64 / requests.max(1) as f64;
        (requests >= u64::from(s.min_requests) && rate >= s.failure_rate).then(|| {
            format!(
                "failure rate {rate:.2} ({failures} of {requests} in {}) reached {}",
                humantime::format_duration(s.window),
                s.failure_rate
            )
        })
    }

    /// Open now; from half-open for twice as long as last time.
    fn open(&self, inner: &mut Inner, now: u64, why: String, again: bool) -> Transition {
        if again {
            inner.open_for = (inner.open_for * 2).min(self.settings.max_open_for);
        }
        inner.since = now;
        inner.trips += 1;
        let reason = format!(
            "{why}: open for {}",
            humantime::format_duration(inner.open_for)
        );
        inner.reason = Some(reason.clone());
        self.open_until
            .store(now.saturating_add(nanos(inner.open_for)), Ordering::Release);
        self.state
            .store(BreakerState::Open as u8, Ordering::Release);
        Transition {
            to: BreakerState::Open,
            reason,
        }
    }

    pub fn view(&self, now: u64) -> BreakerView {
        let inner = self.inner();
        let state = self.state();
        let (window_requests, window_failures) = self.window.totals(now);
        BreakerView {
            state,
            since_nanos: inner.since,
            reason: inner.reason.clone(),
            open_until_nanos: self.open_until(),
            open_for: inner.open_for,
            trips: inner.trips,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            window_requests,
            window_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;

    fn settings() -> model::BreakerConfig {
        model::BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(100),
            probe_requests: 2,
            failure_statuses: model::StatusSet::server_errors(),
        }
    }

    fn pass(b: &Breaker, now: u64, failed: bool) -> Option<Transition> {
        let (admission, _) = b.admit(now);
        assert_eq!(admission, Admission::Pass);
        b.record(now, failed, admission)
    }

    fn refused(b: &Breaker, now: u64) -> Duration {
        match b.admit(now).0 {
            Admission::Refused { retry_after } => retry_after,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn trips_on_consecutive_failures() {
        let b = Breaker::new(settings(), T0);
        for _ in 0..4 {
            assert_eq!(pass(&b, T0, true), None);
        }
        // A success resets the run.
        assert_eq!(pass(&b, T0, false), None);
        for _ in 0..4 {
            assert_eq!(pass(&b, T0, true), None);
        }
        let t = pass(&b, T0, true).expect("the fifth failure in a row trips it");
        assert_eq!(t.to, BreakerState::Open);
        assert!(t.reason.contains("5 consecutive failures"), "{}", t.reason);
        assert_eq!(refused(&b, T0 + S), Duration::from_secs(29));
    }

    #[test]
    fn trips_on_the_failure_rate_only_with_min_requests() {
        let mut s = settings();
        s.consecutive_failures = 0;
        let b = Breaker::new(s, T0);
        // 9 attempts, 5 failed: over the rate, under min_requests.
        for i in 0..9 {
            assert_eq!(pass(&b, T0 + i * S / 10, i % 2 == 0), None);
        }
        // The 10th, a failure: 6 of 10.
        let t = pass(&b, T0 + S, true).expect("rate 0.6 over 10 requests trips it");
        assert!(t.reason.contains("6 of 10"), "{}", t.reason);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut s = settings();
        s.consecutive_failures = 0;
        let b = Breaker::new(s, T0);
        for _ in 0..9 {
            pass(&b, T0, true);
        }
        // 11 s later those nine are out of the window: 1 of 1 is not enough.
        for i in 0..9 {
            assert_eq!(pass(&b, T0 + 11 * S, i == 0), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    fn trip(b: &Breaker, now: u64) {
        for _ in 0..5 {
            let _ = b.admit(now);
            b.record(now, true, Admission::Pass);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_open_lets_the_probe_quota_through_and_closes_on_success() {
        let b = Breaker::new(settings(), T0);
        trip(&b, T0);
        let t1 = T0 + 30 * S;
        let (first, transition) = b.admit(t1);
        assert_eq!(first, Admission::Probe);
        assert_eq!(transition.map(|t| t.to), Some(BreakerState::HalfOpen));
        assert_eq!(b.admit(t1).0, Admission::Probe);
        // Both probes are out: the third waits.
        assert_eq!(refused(&b, t1), Duration::from_secs(1));
        assert_eq!(b.record(t1, false, Admission::Probe), None);
        let closed = b.record(t1, false, Admission::Probe).expect("closes");
        assert_eq!(closed.to, BreakerState::Closed);
        assert_eq!(b.admit(t1).0, Admission::Pass);
        // Counts were forgotten: one more failure does not re-trip.
        assert_eq!(pass(&b, t1, true), None);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let b = Breaker::new(settings(), T0);
        trip(&b, T0);
        let mut now = T0;
        for expected in [60, 100, 100] {
            now += b.view(now).open_for.as_secs() * S;
            assert_eq!(b.admit(now).0, Admission::Probe);
            let t = b.record(now, true, Admission::Probe).expect("reopens");
            assert_eq!(t.to, BreakerState::Open);
            assert_eq!(refused(&b, now), Duration::from_secs(expected));
        }
        // Closing resets the open time to `open_for`.
        now += 100 * S;
        for _ in 0..2 {
            assert_eq!(b.admit(now).0, Admission::Probe);
            b.record(now, false, Admission::Probe);
        }
        trip(&b, now);
        assert_eq!(refused(&b, now), Duration::from_secs(30));
        assert_eq!(b.view(now).trips, 5);
    }

    #[test]
    fn a_released_probe_frees_its_place() {
        let b = Breaker::new(settings(), T0);
        trip(&b, T0);
        let t1 = T0 + 30 * S;
        assert_eq!(b.admit(t1).0, Admission::Probe);
        assert_eq!(b.admit(t1).0, Admission::Probe);
        b.release_probe();
        assert_eq!(b.admit(t1).0, Admission::Probe);
        // Late outcomes of requests admitted while closed change nothing.
        assert_eq!(b.record(t1, true, Admission::Pass), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
}
