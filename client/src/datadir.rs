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
}
