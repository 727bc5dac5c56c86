//! Counters by response status with cached handles: the first few distinct
//! codes of a series get a slot each (claimed on first use, lock-free), the
//! rare rest go through a label lookup and are remembered so their series
//! can be removed.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus::IntCounter;

/// Distinct status codes with a cached handle.
const SLOTS: usize = 6;

/// One cached `(code, counter)`.
#[derive(Default)]
struct Slot {
    /// 0 while free.
    code: AtomicU16,
    counter: OnceLock<IntCounter>,
}

/// The counters of one series family member by status code.
#[derive(Default)]
pub struct StatusCounters {
    slots: [Slot; SLOTS],
    /// Codes counted beyond the slots.
    overflow: Mutex<Vec<u16>>,
}

impl StatusCounters {
    /// Count one `status`; `child` makes the labelled counter of a code the
    /// first time it is needed (and on every count beyond the slots).
    pub fn inc(&self, status: u16, child: impl Fn(&str) -> IntCounter) {
        let new = || child(itoa::Buffer::new().format(status));
        for slot in &self.slots {
            let taken = slot.code.load(Ordering::Acquire);
            let mine = taken == status
                || (taken == 0
                    && slot
                        .code
                        .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
                        .map_or_else(|current| current == status, |_| true));
            if mine {
                slot.counter.get_or_init(new).inc();
                return;
            }
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if !overflow.contains(&status) {
            overflow.push(status);
        }
        drop(overflow);
        new().inc();
    }

    /// Every code counted so far, for removing their series.
    pub fn codes(&self) -> Vec<String> {
        let overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        self.slots
            .iter()
            .map(|s| s.code.load(Ordering::Acquire))
            .chain(overflow.iter().copied())
            .filter(|c| *c != 0)
            .map(|c| c.to_string())
            .collect()
    }
}
