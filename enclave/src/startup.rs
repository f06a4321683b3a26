//! Enclave start-up: everything that needs files or randomness happens here,
//! once, before the first request is read.
//!
//! Order: (the caller has started the engine zygote, before any key exists: see
//! [`crate::worker`]) read the policy; load each model, check its SHA-256 against the
//! policy and hand it to the zygote; create the HPKE key configuration and the Ed25519
//! signing key; set up the attestation provider; open the audit log. Then the caller binds
//! the gateway socket and calls [`Enclave::lock_down`] before it serves (see `main.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cloister_attestation::{AttestationProvider, Binding, SimProvider, SimRoot};
use cloister_audit::AuditLog;
use cloister_engine::Model;
use cloister_policy::{Policy, Provider};
use cloister_seal::server::Opener;
use ed25519_dalek::SigningKey;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::replay::ReplayGuard;
use crate::sandbox::{self, SandboxMode, SandboxPlan, SandboxStatus};
use crate::worker::EnginePool;

/// Where the enclave finds what it needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The policy file.
    pub policy: PathBuf,
    /// Directory of the simulated AMD key hierarchy (provider `sim` only).
    pub sim_root: Option<PathBuf>,
    /// Directory of the audit log.
    pub audit_dir: PathBuf,
    /// Directory of the privacy ledger (required when the policy charges any model).
    pub ledger_dir: Option<PathBuf>,
    /// Directory with a cached VCEK (`vcek.der`), for SEV-SNP hosts whose extended report
    /// carries no certificates (provider `snp` only).
    pub snp_cert_cache: Option<PathBuf>,
    /// Directory of the tenants' TFHE server keys (required when the policy serves any
    /// homomorphic model).
    pub he_key_dir: Option<PathBuf>,
}

/// A model ready to serve. The broker keeps the parsed graph only for its signature (input
/// names, dtypes and shapes, checked before a request reaches a worker); the engine worker runs
/// its own copy.
pub struct LoadedModel {
    /// The engine's compiled model.
    pub model: Model,
    /// SHA-256 of the model file, as pinned by the policy.
    pub sha256: [u8; 32],
}

/// The enclave's state, shared by all requests.
pub struct Enclave {
    pub(crate) policy: Policy,
    pub(crate) models: BTreeMap<String, LoadedModel>,
    pub(crate) opener: Opener,
    pub(crate) signing: SigningKey,
    pub(crate) provider: Box<dyn AttestationProvider + Send + Sync>,
    /// The audit log, with group commit across concurrent requests.
    pub(crate) audit: cloister_audit::SharedLog,
    pub(crate) replay: Mutex<ReplayGuard>,
    /// Key for the keyed digests of inputs and outputs in audit records.
    pub(crate) digest_key: [u8; 32],
    pub(crate) rate: crate::handler::RateLimiter,
    /// What the sandbox enforces, as bound into the evidence (`none` until lock-down).
    pub(crate) sandbox_status: String,
    /// Which sandbox barriers are in force (none until [`Enclave::lock_down`]).
    pub(crate) sandbox: SandboxStatus,
    /// Differential-privacy mechanisms and the budget ledger.
    pub(crate) privacy: crate::privacy::PrivacyState,
    /// The engine zygote and its workers: every model runs there, never in this process.
    pub(crate) engine: EnginePool,
    /// Homomorphic models and the tenants' TFHE server keys (evaluated here: `crate::he`).
    pub(crate) he: crate::he::HeState,
}

