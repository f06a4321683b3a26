//! Rotation by size and age, and retention that deletes old segments without breaking
//! verification.
//!
//! Deleting a segment deletes the entries the verifier would need to recompute the chain and
//! the Merkle roots from index 0. Two small signed files make the rest of the log verifiable on
//! its own, and make a deletion by the enclave's policy distinguishable from someone deleting
//! files:
//!
//! - an **anchor** `audit-NNNNNN.anchor`, written (and synced) when the writer starts segment
//!   `NNNNNN`, *before* the segment file exists: the index of the segment's first entry, the
//!   chain hash before it, the Merkle frontier of all earlier entries (the roots of its maximal
//!   perfect subtrees), their root, a time, and the enclave's Ed25519 signature over a labelled
//!   message binding all of them. A verifier that starts at this segment starts from this state;
//!   every later checkpoint's root is still checked against it, and inclusion and consistency
//!   proofs about retained entries can still be built ([`crate::merkle::PrunedLeaves`]).
//! - a **retention statement**, one line of `retention.log`, appended (and synced) by the
//!   enclave *before* it deletes segments: "segments before `K` (entries before `N`) are deleted
//!   by the retention policy", signed. The verifier accepts a log whose lowest segment is `L > 1`
//!   only with a valid anchor for `L` and a statement covering `L`; it then reports the pruned
//!   prefix rather than calling it truncation. Segment files missing without a statement are
//!   tampering ([`crate::AuditError::Pruned`]).
//!
//! # Encodings (format version 1)
//! Anchor file (one line, canonical compact JSON, members in this order, then `\n`):
//! `{"log_id","segment","index","prev","frontier":[hex…],"root","time_unix_ms","key","signature"}`,
//! signed message `"cloister/v1/audit-anchor\0" || u32be(len(log_id)) || log_id ||
//! u32be(segment) || u64be(index) || prev || u32be(len(frontier)) || frontier… || root ||
//! u64be(time_unix_ms)`.
//!
//! Statement line: `{"log_id","segments_before","entries_before","time_unix_ms","key","signature"}`,
//! signed message `"cloister/v1/audit-retention\0" || u32be(len(log_id)) || log_id ||
//! u32be(segments_before) || u64be(entries_before) || u64be(time_unix_ms)`.

use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{unhex, CheckpointFault};
use crate::merkle::{Frontier, Hash};

/// Label of the anchor signature.
pub const ANCHOR_LABEL: &[u8] = b"cloister/v1/audit-anchor\0";
/// Label of the retention statement signature.
pub const RETENTION_LABEL: &[u8] = b"cloister/v1/audit-retention\0";
/// The file of retention statements.
pub const RETENTION_FILE: &str = "retention.log";

/// The anchor file name of segment `n`.
pub fn anchor_name(n: u32) -> String {
    format!("audit-{n:06}.anchor")
}

/// When to start a new segment and which old ones to delete (the policy's `[audit]` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new segment before a commit would take the current one past this size.
    pub segment_max_bytes: Option<u64>,
    /// Start a new segment once the current one's first entry is this old.
    pub segment_max_age: Option<Duration>,
    /// Keep at most this many segments (the current one included; at least 1).
    pub retain_segments: Option<u32>,
    /// Delete a segment once its newest entry is this old.
    pub retain_age: Option<Duration>,
}

impl Rotation {
    /// Whether any retention (deletion) is configured.
    pub fn prunes(&self) -> bool {
        self.retain_segments.is_some() || self.retain_age.is_some()
    }
}

fn put_len(m: &mut Vec<u8>, s: &[u8]) {
    m.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(s);
}

fn check_sig(
    key: &[u8; 32],
    signature: &[u8; 64],
    message: &[u8],
    trusted: &[[u8; 32]],
) -> Result<(), CheckpointFault> {
    if !trusted.is_empty() && !trusted.contains(key) {
        return Err(CheckpointFault::UntrustedKey {
            key: hex::encode(key),
        });
    }
    let bad = || CheckpointFault::BadSignature {
        key: hex::encode(key),
    };
    let vk = VerifyingKey::from_bytes(key).map_err(|_| bad())?;
    vk.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| bad())
}

