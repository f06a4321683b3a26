//! Signed checkpoints: "the log named `log_id` had `tree_size` entries with Merkle root `root`
//! at `time_unix_ms`", signed with the enclave's Ed25519 key — the key the attestation evidence
//! binds. A checkpoint is what closes the gap the hash chain leaves open: without one, dropping
//! the last entries (or rewriting the last entry and its hash) is undetectable. With one, every
//! entry up to `tree_size` is fixed, and an auditor holding the checkpoint can demand inclusion
//! proofs for any of them.
//!
//! # Encoding (format version 1)
//! `checkpoints.log` in the audit directory holds one checkpoint per line: the compact JSON
//! object with members in exactly this order, then `\n`:
//!
//! ```text
//! {"log_id":"…","tree_size":N,"root":"<64 hex>","time_unix_ms":T,"key":"<64 hex>","signature":"<128 hex>"}
//! ```
//!
//! `key` is the raw Ed25519 public key that made `signature`; carrying it makes each line
//! self-describing, but *trusting* it requires pinning it (`--key`) or taking it from verified
//! attestation evidence (`--evidence`). A reader re-encodes each parsed line and requires byte
//! equality, as for records.
//!
//! # Signed message
//! The signature is Ed25519 (RFC 8032, pure) over
//!
//! ```text
//! "cloister/v1/audit-checkpoint\0" || u32be(len(log_id)) || log_id || u64be(tree_size)
//!     || root (32 raw bytes) || u64be(time_unix_ms)
//! ```
//!
//! The label keeps a checkpoint signature from ever being a valid receipt signature
//! (`cloister/v1/audit-receipt\0`) or any other message the same key signs.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

/// The domain-separation label at the start of every signed checkpoint message.
pub const CHECKPOINT_LABEL: &[u8] = b"cloister/v1/audit-checkpoint\0";

/// The file in the audit directory that holds the checkpoints.
pub const CHECKPOINT_FILE: &str = "checkpoints.log";

/// One signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log this is (the enclave's configured identity string).
    pub log_id: String,
    /// Number of entries covered.
    pub tree_size: u64,
    /// RFC 6962 Merkle root of the first `tree_size` entries' leaves.
    pub root: Hash,
    /// When it was signed, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The Ed25519 public key that signed it.
    pub key: [u8; 32],
    /// The signature over [`Checkpoint::signed_message`].
    pub signature: [u8; 64],
}

/// Why a checkpoint line is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointFault {
    /// Not a well-formed checkpoint (bad JSON, member, hex or length).
    #[error("checkpoint is not parsable: {0}")]
    Unparsable(String),
    /// The line means the same as a valid checkpoint but is not byte-for-byte canonical.
    #[error("checkpoint is not in canonical encoding")]
    NotCanonical,
    /// The signature does not verify under the key in the line.
    #[error("signature does not verify under key {key}: the checkpoint was altered or forged")]
    BadSignature {
        /// Hex public key named in the line.
        key: String,
    },
    /// Signed by a key that is not one of the trusted (pinned or attested) keys.
    #[error(
        "signed by key {key}, which is not a trusted enclave key (--key / --evidence); a log \
         that spans enclave restarts needs the key of each run"
    )]
    UntrustedKey {
        /// Hex public key named in the line.
        key: String,
    },
    /// Names a different log than the checkpoints before it.
    #[error("names log {found:?} but earlier checkpoints name {expected:?}")]
    LogIdChanged {
        /// The first checkpoint's log id.
        expected: String,
        /// This one's.
        found: String,
    },
    /// Smaller than a checkpoint before it: the log was rolled back, or lines were reordered.
    #[error("tree size {size} is smaller than an earlier checkpoint's {previous}")]
    SizeDecreased {
        /// This checkpoint's size.
        size: u64,
        /// The earlier, larger size.
        previous: u64,
    },
    /// The log's first `tree_size` entries do not hash to the signed root: an entry covered by
    /// this checkpoint was changed, or the checkpoint is not consistent with the log (and hence
    /// with the checkpoints before it).
    #[error(
        "the log's first {size} entries have Merkle root {computed} but the checkpoint signed \
         {signed}: covered entries were changed, or the checkpoint is inconsistent with the log"
    )]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// Hex root computed from the log.
        computed: String,
        /// Hex root in the checkpoint.
        signed: String,
    },
    /// Covers more entries than the log holds: entries were removed from the end.
    #[error(
        "covers {size} entries but the log holds only {entries}: signed entries were removed \
         (truncated)"
    )]
    BeyondLog {
        /// The checkpoint's tree size.
        size: u64,
        /// Entries found.
        entries: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    log_id: String,
    tree_size: u64,
    root: String,
    time_unix_ms: u64,
    key: String,
    signature: String,
}

pub(crate) fn unhex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], CheckpointFault> {
    hex::decode(s)
        .ok()
        .filter(|_| s.bytes().all(|b| !b.is_ascii_uppercase()))
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            CheckpointFault::Unparsable(format!("{what} is not {} lowercase hex digits", 2 * N))
        })
}

