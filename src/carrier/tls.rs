//! The one rustls client configuration the carrier leg uses for both HTTPS and WSS: the system's
//! trust roots plus an optional extra anchor (`carrier.ca_file`), with the `ring` provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read carrier.ca_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("carrier.ca_file {path} holds no PEM certificate")]
    Empty { path: String },
    #[error("carrier.ca_file {path}: certificate rejected: {reason}")]
    Rejected { path: String, reason: String },
    #[error("no trust anchors: the system store is empty and no carrier.ca_file is set")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The crypto provider every TLS config of the process is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process default too, for libraries that ask for the default (reqwest
/// builds a plain-HTTP client's TLS stack eagerly). Installing twice is harmless.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate in a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: shown.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: shown });
    }
    Ok(certs)
}

/// Builds the client config: system roots (unreadable ones are skipped), plus the certificates
/// of `ca_file`, plus `extra_pem` (the in-process simulator's certificate).
pub fn client_config(
    ca_file: Option<&Path>,
    extra_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping an unreadable system trust root");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Rejected {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    if let Some(pem) = extra_pem {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.map_err(|source| TlsError::Read {
                path: "(simulator certificate)".into(),
                source,
            })?;
            roots.add(cert).map_err(|e| TlsError::Rejected {
                path: "(simulator certificate)".into(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
