//! The gateway's configuration file (`gateway.toml`), written by `cloister up`.
//!
//! It holds only what an untrusted host may know: where to listen, the TLS
//! certificate, where the enclave is, limits, and the SHA-256 of each tenant's
//! outer bearer token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One tenant as the gateway knows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantToken {
    /// Tenant id (for logs and rate limits).
    pub id: String,
    /// Hex SHA-256 of the tenant's gateway token (see `cloister_protocol::auth`).
    pub token_sha256: String,
}

/// The parsed configuration. Relative paths resolve against the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub tls_cert: PathBuf,
    /// PEM private key of the leaf.
    pub tls_key: PathBuf,
    /// Unix socket the enclave listens on.
    pub enclave_socket: PathBuf,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time allowed to receive a whole request (headers and body).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Time allowed for the enclave to answer.
    #[serde(default = "default_enclave_timeout")]
    pub enclave_timeout_ms: u64,
    /// Requests forwarded to the enclave at once; more get `rate_limited`.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Known tenants.
    #[serde(default)]
    pub tenants: Vec<TenantToken>,
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_enclave_timeout() -> u64 {
    30_000
}
fn default_in_flight() -> usize {
    64
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read gateway config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid gateway config {path}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong, with line and column where toml knows them.
        message: String,
    },
}

impl GatewayConfig {
    /// Loads and validates the file.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses from text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<GatewayConfig, String> {
        let mut c: GatewayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for p in [&mut c.tls_cert, &mut c.tls_key, &mut c.enclave_socket] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if c.max_body_bytes == 0 || c.max_in_flight == 0 {
            return Err("max_body_bytes and max_in_flight must be greater than 0".into());
        }
        for t in &c.tenants {
            if t.token_sha256.len() != 64 || hex::decode(&t.token_sha256).is_err() {
                return Err(format!(
                    "tenant \"{}\": token_sha256 must be 64 hex characters",
                    t.id
                ));
            }
        }
        Ok(c)
    }

    /// Request receive timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Enclave answer timeout.
    pub fn enclave_timeout(&self) -> Duration {
        Duration::from_millis(self.enclave_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = GatewayConfig::parse(
            "listen = \"127.0.0.1:1\"\ntls_cert = \"a.pem\"\ntls_key = \"/k.pem\"\nenclave_socket = \"run/e.sock\"\n",
            Path::new("/data"),
        )
        .unwrap();
        assert_eq!(c.tls_cert, PathBuf::from("/data/a.pem"));
        assert_eq!(c.tls_key, PathBuf::from("/k.pem"));
        assert_eq!(c.max_body_bytes, 1 << 20);
    }

    #[test]
    fn rejects_typos_and_bad_tokens() {
        let e = GatewayConfig::parse("listn = \"127.0.0.1:1\"\n", Path::new("/")).unwrap_err();
        assert!(e.contains("listn"), "{e}");
        let e = GatewayConfig::parse(
            "listen = \"127.0.0.1:1\"\ntls_cert = \"a\"\ntls_key = \"b\"\nenclave_socket = \"c\"\n[[tenants]]\nid = \"t\"\ntoken_sha256 = \"zz\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("token_sha256"), "{e}");
    }
}
