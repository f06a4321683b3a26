//! Stable, typed error codes shared by every party.
//!
//! Codes are part of the public interface: clients script against them. The
//! message is for people; it never carries request data or internal state.

use serde::{Deserialize, Serialize};

/// Why a request was refused or failed. The string form (`as_str`) is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The outer HTTP request is malformed (client's fault).
    BadRequest,
    /// The outer bearer token is missing or unknown (gateway refuses).
    Unauthorized,
    /// The credential inside the sealed request is missing or unknown (enclave refuses).
    BadCredential,
    /// The sealed request could not be opened: truncated, corrupted or sealed to another key.
    SealInvalid,
    /// The sealed request was already served once.
    Replay,
    /// The sealed request's timestamp is outside the replay window.
    Stale,
    /// The opened request is not valid JSON of the expected shape.
    MalformedRequest,
    /// The model id is not served by this enclave.
    UnknownModel,
    /// The tenant may not use this model under the policy.
    ModelNotAllowed,
    /// An input tensor is missing, unexpected, or has the wrong shape or dtype.
    InvalidInput,
    /// The body exceeds the configured size limit.
    TooLarge,
    /// The client or the enclave was too slow.
    Timeout,
    /// Too many requests in flight or per minute.
    RateLimited,
    /// The gateway could not reach a healthy enclave.
    EnclaveUnavailable,
    /// The engine failed while running the model.
    InferenceFailed,
    /// Something failed inside the service; details are in the service's log only.
    Internal,
    /// No such route.
    NotFound,
    /// The privacy budget of the tenant, the model or the service cannot cover the request;
    /// nothing was charged. The message says what remains.
    BudgetExhausted,
    /// A request id that was already charged, whose answer this enclave no longer holds.
    DuplicateRequest,
    /// A homomorphic input names a server key this tenant has not uploaded (or whose upload
    /// is incomplete): upload it (`cloister infer --he` does so) and send the input again.
    HeKeyUnknown,
    /// An uploaded TFHE server key is unusable: its bytes do not hash to the key id, it does
    /// not deserialise, or it is for another parameter set. Nothing was stored.
    HeKeyInvalid,
    /// The model is served only homomorphically and the request is plaintext, or the other
    /// way round.
    HeModeMismatch,
}

impl ErrorCode {
    /// The stable string form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadCredential => "bad_credential",
            ErrorCode::SealInvalid => "seal_invalid",
            ErrorCode::Replay => "replay",
            ErrorCode::Stale => "stale",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::UnknownModel => "unknown_model",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Timeout => "timeout",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::EnclaveUnavailable => "enclave_unavailable",
            ErrorCode::InferenceFailed => "inference_failed",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BudgetExhausted => "budget_exhausted",
            ErrorCode::DuplicateRequest => "duplicate_request",
            ErrorCode::HeKeyUnknown => "he_key_unknown",
            ErrorCode::HeKeyInvalid => "he_key_invalid",
            ErrorCode::HeModeMismatch => "he_mode_mismatch",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::SealInvalid
            | ErrorCode::MalformedRequest
            | ErrorCode::InvalidInput
            | ErrorCode::HeKeyInvalid
            | ErrorCode::HeModeMismatch => 400,
            ErrorCode::Unauthorized | ErrorCode::BadCredential => 401,
            ErrorCode::ModelNotAllowed | ErrorCode::BudgetExhausted => 403,
            ErrorCode::UnknownModel | ErrorCode::NotFound | ErrorCode::HeKeyUnknown => 404,
            ErrorCode::Replay | ErrorCode::Stale | ErrorCode::DuplicateRequest => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Timeout => 504,
            ErrorCode::EnclaveUnavailable => 503,
            ErrorCode::InferenceFailed | ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ApiError,
}

/// A typed error with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong and what to do next; never contains request data.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// Serialises as the JSON error body.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: self.clone(),
        })
        .expect("error body serialises")
    }

    /// Parses a JSON error body.
    pub fn from_body(bytes: &[u8]) -> Option<ApiError> {
        serde_json::from_slice::<ErrorBody>(bytes)
            .ok()
            .map(|b| b.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_as_snake_case() {
        let e = ApiError::new(ErrorCode::UnknownModel, "no model \"x\"");
        let body = e.to_body();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("\"unknown_model\""), "{text}");
        assert_eq!(ApiError::from_body(&body), Some(e));
        assert_eq!(ErrorCode::UnknownModel.as_str(), "unknown_model");
    }
}
