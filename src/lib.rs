//! portcullis: an API gateway data plane on Pingora.
//!
//! # Layout
//!
//! - [`config`]: the TOML surface (serde types) and the validated model the
//!   rest of the crate uses; errors name file, line, column and item.
//! - [`target`]: the canonical request target (one parser, before
//!   routing; everything after it reads its output).
//! - [`router`]: the route table, compiled once per config load.
//! - [`upstream`]: pools, backend selection, long-lived backend state,
//!   active health checks and TLS to backends.
//! - [`auth`]: API keys: digests, generation, the consumer index, reading
//!   and removing keys, the authentication decision.
//! - [`limits`]: usage plans: which rate limits and quotas apply to a request.
//! - [`ratelimit`]: the engine: GCRA buckets, calendar quotas, the bounded
//!   counter store behind the `LimitStore` interface, RateLimit fields.
//! - [`material`]: the TLS files a config names and digests of what they
//!   hold, and the fingerprint of everything a config was read from.
//! - [`policy`]: route policy compiled once per load, below the snapshot:
//!   header edits, path rewrites, `Via` entries, the version lifecycle.
//!   New per-route policies (CORS, IP rules, traffic splits) go here.
//! - [`snapshot`]: one config's runtime view (router, pools, route policies,
//!   consumers).
//! - [`tls`]: TLS termination: SNI certificate stores behind `ArcSwap`,
//!   client-certificate verification, `min_version`.
//! - [`reload`]: prepare (read, parse, validate, load TLS, build; no side
//!   effects), the settings a reload cannot apply (kept at their running
//!   values, reported as a pending restart), the semantic diff between two
//!   configs with its field detail, the file watcher.
//! - [`state`]: the one owner of long-lived state (backend health and
//!   in-flight counts, limit counters, probe tasks, listener certificates,
//!   metrics, the access-log writer), keyed by stable identity.
//! - [`gateway`]: the current snapshot behind one `ArcSwap`, the long-lived
//!   state, and commit.
//! - [`proxy`]: the `ProxyHttp` phases: routing, access (keys, limits),
//!   forwarding, errors as problem+json, the access-log line.
//! - [`accesslog`]: the JSON access log and its writer thread.
//! - [`drain`]: requests in flight, which a graceful shutdown waits for.
//! - [`metrics`]: the Prometheus registry served at `/metrics`.
//! - [`admin`]: the admin API (`/-/health`, `/-/pools`, `/-/routes`,
//!   `/-/certificates`, `/-/consumers`, `/metrics`, `/-/reload`), and the
//!   command line's client of it (`diff --against-running`).
//! - [`server`]: assembles the Pingora server and its services.
//! - [`demo`]: sample backends for `portcullis demo`.
//! - [`explain`]: `portcullis explain`, what the gateway would do with a request.
//! - [`notify`]: systemd notifications, a leaf taking plain values.
//! - [`cli`], [`logging`]: the thin binary layer.
//!
//! Layers point down only: config → material, policy, tls → snapshot →
//! proxy, admin, reload → gateway → server → cli. `tests/structure.rs`
//! (`python3 scripts/circles.py src`) fails on any import circle between
//! files.

pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod decide;
pub mod demo;
pub mod drain;
pub mod explain;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod guarded;
pub mod keys;
pub mod logging;
pub mod material;
pub mod metrics;
pub mod notify;
pub mod plans;
pub mod policy;
pub mod problem;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod request_id;
pub mod router;
pub mod server;
pub mod slots;
pub mod snapshot;
pub mod state;
pub mod target;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod usage;
pub mod watch;
