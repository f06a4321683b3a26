//! cloister-policy: the policy file that configures the enclave — which tenants exist, which
//! models each may use, what attestation provider backs the service, and the service's limits.
//!
//! The policy is security-relevant (its SHA-256 is bound into the attestation evidence), and it
//! is written by hand, so this crate parses it strictly and explains every problem precisely:
//! unknown keys are errors, every semantic rule is checked, and every [`PolicyError`] points at
//! a file, line and column with a hint for the fix. Validation is pure (no IO);
//! [`Policy::load`] is the only function that touches the file system.
//!
//! Schema version 1, by example (see `policies/examples/`):
//!
//! ```toml
//! schema_version = 1
//! [service]
//! name = "cloister-dev"
//! max_request_bytes = 1048576
//! request_timeout_ms = 10000
//! max_batch_rows = 1024
//! replay_window_secs = 300
//! [attestation]
//! provider = "sim"          # "sim" | "snp"; "sim" needs allow_simulated = true
//! allow_simulated = true
//! # expected_measurements = ["<96 hex: SHA-384 launch measurement>"]
//! [[tenants]]
//! id = "dev"
//! api_key_sha256 = "<64 hex>"
//! models = ["digits"]
//! max_requests_per_minute = 600
//! [[models]]
//! id = "digits"
//! path = "models/digits.onnx"   # relative to the policy file's directory
//! sha256 = "<64 hex>"
//! description = "optional"
//! [sandbox]                     # optional
//! mode = "enforce"              # "enforce" (default) | "best-effort"
//! max_concurrent_requests = 16  # models running at once (default 16)
//! worker_memory_mb = 4096       # RLIMIT_AS of each engine worker (default 4096)
//! # enclave_memory_mb = 8192    # RLIMIT_AS of the enclave process (default: none)
//! [audit]                       # optional: audit log rotation and retention
//! segment_max_bytes = 67108864  # new segment before one exceeds this (default 64 MiB)
//! # segment_max_age_secs = 86400  # new segment once its first record is this old
//! # retain_segments = 30        # keep at most this many segments (default: all)
//! # retain_days = 365           # delete segments whose newest record is older
//! [homomorphic]                 # optional: the TFHE server-key store (docs/privacy.md)
//! max_server_key_bytes = 67108864  # largest compressed server key a tenant may upload
//! max_keys_per_tenant = 4       # keys stored per tenant
//! key_cache_entries = 2         # decompressed keys kept in memory
//! ```
//!
//! A homomorphic model is an integer program evaluated on TFHE ciphertexts only:
//!
//! ```toml
//! [[models]]
//! id = "breast-cancer-lr"
//! path = "models/breast-cancer-lr.program.json"
//! sha256 = "<64 hex>"
//! format = "he-program"         # "onnx" (default) | "he-program"
//! [models.homomorphic]          # optional
//! tenants = ["dev"]             # who may send ciphertexts (default: every tenant allowed it)
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod default;
mod error;
pub mod privacy;
mod raw;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use default::{
    default_policy_toml, with_minilm, BREAST_CANCER_LR_SHA256, DIABETES_ENSEMBLE_SHA256,
    MINILM_MODEL_ID,
};
pub use error::{render_errors, Location, PolicyError};
pub use privacy::{ModelPrivacy, NanoRho, PrivacySettings};

/// The only schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A validated policy. Only [`Policy::from_toml_str`] and friends construct one, so holding a
/// `Policy` means every rule in the crate docs holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Service-wide limits.
    pub service: Service,
    /// How the enclave proves what it is.
    pub attestation: Attestation,
    /// Who may call, in file order; ids and API key hashes are unique.
    pub tenants: Vec<Tenant>,
    /// What can be served, in file order; ids are unique.
    pub models: Vec<ModelEntry>,
    /// How strictly the enclave process is confined (`[sandbox]`, optional).
    pub sandbox: Sandbox,
    /// Differential-privacy settings (`[privacy]`, optional).
    pub privacy: PrivacySettings,
    /// Audit log rotation and retention (`[audit]`, optional).
    pub audit: AuditSettings,
    /// The TFHE server-key store (`[homomorphic]`, optional).
    pub homomorphic: HomomorphicSettings,
    /// The directory relative model paths resolve against: the policy file's directory for
    /// [`Policy::load`], empty (the current directory) for [`Policy::from_toml_str`].
    pub base_dir: PathBuf,
    /// SHA-256 of the policy file's bytes (for `from_toml_str`, of the string's UTF-8 bytes).
    pub digest: [u8; 32],
    /// The file name used in messages.
    pub origin: String,
}

