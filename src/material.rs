//! The TLS files a config names (listener certificates, keys and client
//! CAs; pool CA bundles, client certificates and keys) and its issuers'
//! key-set files (`jwks_file`), and a digest of what each holds, so that two configs naming the same files can still be
//! told apart; and the fingerprint of everything a config was read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::model::{self, Config};

/// SHA-256 of the content of every TLS file a config names (certificates,
/// keys, CA bundles), by path: two configs that name the same files can
/// still differ in what the files hold. A file that cannot be read has no
/// entry (prepare has already failed on it).
pub type Material = BTreeMap<PathBuf, [u8; 32]>;

/// Every TLS file `config` names: listener certificates, keys and client
/// CAs; pool CA bundles, client certificates and keys.
pub fn tls_files(config: &Config) -> Vec<&Path> {
    let listeners = config.listeners.iter().filter_map(|l| l.tls.as_ref());
    listeners
        .flat_map(listener_files)
        .chain(config.pools.values().flat_map(pool_files))
        .collect()
}

/// Every file a config names besides the files it is read from: its TLS
/// files and its issuers' `jwks_file`s. Their digests are the config's
/// material; the file watcher watches them.
pub fn files(config: &Config) -> Vec<&Path> {
    let jwks = config.jwt_issuers.iter().filter_map(|i| match &i.keys {
        model::JwksSource::File(f) => Some(f.path.as_path()),
        _ => None,
    });
    tls_files(config).into_iter().chain(jwks).collect()
}

/// The TLS files of one listener: certificates, keys, client CA.
pub fn listener_files(tls: &model::ListenerTls) -> Vec<&Path> {
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
pub fn pool_files(pool: &model::PoolConfig) -> Vec<&Path> {
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
pub fn fingerprint(config: &Config, material: &Material) -> u64 {
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

pub fn read(config: &Config) -> Material {
    files(config)
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
