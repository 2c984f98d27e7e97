//! TLS termination with rustls: the listener's certificate and key from PEM files, HTTP/2 and
//! HTTP/1.1 offered by ALPN, optional client certificates (mTLS) checked against a CA, and
//! the certificate reloaded when its files change — renewals need no restart, and a broken
//! renewal (a key that does not match, a half-written file) keeps the last good pair serving.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The client side of the gateway's own fetches (JWKS documents, OTLP/HTTP exports): rustls
/// with the Mozilla roots compiled in (no system store needed in a `FROM scratch` image),
/// HTTP/1.1, and plain `http://` for what is on this host.
pub fn https_connector()
-> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String> {
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .build())
}

/// Accepts TLS connections with the configured certificate, reloading it as it changes.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = load(&provider, &config.cert_file, &config.key_file)?;
    let resolver = Arc::new(Reloading { current: RwLock::new(Arc::new(key)) });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &config.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_cert_resolver(resolver.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio::spawn(watch(resolver, provider, config.clone()));
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Whether `[tls]`'s files load (for `check`, and to refuse to start with them broken).
pub fn check(config: &TlsConfig) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    load(&provider, &config.cert_file, &config.key_file)?;
    if let Some(ca) = &config.client_ca_file {
        certificates(ca)?;
    }
    Ok(())
}

/// The certificate being served, replaced when a reload succeeds.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.clone())
    }
}

/// Checks the files every `reload_interval`; loads them when either changed. Ends when the
/// listener (the resolver's last other owner) is gone.
async fn watch(resolver: Arc<Reloading>, provider: Arc<CryptoProvider>, config: TlsConfig) {
    let mut seen = stamp(&config);
    let mut every = tokio::time::interval(config.reload_interval);
    every.tick().await;
    while Arc::strong_count(&resolver) > 1 {
        every.tick().await;
        let now = stamp(&config);
        if now == seen {
            continue;
        }
        match load(&provider, &config.cert_file, &config.key_file) {
            Ok(key) => {
                if let Ok(mut current) = resolver.current.write() {
                    *current = Arc::new(key);
                }
                seen = now;
                tracing::info!("reloaded the TLS certificate from {}", config.cert_file.display());
            }
            // Possibly half-written: tried again at the next tick, the old pair serving meanwhile.
            Err(e) => tracing::warn!("TLS certificate not reloaded, the previous one stays: {e}"),
        }
    }
}

/// When and how big the files are: a change in either means a reload.
fn stamp(config: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    [&config.cert_file, &config.key_file]
        .iter()
        .map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// A certificate chain and its private key, checked to belong together.
fn load(provider: &CryptoProvider, cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))?;
    Ok(key)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    #[test]
    fn a_certificate_loads_only_with_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let (cert_a, key_a) = pair(dir.path(), "a");
        let (_, key_b) = pair(dir.path(), "b");
        assert!(load(&provider, &cert_a, &key_a).is_ok());
        let mismatch = load(&provider, &cert_a, &key_b).unwrap_err();
        assert!(mismatch.contains("a.crt"), "{mismatch}");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "").unwrap();
        assert!(load(&provider, &empty, &key_a).unwrap_err().contains("no certificate"));
        assert!(load(&provider, &dir.path().join("missing.crt"), &key_a).is_err());
    }
}