impl Checkpoint {
    /// The bytes that are signed (see the module docs).
    pub fn signed_message(log_id: &str, tree_size: u64, root: &Hash, time_unix_ms: u64) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_LABEL.len() + 4 + log_id.len() + 48);
        m.extend_from_slice(CHECKPOINT_LABEL);
        m.extend_from_slice(
            &u32::try_from(log_id.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        m.extend_from_slice(log_id.as_bytes());
        m.extend_from_slice(&tree_size.to_be_bytes());
        m.extend_from_slice(root);
        m.extend_from_slice(&time_unix_ms.to_be_bytes());
        m
    }

    /// Signs a checkpoint with `key`.
    pub fn sign(
        log_id: &str,
        tree_size: u64,
        root: Hash,
        time_unix_ms: u64,
        key: &SigningKey,
    ) -> Checkpoint {
        let message = Checkpoint::signed_message(log_id, tree_size, &root, time_unix_ms);
        Checkpoint {
            log_id: log_id.to_string(),
            tree_size,
            root,
            time_unix_ms,
            key: key.verifying_key().to_bytes(),
            signature: key.sign(&message).to_bytes(),
        }
    }

    /// Checks the signature against the key the checkpoint names.
    pub fn verify_signature(&self) -> Result<(), CheckpointFault> {
        let bad = || CheckpointFault::BadSignature {
            key: hex::encode(self.key),
        };
        let key = VerifyingKey::from_bytes(&self.key).map_err(|_| bad())?;
        let message =
            Checkpoint::signed_message(&self.log_id, self.tree_size, &self.root, self.time_unix_ms);
        key.verify_strict(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| bad())
    }

    /// Checks the signature, and that the signer is one of `trusted` (if any are given).
    pub fn verify_with(&self, trusted: &[[u8; 32]]) -> Result<(), CheckpointFault> {
        if !trusted.is_empty() && !trusted.contains(&self.key) {
            return Err(CheckpointFault::UntrustedKey {
                key: hex::encode(self.key),
            });
        }
        self.verify_signature()
    }

    /// The canonical JSON object (no newline).
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(&self.wire()).unwrap_or_default()
    }

    /// The JSON value, for embedding in other documents (e.g. an inclusion proof).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).unwrap_or_default()
    }

    fn wire(&self) -> Wire {
        Wire {
            log_id: self.log_id.clone(),
            tree_size: self.tree_size,
            root: hex::encode(self.root),
            time_unix_ms: self.time_unix_ms,
            key: hex::encode(self.key),
            signature: hex::encode(self.signature),
        }
    }

    /// Parses one line (without its newline) and requires canonical encoding. Does *not* check
    /// the signature.
    pub fn parse(line: &[u8]) -> Result<Checkpoint, CheckpointFault> {
        let wire: Wire =
            serde_json::from_slice(line).map_err(|e| CheckpointFault::Unparsable(e.to_string()))?;
        let cp = Checkpoint::from_wire(wire)?;
        if cp.to_json().as_bytes() != line {
            return Err(CheckpointFault::NotCanonical);
        }
        Ok(cp)
    }

    /// Reads a checkpoint from a JSON value (as embedded in a proof); canonical form is not
    /// required here because the signature covers the meaning, not the bytes.
    pub fn from_value(v: &serde_json::Value) -> Result<Checkpoint, CheckpointFault> {
        let wire = Wire::deserialize(v).map_err(|e| CheckpointFault::Unparsable(e.to_string()))?;
        Checkpoint::from_wire(wire)
    }

    fn from_wire(w: Wire) -> Result<Checkpoint, CheckpointFault> {
        Ok(Checkpoint {
            root: unhex("root", &w.root)?,
            key: unhex("key", &w.key)?,
            signature: unhex("signature", &w.signature)?,
            log_id: w.log_id,
            tree_size: w.tree_size,
            time_unix_ms: w.time_unix_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    #[test]
    fn round_trip_and_signature() {
        let cp = Checkpoint::sign("test-log", 5, [3u8; 32], 1_700_000_000_000, &key());
        let line = cp.to_json();
        assert!(line.starts_with("{\"log_id\":\"test-log\",\"tree_size\":5,\"root\":\"0303"));
        let back = Checkpoint::parse(line.as_bytes()).unwrap();
        assert_eq!(back, cp);
        back.verify_signature().unwrap();
        back.verify_with(&[key().verifying_key().to_bytes()])
            .unwrap();
        assert!(matches!(
            back.verify_with(&[[1u8; 32]]),
            Err(CheckpointFault::UntrustedKey { .. })
        ));
        for mutate in [
            |c: &mut Checkpoint| c.tree_size += 1,
            |c: &mut Checkpoint| c.root[0] ^= 1,
            |c: &mut Checkpoint| c.time_unix_ms += 1,
            |c: &mut Checkpoint| c.log_id.push('x'),
            |c: &mut Checkpoint| c.signature[10] ^= 1,
            |c: &mut Checkpoint| {
                c.key = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes()
            },
        ] {
            let mut bad = cp.clone();
            mutate(&mut bad);
            assert!(bad.verify_signature().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_message_is_pinned() {
        let m = Checkpoint::signed_message("ab", 1, &[0u8; 32], 2);
        let mut want = b"cloister/v1/audit-checkpoint\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0u8; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(m, want);
    }

    #[test]
    fn non_canonical_and_garbage_lines_are_refused() {
        let cp = Checkpoint::sign("l", 1, [0u8; 32], 0, &key());
        let line = cp.to_json().replacen(':', ": ", 1);
        assert_eq!(
            Checkpoint::parse(line.as_bytes()),
            Err(CheckpointFault::NotCanonical)
        );
        let upper = cp
            .to_json()
            .replace(&hex::encode(cp.key), &hex::encode_upper(cp.key));
        assert!(matches!(
            Checkpoint::parse(upper.as_bytes()),
            Err(CheckpointFault::Unparsable(_))
        ));
        assert!(Checkpoint::parse(b"\0\0").is_err());
        assert!(Checkpoint::parse(b"{}").is_err());
    }
}
