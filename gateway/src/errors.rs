//! The one place where failures become HTTP responses.
//!
//! Every error the gateway produces, and every unsealed error the enclave
//! reports, goes through [`error_response`]: a status from the typed code and a
//! JSON body that names the problem without echoing internals or request data.

use bytes::Bytes;
use cloister_protocol::error::{ApiError, ErrorCode};
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::enclave_link::LinkError;

/// Response body type used by the gateway.
pub type Body = Full<Bytes>;

/// Converts a typed error into the HTTP response the client sees.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(err.to_body())))
        .expect("static response parts are valid")
}

/// Maps a transport failure to the error the client is told.
pub fn link_error(err: &LinkError) -> ApiError {
    match err {
        LinkError::Timeout(_) => ApiError::new(
            ErrorCode::Timeout,
            "the enclave did not answer in time; retry later",
        ),
        LinkError::Connect { .. } | LinkError::Frame(_) => ApiError::new(
            ErrorCode::EnclaveUnavailable,
            "no healthy enclave is reachable; retry later",
        ),
    }
}
