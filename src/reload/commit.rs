//! Commit, the second step of a reload: hand the long-lived state to a
//! prepared snapshot. The first snapshot at start-up goes through the same
//! step; swapping the snapshot in is the caller's
//! ([`crate::gateway::Gateway`]).

use std::collections::HashSet;
use std::sync::Arc;

use tracing::warn;

use crate::config::model::{Config, KeySource};
use crate::metrics::{Metrics, RouteMetrics};
use crate::snapshot::Snapshot;
use crate::state::LongLived;

/// Make `state` serve `snapshot`: the backend table takes its backends
/// (keeping the state of unchanged ones), the metric, usage and cache
/// tables their routes and consumers (series of what left are dropped,
/// series of what came are exported at zero), the process log its key
/// parameters to redact, the bearer table its fetched key sets (their
/// refreshers start). Warns about what `check` warns about, about key
/// sets that could not be fetched, and about each pool `new_pool`
/// selects that does not verify its backends.
pub fn adopt(state: &LongLived, snapshot: &Snapshot, new_pool: impl Fn(&str) -> bool) {
    warn_unverified(snapshot, new_pool);
    state.tables.backends.adopt(snapshot.pools.values());
    state.tables.route_metrics.adopt(route_methods(snapshot));
    adopt_usage(state, snapshot);
    zero_route_refusals(&state.metrics, snapshot);
    state
        .tables
        .cache
        .adopt(snapshot.routes.iter().filter_map(|r| r.cache.as_ref()));
    state.tables.bearer.adopt(&snapshot.issuers);
    for failure in &snapshot.issuers.fetch_failures {
        warn!(warning = %failure, "jwt issuer");
    }
    redact_key_params(&snapshot.config);
    warn_config(&snapshot.config);
}

/// Warn about each pool of `snapshot` that `which` selects and whose
/// backends' certificates are not verified (`verify = false`).
fn warn_unverified(snapshot: &Snapshot, which: impl Fn(&str) -> bool) {
    for (name, pool) in &snapshot.pools {
        if which(name) && pool.tls.as_ref().is_some_and(|t| !t.verify) {
            warn!(pool = %name, "TLS certificate verification to this pool's backends is OFF (verify = false)");
        }
    }
}

/// Each route's metric handles with the methods it answers.
fn route_methods(snapshot: &Snapshot) -> impl Iterator<Item = (&Arc<RouteMetrics>, &[String])> {
    snapshot
        .routes
        .iter()
        .zip(&snapshot.config.routes)
        .map(|(r, c)| (&r.metrics, c.methods.as_slice()))
}

/// Export the refusal counters of every route of `snapshot` at zero (and
/// drop those of routes that left).
fn zero_route_refusals(metrics: &Metrics, snapshot: &Snapshot) {
    let config = &snapshot.config;
    let damping = config.auth.failed_attempts.is_some();
    metrics.route_refusals(config.routes.iter().map(|r| {
        let auth: Vec<&'static str> = match (r.auth.api_key(), r.auth.jwt()) {
            (None, None) => Vec::new(),
            (Some(_), None) => crate::auth::Rejection::REASONS.to_vec(),
            (None, Some(_)) => crate::bearer::Failure::REASONS.to_vec(),
            (Some(_), Some(_)) => crate::auth::Rejection::REASONS
                .iter()
                .chain(&crate::bearer::Failure::REASONS)
                .copied()
                .collect(),
        };
        (
            r.id.as_str(),
            auth,
            crate::plans::refusal_labels(r, &config.consumers, &config.jwt_issuers, damping),
        )
    }));
}

/// The usage table keeps the consumers and routes of `snapshot`.
fn adopt_usage(state: &LongLived, snapshot: &Snapshot) {
    let routes: HashSet<&str> = snapshot.routes.iter().map(|r| r.id.as_str()).collect();
    state.tables.usage.adopt(
        snapshot
            .consumers
            .consumers
            .iter()
            .map(|c| (&c.id, c.usage.usage())),
        &routes,
    );
}

/// The process log redacts the query parameters `config`'s routes read
/// API keys from (see `logging.rs`).
fn redact_key_params(config: &Config) {
    let mut names: Vec<String> = config
        .routes
        .iter()
        .filter_map(|r| match r.auth.api_key() {
            Some(KeySource::Query(name)) => Some(name.clone()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    crate::logging::redact_query_params(names);
}

/// Log what `check` warns about (valid, probably not meant).
fn warn_config(config: &Config) {
    for w in crate::config::warnings::warnings(config) {
        warn!(warning = %w, "config warning");
    }
}
