//! Two counters over a sliding time window, lock-free: the breaker counts
//! attempts and failures with it, the retry budget requests and retries.
//!
//! The window is [`SLOTS`] slots of `window / SLOTS` each; a slot is reset
//! by the first writer that finds it holding an older slot's counts. Under
//! contention at a slot boundary a few counts may land in the old slot and
//! be lost: the counts are exact to within that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Slots per window.
pub const SLOTS: u64 = 10;

#[derive(Default)]
struct Slot {
    /// Which slot of time (`now / slot_nanos`) the counts belong to.
    epoch: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
}

pub struct SlidingWindow {
    slot_nanos: u64,
    slots: [Slot; SLOTS as usize],
}

impl SlidingWindow {
    pub fn new(window: Duration) -> SlidingWindow {
        SlidingWindow {
            slot_nanos: (crate::clock::nanos(window) / SLOTS).max(1),
            slots: Default::default(),
        }
    }

    /// Add `a` and `b` at time `now` (nanoseconds).
    pub fn add(&self, now: u64, a: u64, b: u64) {
        // Epoch 0 marks an unused slot: shift real epochs by one.
        let epoch = now / self.slot_nanos + 1;
        let slot = &self.slots[(epoch % SLOTS) as usize];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen != epoch
            && slot
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.a.store(0, Ordering::Relaxed);
            slot.b.store(0, Ordering::Relaxed);
        }
        if a != 0 {
            slot.a.fetch_add(a, Ordering::Relaxed);
        }
        if b != 0 {
            slot.b.fetch_add(b, Ordering::Relaxed);
        }
    }

    /// The sums of `a` and `b` over the window ending at `now`.
    pub fn totals(&self, now: u64) -> (u64, u64) {
        let epoch = now / self.slot_nanos + 1;
        let oldest = epoch.saturating_sub(SLOTS - 1);
        self.slots
            .iter()
            .filter(|s| (oldest..=epoch).contains(&s.epoch.load(Ordering::Acquire)))
            .fold((0, 0), |(a, b), s| {
                (
                    a + s.a.load(Ordering::Relaxed),
                    b + s.b.load(Ordering::Relaxed),
                )
            })
    }

    /// Forget everything counted.
    pub fn clear(&self) {
        for s in &self.slots {
            s.epoch.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_slide_out_of_the_window() {
        let w = SlidingWindow::new(Duration::from_secs(10));
        let t0 = 1_000 * S;
        w.add(t0, 1, 0);
        w.add(t0 + 3 * S, 2, 1);
        w.add(t0 + 9 * S, 4, 2);
        assert_eq!(w.totals(t0 + 9 * S), (7, 3));
        // 10 s later the first slot has left the window.
        assert_eq!(w.totals(t0 + 10 * S), (6, 3));
        assert_eq!(w.totals(t0 + 13 * S), (4, 2));
        assert_eq!(w.totals(t0 + 30 * S), (0, 0));
        // A slot reused a lap later starts from zero.
        w.add(t0 + 20 * S, 1, 1);
        assert_eq!(w.totals(t0 + 20 * S), (1, 1));
        w.clear();
        assert_eq!(w.totals(t0 + 20 * S), (0, 0));
    }
}
