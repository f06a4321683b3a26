//! `cloister-enclave`: the trusted process that opens sealed requests.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use cloister_enclave::server;
use cloister_enclave::startup::{Enclave, StartOptions};
use cloister_enclave::worker::{self, EnginePool};

/// Serve sealed inference requests from the gateway over a Unix socket.
#[derive(Parser, Debug)]
#[command(name = "cloister-enclave", version)]
struct Args {
    /// The policy file (TOML, schema version 1).
    #[arg(long)]
    policy: PathBuf,
    /// Unix socket to listen on for the gateway.
    #[arg(long)]
    socket: PathBuf,
    /// Directory of the audit log.
    #[arg(long)]
    audit_dir: PathBuf,
    /// Directory of the SIMULATED AMD key hierarchy (provider "sim" only).
    #[arg(long)]
    sim_root: Option<PathBuf>,
    /// Directory of the privacy-budget ledger (needed when the policy charges any model).
    #[arg(long)]
    ledger_dir: Option<PathBuf>,
    /// Directory holding a cached VCEK (`vcek.der`) for hosts whose extended report carries no
    /// certificates (provider "snp" only).
    #[arg(long)]
    snp_cert_cache: Option<PathBuf>,
    /// Directory of the tenants' uploaded TFHE server keys (needed when the policy serves any
    /// homomorphic model, `format = "he-program"`).
    #[arg(long)]
    he_key_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    // `cloister-enclave --engine-worker`: the engine zygote the enclave starts (crate::worker).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == worker::ZYGOTE_FLAG)
    {
        worker::zygote_main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let opts = StartOptions {
        policy: args.policy,
        sim_root: args.sim_root,
        audit_dir: args.audit_dir,
        ledger_dir: args.ledger_dir,
        snp_cert_cache: args.snp_cert_cache,
        he_key_dir: args.he_key_dir,
    };
    // INVARIANT: the engine zygote starts here, before any key exists and before the ledger or
    // the audit log is opened: it is a fresh image of this binary (`/proc/self/exe`, so the
    // very program that was measured) that inherits only stdio and its control socket, so no
    // engine process ever holds a key, or a descriptor to a key, the ledger or the audit log
    // (see `worker`'s module docs).
    let engine = EnginePool::spawn(std::path::Path::new("/proc/self/exe"))
        .context("start the engine worker")?;
    // Start-up runs before any thread pool exists and before any request is read: policy,
    // models (handed to the engine zygote), keys, attestation provider, audit log; then the
    // gateway socket is bound.
    let mut enclave = Enclave::start(&opts, engine)?;
    let listener = server::bind(&args.socket)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());

    // INVARIANT: the sandbox locks down here — single-threaded, after every file, key and the
    // socket are open, before the runtime starts a thread and before the first request is read:
    // first the engine zygote (and so every worker it forks), then this process. Nothing below
    // may open a path outside the plan, start a process or use the network; inherited
    // descriptors are closed.
    let plan = enclave.sandbox_plan(&opts, &args.socket);
    let status = enclave.lock_down(&plan).context("sandbox lock-down")?;
    let worker_complete = status
        .worker
        .as_deref()
        .is_some_and(|w| !w.contains("=off"));
    tracing::info!(sandbox = %status.describe(), "sandbox locked down");
    if !worker_complete {
        tracing::warn!("best-effort sandbox: some engine-worker barriers are NOT in force");
    }
    if !status.is_complete() {
        let missing: Vec<&str> = status.missing().iter().map(|b| b.name()).collect();
        tracing::warn!(missing = ?missing, "best-effort sandbox: these barriers are NOT in force");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = server::listen(listener)?;
        tracing::info!(
            socket = %args.socket.display(),
            provider = enclave.provider_name(),
            "enclave ready"
        );
        let enclave = Arc::new(enclave);
        server::serve(Arc::clone(&enclave), listener, shutdown_signal()).await?;
        // Sign the final audit checkpoint once every request in flight has been recorded.
        enclave.checkpoint_audit();
        let _ = std::fs::remove_file(&args.socket);
        tracing::info!("enclave stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
