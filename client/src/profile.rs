//! The client profile: everything a client needs to reach and trust one
//! Cloister deployment. `cloister up` writes `DATA_DIR/client.toml`; the other
//! commands read it with `--profile`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The profile file's contents. Relative paths resolve against its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Base URL of the gateway, e.g. `https://127.0.0.1:8443`.
    pub gateway_url: String,
    /// PEM file of the CA that issued the gateway's TLS certificate.
    pub ca_cert: PathBuf,
    /// PEM file of the pinned attestation root (the AMD ARK; the SIMULATED ARK for `cloister up`).
    pub trust_root: PathBuf,
    /// Accept evidence from the SIMULATED provider. Never set this for production.
    #[serde(default)]
    pub allow_simulated: bool,
    /// Refuse enclaves whose attested sandbox status is not `enforce`.
    #[serde(default)]
    pub require_sandbox: bool,
    /// Refuse enclaves whose guest policy allows SMT.
    #[serde(default)]
    pub forbid_smt: bool,
    /// Allowed launch measurements, hex SHA-384.
    pub expected_measurements: Vec<String>,
    /// Tenant id (informational).
    pub tenant: String,
    /// The tenant's API key. Sent only inside the seal; the gateway sees a derived token.
    pub api_key: String,
}

impl Profile {
    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read client profile {}; run `cloister up` to create one, or pass --profile",
                path.display()
            )
        })?;
        let mut p: Profile = toml::from_str(&text)
            .with_context(|| format!("invalid client profile {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in [&mut p.ca_cert, &mut p.trust_root] {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if !p.gateway_url.starts_with("https://") {
            bail!(
                "client profile {}: gateway_url must start with https://",
                path.display()
            );
        }
        Ok(p)
    }

    /// Writes the profile with owner-only permissions (it holds the API key).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# Cloister client profile, written by `cloister up`.\n\
             # It holds the tenant's API key: keep it private.\n{}",
            toml::to_string_pretty(self)?
        );
        crate::datadir::write_private(path, text.as_bytes())
    }

    /// The allowed measurements as bytes.
    pub fn measurements(&self) -> Result<Vec<[u8; 48]>> {
        self.expected_measurements
            .iter()
            .map(|m| {
                let mut out = [0u8; 48];
                hex::decode_to_slice(m, &mut out).with_context(|| {
                    format!("expected measurement {m} is not 96 hexadecimal characters")
                })?;
                Ok(out)
            })
            .collect()
    }
}
