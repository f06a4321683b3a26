//! One audit entry: the [`AuditRecord`] the enclave fills in, its canonical encoding, and the
//! hash that chains it to the entry before.
//!
//! # Canonical encoding (format version 1)
//! The canonical bytes of entry number `index` are the compact JSON (no whitespace, UTF-8,
//! serde_json escaping: only `"`, `\` and control characters are escaped) of one object whose
//! members appear in exactly this order:
//!
//! ```text
//! index, time_unix_ms, request_id, tenant, model, model_sha256, policy_sha256, outcome,
//! input_digest, output_digest, latency_us
//! ```
//!
//! Integers are decimal without sign or exponent; an absent optional is `null`; `outcome` is
//! `{"kind":"ok"}`, `{"kind":"refused","code":"…"}` or `{"kind":"error","code":"…"}`.
//!
//! The entry's hash is `SHA-256(prev || canonical)`, where `prev` is the 32 raw bytes of the
//! previous entry's hash ([`GENESIS_PREV`], all zeros, for index 0).
//!
//! The entry's Merkle leaf (see [`crate::merkle`]) is `SHA-256(0x00 || canonical)`: the same
//! canonical bytes, so the tree and the chain cover exactly the same content.
//!
//! On disk each entry is one line: the canonical JSON with two members appended before the
//! closing brace, `"prev":"<64 lowercase hex>","hash":"<64 lowercase hex>"`, then `\n`. A reader
//! re-encodes each parsed line and requires byte equality, so even edits that keep the same
//! meaning (reordered keys, extra spaces) are detected.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::BreakReason;

/// The `prev` of the first entry: 32 zero bytes.
pub const GENESIS_PREV: [u8; 32] = [0u8; 32];

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Served.
    Ok,
    /// Refused by policy (e.g. unknown tenant, model not allowed, budget exhausted).
    Refused {
        /// A stable machine-readable reason.
        code: String,
    },
    /// Failed inside the enclave.
    Error {
        /// A stable machine-readable reason.
        code: String,
    },
}

/// What the log records about one request: identifiers and keyed digests, never inputs or
/// outputs themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the decision was made, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The request's id.
    pub request_id: String,
    /// The authenticated tenant, if authentication got that far.
    pub tenant: Option<String>,
    /// The model asked for.
    pub model: Option<String>,
    /// Hex SHA-256 of the model file that served it.
    pub model_sha256: Option<String>,
    /// Hex SHA-256 of the policy in force.
    pub policy_sha256: String,
    /// The decision.
    pub outcome: Outcome,
    /// [`keyed_digest`] of the input, so an auditor holding the key can match a known input
    /// without the log revealing it.
    pub input_digest: Option<String>,
    /// [`keyed_digest`] of the output.
    pub output_digest: Option<String>,
    /// The privacy mechanism applied and what it cost (models with a mechanism only).
    pub privacy: Option<PrivacyCharge>,
    /// Time spent in the enclave, microseconds.
    pub latency_us: u64,
    /// For a request served in homomorphic mode: the key used, and that the input was never
    /// decrypted. Absent otherwise (and absent from the canonical form, so records written
    /// before the field existed keep their hashes).
    pub homomorphic: Option<HomomorphicUse>,
}

/// The homomorphic side of a decision: which of the tenant's TFHE server keys was used, and the
/// statement that the enclave computed on ciphertexts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomomorphicUse {
    /// Hex SHA-256 of the tenant's compressed server key.
    pub key_id: String,
    /// Always true for a homomorphic record: the input stayed encrypted under the client's key.
    pub input_never_decrypted: bool,
    /// Programmable bootstraps performed (0 for key uploads and program queries).
    pub bootstraps: u64,
}

/// The differential-privacy side of a decision: the mechanism and the charge, never the noise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyCharge {
    /// The mechanism, e.g. `gnmax` or `dp-trained`.
    pub mechanism: String,
    /// zCDP cost charged to the ledger for this decision, in nano-ρ (0 when free).
    pub cost_nano_rho: u64,
}

/// Hex HMAC-SHA256 of `data` under `key`: a digest that identifies data to holders of the key
/// but, unlike a plain hash, cannot be used to confirm a guessed input without it.
pub fn keyed_digest(key: &[u8; 32], data: &[u8]) -> String {
    // HMAC zero-pads keys shorter than the 64-byte block, so this is exactly HMAC(key, data);
    // using the fixed-size constructor avoids a fallible (and panicking) path.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The canonical form (see the module docs). Field order here *is* the format.
#[derive(Serialize)]
struct Canonical<'a> {
    index: u64,
    time_unix_ms: u64,
    request_id: &'a str,
    tenant: Option<&'a str>,
    model: Option<&'a str>,
    model_sha256: Option<&'a str>,
    policy_sha256: &'a str,
    outcome: &'a Outcome,
    input_digest: Option<&'a str>,
    output_digest: Option<&'a str>,
    privacy: Option<&'a PrivacyCharge>,
    latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    homomorphic: Option<&'a HomomorphicUse>,
}

