//! Wire types shared by the client, the untrusted gateway and the enclave.
//!
//! This crate is deliberately crypto-free: the gateway depends on it, and the
//! gateway must never be able to open a sealed request (see `ARCHITECTURE.md`,
//! invariant "the gateway holds no opening key"). Everything here is framing,
//! JSON shapes and error codes.

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod frame;
pub mod he;
pub mod inner;
pub mod tensor;

/// Media type of an Oblivious HTTP encapsulated request (RFC 9458 §9).
pub const OHTTP_REQUEST_MEDIA_TYPE: &str = "message/ohttp-req";
/// Media type of an Oblivious HTTP encapsulated response (RFC 9458 §9).
pub const OHTTP_RESPONSE_MEDIA_TYPE: &str = "message/ohttp-res";
/// Shortest nonce a client may send to `/v1/attestation`, in bytes.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce a client may send to `/v1/attestation`, in bytes.
pub const MAX_NONCE_LEN: usize = 64;
/// Version string of this build, bound into the attestation evidence.
pub const BUILD_VERSION: &str = concat!("cloister ", env!("CARGO_PKG_VERSION"));
