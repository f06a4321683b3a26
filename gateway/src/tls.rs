//! TLS 1.3-only server configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a rustls server config that speaks TLS 1.3 only and offers HTTP/1.1.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = {
        let mut r = std::io::BufReader::new(
            std::fs::File::open(cert_path)
                .with_context(|| format!("open TLS certificate {}", cert_path.display()))?,
        );
        rustls_pemfile::certs(&mut r)
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("parse TLS certificate {}", cert_path.display()))?
    };
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert_path.display());
    }
    let key: PrivateKeyDer<'static> = {
        let mut r = std::io::BufReader::new(
            std::fs::File::open(key_path)
                .with_context(|| format!("open TLS key {}", key_path.display()))?,
        );
        rustls_pemfile::private_key(&mut r)
            .with_context(|| format!("parse TLS key {}", key_path.display()))?
            .with_context(|| format!("no private key in {}", key_path.display()))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is unavailable in the crypto provider")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
