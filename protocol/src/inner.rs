//! The request and response *inside* the seal: a Binary HTTP (RFC 9292) message
//! whose body is the JSON defined here.
//!
//! Inner request: `POST /v1/infer`, header `authorization: Bearer <API key>`
//! (the enclave, not the gateway, authenticates the tenant), body
//! [`InferRequest`]. Inner response: status 200 with [`InferResponse`], or a
//! 4xx/5xx status with the JSON error body of [`crate::error::ApiError`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tensor::WireTensor;

/// Path of the inference request inside the seal.
pub const INFER_PATH: &str = "/v1/infer";
/// Path of the budget query inside the seal (`GET`, body [`BudgetRequest`]).
pub const BUDGET_PATH: &str = "/v1/budget";
/// Authority used in the inner request (informational; the enclave ignores it).
pub const INNER_AUTHORITY: &str = "enclave.cloister";

/// The opened inference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Client-chosen random id (hex, 16–64 chars); echoed in the response and the audit log.
    pub request_id: String,
    /// When the client sealed the request (Unix milliseconds); the enclave
    /// refuses requests outside its replay window.
    pub issued_at_ms: u64,
    /// Model id from the policy.
    pub model: String,
    /// Named inputs.
    pub inputs: BTreeMap<String, WireTensor>,
}

/// Where the audit record of a request sits, signed by the enclave's attested
/// Ed25519 key so a client can later hold the service to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReceipt {
    /// Index of the record in the log.
    pub index: u64,
    /// Hex SHA-256 chain hash of the record.
    pub hash: String,
    /// Hex Ed25519 signature over [`AuditReceipt::signed_message`].
    pub signature: String,
    /// A signed checkpoint of the audit log right after this record was synced, so covering
    /// it (`tree_size > index`). Keep it: `cloister audit prove DIR --index N --checkpoint
    /// FILE` later proves the record is in the log this checkpoint describes, and any rewrite
    /// or rollback of the log since then makes that proof impossible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<AuditCheckpoint>,
}

/// A signed audit checkpoint as the enclave sends it: the same members, order and meaning as a
/// line of the log's `checkpoints.log` (`docs/audit.md`); the signature is Ed25519 by the
/// attested key over `cloister/v1/audit-checkpoint\0 || u32be(len(log_id)) || log_id ||
/// u64be(tree_size) || root || u64be(time_unix_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// The log's identity.
    pub log_id: String,
    /// Records covered.
    pub tree_size: u64,
    /// Hex RFC 9162 Merkle root of the first `tree_size` records.
    pub root: String,
    /// When it was signed, Unix milliseconds.
    pub time_unix_ms: u64,
    /// Hex Ed25519 public key of the signer.
    pub key: String,
    /// Hex signature.
    pub signature: String,
}

impl AuditReceipt {
    /// The bytes the enclave signs: a label, the request id, the index and the hash.
    pub fn signed_message(request_id: &str, index: u64, hash_hex: &str) -> Vec<u8> {
        let mut m = b"cloister/v1/audit-receipt\0".to_vec();
        m.extend_from_slice(&(request_id.len() as u32).to_be_bytes());
        m.extend_from_slice(request_id.as_bytes());
        m.extend_from_slice(&index.to_be_bytes());
        m.extend_from_slice(hash_hex.as_bytes());
        m
    }
}

/// The successful inference response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// Echo of the request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// Hex SHA-256 of the model file that produced the outputs.
    pub model_sha256: String,
    /// Named outputs, dtype filled in.
    pub outputs: BTreeMap<String, WireTensor>,
    /// The audit record written before this response was released.
    pub audit: AuditReceipt,
    /// What the release cost and guarantees, for models with a privacy mechanism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyReceipt>,
}

/// The privacy accounting of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReceipt {
    /// The mechanism: `gnmax` (noisy arg-max over teacher votes), `confident-gnmax`,
    /// `ensemble-regression`, `dp-trained` or `heuristic-output-noise`.
    pub mechanism: String,
    /// What a person can rely on, in words.
    pub guarantee: String,
    /// zCDP cost charged for this response, in ρ.
    pub cost_rho: f64,
    /// The same cost in the ledger's exact unit, nano-ρ.
    pub cost_nano_rho: u64,
    /// The cost as (ε, δ)-DP at `delta` (exact zCDP conversion).
    pub cost_epsilon: f64,
    /// δ used for `cost_epsilon`.
    pub delta: f64,
    /// Remaining budget per account after this charge, in ρ (`None`: uncapped).
    pub remaining_rho: BTreeMap<String, Option<f64>>,
    /// `heuristic` when the release carries no differential-privacy guarantee at all (output
    /// noise on a single model): then the zero costs above mean "nothing was charged", never
    /// "private". Set by the enclave from the mechanism; no policy can remove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Rows (0-based) for which confident-GNMax abstained: the teachers did not agree enough,
    /// no label was released (the output holds -1) and only the check was charged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abstained_rows: Vec<u64>,
}

/// The body of a budget query: only what replay protection needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// Random id (hex, 16–64 chars).
    pub request_id: String,
    /// When the client sealed the request (Unix milliseconds).
    pub issued_at_ms: u64,
}

/// One account of a budget report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountBudget {
    /// `global`, `tenant/<id>` or `model/<id>`.
    pub account: String,
    /// Spent so far, in ρ.
    pub spent_rho: f64,
    /// The cap, in ρ (`None`: uncapped).
    pub cap_rho: Option<f64>,
    /// What remains, in ρ (`None`: uncapped).
    pub remaining_rho: Option<f64>,
    /// The spent amount as (ε, δ)-DP at the report's δ.
    pub spent_epsilon: f64,
}

/// The answer to a budget query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetReport {
    /// The tenant asking.
    pub tenant: String,
    /// Its account, every charged model it may use, and the global account.
    pub accounts: Vec<AccountBudget>,
    /// δ used for the ε figures.
    pub delta: f64,
    /// Whether and how budgets refresh (schema 1: never).
    pub refresh: String,
}
