//! The simulator's TLS material: a self-signed certificate for `localhost` and 127.0.0.1
//! generated with rcgen (or the configured PEM files), the rustls server configuration built
//! on the ring provider, and a client configuration that trusts exactly that certificate (for
//! tests and the in-process demo).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

use super::config::SimConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct TlsMaterial {
    /// The certificate (chain) served, PEM.
    pub cert_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The configured certificate and key, or a fresh self-signed pair.
pub fn load_or_generate(cfg: &SimConfig) -> Result<TlsMaterial, TlsError> {
    let (cert_pem, certs, key) = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => {
            let cert_pem = std::fs::read_to_string(c).map_err(|source| TlsError::Read {
                path: c.display().to_string(),
                source,
            })?;
            let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Pem {
                    path: c.display().to_string(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::Pem {
                    path: c.display().to_string(),
                    message: "no certificate in the file".into(),
                });
            }
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| TlsError::Pem {
                path: k.display().to_string(),
                message: e.to_string(),
            })?;
            (cert_pem, certs, key)
        }
        _ => {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            (ck.cert.pem(), vec![ck.cert.der().clone()], key)
        }
    };
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        cert_pem,
        server_config: Arc::new(server),
    })
}

/// A rustls client configuration (ring) whose only trust anchors are the certificates in
/// `cert_pem`: what a test or the demo gives reqwest and tokio-tungstenite.
#[cfg(test)]
pub fn client_config(cert_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem {
            path: "<cert_pem>".into(),
            message: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
