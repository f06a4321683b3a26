//! `cloister-enclave`: the trusted process that opens sealed requests.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;
use cloister_enclave::server;
use cloister_enclave::startup::{Enclave, StartOptions};

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
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Start-up runs before any thread pool exists and before any request is read.
    let enclave = Enclave::start(&StartOptions {
        policy: args.policy,
        sim_root: args.sim_root,
        audit_dir: args.audit_dir,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = server::bind(&args.socket)?;
        tracing::info!(
            socket = %args.socket.display(),
            provider = enclave.provider_name(),
            "enclave ready"
        );
        server::serve(Arc::new(enclave), listener, shutdown_signal()).await?;
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