/// The signed state of the log where a segment starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The log identity.
    pub log_id: String,
    /// The segment this anchor starts.
    pub segment: u32,
    /// Index of the segment's first entry (= entries before it).
    pub index: u64,
    /// Chain hash of the entry before it.
    pub prev: Hash,
    /// Merkle frontier of the entries before it.
    pub frontier: Vec<Hash>,
    /// Merkle root of the entries before it.
    pub root: Hash,
    /// When it was signed, Unix ms.
    pub time_unix_ms: u64,
    /// The signer.
    pub key: [u8; 32],
    /// Signature over [`Anchor::signed_message`].
    pub signature: [u8; 64],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorWire {
    log_id: String,
    segment: u32,
    index: u64,
    prev: String,
    frontier: Vec<String>,
    root: String,
    time_unix_ms: u64,
    key: String,
    signature: String,
}

impl Anchor {
    /// The signed bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = ANCHOR_LABEL.to_vec();
        put_len(&mut m, self.log_id.as_bytes());
        m.extend_from_slice(&self.segment.to_be_bytes());
        m.extend_from_slice(&self.index.to_be_bytes());
        m.extend_from_slice(&self.prev);
        m.extend_from_slice(
            &u32::try_from(self.frontier.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for h in &self.frontier {
            m.extend_from_slice(h);
        }
        m.extend_from_slice(&self.root);
        m.extend_from_slice(&self.time_unix_ms.to_be_bytes());
        m
    }

    /// Signs the anchor of `segment` for a log whose state is `frontier` and `prev`.
    pub fn sign(
        log_id: &str,
        segment: u32,
        prev: Hash,
        frontier: &Frontier,
        time_unix_ms: u64,
        key: &SigningKey,
    ) -> Anchor {
        let mut a = Anchor {
            log_id: log_id.to_string(),
            segment,
            index: frontier.size(),
            prev,
            frontier: frontier.stack().to_vec(),
            root: frontier.root(),
            time_unix_ms,
            key: key.verifying_key().to_bytes(),
            signature: [0u8; 64],
        };
        a.signature = key.sign(&a.signed_message()).to_bytes();
        a
    }

    /// Checks the signature (by a trusted key, if any are given) and that the frontier hashes
    /// to the signed root; returns the frontier.
    pub fn verify(&self, trusted: &[[u8; 32]]) -> Result<Frontier, CheckpointFault> {
        check_sig(&self.key, &self.signature, &self.signed_message(), trusted)?;
        let frontier =
            Frontier::from_parts(self.index, self.frontier.clone()).ok_or_else(|| {
                CheckpointFault::Unparsable(format!(
                    "{} frontier hashes do not fit {} entries",
                    self.frontier.len(),
                    self.index
                ))
            })?;
        if frontier.root() != self.root {
            return Err(CheckpointFault::RootMismatch {
                size: self.index,
                computed: hex::encode(frontier.root()),
                signed: hex::encode(self.root),
            });
        }
        Ok(frontier)
    }

    /// The canonical line (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&AnchorWire {
            log_id: self.log_id.clone(),
            segment: self.segment,
            index: self.index,
            prev: hex::encode(self.prev),
            frontier: self.frontier.iter().map(hex::encode).collect(),
            root: hex::encode(self.root),
            time_unix_ms: self.time_unix_ms,
            key: hex::encode(self.key),
            signature: hex::encode(self.signature),
        })
        .unwrap_or_default()
    }

    /// Parses the file's contents (one canonical line and `\n`); does not check the signature.
    pub fn parse(text: &[u8]) -> Result<Anchor, CheckpointFault> {
        let line = text.strip_suffix(b"\n").unwrap_or(text);
        let w: AnchorWire =
            serde_json::from_slice(line).map_err(|e| CheckpointFault::Unparsable(e.to_string()))?;
        let a = Anchor {
            prev: unhex("prev", &w.prev)?,
            frontier: w
                .frontier
                .iter()
                .map(|h| unhex("frontier hash", h))
                .collect::<Result<_, _>>()?,
            root: unhex("root", &w.root)?,
            key: unhex("key", &w.key)?,
            signature: unhex("signature", &w.signature)?,
            log_id: w.log_id,
            segment: w.segment,
            index: w.index,
            time_unix_ms: w.time_unix_ms,
        };
        if a.to_json().as_bytes() != line || !text.ends_with(b"\n") {
            return Err(CheckpointFault::NotCanonical);
        }
        Ok(a)
    }
}

