//! Homomorphic mode: the policy's integer programs, the tenants' TFHE server-key store, and
//! evaluation on ciphertexts the enclave cannot decrypt.
//!
//! A homomorphic model (`format = "he-program"`) is a `cloister-he-program` file, pinned by
//! SHA-256 like an ONNX model, proved free of overflow and within TFHE-rs's noise budget when
//! it is loaded ([`cloister_he::program::Program::analyse`]). A tenant uploads its compressed
//! server key once, in chunks ([`HeState::receive_chunk`]); the complete key must hash to the
//! id the tenant announced, pass TFHE-rs's conformance check against the default parameter set
//! and decompress, and is then written (fsync of the file and of its directory) to
//! `KEY_DIR/<tenant>/<key id>.key`. Inputs name their key id; the enclave looks it up in the
//! *requesting tenant's* store only, so one tenant can never compute with another's key, and a
//! key file altered (or torn by a crash) on disk no longer hashes to its name: it is discarded
//! unused and the tenant is asked to upload again. The store is indexed at start-up, so after
//! lock-down it needs only `openat`, `read`, `write`, `fsync` and `unlink` — no `stat`,
//! directory listing, `mkdir` or `rename`, which the broker's seccomp filter does not allow.
//!
//! Where it runs: in this (broker) process, not in a forked engine worker. The worker's
//! seccomp filter forbids creating threads and every request would have to ship the 100+ MiB
//! decompressed key to a fresh process; the broker keeps decompressed keys in a bounded LRU
//! cache instead. What the broker handles here is ciphertexts, public evaluation keys and the
//! operator's own programs, parsed by bounded readers (`cloister_he::wire`); no tenant-supplied
//! model is parsed. ARCHITECTURE.md records this decision.
//!
//! Memory: partial uploads are held in memory, at most one per tenant, each at most
//! `[homomorphic] max_server_key_bytes`; decompressed keys at most `key_cache_entries`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cloister_he::client::EncryptedInput;
use cloister_he::program::Program;
use cloister_he::server::{EncryptedScores, Evaluator};
use cloister_he::HeError;
use cloister_policy::{HomomorphicSettings, ModelFormat, Policy};
use cloister_protocol::error::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};

/// A homomorphic model ready to serve.
pub struct HeModel {
    /// The validated program.
    pub program: Program,
    /// The program file as pinned (what clients fetch and hash).
    pub text: String,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// A decompressed key in the cache: (tenant, key id) and its evaluator.
type CacheEntry = ((String, [u8; 32]), Arc<Evaluator>);

/// A key upload in progress.
struct Upload {
    key_id: [u8; 32],
    total: u64,
    bytes: Vec<u8>,
}

/// The outcome of one chunk.
pub struct ChunkOutcome {
    /// Bytes held so far.
    pub received: u64,
    /// Whether the whole key is now stored.
    pub stored: bool,
}

/// Programs, the key store and the decompressed-key cache.
pub struct HeState {
    models: BTreeMap<String, HeModel>,
    key_dir: Option<PathBuf>,
    settings: HomomorphicSettings,
    /// One upload in progress per tenant.
    uploads: Mutex<HashMap<String, Upload>>,
    /// Most recently used last.
    cache: Mutex<VecDeque<CacheEntry>>,
    /// The keys on disk, per tenant, with their sizes: read at start-up, kept in step with
    /// every write, so that after lock-down the store needs no `stat`, directory listing,
    /// `mkdir` or `rename` (the broker's seccomp filter allows none of them).
    stored: Mutex<HashMap<String, BTreeMap<[u8; 32], u64>>>,
}

fn api(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    api(
        ErrorCode::Internal,
        format!("{what}; nothing was stored — try again later"),
    )
}

/// Maps an error of the homomorphic layer on a request's ciphertext to the client's fault.
fn input_error(e: HeError) -> ApiError {
    match e {
        HeError::KeyMismatch { .. } => api(ErrorCode::HeKeyUnknown, e.to_string()),
        HeError::Program(_) => internal("the homomorphic program failed its analysis", e),
        other => api(
            ErrorCode::InvalidInput,
            format!("the encrypted input is not usable: {other}"),
        ),
    }
}

/// Runs TFHE-rs code on tenant-supplied bytes, turning a panic (an assertion inside the library
/// on a malformed key or ciphertext) into a typed error, so the request is still answered and
/// audited.
fn guarded<T>(
    what: &str,
    code: ErrorCode,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("TFHE-rs panicked on {what}");
        Err(api(
            code,
            format!("{what} was refused: TFHE-rs could not process it"),
        ))
    })
}

