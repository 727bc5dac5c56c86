//! Reload in two steps, the same for every trigger (start-up, `SIGHUP`,
//! `POST /-/reload`, the file watcher) and for `portcullis check` and
//! `portcullis diff`.
//!
//! 1. **Prepare** ([`prepare`]) has no side effects: it reads the main file
//!    and every file it includes (consumer files, certificates, keys, CA
//!    bundles), parses, validates, loads the TLS material and builds the
//!    [`Snapshot`]. It only *reads* the long-lived state (to give unchanged
//!    backends their live health and in-flight counts). Any failure is a
//!    list of [`ConfigErrors`], each naming file, line, column and item.
//! 2. **Commit** ([`commit::adopt`]) hands the long-lived state to the new
//!    snapshot; [`crate::gateway::Gateway`] then swaps it in, then the
//!    certificates, restarts the health probes of changed pools and
//!    reopens the access log. Start-up commits its first snapshot the same
//!    way.
//!
//! What changed between two prepared configs is a [`diff::ConfigDiff`]:
//! semantic (moving a line changes nothing), and it tells what needs a
//! restart.

pub mod commit;
pub mod diff;
pub mod fields;
pub mod restart;

use std::path::Path;

use crate::config::{self, ConfigError, ConfigErrors};
use crate::snapshot::Snapshot;
use crate::state::Tables;
use crate::tls::CertStore;

/// A config ready to commit.
pub struct Prepared {
    pub snapshot: Snapshot,
    /// Certificates of each listener of the config, aligned with
    /// `snapshot.config.listeners` (`None`: plain HTTP).
    pub certs: Vec<Option<CertStore>>,
    /// Start-up-only settings where the file differs from what runs (see
    /// [`restart`]); the snapshot carries the running values.
    pub restart_required: Vec<&'static str>,
}

/// How to ask for a reload that [`not_emptied`] refuses.
pub const FORCE_HINT: &str =
    "if that is meant, reload with POST /-/reload?force=true on the admin API";

/// Refuse a reload that would quietly drop protection or service: a file
/// cut short mid-write is often still valid TOML (the `[server]` and
/// `[[listeners]]` tables come first, `[[consumers]]` last), and applying
/// it would answer 404 to everything, or 401 to every key holder. Refused
/// unless `force`d: no route left while routes serve; no consumer left
/// while consumers serve and key routes remain.
pub fn not_emptied(
    serving: &Snapshot,
    prepared: Prepared,
    force: bool,
) -> Result<Prepared, ConfigErrors> {
    if force {
        return Ok(prepared);
    }
    let (old, new) = (&serving.config, &prepared.snapshot.config);
    let refuse = |what: String| -> Result<Prepared, ConfigErrors> {
        Err(ConfigError::whole_file(
            &new.source,
            format!("{what}: refused (a truncated or half-written file?); {FORCE_HINT}"),
        )
        .into())
    };
    if new.routes.is_empty() && !old.routes.is_empty() {
        return refuse(format!(
            "the new config has no routes while {} are serving",
            old.routes.len()
        ));
    }
    let key_routes = new
        .routes
        .iter()
        .filter(|r| r.auth != config::model::RouteAuth::None)
        .count();
    if new.consumers.is_empty() && !old.consumers.is_empty() && key_routes > 0 {
        return refuse(format!(
            "the new config has no consumers while {} are serving and {key_routes} route(s) need an API key (every key holder would get 401)",
            old.consumers.len()
        ));
    }
    Ok(prepared)
}

/// [`prepare`] against empty tables registered nowhere, for a config that
/// will not run in this process: `check`, `diff`, `explain`.
pub fn prepare_detached(path: &Path) -> Result<Prepared, ConfigErrors> {
    prepare(path, &Tables::detached(), None)
}

/// Read, parse and validate the config at `path` and everything it
/// includes, load its TLS material and build its snapshot with the live
/// backend states, metric handles and usage cells of `tables` (it changes
/// none of them). Every error found, in file order.
///
/// `running` is the config that runs, when there is one (a reload): the
/// settings read at start-up only keep its values (see [`restart`]).
pub fn prepare(
    path: &Path,
    tables: &Tables,
    running: Option<&config::Config>,
) -> Result<Prepared, ConfigErrors> {
    let started = std::time::Instant::now();
    let mut config = config::load(path)?;
    let loaded = started.elapsed();
    let mut errors: Vec<ConfigError> = Vec::new();
    // The file's TLS material is loaded as written, listeners a restart
    // would bind included: what a restart would refuse, a reload refuses.
    let mut certs = match crate::tls::load_stores(&config) {
        Ok(certs) => certs,
        Err(e) => {
            errors.extend(e.0);
            Vec::new()
        }
    };
    let restart_required = match running {
        Some(running) => {
            let pending = restart::pending(running, &config);
            restart::keep_running(running, &mut config);
            if pending.contains(&"listeners") && errors.is_empty() {
                // The listeners that run, with the certificates they serve.
                match crate::tls::load_stores(&config) {
                    Ok(running_certs) => certs = running_certs,
                    Err(e) => errors.extend(e.0),
                }
            }
            pending
        }
        None => Vec::new(),
    };
    let material = crate::material::read(&config);
    let snapshot = match Snapshot::build(config, material, tables) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.extend(e.0);
            None
        }
    };
    tracing::debug!(
        load_ms = loaded.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "prepared"
    );
    match snapshot {
        Some(snapshot) if errors.is_empty() => Ok(Prepared {
            snapshot,
            certs,
            restart_required,
        }),
        _ => {
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(ConfigErrors(errors))
        }
    }
}