impl Enclave {
    /// Runs the start-up sequence. `engine` is the zygote [`EnginePool::spawn`] started before
    /// this (and so before any key exists); each model is handed to it here.
    pub fn start(opts: &StartOptions, mut engine: EnginePool) -> Result<Enclave> {
        let policy = Policy::load(&opts.policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            policy = %opts.policy.display(),
            sha256 = %policy.digest_hex(),
            "policy loaded"
        );
        let mut models = BTreeMap::new();
        // ONNX models go to the engine; homomorphic programs are loaded by `crate::he`.
        let onnx = policy
            .models
            .iter()
            .filter(|m| m.format == cloister_policy::ModelFormat::Onnx);
        for entry in onnx {
            let path = entry.resolved_path(&policy.base_dir);
            let started = std::time::Instant::now();
            let loaded = load_model(&path, &entry.sha256, &entry.id, &mut engine)
                .with_context(|| format!("model \"{}\" ({})", entry.id, path.display()))?;
            tracing::info!(
                model = %entry.id,
                inputs = loaded.model.inputs().len(),
                millis = started.elapsed().as_millis() as u64,
                "model loaded"
            );
            models.insert(entry.id.clone(), loaded);
        }
        let he = crate::he::HeState::start(&policy, opts.he_key_dir.as_deref())?;
        let opener = Opener::new(cloister_seal::generate_key_config(1)?)?;
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let provider = make_provider(
            &policy,
            opts.sim_root.as_deref(),
            opts.snp_cert_cache.as_deref(),
        )?;
        // Checkpoints are signed with the attested key; the key file lets auditors verify offline.
        let audit = AuditLog::open_with_signer(
            &opts.audit_dir,
            cloister_audit::CheckpointPolicy::default(),
            signing.clone(),
        )
        // Rotation and retention from the policy's `[audit]` section (docs/audit.md).
        .map(|log| {
            let a = &policy.audit;
            log.with_rotation(cloister_audit::Rotation {
                segment_max_bytes: Some(a.segment_max_bytes),
                segment_max_age: a.segment_max_age_secs.map(std::time::Duration::from_secs),
                retain_segments: a
                    .retain_segments
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                retain_age: a
                    .retain_days
                    .map(|d| std::time::Duration::from_secs(d.saturating_mul(86_400))),
            })
        })
        .with_context(|| format!("open audit log in {}", opts.audit_dir.display()))?;
        if let cloister_audit::Recovery::TruncatedTornTail(_) = audit.recovery() {
            tracing::warn!("{}", audit.recovery());
        }
        let mut digest_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut digest_key);
        let window_ms = policy.service.replay_window_secs.saturating_mul(1000);
        let sandbox = SandboxStatus::unconfined(policy.sandbox.mode);
        let privacy = crate::privacy::PrivacyState::start(&policy, opts.ledger_dir.as_deref())?;
        Ok(Enclave {
            policy,
            models,
            opener,
            signing,
            provider,
            audit: cloister_audit::SharedLog::new(audit),
            replay: Mutex::new(ReplayGuard::new(window_ms)),
            digest_key,
            rate: Default::default(),
            sandbox_status: "none".to_string(),
            sandbox,
            privacy,
            engine,
            he,
        })
    }

    /// What the sandbox must allow after start-up: read the policy, the model files and the
    /// simulated key root; read and write the audit directory, the privacy ledger's directory
    /// (when given) and the socket's directory.
    pub fn sandbox_plan(&self, opts: &StartOptions, socket: &Path) -> SandboxPlan {
        let mut read_only = vec![opts.policy.clone()];
        read_only.extend(
            self.policy
                .models
                .iter()
                .map(|m| m.resolved_path(&self.policy.base_dir)),
        );
        read_only.extend(opts.sim_root.clone());
        let mut read_write = vec![opts.audit_dir.clone()];
        // The privacy ledger's directory, when one was given (the ledger is open by now).
        read_write.extend(opts.ledger_dir.clone().filter(|d| d.is_dir()));
        // The TFHE key store, when homomorphic models are served (created by now).
        read_write.extend(
            self.he
                .key_dir()
                .filter(|d| d.is_dir())
                .map(Path::to_path_buf),
        );
        read_write.extend(socket.parent().map(Path::to_path_buf));
        SandboxPlan {
            mode: self.policy.sandbox.mode,
            read_only,
            read_write,
            max_open_files: sandbox::DEFAULT_MAX_OPEN_FILES,
            address_space_mb: self.policy.sandbox.enclave_memory_mb,
        }
    }

    /// Locks the engine zygote down (its workers' barriers, address-space cap, deadline and
    /// concurrency from the policy), then confines this process ([`sandbox::lock_down`]), and
    /// records which barriers are in force in both, also as the sandbox status bound into later
    /// evidence ([`SandboxStatus::describe`]). Call once, single-threaded, after start-up and
    /// before the first request is read. In `enforce` mode a missing barrier of either process
    /// is an error naming it.
    pub fn lock_down(&mut self, plan: &SandboxPlan) -> Result<&SandboxStatus> {
        let limits = &self.policy.sandbox;
        let worker = self
            .engine
            .lock_down(
                limits.mode == SandboxMode::BestEffort,
                limits.worker_memory_mb,
                self.policy.service.request_timeout(),
                usize::try_from(limits.max_concurrent_requests).unwrap_or(usize::MAX),
            )
            .context("lock down the engine worker")?;
        let mut status = sandbox::lock_down(plan)?;
        status.worker = Some(worker);
        self.sandbox = status;
        self.sandbox_status = self.sandbox.describe();
        Ok(&self.sandbox)
    }

    /// Which sandbox barriers are in force.
    pub fn sandbox(&self) -> &SandboxStatus {
        &self.sandbox
    }

    /// What the evidence binds, less the client's nonce.
    pub fn binding(&self, nonce: Vec<u8>) -> Binding {
        Binding {
            hpke_key_config: self.opener.encoded_config().to_vec(),
            signing_key: self.signing.verifying_key().to_bytes(),
            policy_sha256: self.policy.digest,
            model_digests: self
                .models
                .iter()
                .map(|(id, m)| (id.clone(), m.sha256))
                .chain(self.he.digests().map(|(id, d)| (id.clone(), d)))
                .collect(),
            build_version: cloister_protocol::BUILD_VERSION.to_string(),
            sandbox_status: self.sandbox_status.clone(),
            nonce,
        }
    }

    /// The attestation provider's name.
    pub fn provider_name(&self) -> &str {
        self.provider.name()
    }
}

