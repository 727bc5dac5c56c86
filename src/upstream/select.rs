//! Backend selection. Round robin, random and ketama consistent hashing come
//! from `pingora-load-balancing`; least-requests (power of two choices over
//! in-flight counts) is ours, since Pingora has none.

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora_load_balancing::Backend as LbBackend;

use super::Backend;
use crate::config::model::Balance;

/// A pool's compiled selection algorithm.
pub enum Selector {
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Ketama(Arc<KetamaHashing>),
    /// Two weighted random candidates; the one with fewer requests in flight wins.
    LeastRequests(Arc<Random>),
}

/// The index of a backend, carried in Pingora's `Backend::ext`.
#[derive(Clone, Copy)]
struct Index(usize);

fn lb_backends(backends: &[Backend]) -> BTreeSet<LbBackend> {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut lb = LbBackend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.address),
                weight: b.weight as usize,
                ext: Default::default(),
            };
            lb.ext.insert(Index(i));
            lb
        })
        .collect()
}

fn index_of(b: &LbBackend) -> Option<usize> {
    b.ext.get::<Index>().map(|i| i.0)
}

/// Walk `iter` until a backend passes `usable`, at most `max` steps.
fn first_usable(
    iter: &mut impl BackendIter,
    max: usize,
    usable: &impl Fn(usize) -> bool,
) -> Option<usize> {
    for _ in 0..max {
        let i = index_of(iter.next()?)?;
        if usable(i) {
            return Some(i);
        }
    }
    None
}

impl Selector {
    pub fn build(balance: &Balance, backends: &[Backend]) -> Selector {
        let set = lb_backends(backends);
        match balance {
            Balance::RoundRobin => Selector::RoundRobin(Arc::new(RoundRobin::build(&set))),
            Balance::Random => Selector::Random(Arc::new(Random::build(&set))),
            Balance::ConsistentHash(_) => Selector::Ketama(Arc::new(KetamaHashing::build(&set))),
            Balance::LeastRequests => Selector::LeastRequests(Arc::new(Random::build(&set))),
        }
    }

    /// The index of the chosen backend, or `None` when no backend is usable.
    pub fn select(
        &self,
        key: &[u8],
        backends: &[Backend],
        max: usize,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let found = match self {
            Selector::RoundRobin(s) => first_usable(&mut s.iter(key), max, &usable),
            Selector::Random(s) => first_usable(&mut s.iter(key), max, &usable),
            Selector::Ketama(s) => first_usable(&mut s.iter(key), max, &usable),
            Selector::LeastRequests(s) => {
                let a = first_usable(&mut s.iter(key), max, &usable)?;
                let b = first_usable(&mut s.iter(key), max, &|i| i != a && usable(i));
                match b {
                    Some(b) if backends[b].state.inflight() < backends[a].state.inflight() => {
                        Some(b)
                    }
                    _ => Some(a),
                }
            }
        };
        // The iterators' fallbacks are pseudo-random and may miss the one
        // usable backend within `max` steps: scan before declaring none.
        found.or_else(|| (0..backends.len()).find(|&i| usable(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{BackendState, InflightGuard};
    use std::collections::HashMap;

    fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend {
                address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                weight: w,
                state: Arc::new(BackendState::default()),
            })
            .collect()
    }

    fn counts(sel: &Selector, bs: &[Backend], n: usize) -> HashMap<usize, usize> {
        let mut c = HashMap::new();
        for i in 0..n {
            let k = format!("k{i}");
            *c.entry(sel.select(k.as_bytes(), bs, 16, |_| true).unwrap())
                .or_default() += 1;
        }
        c
    }

    #[test]
    fn weighted_round_robin_is_exact_over_a_cycle() {
        let bs = backends(&[3, 1]);
        let sel = Selector::build(&Balance::RoundRobin, &bs);
        let c = counts(&sel, &bs, 400);
        assert_eq!(c[&0], 300);
        assert_eq!(c[&1], 100);
    }

    #[test]
    fn unusable_backends_are_skipped() {
        let bs = backends(&[1, 1, 1]);
        let sel = Selector::build(&Balance::RoundRobin, &bs);
        for _ in 0..50 {
            assert_eq!(sel.select(b"", &bs, 16, |i| i == 2), Some(2));
        }
        assert_eq!(sel.select(b"", &bs, 16, |_| false), None);
    }

    #[test]
    fn ketama_keeps_most_keys_when_one_backend_leaves() {
        use crate::config::model::HashKey;
        let bs = backends(&[1, 1, 1, 1]);
        let sel = Selector::build(&Balance::ConsistentHash(HashKey::Path), &bs);
        let before: Vec<_> = (0..2000)
            .map(|i| {
                sel.select(format!("user-{i}").as_bytes(), &bs, 64, |_| true)
                    .unwrap()
            })
            .collect();
        let after: Vec<_> = (0..2000)
            .map(|i| {
                sel.select(format!("user-{i}").as_bytes(), &bs, 64, |b| b != 3)
                    .unwrap()
            })
            .collect();
        // Every key not on the removed backend stays where it was.
        for (b, a) in before.iter().zip(&after) {
            if *b != 3 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn least_requests_prefers_the_idle_backend() {
        let bs = backends(&[1, 1]);
        let sel = Selector::build(&Balance::LeastRequests, &bs);
        let _busy: Vec<_> = (0..5)
            .map(|_| InflightGuard::new(bs[0].state.clone()))
            .collect();
        let c = counts(&sel, &bs, 200);
        // With two backends both candidates are always drawn, so the idle one always wins.
        assert_eq!(c.get(&1).copied().unwrap_or(0), 200);
    }
}