/// "Segments before `segments_before` were deleted by the retention policy", signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionStatement {
    /// The log identity.
    pub log_id: String,
    /// The first segment kept.
    pub segments_before: u32,
    /// The first entry kept.
    pub entries_before: u64,
    /// When, Unix ms.
    pub time_unix_ms: u64,
    /// The signer.
    pub key: [u8; 32],
    /// Signature over [`RetentionStatement::signed_message`].
    pub signature: [u8; 64],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementWire {
    log_id: String,
    segments_before: u32,
    entries_before: u64,
    time_unix_ms: u64,
    key: String,
    signature: String,
}

impl RetentionStatement {
    /// The signed bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = RETENTION_LABEL.to_vec();
        put_len(&mut m, self.log_id.as_bytes());
        m.extend_from_slice(&self.segments_before.to_be_bytes());
        m.extend_from_slice(&self.entries_before.to_be_bytes());
        m.extend_from_slice(&self.time_unix_ms.to_be_bytes());
        m
    }

    /// Signs a statement.
    pub fn sign(
        log_id: &str,
        segments_before: u32,
        entries_before: u64,
        time_unix_ms: u64,
        key: &SigningKey,
    ) -> RetentionStatement {
        let mut s = RetentionStatement {
            log_id: log_id.to_string(),
            segments_before,
            entries_before,
            time_unix_ms,
            key: key.verifying_key().to_bytes(),
            signature: [0u8; 64],
        };
        s.signature = key.sign(&s.signed_message()).to_bytes();
        s
    }

    /// Checks the signature (by a trusted key, if any are given).
    pub fn verify(&self, trusted: &[[u8; 32]]) -> Result<(), CheckpointFault> {
        check_sig(&self.key, &self.signature, &self.signed_message(), trusted)
    }

    /// The canonical line (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&StatementWire {
            log_id: self.log_id.clone(),
            segments_before: self.segments_before,
            entries_before: self.entries_before,
            time_unix_ms: self.time_unix_ms,
            key: hex::encode(self.key),
            signature: hex::encode(self.signature),
        })
        .unwrap_or_default()
    }

    /// Parses one line (without newline); does not check the signature.
    pub fn parse(line: &[u8]) -> Result<RetentionStatement, CheckpointFault> {
        let w: StatementWire =
            serde_json::from_slice(line).map_err(|e| CheckpointFault::Unparsable(e.to_string()))?;
        let s = RetentionStatement {
            key: unhex("key", &w.key)?,
            signature: unhex("signature", &w.signature)?,
            log_id: w.log_id,
            segments_before: w.segments_before,
            entries_before: w.entries_before,
            time_unix_ms: w.time_unix_ms,
        };
        if s.to_json().as_bytes() != line {
            return Err(CheckpointFault::NotCanonical);
        }
        Ok(s)
    }
}

/// What the verifier found about a pruned prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The lowest segment present.
    pub first_segment: u32,
    /// The index of its first entry (= entries pruned).
    pub first_index: u64,
    /// When the anchor was signed.
    pub anchor_time_unix_ms: u64,
    /// The latest retention statement covering it.
    pub statement: RetentionStatement,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_round_trips_and_every_field_is_signed() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut f = Frontier::new();
        for i in 0u8..5 {
            f.push([i; 32]);
        }
        let a = Anchor::sign("log", 3, [9u8; 32], &f, 123, &key);
        let line = format!("{}\n", a.to_json());
        let parsed = Anchor::parse(line.as_bytes()).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.verify(&[]).unwrap(), f);
        assert!(parsed.verify(&[[1u8; 32]]).is_err(), "untrusted key");
        let mut bad = a.clone();
        bad.prev[0] ^= 1;
        assert!(bad.verify(&[]).is_err());
        let mut bad = a.clone();
        bad.index += 1;
        assert!(bad.verify(&[]).is_err());
        let mut bad = a.clone();
        bad.frontier[0][0] ^= 1;
        assert!(bad.verify(&[]).is_err());
        let s = RetentionStatement::sign("log", 3, 5, 9, &key);
        let p = RetentionStatement::parse(s.to_json().as_bytes()).unwrap();
        p.verify(&[]).unwrap();
        let mut bad = p.clone();
        bad.segments_before = 4;
        assert!(bad.verify(&[]).is_err());
    }
}