/// `[service]`: limits that apply to every request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// A name for logs and metrics.
    pub name: String,
    /// Largest sealed request body accepted, in bytes (> 0).
    pub max_request_bytes: u64,
    /// Per-request time limit in milliseconds (> 0).
    pub request_timeout_ms: u64,
    /// Largest first dimension accepted per input tensor (> 0).
    pub max_batch_rows: u64,
    /// Requests timestamped further than this from the enclave's clock are refused (> 0).
    pub replay_window_secs: u64,
}

impl Service {
    /// [`Service::request_timeout_ms`] as a `Duration`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`Service::replay_window_secs`] as a `Duration`.
    pub fn replay_window(&self) -> Duration {
        Duration::from_secs(self.replay_window_secs)
    }
}

/// Which attestation provider backs the enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Simulated attestation for development: no hardware protection. Selecting it requires
    /// `allow_simulated = true`.
    Sim,
    /// AMD SEV-SNP.
    Snp,
}

impl Provider {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sim => "sim",
            Provider::Snp => "snp",
        }
    }
}

/// `[attestation]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attestation {
    /// The provider.
    pub provider: Provider,
    /// Whether the simulated provider is permitted (must be true when `provider` is `Sim`).
    pub allow_simulated: bool,
    /// SHA-384 launch measurements clients should accept (informational for clients; may be
    /// empty).
    pub expected_measurements: Vec<[u8; 48]>,
}

/// `[audit]`: when the audit log starts a new segment and which old segments it deletes.
/// Deletion never breaks verification: each segment starts with a signed anchor and each
/// deletion is announced by a signed statement (see `docs/audit.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditSettings {
    /// Start a new segment before one would exceed this many bytes (default 64 MiB).
    pub segment_max_bytes: u64,
    /// Start a new segment once its first record is this old, in seconds (`None`: never).
    pub segment_max_age_secs: Option<u64>,
    /// Keep at most this many segments, the current one included (`None`: keep all).
    pub retain_segments: Option<u64>,
    /// Delete segments whose newest record is this many days old (`None`: keep all).
    pub retain_days: Option<u64>,
}

impl AuditSettings {
    /// Default of [`AuditSettings::segment_max_bytes`].
    pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;
    /// Allowed range of [`AuditSettings::segment_max_bytes`] (4 KiB to 1 TiB).
    pub const SEGMENT_MAX_BYTES_RANGE: (u64, u64) = (4096, 1 << 40);
    /// Allowed range of [`AuditSettings::segment_max_age_secs`] (1 minute to 10 years).
    pub const SEGMENT_MAX_AGE_SECS_RANGE: (u64, u64) = (60, 10 * 366 * 86_400);
    /// Allowed range of [`AuditSettings::retain_segments`].
    pub const RETAIN_SEGMENTS_RANGE: (u64, u64) = (1, 1 << 32);
    /// Allowed range of [`AuditSettings::retain_days`].
    pub const RETAIN_DAYS_RANGE: (u64, u64) = (1, 100 * 366);
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            segment_max_bytes: Self::DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age_secs: None,
            retain_segments: None,
            retain_days: None,
        }
    }
}

/// `[homomorphic]`: limits of the store of tenants' TFHE server keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HomomorphicSettings {
    /// Largest compressed server key a tenant may upload, in bytes.
    pub max_server_key_bytes: u64,
    /// Keys stored per tenant; uploading one more is refused until the operator removes one.
    pub max_keys_per_tenant: u64,
    /// Decompressed server keys kept in memory (each ~100–200 MiB), least recently used evicted.
    pub key_cache_entries: u64,
}

