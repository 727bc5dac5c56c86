//! Response caching (issue #12), in progress: the byte-bounded object
//! store over `moka` that pingora-cache will use ([`store::MokaStore`]).
//! Not wired into the proxy yet.

pub mod store;
