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

/// The process-wide crypto provider; installing twice is harmless.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

/// Builds the client config: system roots (unreadable ones are skipped) plus `extra`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
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
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
