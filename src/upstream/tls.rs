//! TLS to a pool's backends: the CA bundle and client certificate, loaded
//! once per config load and shared by every connection of the pool.

use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::warn;

use crate::config::model::UpstreamTls;

/// What every connection to the pool's backends needs, ready to clone.
#[derive(Clone)]
pub struct PeerTls {
    pub sni: String,
    pub verify: bool,
    pub ca: Option<Arc<CaType>>,
    pub client: Option<Arc<CertKey>>,
    pub h2: bool,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("h2", &self.h2)
            .finish()
    }
}

fn read_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = crate::tls::pem_certs(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    // Pingora parses these again and would panic on bad DER: check first.
    for c in &chain {
        x509_parser::parse_x509_certificate(c)
            .map_err(|e| format!("cannot parse a certificate in {}: {e}", path.display()))?;
    }
    if chain.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(chain)
}

/// Load the pool's TLS material; the error names the file.
pub fn load(pool: &str, tls: &UpstreamTls) -> Result<PeerTls, String> {
    let ca = match &tls.ca_file {
        Some(path) => {
            let certs: Vec<WrappedX509> = read_chain(path)?
                .into_iter()
                .map(|c| WrappedX509::new(c.to_vec(), pingora_core::utils::tls::parse_x509))
                .collect();
            Some(Arc::from(certs.into_boxed_slice()))
        }
        None => None,
    };
    let client = match &tls.client_cert {
        Some((cert, key)) => {
            let chain = read_chain(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
            Some(Arc::new(CertKey::new(
                chain.iter().map(|c| c.to_vec()).collect(),
                key_der.secret_der().to_vec(),
            )))
        }
        None => None,
    };
    if !tls.verify {
        warn!(
            pool,
            "TLS certificate verification to this pool's backends is OFF (verify = false)"
        );
    }
    Ok(PeerTls {
        sni: tls.sni.clone().unwrap_or_default(),
        verify: tls.verify,
        ca,
        client,
        h2: tls.h2,
    })
}