/// A line as stored, for parsing. Unknown or duplicate members are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredEntry {
    pub index: u64,
    pub time_unix_ms: u64,
    pub request_id: String,
    pub tenant: Option<String>,
    pub model: Option<String>,
    pub model_sha256: Option<String>,
    pub policy_sha256: String,
    pub outcome: Outcome,
    pub input_digest: Option<String>,
    pub output_digest: Option<String>,
    pub privacy: Option<PrivacyCharge>,
    pub latency_us: u64,
    #[serde(default)]
    pub homomorphic: Option<HomomorphicUse>,
    pub prev: String,
    pub hash: String,
}

impl StoredEntry {
    pub(crate) fn into_record(self) -> (u64, AuditRecord, String, String) {
        let record = AuditRecord {
            time_unix_ms: self.time_unix_ms,
            request_id: self.request_id,
            tenant: self.tenant,
            model: self.model,
            model_sha256: self.model_sha256,
            policy_sha256: self.policy_sha256,
            outcome: self.outcome,
            input_digest: self.input_digest,
            output_digest: self.output_digest,
            privacy: self.privacy,
            latency_us: self.latency_us,
            homomorphic: self.homomorphic,
        };
        (self.index, record, self.prev, self.hash)
    }
}

impl AuditRecord {
    /// The canonical bytes of this record as entry number `index`.
    pub fn canonical_bytes(&self, index: u64) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Canonical {
            index,
            time_unix_ms: self.time_unix_ms,
            request_id: &self.request_id,
            tenant: self.tenant.as_deref(),
            model: self.model.as_deref(),
            model_sha256: self.model_sha256.as_deref(),
            policy_sha256: &self.policy_sha256,
            outcome: &self.outcome,
            input_digest: self.input_digest.as_deref(),
            output_digest: self.output_digest.as_deref(),
            privacy: self.privacy.as_ref(),
            latency_us: self.latency_us,
            homomorphic: self.homomorphic.as_ref(),
        })
    }
}

/// `SHA-256(prev || canonical)`.
pub fn entry_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// The full line for `record` as entry `index` after `prev`, with its trailing newline, and
/// the entry's hash.
pub fn encode_line(
    record: &AuditRecord,
    index: u64,
    prev: &[u8; 32],
) -> Result<(Vec<u8>, [u8; 32]), serde_json::Error> {
    let e = encode_entry(record, index, prev)?;
    Ok((e.line, e.hash))
}

/// One entry, encoded: the stored line and both hashes that cover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEntry {
    /// The line as stored, with its trailing newline.
    pub line: Vec<u8>,
    /// The chain hash, `SHA-256(prev || canonical)`.
    pub hash: [u8; 32],
    /// The Merkle leaf hash, `SHA-256(0x00 || canonical)` ([`crate::merkle::leaf_hash`]).
    pub leaf: [u8; 32],
}

/// Encodes `record` as entry `index` after `prev`: its line, chain hash and Merkle leaf hash.
pub fn encode_entry(
    record: &AuditRecord,
    index: u64,
    prev: &[u8; 32],
) -> Result<EncodedEntry, serde_json::Error> {
    let mut line = record.canonical_bytes(index)?;
    let hash = entry_hash(prev, &line);
    let leaf = crate::merkle::leaf_hash(&line);
    // INVARIANT: canonical bytes are a JSON object, so they end with '}'.
    line.pop();
    line.extend_from_slice(b",\"prev\":\"");
    line.extend_from_slice(hex::encode(prev).as_bytes());
    line.extend_from_slice(b"\",\"hash\":\"");
    line.extend_from_slice(hex::encode(hash).as_bytes());
    line.extend_from_slice(b"\"}\n");
    Ok(EncodedEntry { line, hash, leaf })
}

/// A stored line that is well-formed and self-consistent on its own (its hash matches its
/// contents and its `prev`, and it is byte-for-byte canonical). Whether it *continues* the
/// chain is [`crate::chain::ChainState`]'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEntry {
    /// The entry's index.
    pub index: u64,
    /// What it says.
    pub record: AuditRecord,
    /// The `prev` it claims.
    pub prev: [u8; 32],
    /// Its chain hash.
    pub hash: [u8; 32],
    /// Its Merkle leaf hash.
    pub leaf: [u8; 32],
}