impl HomomorphicSettings {
    /// Default of [`HomomorphicSettings::max_server_key_bytes`] (64 MiB; TFHE-rs's compressed
    /// key for the default parameter set is ~29 MiB).
    pub const DEFAULT_MAX_SERVER_KEY_BYTES: u64 = 64 << 20;
    /// Default of [`HomomorphicSettings::max_keys_per_tenant`].
    pub const DEFAULT_MAX_KEYS_PER_TENANT: u64 = 4;
    /// Default of [`HomomorphicSettings::key_cache_entries`].
    pub const DEFAULT_KEY_CACHE_ENTRIES: u64 = 2;
    /// Allowed range of [`HomomorphicSettings::max_server_key_bytes`] (1 MiB to 1 GiB).
    pub const MAX_SERVER_KEY_BYTES_RANGE: (u64, u64) = (1 << 20, 1 << 30);
    /// Allowed range of [`HomomorphicSettings::max_keys_per_tenant`].
    pub const MAX_KEYS_PER_TENANT_RANGE: (u64, u64) = (1, 1024);
    /// Allowed range of [`HomomorphicSettings::key_cache_entries`].
    pub const KEY_CACHE_ENTRIES_RANGE: (u64, u64) = (1, 64);
}

impl Default for HomomorphicSettings {
    fn default() -> Self {
        HomomorphicSettings {
            max_server_key_bytes: Self::DEFAULT_MAX_SERVER_KEY_BYTES,
            max_keys_per_tenant: Self::DEFAULT_MAX_KEYS_PER_TENANT,
            key_cache_entries: Self::DEFAULT_KEY_CACHE_ENTRIES,
        }
    }
}

/// What a model file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// An ONNX model, run by the engine on plaintext inputs (the default).
    #[default]
    Onnx,
    /// A `cloister-he-program` integer program, evaluated only on inputs encrypted under the
    /// client's TFHE key: the enclave never sees the input in the clear.
    HeProgram,
}

impl ModelFormat {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::HeProgram => "he-program",
        }
    }
}

/// `[sandbox]`: how the enclave confines itself after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sandbox {
    /// What to do when the kernel cannot provide a barrier.
    pub mode: SandboxMode,
    /// Most requests whose model runs at once; more are refused with `rate_limited`
    /// (1..=4096, default [`Sandbox::DEFAULT_MAX_CONCURRENT_REQUESTS`]).
    pub max_concurrent_requests: u64,
    /// Address-space cap of each engine worker process in MiB (`RLIMIT_AS`, models included), so
    /// memory per request (64..=1048576, default [`Sandbox::DEFAULT_WORKER_MEMORY_MB`]).
    pub worker_memory_mb: u64,
    /// Address-space cap of the enclave (broker) process in MiB; `None`: no cap (256..=1048576).
    pub enclave_memory_mb: Option<u64>,
}

impl Sandbox {
    /// Default of [`Sandbox::max_concurrent_requests`].
    pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u64 = 16;
    /// Default of [`Sandbox::worker_memory_mb`].
    pub const DEFAULT_WORKER_MEMORY_MB: u64 = 4096;
    /// Allowed range of [`Sandbox::max_concurrent_requests`].
    pub const MAX_CONCURRENT_REQUESTS_RANGE: (u64, u64) = (1, 4096);
    /// Allowed range of [`Sandbox::worker_memory_mb`].
    pub const WORKER_MEMORY_MB_RANGE: (u64, u64) = (64, 1 << 20);
    /// Allowed range of [`Sandbox::enclave_memory_mb`].
    pub const ENCLAVE_MEMORY_MB_RANGE: (u64, u64) = (256, 1 << 20);
}

/// What the enclave does when the kernel cannot provide a sandbox barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Every barrier is required: start-up stops with an error naming the one that is missing.
    /// The default, and the only mode for production.
    Enforce,
    /// Start with the barriers the kernel provides, and report exactly which are in force.
    BestEffort,
}

impl SandboxMode {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Enforce => "enforce",
            SandboxMode::BestEffort => "best-effort",
        }
    }
}

/// `[[tenants]]`: a caller, identified by the SHA-256 of its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tenant {
    /// Unique id, `[a-z0-9][a-z0-9._-]*`.
    pub id: String,
    /// SHA-256 of the API key; the key itself is never stored.
    pub api_key_sha256: [u8; 32],
    /// Ids of the models this tenant may use; each names a `[[models]]` entry.
    pub models: Vec<String>,
    /// Rate limit (> 0).
    pub max_requests_per_minute: u64,
    /// Privacy budget (required when the tenant may use a model whose releases are charged).
    pub budget: Option<NanoRho>,
}

