//! Homomorphic mode inside the seal: the bodies of the three requests a tenant sends to have a
//! model evaluated on TFHE ciphertexts that the enclave cannot decrypt.
//!
//! 1. `GET /v1/he/program` ([`HeProgramRequest`] → [`HeProgramResponse`]): the integer program
//!    of a homomorphic model, so the client can quantize its inputs and decode the scores. Its
//!    SHA-256 is the model digest bound into the attestation evidence, which the client checks.
//! 2. `POST /v1/he/keys` ([`HeKeyChunk`] → [`HeKeyChunkAck`]): the tenant's compressed TFHE
//!    server key (tens of MiB), uploaded once in chunks that each fit one sealed request. The
//!    enclave stores it under its SHA-256 (the key id), per tenant.
//! 3. `POST /v1/he/infer` ([`HeInferRequest`] → [`HeInferResponse`]): one encrypted input row;
//!    the answer holds encrypted scores only the client's secret key opens.
//!
//! Binary payloads (key bytes, ciphertexts) travel as standard base64 (RFC 4648 §4, padded).
//! Every response carries the signed audit receipt of its record, as inference responses do.

use serde::{Deserialize, Serialize};

use crate::inner::AuditReceipt;

/// Path of the program query inside the seal (`GET`).
pub const HE_PROGRAM_PATH: &str = "/v1/he/program";
/// Path of a server-key chunk upload inside the seal (`POST`).
pub const HE_KEYS_PATH: &str = "/v1/he/keys";
/// Path of a homomorphic inference inside the seal (`POST`).
pub const HE_INFER_PATH: &str = "/v1/he/infer";

/// What a homomorphic response promises, in words (also in the audit record).
pub const HE_GUARANTEE: &str = "the input was encrypted under the client's TFHE key and was \
     never decrypted: the enclave computed on ciphertexts and holds no key that opens them";

/// Asks for the integer program of a homomorphic model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeProgramRequest {
    /// Random id (hex, 16–64 chars).
    pub request_id: String,
    /// When the client sealed the request (Unix milliseconds).
    pub issued_at_ms: u64,
    /// Model id from the policy.
    pub model: String,
}

/// The program of a homomorphic model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeProgramResponse {
    /// Echo of the request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// Hex SHA-256 of `program`'s bytes: the digest the policy pins and the evidence binds.
    pub model_sha256: String,
    /// The program file, verbatim (JSON, format `cloister-he-program/v2` or v1).
    pub program: String,
    /// The audit record written before this response was released.
    pub audit: AuditReceipt,
}

/// One chunk of a compressed TFHE server key. Chunks are sent in order (`offset` equal to the
/// bytes the enclave already holds); a chunk it already has is acknowledged again, so a client
/// may resend after a lost answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeKeyChunk {
    /// Random id (hex, 16–64 chars).
    pub request_id: String,
    /// When the client sealed the request (Unix milliseconds).
    pub issued_at_ms: u64,
    /// Hex SHA-256 of the whole key file: the key id inputs will name.
    pub key_id: String,
    /// Size of the whole key file in bytes (within the policy's `max_server_key_bytes`).
    pub total_bytes: u64,
    /// Where this chunk starts in the key file.
    pub offset: u64,
    /// The chunk's bytes, base64.
    pub data: String,
}

/// The answer to a key chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeKeyChunkAck {
    /// Echo of the request id.
    pub request_id: String,
    /// The key id.
    pub key_id: String,
    /// Bytes the enclave holds so far (the next chunk's `offset`).
    pub received_bytes: u64,
    /// Size of the whole key.
    pub total_bytes: u64,
    /// True once the whole key arrived, matched its id, passed TFHE-rs's parameter check and
    /// was written to the enclave's key store: inputs may now name it.
    pub stored: bool,
    /// The audit record written before this response was released.
    pub audit: AuditReceipt,
}

/// One homomorphic inference: a single input row encrypted under the client's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeInferRequest {
    /// Random id (hex, 16–64 chars).
    pub request_id: String,
    /// When the client sealed the request (Unix milliseconds).
    pub issued_at_ms: u64,
    /// Model id from the policy (a homomorphic model).
    pub model: String,
    /// The encrypted input (`cloister-he/seeded-lwe-input/v2`, which names its key id), base64.
    pub input: String,
}

/// Encrypted scores for one input row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeInferResponse {
    /// Echo of the request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// Hex SHA-256 of the program that produced the scores.
    pub model_sha256: String,
    /// Hex id of the server key used (the one the input named).
    pub key_id: String,
    /// The encrypted scores (`cloister-he/lwe-scores/v2`), base64; only the client key opens them.
    pub scores: String,
    /// Programmable bootstraps performed.
    pub bootstraps: u64,
    /// Always `false`: the enclave never decrypted the input (it cannot).
    pub input_decrypted: bool,
    /// [`HE_GUARANTEE`].
    pub guarantee: String,
    /// The audit record written before this response was released.
    pub audit: AuditReceipt,
}
