//! TLS termination: the certificates of each TLS listener, chosen by SNI.
//!
//! A [`CertStore`] is built from a listener's certificate entries at every
//! config load (same path as routes: a bad pair fails the reload and the old
//! store keeps serving). The [`SniResolver`] given to rustls reads the
//! current store through an `ArcSwap`, so a reload changes the certificate
//! of new handshakes at once while established connections carry on.
//!
//! Selection: exact name, then the longest matching wildcard `*.example.com`
//! (one label only, as in RFC 6125), then the entry marked `default`. A
//! handshake that matches nothing and has no default is refused.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::UnixTime;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::model::{CertificateSpec, ClientAuth, ListenerTls, TlsVersion};
use crate::config::{ConfigError, ConfigErrors};

/// One loaded certificate: the key pair and what the log and metrics show.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// The names it is served for.
    pub names: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

impl LoadedCert {
    /// Whole days left when the certificate expires within `days`.
    pub fn expires_within(&self, days: i64) -> Option<i64> {
        let left = (self.not_after - unix_now()) / 86_400;
        (left < days).then_some(left)
    }
}

/// The certificates of one listener, indexed by name.
#[derive(Debug, Default)]
pub struct CertStore {
    /// Refuse clients that cannot speak TLS 1.3.
    require_tls13: bool,
    /// Verifies client certificates when the listener asks for them.
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Header that carries the verified subject upstream.
    subject_header: Option<http::HeaderName>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*`: `.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    pub certs: Vec<LoadedCert>,
}

impl CertStore {
    /// Load every entry of `tls`; every error found, each naming the entry.
    pub fn load(tls: &ListenerTls, file: &str, item: &str) -> Result<CertStore, ConfigErrors> {
        let mut store = CertStore {
            require_tls13: tls.min_version == TlsVersion::Tls13,
            ..CertStore::default()
        };
        let mut errors = Vec::new();
        if let Some(auth) = &tls.client_auth {
            match client_verifier(auth) {
                Ok(v) => {
                    store.client_verifier = Some(v);
                    store.subject_header =
                        http::HeaderName::from_bytes(auth.subject_header.as_bytes()).ok();
                }
                Err(message) => errors.push(ConfigError {
                    file: file.to_string(),
                    line: auth.ca_file.at.line,
                    column: auth.ca_file.at.column,
                    item: Some(item.to_string()),
                    message,
                }),
            }
        }
        let now = unix_now();
        for spec in &tls.certificates {
            match load_one(spec, now) {
                Ok(cert) => store.add(spec, cert),
                Err(message) => errors.push(ConfigError {
                    file: file.to_string(),
                    line: spec.at.line,
                    column: spec.at.column,
                    item: Some(item.to_string()),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(store)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn add(&mut self, spec: &CertificateSpec, cert: LoadedCert) {
        for name in &cert.names {
            let map = match name.strip_prefix('*') {
                Some(suffix) => self.wildcard.entry(suffix.to_string()),
                None => self.exact.entry(name.clone()),
            };
            // The first entry naming a host wins, in file order.
            map.or_insert_with(|| cert.key.clone());
        }
        if spec.default {
            self.default = Some(cert.key.clone());
        }
        self.certs.push(cert);
    }

    /// The certificate for `sni` (lower-case), or the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|name| {
            self.exact.get(name).or_else(|| {
                // `*.example.com` covers exactly one label in front.
                let dot = name.find('.')?;
                self.wildcard.get(&name[dot..])
            })
        });
        found.or(self.default.as_ref()).cloned()
    }
}

/// Every certificate in a PEM file, in file order.
pub(crate) fn pem_certs(path: &std::path::Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(std::io::Error::other)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A WebPKI verifier over the CA bundle of `auth`.
fn client_verifier(auth: &ClientAuth) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let path = &auth.ca_file.path;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        pem_certs(path).map_err(|e| format!("cannot read client_ca {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in client_ca {}", path.display()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("client_ca {}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| format!("client_ca {}: {e}", path.display()))
}

/// What a PEM file holds when it is not what its key says, for messages:
/// a certificate named as a key, or a key named as a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemWanted {
    Certificate,
    PrivateKey,
}

/// `": it holds a private key, not a certificate (are cert and key
/// swapped?)"` when `path` holds the other kind of PEM block; `""` otherwise.
pub fn swapped_hint(path: &std::path::Path, wanted: PemWanted) -> &'static str {
    let Ok(text) = std::fs::read(path) else {
        return "";
    };
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    match wanted {
        PemWanted::Certificate if has(b"PRIVATE KEY-----") => {
            ": it holds a private key, not a certificate (are the certificate and key files swapped?)"
        }
        PemWanted::PrivateKey if has(b"-----BEGIN CERTIFICATE-----") => {
            ": it holds a certificate, not a private key (are the certificate and key files swapped?)"
        }
        _ => "",
    }
}

fn load_one(spec: &CertificateSpec, now: i64) -> Result<LoadedCert, String> {
    let chain = pem_certs(&spec.cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", spec.cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "no certificate in {}{}",
            spec.cert.display(),
            swapped_hint(&spec.cert, PemWanted::Certificate)
        ));
    };
    let key = PrivateKeyDer::from_pem_file(&spec.key).map_err(|e| {
        format!(
            "cannot read private key {}: {e}{}",
            spec.key.display(),
            swapped_hint(&spec.key, PemWanted::PrivateKey)
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key {}: {e}", spec.key.display()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("cannot parse certificate {}: {e}", spec.cert.display()))?;
    let not_after = x509.validity().not_after.timestamp();
    if not_after < now {
        return Err(format!(
            "certificate {} expired at {}",
            spec.cert.display(),
            x509.validity().not_after
        ));
    }
    let certified = CertifiedKey::new(chain.clone(), signing);
    certified.keys_match().map_err(|_| {
        format!(
            "private key {} does not match certificate {}",
            spec.key.display(),
            spec.cert.display()
        )
    })?;
    let names = if spec.names.is_empty() {
        dns_names(&x509)
    } else {
        spec.names.clone()
    };
    if names.is_empty() && !spec.default {
        return Err(format!(
            "certificate {} has no DNS names: give `names` or mark it `default = true`",
            spec.cert.display()
        ));
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
    })
}

/// The DNS subject alternative names, lower-cased.
fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Hands rustls the certificate for each handshake from the current store.
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<ArcSwap<CertStore>>,
}

impl SniResolver {
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        Self { store }
    }
}

/// Whether the client offers a TLS 1.3 cipher suite. The listener speaks
/// 1.2 and 1.3 and rustls always picks 1.3 when the client supports it, so
/// a client offering no 1.3 suite is one that would end up on 1.2.
fn offers_tls13(hello: &ClientHello<'_>) -> bool {
    use rustls::CipherSuite::*;
    hello.cipher_suites().iter().any(|s| {
        matches!(
            s,
            TLS13_AES_128_GCM_SHA256 | TLS13_AES_256_GCM_SHA384 | TLS13_CHACHA20_POLY1305_SHA256
        )
    })
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        // Refusing the certificate aborts the handshake: min_version = "1.3".
        if store.require_tls13 && !offers_tls13(&hello) {
            return None;
        }
        match hello.server_name() {
            Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                store.lookup(Some(&name.to_ascii_lowercase()))
            }
            name => store.lookup(name),
        }
    }
}

