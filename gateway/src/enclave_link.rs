//! The gateway's side of the gateway–enclave transport.
//!
//! One Unix-socket connection per call keeps the enclave's state per request
//! trivially isolated; the call as a whole is bounded by a timeout so a stuck
//! enclave cannot hold gateway resources.

use std::path::PathBuf;
use std::time::Duration;

use cloister_protocol::frame::{Frame, FrameError};
use tokio::net::UnixStream;

/// Why the enclave could not be reached or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No enclave listens on the socket.
    #[error("cannot connect to the enclave at {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The enclave took longer than the configured timeout.
    #[error("the enclave did not answer within {0:?}")]
    Timeout(Duration),
    /// The exchange failed half-way.
    #[error("enclave transport failed: {0}")]
    Frame(#[from] FrameError),
}

/// A handle that reaches the enclave.
#[derive(Debug, Clone)]
pub struct EnclaveLink {
    socket: PathBuf,
    timeout: Duration,
}

impl EnclaveLink {
    /// A link to the enclave listening on `socket`.
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        EnclaveLink { socket, timeout }
    }

    /// Sends one frame and waits for the answer.
    pub async fn call(&self, request: Frame) -> Result<Frame, LinkError> {
        let exchange = async {
            let mut stream =
                UnixStream::connect(&self.socket)
                    .await
                    .map_err(|source| LinkError::Connect {
                        path: self.socket.clone(),
                        source,
                    })?;
            request.write_to(&mut stream).await?;
            Ok::<Frame, LinkError>(Frame::read_from(&mut stream).await?)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))?
    }
}
