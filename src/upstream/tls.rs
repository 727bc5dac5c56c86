//! TLS to a pool's backends: the CA bundle and client certificate, loaded
//! once per config load and shared by every connection of the pool.

use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::model::{FileRef, Pos, UpstreamTls};

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

/// Why a pool's TLS material could not be loaded, and where the config
/// names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFilesError {
    pub at: Pos,
    pub message: String,
}

fn read_chain(file: &FileRef, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsFilesError> {
    let path = file.display();
    let fail = |message: String| TlsFilesError {
        at: file.at,
        message,
    };
    let chain = crate::tls::pem_certs(&file.path)
        .map_err(|e| fail(format!("cannot read {what} {path}: {e}")))?;
    // Pingora parses these again and would panic on bad DER: check first.
    for c in &chain {
        x509_parser::parse_x509_certificate(c)
            .map_err(|e| fail(format!("cannot parse a certificate in {what} {path}: {e}")))?;
    }
    if chain.is_empty() {
        let hint = crate::tls::swapped_hint(&file.path, crate::tls::PemWanted::Certificate);
        return Err(fail(format!("no certificate in {what} {path}{hint}")));
    }
    Ok(chain)
}

/// Load the pool's TLS material; the error names the file and where the
/// config names it.
pub fn load(tls: &UpstreamTls) -> Result<PeerTls, TlsFilesError> {
    let ca = match &tls.ca_file {
        Some(file) => {
            let certs: Vec<WrappedX509> = read_chain(file, "ca_file")?
                .into_iter()
                .map(|c| WrappedX509::new(c.to_vec(), pingora_core::utils::tls::parse_x509))
                .collect();
            Some(Arc::from(certs.into_boxed_slice()))
        }
        None => None,
    };
    let client = match &tls.client_cert {
        Some((cert, key)) => {
            let chain = read_chain(cert, "client_cert")?;
            let key_der = PrivateKeyDer::from_pem_file(&key.path).map_err(|e| TlsFilesError {
                at: key.at,
                message: format!(
                    "cannot read client_key {}: {e}{}",
                    key.display(),
                    crate::tls::swapped_hint(&key.path, crate::tls::PemWanted::PrivateKey)
                ),
            })?;
            Some(Arc::new(CertKey::new(
                chain.iter().map(|c| c.to_vec()).collect(),
                key_der.secret_der().to_vec(),
            )))
        }
        None => None,
    };
    Ok(PeerTls {
        sni: tls.sni.clone().unwrap_or_default(),
        verify: tls.verify,
        ca,
        client,
        h2: tls.h2,
    })
}