/// The client-certificate verifier given to rustls: it asks the listener's
/// current store, so a reload can change the CA bundle or the mode.
#[derive(Debug)]
pub struct ReloadableClientVerifier {
    store: Arc<ArcSwap<CertStore>>,
    /// Schemes to advertise when no verifier is configured.
    fallback_schemes: Vec<SignatureScheme>,
}

impl ReloadableClientVerifier {
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        let fallback_schemes = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes();
        Self {
            store,
            fallback_schemes,
        }
    }

    fn current(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.store
            .load()
            .client_verifier
            .clone()
            .ok_or_else(|| rustls::Error::General("client certificates are not configured".into()))
    }
}

impl ClientCertVerifier for ReloadableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.store.load().client_verifier.is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.store
            .load()
            .client_verifier
            .as_ref()
            .is_some_and(|v| v.client_auth_mandatory())
    }

    /// No CA hints (they would borrow from a store that a reload may
    /// replace); clients then offer any certificate they hold.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self.current() {
            Ok(v) => v.supported_verify_schemes(),
            Err(_) => self.fallback_schemes.clone(),
        }
    }
}

/// Attached to every TLS connection after its handshake: the SNI the
/// client sent, and on listeners with client certificates the verified
/// subject (if a certificate was sent) and the header that carries it
/// upstream.
#[derive(Debug)]
pub struct ClientIdentity {
    pub sni: Option<Box<str>>,
    pub subject: Option<http::HeaderValue>,
    /// `None` on listeners without client certificates.
    pub header: Option<http::HeaderName>,
}

/// Records the SNI and the verified client certificate's subject after
/// each handshake.
pub struct IdentityCallback {
    store: Arc<ArcSwap<CertStore>>,
}

impl IdentityCallback {
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl pingora_core::listeners::TlsAccept for IdentityCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora_core::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let header = self.store.load().subject_header.clone();
        // rustls verified the certificate before the handshake completed.
        let subject = header.as_ref().and_then(|_| {
            let der = tls.peer_certificate_der()?;
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            http::HeaderValue::from_str(&cert.subject().to_string()).ok()
        });
        Some(Arc::new(ClientIdentity {
            sni: tls.server_name().map(Box::from),
            subject,
            header,
        }))
    }
}

/// Build the certificate store of every TLS listener of `config`, aligned
/// with `config.listeners` (`None` for plain listeners).
pub fn load_stores(config: &crate::config::Config) -> Result<Vec<Option<CertStore>>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut stores = Vec::new();
    for l in &config.listeners {
        let Some(tls) = &l.tls else {
            stores.push(None);
            continue;
        };
        let item = format!("listener \"{}\"", l.address);
        match CertStore::load(tls, &config.source, &item) {
            Ok(s) => stores.push(Some(s)),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(stores)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<CertifiedKey> {
        let pair = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        let der = PrivateKeyDer::try_from(pair.serialize_der()).unwrap();
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let (exact, wild, default) = (key(), key(), key());
        let mut store = CertStore::default();
        store.exact.insert("a.example.com".into(), exact.clone());
        store.wildcard.insert(".example.com".into(), wild.clone());
        assert!(Arc::ptr_eq(
            &store.lookup(Some("a.example.com")).unwrap(),
            &exact
        ));
        assert!(Arc::ptr_eq(
            &store.lookup(Some("b.example.com")).unwrap(),
            &wild
        ));
        // A wildcard covers one label only, and not the apex.
        assert!(store.lookup(Some("x.b.example.com")).is_none());
        assert!(store.lookup(Some("example.com")).is_none());
        assert!(store.lookup(None).is_none());
        store.default = Some(default.clone());
        assert!(Arc::ptr_eq(
            &store.lookup(Some("x.b.example.com")).unwrap(),
            &default
        ));
        assert!(Arc::ptr_eq(&store.lookup(None).unwrap(), &default));
    }
}
