//! A few lock-free slots, each claimed by a key on first use and holding a
//! value made once: how the request path reaches a handle (a status code's
//! counter, a consumer's usage cell for a route) without a lock or a hash.
//! When every slot holds another key, the caller takes its slow path.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Slot<V> {
    /// 0 while free.
    key: AtomicU32,
    value: OnceLock<V>,
}

/// `N` slots of values of type `V`, keyed by non-zero `u32`s.
pub struct Slots<V, const N: usize> {
    slots: [Slot<V>; N],
}

impl<V, const N: usize> Default for Slots<V, N> {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot {
                key: AtomicU32::new(0),
                value: OnceLock::new(),
            }),
        }
    }
}

impl<V, const N: usize> Slots<V, N> {
    /// The value of `key`: its slot's, or a free slot claimed for it, with
    /// the value made by `init` the first time. `None` when `key` is 0 or
    /// every slot holds another key.
    pub fn get_or_claim(&self, key: u32, init: impl FnOnce() -> V) -> Option<&V> {
        if key == 0 {
            return None;
        }
        let slot = self.slots.iter().find(|slot| {
            let taken = slot.key.load(Ordering::Acquire);
            taken == key
                || (taken == 0
                    && slot
                        .key
                        .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                        .map_or_else(|current| current == key, |_| true))
        })?;
        Some(slot.value.get_or_init(init))
    }

    /// Every key claimed so far.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .map(|s| s.key.load(Ordering::Acquire))
            .filter(|k| *k != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_claim_slots_until_they_run_out() {
        let slots: Slots<String, 2> = Slots::default();
        assert_eq!(slots.get_or_claim(7, || "seven".into()).unwrap(), "seven");
        // Made once: a second init is not called.
        assert_eq!(slots.get_or_claim(7, || unreachable!()).unwrap(), "seven");
        assert_eq!(slots.get_or_claim(9, || "nine".into()).unwrap(), "nine");
        assert!(slots.get_or_claim(11, || "eleven".into()).is_none());
        assert!(slots.get_or_claim(0, || "zero".into()).is_none());
        assert_eq!(slots.keys().collect::<Vec<_>>(), [7, 9]);
    }
}