/// Parses a 64-hex key id.
pub fn parse_key_id(hex_id: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(hex_id)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            api(
                ErrorCode::MalformedRequest,
                "key_id must be 64 hexadecimal characters (the SHA-256 of the server key file)",
            )
        })
}

impl HeState {
    /// Loads every homomorphic model of the policy: checks the file's SHA-256 against the
    /// pin, parses and validates the program (ranges and noise). `key_dir` is where tenants'
    /// keys are stored; it is required when the policy serves any homomorphic model.
    pub fn start(policy: &Policy, key_dir: Option<&Path>) -> Result<HeState> {
        let mut models = BTreeMap::new();
        for entry in policy
            .models
            .iter()
            .filter(|m| m.format == ModelFormat::HeProgram)
        {
            let path = entry.resolved_path(&policy.base_dir);
            let started = Instant::now();
            let bytes = std::fs::read(&path).with_context(|| {
                format!("homomorphic model \"{}\" ({})", entry.id, path.display())
            })?;
            let actual: [u8; 32] = Sha256::digest(&bytes).into();
            if actual != entry.sha256 {
                bail!(
                    "homomorphic model \"{}\" ({}): SHA-256 of the file is {} but the policy \
                     pins {}; fix: update the policy's sha256, or restore the expected file",
                    entry.id,
                    path.display(),
                    hex::encode(actual),
                    entry.sha256_hex()
                );
            }
            let text = String::from_utf8(bytes).with_context(|| {
                format!(
                    "homomorphic model \"{}\": the program is not UTF-8",
                    entry.id
                )
            })?;
            let program = Program::from_json(&text)
                .and_then(|p| p.analyse().map(|_| p))
                .with_context(|| format!("homomorphic model \"{}\"", entry.id))?;
            tracing::info!(
                model = %entry.id,
                features = program.input.features,
                millis = started.elapsed().as_millis() as u64,
                "homomorphic program loaded (ranges and noise proved)"
            );
            models.insert(
                entry.id.clone(),
                HeModel {
                    program,
                    text,
                    sha256: actual,
                },
            );
        }
        let mut stored = HashMap::new();
        if !models.is_empty() {
            let dir = key_dir.context(
                "the policy serves homomorphic models: pass --he-key-dir DIR (where tenants' \
                 TFHE server keys are stored; `cloister up` passes one)",
            )?;
            // Every tenant that may use a homomorphic model gets its directory now, before
            // lock-down, and its stored keys are indexed.
            for tenant in &policy.tenants {
                let allowed = policy
                    .models
                    .iter()
                    .any(|m| tenant.may_use(&m.id) && m.he_allows(&tenant.id));
                if allowed {
                    let tdir = dir.join(&tenant.id);
                    std::fs::create_dir_all(&tdir)
                        .with_context(|| format!("create the key store {}", tdir.display()))?;
                    stored.insert(tenant.id.clone(), index_keys(&tdir)?);
                }
            }
        }
        Ok(HeState {
            models,
            key_dir: key_dir.map(Path::to_path_buf),
            settings: policy.homomorphic.clone(),
            uploads: Mutex::new(HashMap::new()),
            cache: Mutex::new(VecDeque::new()),
            stored: Mutex::new(stored),
        })
    }

    fn stored_size(&self, tenant: &str, key_id: &[u8; 32]) -> Option<u64> {
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .get(tenant)
            .and_then(|keys| keys.get(key_id))
            .copied()
    }

    /// The homomorphic model `id`, if the policy serves one.
    pub fn model(&self, id: &str) -> Option<&HeModel> {
        self.models.get(id)
    }

    /// Every homomorphic model with its digest (for the evidence binding).
    pub fn digests(&self) -> impl Iterator<Item = (&String, [u8; 32])> {
        self.models.iter().map(|(id, m)| (id, m.sha256))
    }

    /// The key store directory, when one is configured (the sandbox must allow writing it).
    pub fn key_dir(&self) -> Option<&Path> {
        self.key_dir.as_deref()
    }

    fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, ApiError> {
        // Tenant ids are `[a-z0-9][a-z0-9._-]*` (policy validation), so safe as a file name.
        let dir = self.key_dir.as_ref().ok_or_else(|| {
            api(
                ErrorCode::HeModeMismatch,
                "this enclave serves no homomorphic model and stores no keys",
            )
        })?;
        Ok(dir.join(tenant))
    }

    fn key_path(&self, tenant: &str, key_id: &[u8; 32]) -> Result<PathBuf, ApiError> {
        Ok(self
            .tenant_dir(tenant)?
            .join(format!("{}.key", hex::encode(key_id))))
    }

