//! portcullis: an API gateway data plane on Pingora.
//!
//! # Layout
//!
//! Eight layers; a module may call the modules of its own layer and of the
//! layers below it, never above (`python3 scripts/circles.py src` checks
//! that no file and no top-level module imports, through any chain, one
//! that imports it back; `tests/structure.rs` runs it).
//!
//! 1. **Leaves**, which call nothing of the crate:
//!    [`clock`] (the time source: system clock, or a manual one in
//!    tests), [`target`] (the canonical request target; the one
//!    percent-decoder), [`keys`] (API-key generation and digests),
//!    [`request_id`] (request ids), [`slots`] (lock-free per-key slots),
//!    [`drain`] (requests in flight, for a graceful stop), [`notify`]
//!    (systemd notifications, taking plain values), [`jwt`] (bearer
//!    tokens: JSON Web Key Sets and signature and claims verification),
//!    [`cookie`] (one cookie read from a request's `Cookie` fields).
//! 2. **Vocabulary**: [`config`] (the TOML surface, loading with includes,
//!    validation with file:line:column errors, and the [`config::model`]
//!    the rest reads; config types of things that also exist at run time
//!    end in `Config`), [`ratelimit`] (the engine: GCRA buckets, calendar
//!    quotas, the bounded counter store behind `LimitStore`, `RateLimit`
//!    fields), [`metrics`] (the Prometheus families and their label
//!    enums), [`problem`] (the gateway's own answers as problem+json),
//!    [`usage`] (usage per consumer and route).
//! 3. **Compiled parts of a config**: [`router`] (the route table),
//!    [`policy`] (route policy compiled per load: header edits, path
//!    rewrites, `Via` entries, the version lifecycle, CORS, traffic
//!    splits), [`plans`] (usage
//!    plans: which limits apply to a call), [`auth`] (the consumer index,
//!    reading and removing keys, authentication), [`bearer`] (bearer
//!    tokens: issuers, fetched key sets, the verified-token cache, reading
//!    and removing tokens), [`redis_conn`] (what the Redis users share:
//!    the connection, the breaker, their runtime), [`limit_store`] (the shared limit store:
//!    counters in Redis, approximate buckets, `on_error`), [`material`] (the TLS
//!    files a config names, their digests, the config's fingerprint),
//!    [`tls`] (certificate stores for SNI, client-certificate
//!    verification), [`upstream`] (pools: state kept across reloads,
//!    admission, selection, breakers, outlier detection, health checks,
//!    the connection to a backend), [`cache`] (the response cache: store,
//!    key, RFC 9111 policy), [`accesslog`] (the JSON access log and its
//!    writer thread), [`logging`] (the process log), [`guarded`] (the
//!    client's stream: head and body timeouts, HTTP/2 frame limits),
//!    [`upgrade`] (the binary upgrade on `SIGUSR2`), [`client_addr`] (the
//!    client's address behind trusted proxies), [`proxy_protocol`] (the
//!    PROXY protocol header a balancer sends first), [`accept`] (what a
//!    connection meets before TLS: that header, then `[listeners.ip]`).
//! 4. **Long-lived state**: [`state`], the one owner of everything that
//!    outlives a config (backend and pool state, metric handles, usage,
//!    cache, limit counters, probes, listener certificates).
//! 5. **A config at run time**: [`snapshot`], one config compiled against
//!    the long-lived tables, swapped whole.
//! 6. **Steps on a snapshot**: [`decide`] (the request decision: head
//!    rules, redirect, route, IP rules, CORS, key, scope, limits, body
//!    size, sunset, the split's side; what
//!    the proxy does and `explain` prints. New request policy — JWT, CORS,
//!    IP rules, traffic splits — is decided here, compiled in [`policy`]),
//!    [`reload`] (prepare without side effects, commit, pending restarts,
//!    the semantic diff).
//! 7. **The gateway**: [`gateway`], the current snapshot behind one
//!    `ArcSwap`, the long-lived state, and the one reload path.
//! 8. **Around the gateway**: [`proxy`] (the `ProxyHttp` phases, each a
//!    hand-off), [`admin`] (the admin API and the command line's client
//!    of it), [`connections`] (connections counted per listener),
//!    [`watch`] (the config-file watcher), [`explain`] (`portcullis
//!    explain`), then [`server`] (the Pingora server and its services,
//!    stoppable in-process), [`demo`] (the demo's sample backends),
//!    [`fuzzing`] (the fuzz targets' properties) and [`cli`] (the binary).

pub mod accept;
pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod bearer;
pub mod cache;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod connections;
pub mod cookie;
pub mod decide;
pub mod demo;
pub mod drain;
pub mod explain;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod guarded;
pub mod jwt;
pub mod keys;
pub mod limit_store;
pub mod logging;
pub mod material;
pub mod metrics;
pub mod notify;
pub mod plans;
pub mod policy;
pub mod problem;
pub mod proxy;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod redis_conn;
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
