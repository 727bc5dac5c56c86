//! Building a config's pools against the long-lived state, and handing
//! the state to them when their snapshot commits.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::config::model;

use super::{tls, Backend, Pool, Selector, StateTable};

/// Build every pool of `config`, with the live state of every backend
/// `table` knows (see [`StateTable`]: this does not change the table).
/// Fails with the pool's name and the reason when its TLS files cannot be
/// loaded.
pub fn build_pools(
    config: &model::Config,
    table: &StateTable,
    now: u64,
) -> Result<HashMap<String, Arc<Pool>>, (String, tls::TlsFilesError)> {
    let pools: HashMap<String, Arc<Pool>> = config
        .pools
        .values()
        .map(|p| {
            let tls = match &p.tls {
                Some(t) => Some(tls::load(t).map_err(|e| (p.name.clone(), e))?),
                None => None,
            };
            let backends: Vec<Backend> = p
                .backends
                .iter()
                .map(|b| Backend {
                    address: b.address,
                    weight: b.weight,
                    state: table.state_for(&p.name, b.address),
                })
                .collect();
            let selector = Selector::build(&p.balance, &backends);
            let pool = Pool {
                config: p.clone(),
                backends,
                state: table.pool_state(p, now),
                tls,
                selector,
                fallback: OnceLock::new(),
            };
            Ok((p.name.clone(), Arc::new(pool)))
        })
        .collect::<Result<_, _>>()?;
    for pool in pools.values() {
        if let Some(next) = pool.config.fallback.as_ref().and_then(|f| pools.get(f)) {
            let _ = pool.fallback.set(next.clone());
        }
    }
    Ok(pools)
}

impl StateTable {
    /// Make the pools and backends of `pools` the table's contents: their
    /// states are kept and their series exported (at zero until something
    /// happens); the states of pools and backends that left the config are
    /// dropped and their series stop being exported.
    pub fn adopt<'a>(&self, pools: impl IntoIterator<Item = &'a Arc<Pool>> + Clone) {
        for p in pools.clone() {
            let config = &p.config;
            p.state
                .metrics
                .zero(config.fallback.as_deref(), p.state.budget.is_some());
            if let Some(b) = &p.state.breaker {
                p.state.metrics.breaker_state(b.state());
            }
            for b in &p.backends {
                b.state.metrics.zero(config.outlier.is_some());
            }
        }
        let kept: HashMap<_, _> = pools
            .clone()
            .into_iter()
            .flat_map(|p| {
                p.backends
                    .iter()
                    .map(|b| ((p.config.name.clone(), b.address), b.state.clone()))
            })
            .collect();
        let kept_pools: HashMap<_, _> = pools
            .into_iter()
            .map(|p| (p.config.name.clone(), p.state.clone()))
            .collect();
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        for (key, gone) in states.iter() {
            if !kept.contains_key(key) {
                gone.metrics.remove_series();
            }
        }
        *states = kept;
        drop(states);
        let mut table = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for (name, gone) in table.iter() {
            match kept_pools.get(name) {
                None => gone.metrics.remove_series(),
                // Rebuilt with other settings: the new state's breaker
                // series replace the old ones.
                Some(new) if !Arc::ptr_eq(new, gone) => {
                    gone.metrics.remove_breaker_series();
                    if let Some(b) = &new.breaker {
                        new.metrics.breaker_state(b.state());
                    }
                }
                Some(_) => {}
            }
        }
        *table = kept_pools;
    }
}