/// Parses and checks one stored line (without its newline), as a proof verifier does with an
/// entry it was handed.
pub fn parse_entry_line(line: &[u8]) -> Result<ParsedEntry, BreakReason> {
    let stored: StoredEntry =
        serde_json::from_slice(line).map_err(|e| BreakReason::Unparsable(e.to_string()))?;
    let (index, record, prev_hex, hash_hex) = stored.into_record();
    let prev: [u8; 32] = hex::decode(&prev_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            BreakReason::Unparsable(format!("prev {prev_hex:?} is not 64 hex digits"))
        })?;
    let encoded =
        encode_entry(&record, index, &prev).map_err(|e| BreakReason::Unparsable(e.to_string()))?;
    let computed = hex::encode(encoded.hash);
    if hash_hex != computed {
        return Err(BreakReason::HashMismatch {
            computed,
            stored: hash_hex,
        });
    }
    // `encoded.line` ends with '\n'; `line` does not.
    if encoded.line.strip_suffix(b"\n") != Some(line) {
        return Err(BreakReason::NotCanonical);
    }
    Ok(ParsedEntry {
        index,
        record,
        prev,
        hash: encoded.hash,
        leaf: encoded.leaf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> AuditRecord {
        AuditRecord {
            time_unix_ms: 1_700_000_000_000,
            request_id: "req-1".into(),
            tenant: Some("dev".into()),
            model: None,
            model_sha256: None,
            policy_sha256: "ab".repeat(32),
            outcome: Outcome::Refused {
                code: "model_not_allowed".into(),
            },
            input_digest: None,
            output_digest: None,
            privacy: None,
            latency_us: 42,
            homomorphic: None,
        }
    }

    #[test]
    fn a_homomorphic_record_round_trips_and_other_records_keep_their_form() {
        let plain = sample();
        let line = encode_line(&plain, 0, &GENESIS_PREV).unwrap().0;
        assert!(!String::from_utf8_lossy(&line).contains("homomorphic"));
        let mut he = sample();
        he.homomorphic = Some(HomomorphicUse {
            key_id: "cd".repeat(32),
            input_never_decrypted: true,
            bootstraps: 80,
        });
        let line = encode_line(&he, 3, &GENESIS_PREV).unwrap().0;
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("\"homomorphic\":{\"key_id\":"), "{text}");
        let parsed = parse_entry_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed.record, he);
        assert_eq!(parsed.index, 3);
    }

    #[test]
    fn canonical_encoding_is_pinned() {
        // Golden: changing this string changes the on-disk format; bump the format version.
        let want = format!(
            "{{\"index\":7,\"time_unix_ms\":1700000000000,\"request_id\":\"req-1\",\
             \"tenant\":\"dev\",\"model\":null,\"model_sha256\":null,\"policy_sha256\":\"{}\",\
             \"outcome\":{{\"kind\":\"refused\",\"code\":\"model_not_allowed\"}},\
             \"input_digest\":null,\"output_digest\":null,\"privacy\":null,\"latency_us\":42}}",
            "ab".repeat(32)
        );
        assert_eq!(
            String::from_utf8(sample().canonical_bytes(7).unwrap()).unwrap(),
            want
        );
        let mut ok = sample();
        ok.outcome = Outcome::Ok;
        let text = String::from_utf8(ok.canonical_bytes(0).unwrap()).unwrap();
        assert!(text.contains("\"outcome\":{\"kind\":\"ok\"}"), "{text}");
        ok.privacy = Some(PrivacyCharge {
            mechanism: "gnmax".into(),
            cost_nano_rho: 30_000_000,
        });
        let text = String::from_utf8(ok.canonical_bytes(0).unwrap()).unwrap();
        assert!(
            text.contains(
                "\"privacy\":{\"mechanism\":\"gnmax\",\"cost_nano_rho\":30000000},\"latency_us\""
            ),
            "{text}"
        );
    }

    #[test]
    fn hash_covers_prev_and_every_field() {
        let (line, hash) = encode_line(&sample(), 7, &GENESIS_PREV).unwrap();
        let canonical = sample().canonical_bytes(7).unwrap();
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(&canonical);
        assert_eq!(hash, <[u8; 32]>::from(h.finalize()));
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with(&format!(
            ",\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
            "0".repeat(64),
            hex::encode(hash)
        )));
        assert_ne!(encode_line(&sample(), 7, &[1u8; 32]).unwrap().1, hash);
        assert_ne!(encode_line(&sample(), 8, &GENESIS_PREV).unwrap().1, hash);
        let mut other = sample();
        other.latency_us += 1;
        assert_ne!(encode_line(&other, 7, &GENESIS_PREV).unwrap().1, hash);
    }

    #[test]
    fn newlines_in_strings_stay_on_one_line() {
        let mut r = sample();
        r.request_id = "a\nb\r\"c\u{2028}".into();
        let (line, _) = encode_line(&r, 0, &GENESIS_PREV).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn keyed_digest_is_hmac_sha256() {
        // Cross-checked with Python: hmac.new(bytes(range(32)), b"hello cloister", sha256)
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            keyed_digest(&key, b"hello cloister"),
            "0386a4db4af4e0b25bf049d6963e0718be7d0b68e3001b92faa72c03393abd59"
        );
        assert_ne!(
            keyed_digest(&[0u8; 32], b"hello cloister"),
            keyed_digest(&key, b"hello cloister")
        );
    }
}
