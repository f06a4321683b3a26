//! `cloister-gateway`: the untrusted TLS front of the service.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use cloister_gateway::config::GatewayConfig;
use cloister_gateway::server::Gateway;

/// Serve HTTPS and forward sealed requests to the enclave. The gateway cannot
/// read what it forwards.
#[derive(Parser, Debug)]
#[command(name = "cloister-gateway", version)]
struct Args {
    /// Gateway configuration file (written by `cloister up`).
    #[arg(long)]
    config: PathBuf,
    /// Override the listen address from the configuration.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = GatewayConfig::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another service using it?",
                config.listen
            )
        })?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, enclave = %config.enclave_socket.display(), "gateway listening (TLS 1.3)");
    let gateway = Gateway::new(config)?;
    gateway.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
