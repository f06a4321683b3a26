//! The policy file exactly as written: serde structs with `deny_unknown_fields` and
//! [`Spanned`] values, so that semantic checks in [`crate::validate`] can point at the text that
//! is wrong. Nothing outside this crate sees these types.

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::privacy::{RawModelPrivacy, RawPrivacy};
use crate::{ModelFormat, Provider, SandboxMode};

/// Read first, leniently, so that a file for another schema version is reported as such
/// rather than as a list of unknown fields.
#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    pub schema_version: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[allow(dead_code)] // checked through `VersionProbe`
    pub schema_version: Spanned<i64>,
    pub service: RawService,
    pub attestation: RawAttestation,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub sandbox: Option<RawSandbox>,
    #[serde(default)]
    pub privacy: Option<RawPrivacy>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub homomorphic: Option<RawHomomorphic>,
}

/// `[homomorphic]`: limits of the TFHE server-key store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHomomorphic {
    #[serde(default)]
    pub max_server_key_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_keys_per_tenant: Option<Spanned<u64>>,
    #[serde(default)]
    pub key_cache_entries: Option<Spanned<u64>>,
}

/// `[models.homomorphic]`: who may send ciphertexts to a homomorphic model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelHomomorphic {
    #[serde(default)]
    pub tenants: Option<Vec<Spanned<String>>>,
}

/// `[audit]`: rotation and retention of the audit log's segments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    #[serde(default)]
    pub segment_max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub segment_max_age_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub retain_segments: Option<Spanned<u64>>,
    #[serde(default)]
    pub retain_days: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Spanned<String>,
    pub max_request_bytes: Spanned<u64>,
    pub request_timeout_ms: Spanned<u64>,
    pub max_batch_rows: Spanned<u64>,
    pub replay_window_secs: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttestation {
    pub provider: Spanned<Provider>,
    #[serde(default)]
    pub allow_simulated: Option<Spanned<bool>>,
    #[serde(default)]
    pub expected_measurements: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub id: Spanned<String>,
    pub api_key_sha256: Spanned<String>,
    pub models: Vec<Spanned<String>>,
    pub max_requests_per_minute: Spanned<u64>,
    #[serde(default)]
    pub budget_rho: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub id: Spanned<String>,
    pub path: Spanned<String>,
    pub sha256: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub privacy: Option<Spanned<RawModelPrivacy>>,
    #[serde(default)]
    pub format: Option<Spanned<ModelFormat>>,
    #[serde(default)]
    pub homomorphic: Option<Spanned<RawModelHomomorphic>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSandbox {
    #[serde(default)]
    pub mode: Option<Spanned<SandboxMode>>,
    #[serde(default)]
    pub max_concurrent_requests: Option<Spanned<u64>>,
    #[serde(default)]
    pub worker_memory_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub enclave_memory_mb: Option<Spanned<u64>>,
}
