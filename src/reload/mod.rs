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
//! 2. **Commit** ([`crate::gateway::Gateway`]) hands the long-lived state
//!    to the new snapshot, swaps it in, then the certificates, restarts the
//!    health probes of changed pools and reopens the access log.
//!
//! What changed between two prepared configs is a [`diff::ConfigDiff`]:
//! semantic (moving a line changes nothing), and it tells what needs a
//! restart.

pub mod diff;
pub mod fields;
pub mod restart;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, ConfigErrors};
use crate::snapshot::Snapshot;
use crate::state::Handles;
use crate::tls::CertStore;

/// SHA-256 of the content of every TLS file a config names (certificates,
/// keys, CA bundles), by path: two configs that name the same files can
/// still differ in what the files hold. A file that cannot be read has no
/// entry (prepare has already failed on it).
pub type Material = BTreeMap<PathBuf, [u8; 32]>;

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

/// Read, parse and validate the config at `path` and everything it
/// includes, load its TLS material and build its snapshot with the live
/// backend states, metric handles and usage cells of `tables` (it changes
/// none of them). Every error found, in file order.
///
/// `running` is the config that runs, when there is one (a reload): the
/// settings read at start-up only keep its values (see [`restart`]).
pub fn prepare(
    path: &Path,
    tables: Handles<'_>,
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
    let material = material(&config);
    let snapshot = match Snapshot::build(config, tables) {
        Ok(mut s) => {
            s.fingerprint = fingerprint(&s.config, &material);
            s.material = material;
            Some(s)
        }
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

/// Every TLS file `config` names: listener certificates, keys and client
/// CAs; pool CA bundles, client certificates and keys.
pub fn tls_files(config: &config::Config) -> Vec<&Path> {
    let listeners = config.listeners.iter().filter_map(|l| l.tls.as_ref());
    listeners
        .flat_map(listener_files)
        .chain(config.pools.values().flat_map(pool_files))
        .collect()
}

/// The TLS files of one listener: certificates, keys, client CA.
pub(crate) fn listener_files(tls: &config::model::ListenerTls) -> Vec<&Path> {
    let mut files: Vec<&Path> = tls
        .certificates
        .iter()
        .flat_map(|c| [c.cert.as_path(), c.key.as_path()])
        .collect();
    if let Some(auth) = &tls.client_auth {
        files.push(&auth.ca_file.path);
    }
    files
}

/// The TLS files of one pool: CA bundle, client certificate and key.
pub(crate) fn pool_files(pool: &config::model::Pool) -> Vec<&Path> {
    let Some(tls) = &pool.tls else {
        return Vec::new();
    };
    let mut files = Vec::new();
    if let Some(ca) = &tls.ca_file {
        files.push(ca.path.as_path());
    }
    if let Some((cert, key)) = &tls.client_cert {
        files.push(cert.path.as_path());
        files.push(key.path.as_path());
    }
    files
}

/// A hash of the files a config was read from: the main file and the
/// consumer files (their digest, taken when they were read) and the TLS
/// files (by their digests).
fn fingerprint(config: &config::Config, material: &Material) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&config.source_digest.0);
    for (file, digest) in material {
        ctx.update(file.to_string_lossy().as_bytes());
        ctx.update(digest);
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

fn material(config: &config::Config) -> Material {
    tls_files(config)
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            Some((path.to_path_buf(), out))
        })
        .collect()
}
