//! The enclave's side of the gateway–enclave transport: a Unix socket server
//! that answers frames. CPU-bound work (opening, inference, fsync) runs on the
//! blocking pool so slow requests never stall the accept loop.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::frame::{Frame, FrameError, FrameKind};
use tokio::net::{UnixListener, UnixStream};

use crate::evidence::error_frame;
use crate::startup::Enclave;

/// Binds the socket (replacing a stale one) with owner-only permissions, as a non-blocking std
/// listener: binding happens before the sandbox locks down (after it, the socket's directory is
/// writable but `bind` and `chmod` are not allowed); [`listen`] hands it to the runtime.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("bind {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restrict {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("make the listener non-blocking")?;
    Ok(listener)
}

/// Registers a listener from [`bind`] with the runtime (call inside it).
pub fn listen(listener: std::os::unix::net::UnixListener) -> Result<UnixListener> {
    UnixListener::from_std(listener).context("register the listener with the runtime")
}

/// Serves until `shutdown` completes, then waits up to ten seconds for
/// requests in progress (so their audit records are written) and returns.
pub async fn serve(
    enclave: Arc<Enclave>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let e = enclave.clone();
                    tasks.spawn(connection(e, stream));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::info!("enclave stopping: finishing requests in progress");
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn connection(enclave: Arc<Enclave>, mut stream: UnixStream) {
    loop {
        let frame = match Frame::read_from(&mut stream).await {
            Ok(f) => f,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "bad frame from the gateway");
                let answer = error_frame(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("bad frame: {e}"),
                ));
                let _ = answer.write_to(&mut stream).await;
                return;
            }
        };
        let answer = dispatch(enclave.clone(), frame).await;
        if answer.write_to(&mut stream).await.is_err() {
            return;
        }
    }
}

async fn dispatch(enclave: Arc<Enclave>, frame: Frame) -> Frame {
    let blocking = |f: Box<dyn FnOnce() -> Frame + Send>| async move {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
            error_frame(ApiError::new(ErrorCode::Internal, "request handler failed"))
        })
    };
    match frame.kind {
        FrameKind::Health => {
            let status = serde_json::json!({
                "status": "ok",
                "provider": enclave.provider_name(),
                "sandbox": enclave.sandbox().describe(),
                "models": enclave.models.keys().collect::<Vec<_>>(),
            });
            Frame::new(FrameKind::HealthOk, status.to_string().into_bytes())
        }
        FrameKind::AttestRequest => {
            blocking(Box::new(move || enclave.evidence(&frame.payload))).await
        }
        FrameKind::SealedRequest => {
            blocking(Box::new(move || enclave.handle_sealed(&frame.payload))).await
        }
        other => error_frame(ApiError::new(
            ErrorCode::BadRequest,
            format!("frame kind {other:?} is not a request"),
        )),
    }
}
