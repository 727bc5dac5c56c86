//! The time source of limits, key validity, breakers and outlier detection:
//! the system clock in the gateway, a manual one in tests. Everything that
//! judges time takes `now` (Unix nanoseconds) from here as an argument.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Unix time in nanoseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_nanos(&self) -> u64;
}

/// `SystemTime::now()`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, nanos)
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(start_nanos: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start_nanos)))
    }

    pub fn set(&self, nanos: u64) {
        self.0.store(nanos, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        let c = ManualClock::new(5);
        let shared = c.clone();
        c.advance(Duration::from_nanos(10));
        assert_eq!(shared.now_nanos(), 15);
        c.set(u64::MAX - 1);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_nanos(), u64::MAX);
        assert!(SystemClock.now_nanos() > 1_700_000_000 * 1_000_000_000);
    }
}