impl Tenant {
    /// Whether this tenant may use the model `model_id`.
    pub fn may_use(&self, model_id: &str) -> bool {
        self.models.iter().any(|m| m == model_id)
    }
}

/// `[[models]]`: a model the enclave serves, pinned by its file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelEntry {
    /// Unique id, `[a-z0-9][a-z0-9._-]*`.
    pub id: String,
    /// The path as written in the policy (see [`ModelEntry::resolved_path`]).
    pub path: PathBuf,
    /// SHA-256 of the model file.
    pub sha256: [u8; 32],
    /// Free text.
    pub description: Option<String>,
    /// How outputs are released (`[models.privacy]`; default: as computed).
    pub privacy: ModelPrivacy,
    /// What the file is (`format`; default ONNX).
    pub format: ModelFormat,
    /// For a homomorphic model: the tenants that may send it ciphertexts (`[models.
    /// homomorphic] tenants`); `None`: every tenant allowed the model.
    pub he_tenants: Option<Vec<String>>,
}

impl ModelEntry {
    /// The model file's path: `path` itself if absolute, else `base_dir/path`.
    pub fn resolved_path(&self, base_dir: &Path) -> PathBuf {
        if self.path.is_absolute() {
            self.path.clone()
        } else {
            base_dir.join(&self.path)
        }
    }

    /// Whether `tenant` may send ciphertexts to this model (it must also be allowed the model).
    pub fn he_allows(&self, tenant: &str) -> bool {
        self.format == ModelFormat::HeProgram
            && self
                .he_tenants
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| t == tenant))
    }

    /// [`ModelEntry::sha256`] in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

impl Policy {
    /// Parses and validates a policy; `origin` is the file name used in messages.
    /// Returns the first problem; see [`Policy::from_toml_str_all`] for all of them.
    pub fn from_toml_str(src: &str, origin: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml_str_all(src, origin).map_err(first_error)
    }

    /// Like [`Policy::from_toml_str`], but reports every semantic problem at once, in file
    /// order. (A TOML syntax or type error stops parsing, so it is reported alone.)
    pub fn from_toml_str_all(src: &str, origin: &str) -> Result<Policy, Vec<PolicyError>> {
        let digest: [u8; 32] = Sha256::digest(src.as_bytes()).into();
        validate::parse(src, origin, digest)
    }

    /// Reads, parses and validates the policy file at `path`, recording its directory as
    /// [`Policy::base_dir`] and the SHA-256 of its bytes as [`Policy::digest`].
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        Policy::load_all(path).map_err(first_error)
    }

    /// Like [`Policy::load`], but reports every semantic problem at once.
    pub fn load_all(path: &Path) -> Result<Policy, Vec<PolicyError>> {
        let bytes = std::fs::read(path).map_err(|source| {
            vec![PolicyError::Read {
                path: path.to_path_buf(),
                source,
            }]
        })?;
        let origin = path.display().to_string();
        let src = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            vec![PolicyError::NotUtf8 {
                at: Location::at_offset(&origin, valid, valid.len()),
            }]
        })?;
        let mut policy = Policy::from_toml_str_all(src, &origin)?;
        policy.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(policy)
    }

    /// The tenant with id `id`.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// The model with id `id`.
    pub fn model(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The model's file path resolved against [`Policy::base_dir`].
    pub fn model_path(&self, id: &str) -> Option<PathBuf> {
        self.model(id).map(|m| m.resolved_path(&self.base_dir))
    }

    /// The tenant whose API key hashes to `hash`. Compares every tenant's hash in constant time
    /// so timing does not reveal how much of a guess matched.
    pub fn tenant_by_api_key_hash(&self, hash: &[u8; 32]) -> Option<&Tenant> {
        let mut found = None;
        for tenant in &self.tenants {
            let diff = tenant
                .api_key_sha256
                .iter()
                .zip(hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(tenant);
            }
        }
        found
    }

    /// [`Policy::digest`] in lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

fn first_error(mut errors: Vec<PolicyError>) -> PolicyError {
    // INVARIANT: validate::parse never returns an empty error list.
    if errors.is_empty() {
        errors.push(PolicyError::Syntax {
            at: Location {
                origin: String::new(),
                line: 1,
                column: 1,
            },
            message: "internal error: no error reported".into(),
        });
    }
    errors.swap_remove(0)
}
