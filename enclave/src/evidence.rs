//! Answers `AttestRequest` frames: fresh evidence bound to the client's nonce.

use cloister_attestation::{report_data, EvidenceBundle};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::frame::{Frame, FrameKind};
use cloister_protocol::{MAX_NONCE_LEN, MIN_NONCE_LEN};

use crate::startup::Enclave;

impl Enclave {
    /// Builds an evidence bundle whose `REPORT_DATA` binds the enclave's keys,
    /// policy, models and build to `nonce`.
    pub fn evidence(&self, nonce: &[u8]) -> Frame {
        if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
            return error_frame(ApiError::new(
                ErrorCode::BadRequest,
                format!("nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes"),
            ));
        }
        let binding = self.binding(nonce.to_vec());
        let raw = match self.provider.report(report_data(&binding)) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, "attestation provider failed");
                return error_frame(ApiError::new(
                    ErrorCode::Internal,
                    "the attestation provider failed",
                ));
            }
        };
        let bundle = EvidenceBundle::new(
            self.provider.name(),
            self.provider.simulated(),
            raw,
            binding,
        );
        match bundle.to_json() {
            Ok(json) => Frame::new(FrameKind::Evidence, json.into_bytes()),
            Err(e) => {
                tracing::error!(error = %e, "evidence serialisation failed");
                error_frame(ApiError::new(
                    ErrorCode::Internal,
                    "evidence serialisation failed",
                ))
            }
        }
    }
}

/// An unsealed error frame.
pub fn error_frame(e: ApiError) -> Frame {
    Frame::new(FrameKind::Error, e.to_body())
}