fn load_model(
    path: &Path,
    pinned: &[u8; 32],
    id: &str,
    engine: &mut EnginePool,
) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).context("read model file")?;
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if &actual != pinned {
        bail!(
            "SHA-256 of the file is {} but the policy pins {}; fix: update the policy's sha256 \
             for this model, or restore the expected file",
            hex::encode(actual),
            hex::encode(pinned)
        );
    }
    let model = Model::from_bytes(&bytes).context("parse ONNX model")?;
    let outputs = model.outputs().iter().map(|o| o.name.clone()).collect();
    engine
        .load(id, &bytes, outputs)
        .context("hand the model to the engine worker")?;
    Ok(LoadedModel {
        model,
        sha256: actual,
    })
}

fn make_provider(
    policy: &Policy,
    sim_root: Option<&Path>,
    snp_cert_cache: Option<&Path>,
) -> Result<Box<dyn AttestationProvider + Send + Sync>> {
    match policy.attestation.provider {
        Provider::Sim => {
            if !policy.attestation.allow_simulated {
                bail!("the policy selects the SIMULATED provider without allow_simulated = true");
            }
            let dir = sim_root.context(
                "the policy selects the SIMULATED provider: pass --sim-root DIR (created by `cloister up`)",
            )?;
            let root = SimRoot::load(dir)
                .with_context(|| format!("load SIMULATED AMD root from {}", dir.display()))?;
            let exe = std::env::current_exe().context("locate the enclave binary")?;
            let measurement = cloister_attestation::measure_file(&exe)
                .with_context(|| format!("measure {}", exe.display()))?;
            // The simulated launcher sets HOST_DATA to the policy digest, as a real one should.
            Ok(Box::new(
                SimProvider::new(root, measurement).with_host_data(policy.digest),
            ))
        }
        Provider::Snp => {
            let provider = cloister_attestation::SnpProvider::open(snp_cert_cache)
                .context("the policy selects the SEV-SNP hardware provider")?;
            Ok(Box::new(provider))
        }
    }
}
