//! Upstream pools: backends, their long-lived state, and backend selection.
//!
//! - `state`: the [`StateTable`] of backend and pool states;
//! - `pool`: a built [`Pool`]: admission, selection, attempt outcomes;
//! - `build`: [`build_pools`], a config's pools against the table;
//! - [`peer`]: the connection to a chosen backend ([`peer::http_peer`]);
//! - [`breaker`], [`budget`], [`outlier`], [`health`], [`tls`]: the
//!   policies a pool applies, and TLS to backends.
//!
//! A [`Pool`] is rebuilt on every config load, but the [`BackendState`] of
//! each backend (health, in-flight count, last error, metric handles) and
//! the [`PoolState`] of each pool live in the [`StateTable`], keyed by pool
//! name and backend address, so they survive reloads that keep them.

pub mod breaker;
pub mod budget;
mod build;
mod grpc_health;
pub mod health;
pub mod outlier;
pub mod peer;
mod pool;
mod select;
mod state;
pub mod tls;
mod window;

pub use build::build_pools;
pub use pool::{AttemptOutcome, Backend, Pool, PoolRefusal, PoolTicket};
pub use select::Selector;
pub use state::{BackendState, InflightGuard, LastError, PoolState, StateTable};
