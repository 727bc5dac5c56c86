//! Approximate rate limits: a local GCRA bucket per shared one, decided in
//! this process, whose charges reach Redis in batches.
//!
//! Each bucket keeps the shared bucket's state as last seen (its TAT moved
//! onto this process's clock) plus the requests let through since that
//! were not yet sent (`pending`). Every `sync_interval` the pending counts
//! of all buckets that have any go to Redis in one round trip, and each
//! bucket takes the shared state back. A bucket may let through at most
//! `allowance = ⌊rate × sync_interval⌋` requests before they are sent:
//! the request that would pass that sends them first (a round trip on that
//! request). A bucket this process has not seen yet asks Redis for the
//! shared state before its first decision.
//!
//! **Error bound.** What one instance lets through without the others
//! having seen it is at most `allowance`, so with N instances a limit is
//! exceeded by at most N × allowance ≈ N × rate × sync_interval requests
//! (Redis adds every batch, so the excess is taken back from the requests
//! that follow). A limit whose allowance would be below 2 is exact
//! instead: batching would save nothing.

use std::sync::{Arc, Mutex};

use moka::sync::Cache;

use super::redis::{Redis, StoreError};
use crate::ratelimit::gcra::{retry_secs, Gcra};
use crate::ratelimit::{Bucket, CheckState, LimitKey};

/// The fewest requests per `sync_interval` an approximate limit needs;
/// below, it is checked exactly.
pub const MIN_ALLOWANCE: u64 = 2;

/// Requests of `bucket` that may pass per `sync_interval_nanos` unsent,
/// or `None` when the limit is to be checked exactly.
pub fn allowance(bucket: &Bucket, sync_interval_nanos: u64) -> Option<u32> {
    let period = crate::clock::nanos(bucket.rate.period).max(1);
    let a = (u128::from(bucket.rate.count) * u128::from(sync_interval_nanos) / u128::from(period))
        .min(u128::from(u32::MAX)) as u64;
    (a >= MIN_ALLOWANCE).then_some(a as u32)
}

/// One local bucket.
pub struct Entry {
    /// Its key in Redis.
    key: String,
    gcra: Gcra,
    allowance: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// TAT on this process's clock: the shared one as last seen, plus the
    /// requests let through since.
    tat: u64,
    /// Let through here, not sent yet.
    pending: u32,
    /// Sent, not answered yet.
    in_flight: u32,
    /// Listed for the next batch.
    queued: bool,
    /// The shared state has been read at least once.
    seen: bool,
}

/// What a local bucket decided.
pub enum Local {
    /// Charged here, with the state after it.
    Passed(CheckState),
    /// Over the limit: seconds to wait, and the state.
    Refused(u64, CheckState),
}

impl Entry {
    /// Decide at `now`: `None` when the shared state must be read first
    /// (first use) or the pending requests sent (allowance used). The
    /// flag: the bucket was just queued for the batch.
    fn decide(&self, now: u64) -> Option<(Local, bool)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.seen || s.pending + s.in_flight >= self.allowance {
            return None;
        }
        Some(self.charge(&mut s, now))
    }

    fn decide_anyway(&self, now: u64) -> (Local, bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.charge(&mut s, now)
    }

    fn charge(&self, s: &mut State, now: u64) -> (Local, bool) {
        match self.gcra.decide(s.tat, now) {
            Ok(tat) => {
                s.tat = tat;
                s.pending += 1;
                let newly_queued = !s.queued;
                s.queued = true;
                (Local::Passed(self.gcra.state(tat, now)), newly_queued)
            }
            Err(wait) => (
                Local::Refused(retry_secs(wait), self.gcra.state(s.tat, now)),
                false,
            ),
        }
    }

    /// What [`Entry::decide`] would say at `now`, charging nothing.
    pub fn peek(&self, now: u64) -> Local {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.gcra.state(s.tat, now);
        match self.gcra.decide(s.tat, now) {
            Ok(_) => Local::Passed(state),
            Err(wait) => Local::Refused(retry_secs(wait), state),
        }
    }

    /// Take back a charge made by [`Entry::decide`] (a later check of the
    /// request refused it).
    pub fn give_back(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.pending > 0 {
            s.pending -= 1;
            s.tat = s.tat.saturating_sub(self.gcra.interval);
        }
    }

    /// Take the pending requests for a batch.
    fn take(&self) -> u32 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = s.pending;
        s.pending = 0;
        s.in_flight += n;
        s.queued = false;
        n
    }

    /// The answer to a batch that sent `n`: the shared bucket is `ahead`
    /// ns ahead of `now`.
    fn synced(&self, n: u32, ahead: u64, now: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(n);
        // Requests let through while the batch was away are not in it.
        let unsent = u64::from(s.pending).saturating_mul(self.gcra.interval);
        s.tat = now.saturating_add(ahead).saturating_add(unsent);
        s.seen = true;
    }

    /// A batch that sent `n` failed: they are pending again.
    fn failed(&self, n: u32) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(n);
        s.pending += n;
        let newly_queued = n > 0 && !s.queued;
        s.queued |= n > 0;
        newly_queued
    }
}

