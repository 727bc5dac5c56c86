//! Counters by response status with cached handles: the first few distinct
//! codes of a series get a slot each (claimed on first use, lock-free), the
//! rare rest go through a label lookup and are remembered so their series
//! can be removed.

use std::sync::Mutex;

use prometheus::IntCounter;

use crate::slots::Slots;

/// Distinct status codes with a cached handle.
const SLOTS: usize = 6;

/// The counters of one series family member by status code.
#[derive(Default)]
pub struct StatusCounters {
    slots: Slots<IntCounter, SLOTS>,
    /// Codes counted beyond the slots.
    overflow: Mutex<Vec<u16>>,
}

impl StatusCounters {
    /// Count one `status`; `child` makes the labelled counter of a code the
    /// first time it is needed (and on every count beyond the slots).
    pub fn inc(&self, status: u16, child: impl Fn(&str) -> IntCounter) {
        let new = || child(itoa::Buffer::new().format(status));
        if let Some(counter) = self.slots.get_or_claim(u32::from(status), new) {
            counter.inc();
            return;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if !overflow.contains(&status) {
            overflow.push(status);
        }
        drop(overflow);
        new().inc();
    }

    /// Export `status` at zero (a series known before its first count).
    pub fn touch(&self, status: u16, child: impl Fn(&str) -> IntCounter) {
        let new = || child(itoa::Buffer::new().format(status));
        if self.slots.get_or_claim(u32::from(status), new).is_some() {
            return;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if !overflow.contains(&status) {
            overflow.push(status);
        }
        drop(overflow);
        new();
    }

    /// Every code counted (or touched) so far, for removing their series.
    pub fn codes(&self) -> Vec<String> {
        let overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        self.slots
            .keys()
            .chain(overflow.iter().map(|c| u32::from(*c)))
            .map(|c| c.to_string())
            .collect()
    }
}