    /// Accepts one chunk of `tenant`'s key `key_id` (`total` bytes in all) at `offset`.
    pub fn receive_chunk(
        &self,
        tenant: &str,
        key_id: [u8; 32],
        total: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<ChunkOutcome, ApiError> {
        let max = self.settings.max_server_key_bytes;
        if total == 0 || total > max {
            return Err(api(
                ErrorCode::TooLarge,
                format!(
                    "the server key has {total} bytes; the policy accepts 1 to {max} bytes \
                     ([homomorphic] max_server_key_bytes)"
                ),
            ));
        }
        self.tenant_dir(tenant)?;
        if self.stored_size(tenant, &key_id).is_some() {
            // Already stored: a resent chunk, or a second upload of the same key.
            return Ok(ChunkOutcome {
                received: total,
                stored: true,
            });
        }
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = offset == 0
            && uploads
                .get(tenant)
                .is_none_or(|u| u.key_id != key_id || u.total != total);
        if fresh {
            // Starting (or restarting) replaces this tenant's previous partial upload.
            self.check_key_count(tenant)?;
            uploads.insert(
                tenant.to_string(),
                Upload {
                    key_id,
                    total,
                    bytes: Vec::new(),
                },
            );
        }
        let upload = uploads
            .get_mut(tenant)
            .filter(|u| u.key_id == key_id && u.total == total)
            .ok_or_else(|| {
                api(
                    ErrorCode::InvalidInput,
                    format!(
                        "no upload of key {} is in progress for you: start at offset 0",
                        hex::encode(key_id)
                    ),
                )
            })?;
        let held = upload.bytes.len() as u64;
        let end = offset.saturating_add(data.len() as u64);
        if end > total {
            return Err(api(
                ErrorCode::InvalidInput,
                format!("the chunk ends at byte {end}, past the key's {total} bytes"),
            ));
        }
        if offset < held && end <= held {
            // A chunk already received (the client resent after a lost answer).
            return Ok(ChunkOutcome {
                received: held,
                stored: false,
            });
        }
        if offset != held {
            return Err(api(
                ErrorCode::InvalidInput,
                format!("the chunk starts at byte {offset}; the enclave holds {held} bytes, so the next chunk must start there"),
            ));
        }
        upload.bytes.extend_from_slice(data);
        if (upload.bytes.len() as u64) < total {
            return Ok(ChunkOutcome {
                received: upload.bytes.len() as u64,
                stored: false,
            });
        }
        // Complete: whatever happens next, the partial upload is gone.
        let upload = uploads
            .remove(tenant)
            .ok_or_else(|| internal("the upload vanished", "missing upload"))?;
        drop(uploads);
        self.store(tenant, upload)?;
        Ok(ChunkOutcome {
            received: total,
            stored: true,
        })
    }

    fn check_key_count(&self, tenant: &str) -> Result<(), ApiError> {
        let stored = {
            let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
            stored.get(tenant).map_or(0, BTreeMap::len) as u64
        };
        if stored >= self.settings.max_keys_per_tenant {
            return Err(api(
                ErrorCode::TooLarge,
                format!(
                    "you already store {stored} server keys, the policy's max_keys_per_tenant; \
                     reuse one of them (keep your key directory) or ask the operator to remove one"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a complete key and writes it durably.
    fn store(&self, tenant: &str, upload: Upload) -> Result<(), ApiError> {
        let actual: [u8; 32] = Sha256::digest(&upload.bytes).into();
        if actual != upload.key_id {
            return Err(api(
                ErrorCode::HeKeyInvalid,
                format!(
                    "the uploaded bytes hash to {}, not to the announced key id {}; nothing was \
                     stored — upload the key file again",
                    hex::encode(actual),
                    hex::encode(upload.key_id)
                ),
            ));
        }
        let started = Instant::now();
        let evaluator = guarded("the uploaded server key", ErrorCode::HeKeyInvalid, || {
            Evaluator::from_compressed_bytes(&upload.bytes).map_err(|e| {
                api(
                    ErrorCode::HeKeyInvalid,
                    format!("the server key is not usable: {e}; nothing was stored — generate keys with `cloister keygen --he`"),
                )
            })
        })?;
        tracing::info!(
            tenant,
            key_id = %hex::encode(upload.key_id),
            bytes = upload.bytes.len(),
            millis = started.elapsed().as_millis() as u64,
            "TFHE server key checked and decompressed"
        );
        let path = self.key_path(tenant, &upload.key_id)?;
        write_durably(&path, &upload.bytes)
            .map_err(|e| internal("writing the server key failed", format!("{e:#}")))?;
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_string())
            .or_default()
            .insert(upload.key_id, upload.bytes.len() as u64);
        self.remember(tenant, upload.key_id, Arc::new(evaluator));
        Ok(())
    }

    fn remember(&self, tenant: &str, key_id: [u8; 32], evaluator: Arc<Evaluator>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|((t, k), _)| !(t == tenant && *k == key_id));
        cache.push_back(((tenant.to_string(), key_id), evaluator));
        let cap = usize::try_from(self.settings.key_cache_entries).unwrap_or(1);
        while cache.len() > cap {
            cache.pop_front();
        }
    }

    /// `tenant`'s evaluator for `key_id`: from the cache, else read from the store, checked
    /// against its id, and decompressed.
    fn evaluator(&self, tenant: &str, key_id: [u8; 32]) -> Result<Arc<Evaluator>, ApiError> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = cache
                .iter()
                .position(|((t, k), _)| t == tenant && *k == key_id)
            {
                let hit = cache
                    .remove(pos)
                    .ok_or_else(|| internal("cache", "index"))?;
                let evaluator = Arc::clone(&hit.1);
                cache.push_back(hit);
                return Ok(evaluator);
            }
        }
        let unknown = || {
            api(
                ErrorCode::HeKeyUnknown,
                format!(
                    "you have not uploaded the server key {} (or its upload is incomplete): \
                     upload it, then send the input again",
                    hex::encode(key_id)
                ),
            )
        };
        let size = self.stored_size(tenant, &key_id).ok_or_else(unknown)?;
        let path = self.key_path(tenant, &key_id)?;
        let bytes = read_exact_file(&path, size)
            .map_err(|e| internal("reading a stored server key failed", e))?;
        let actual: [u8; 32] = Sha256::digest(&bytes).into();
        if actual != key_id {
            // Altered or torn on disk: never used. Discard it so the tenant can upload again.
            tracing::error!(path = %path.display(), "stored server key does not match its name: altered or damaged on disk; discarded");
            let _ = std::fs::remove_file(&path);
            if let Some(keys) = self
                .stored
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(tenant)
            {
                keys.remove(&key_id);
            }
            return Err(api(
                ErrorCode::HeKeyUnknown,
                format!(
                    "the stored copy of server key {} was altered or damaged on disk and has been \
                     discarded: upload the key again",
                    hex::encode(key_id)
                ),
            ));
        }
        let evaluator = Arc::new(guarded(
            "a stored server key",
            ErrorCode::HeKeyInvalid,
            || {
                Evaluator::from_compressed_bytes(&bytes).map_err(|e| {
                    api(
                        ErrorCode::HeKeyInvalid,
                        format!("the stored server key is not usable: {e}"),
                    )
                })
            },
        )?);
        self.remember(tenant, key_id, Arc::clone(&evaluator));
        Ok(evaluator)
    }

    /// Evaluates `model` on `tenant`'s encrypted input (the wire bytes of an
    /// [`EncryptedInput`]). Never decrypts: the enclave holds no key that could.
    pub fn evaluate(
        &self,
        tenant: &str,
        model: &HeModel,
        input: &[u8],
    ) -> Result<([u8; 32], EncryptedScores), ApiError> {
        let input = EncryptedInput::from_bytes(input).map_err(input_error)?;
        let evaluator = self.evaluator(tenant, input.key_id)?;
        let started = Instant::now();
        let scores = guarded("the encrypted input", ErrorCode::InvalidInput, || {
            evaluator
                .evaluate(&model.program, &input)
                .map_err(input_error)
        })?;
        tracing::info!(
            bootstraps = scores.pbs_count,
            millis = started.elapsed().as_millis() as u64,
            "homomorphic evaluation"
        );
        Ok((input.key_id, scores))
    }
}

/// Writes the key file and syncs it and its directory. No temp file and rename (the locked-down
/// broker may not rename): a file torn by a crash no longer hashes to its name, and is
/// discarded when it is next read.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads exactly `size` bytes with plain `read` calls (`std::fs::read` would `statx` first).
fn read_exact_file(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let size = usize::try_from(size).map_err(|_| std::io::Error::other("key too large"))?;
    let mut f = File::open(path)?;
    let mut bytes = vec![0u8; size];
    f.read_exact(&mut bytes)?;
    let mut probe = [0u8; 1];
    if f.read(&mut probe)? != 0 {
        return Err(std::io::Error::other(
            "the key file grew since it was indexed",
        ));
    }
    Ok(bytes)
}

/// `<64 hex>.key` files in `dir` with their sizes (start-up only).
fn index_keys(dir: &Path) -> Result<BTreeMap<[u8; 32], u64>> {
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let id = name
            .strip_suffix(".key")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        if let Some(id) = id {
            keys.insert(id, entry.metadata()?.len());
        }
    }
    Ok(keys)
}