/// The local buckets of approximate limits.
pub struct Buckets {
    entries: Cache<LimitKey, Arc<Entry>, ahash::RandomState>,
    /// Buckets with pending requests, for the next batch.
    queue: Mutex<Vec<Arc<Entry>>>,
}

impl Buckets {
    pub fn new(max: u64) -> Buckets {
        Buckets {
            entries: Cache::builder()
                .max_capacity(max)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build_with_hasher(ahash::RandomState::new()),
            queue: Mutex::new(Vec::new()),
        }
    }

    /// The local bucket of `key`.
    pub fn entry(
        &self,
        key: &LimitKey,
        bucket: &Bucket,
        allowance: u32,
        redis: &Redis,
    ) -> Arc<Entry> {
        self.entries.get_with_by_ref(key, || {
            Arc::new(Entry {
                key: redis.key(key),
                gcra: Gcra::of(bucket),
                allowance,
                state: Mutex::new(State::default()),
            })
        })
    }

    fn enqueue(&self, entry: &Arc<Entry>) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry.clone());
    }

    /// Decide one request on `entry` at `now`, sending its pending
    /// requests first when it must (`Err`: Redis did not answer).
    pub async fn decide(
        &self,
        entry: &Arc<Entry>,
        redis: &Redis,
        now: impl Fn() -> u64,
    ) -> Result<Local, StoreError> {
        let decided = match entry.decide(now()) {
            Some(decided) => decided,
            None => {
                self.send(std::slice::from_ref(entry), redis, &now).await?;
                // Decided on what was just read, even when others filled
                // the allowance again meanwhile.
                entry.decide_anyway(now())
            }
        };
        if decided.1 {
            self.enqueue(entry);
        }
        Ok(decided.0)
    }

    /// Send the pending requests of `entries` in one round trip: how many
    /// were sent.
    async fn send(
        &self,
        entries: &[Arc<Entry>],
        redis: &Redis,
        now: &impl Fn() -> u64,
    ) -> Result<u64, StoreError> {
        let taken: Vec<u32> = entries.iter().map(|e| e.take()).collect();
        let batch: Vec<(&str, u64, u64)> = entries
            .iter()
            .zip(&taken)
            .map(|(e, n)| (e.key.as_str(), e.gcra.interval, u64::from(*n)))
            .collect();
        match redis.sync(&batch).await {
            Ok(ahead) => {
                let t = now();
                for ((e, n), ahead) in entries.iter().zip(&taken).zip(ahead) {
                    e.synced(*n, ahead, t);
                }
                Ok(taken.iter().map(|n| u64::from(*n)).sum())
            }
            Err(err) => {
                for (e, n) in entries.iter().zip(&taken) {
                    if e.failed(*n) {
                        self.enqueue(e);
                    }
                }
                Err(err)
            }
        }
    }

    /// Send every bucket's pending requests: the periodic batch. Returns
    /// how many requests were sent.
    pub async fn flush(&self, redis: &Redis, now: impl Fn() -> u64) -> Result<u64, StoreError> {
        let entries = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        if entries.is_empty() {
            return Ok(0);
        }
        // Bounded batches, so one round trip stays small; a failed one
        // puts its buckets and the rest back in the queue.
        let mut sent = 0;
        let mut chunks = entries.chunks(512);
        while let Some(chunk) = chunks.next() {
            match self.send(chunk, redis, &now).await {
                Ok(n) => sent += n,
                Err(err) => {
                    for e in chunks.flatten() {
                        self.enqueue(e);
                    }
                    return Err(err);
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rate;
    use std::time::Duration;

    fn bucket(count: u32, secs: u64) -> Bucket {
        Bucket {
            rate: Rate {
                count,
                period: Duration::from_secs(secs),
            },
            burst: count,
        }
    }

    #[test]
    fn low_limits_are_exact() {
        let interval = 100_000_000; // 100 ms
        assert_eq!(allowance(&bucket(1000, 1), interval), Some(100));
        assert_eq!(allowance(&bucket(20, 1), interval), Some(2));
        assert_eq!(allowance(&bucket(19, 1), interval), None);
        assert_eq!(allowance(&bucket(600, 60), interval), None);
        assert_eq!(
            allowance(&bucket(1_000_000_000, 1), 10_000_000_000),
            Some(u32::MAX)
        );
    }
}
