//! Self-contained proof documents. The inclusion proof: "entry `index` (these exact bytes) is in the log
//! that this signed checkpoint describes". An auditor or a client holding a receipt can check
//! it with nothing but the document and a trusted enclave key — no access to the log.
//!
//! # Encoding (`cloister-audit-inclusion-proof/v1`)
//! A JSON object: `format`, `index`, `entry` (the stored line of the entry, without its
//! newline, as a string), `leaf_hash` (hex, informative), `tree_size`, `proof` (hex hashes,
//! RFC 9162 audit path, leaf level first) and `checkpoint` (the checkpoint object as in
//! `checkpoints.log`).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointFault};
use crate::log::LogContents;
use crate::merkle::{inclusion_proof, verify_inclusion, Hash, MerkleError, PrunedLeaves};
use crate::record::{parse_entry_line, ParsedEntry};
use crate::BreakReason;

/// The `format` string of version 1.
pub const PROOF_FORMAT: &str = "cloister-audit-inclusion-proof/v1";

/// Why a proof cannot be built or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The log has no checkpoint to prove against.
    #[error("the log has no signed checkpoint yet")]
    NoCheckpoint,
    /// The entry is not covered by the latest checkpoint.
    #[error("entry {index} is not covered by the latest checkpoint (tree size {tree_size})")]
    NotCovered {
        /// The index asked for.
        index: u64,
        /// The latest checkpoint's size.
        tree_size: u64,
    },
    /// The document is not a proof of this format.
    #[error("not an inclusion proof document: {0}")]
    Malformed(String),
    /// The embedded entry is not a valid entry.
    #[error("the entry in the proof is invalid: {0}")]
    BadEntry(BreakReason),
    /// The entry's own index differs from the proof's.
    #[error("the entry says index {entry} but the proof is for index {proof}")]
    IndexMismatch {
        /// Index inside the entry.
        entry: u64,
        /// Index of the proof.
        proof: u64,
    },
    /// The checkpoint is unacceptable.
    #[error("the checkpoint is not acceptable: {0}")]
    Checkpoint(CheckpointFault),
    /// The audit path does not lead to the signed root.
    #[error("the audit path does not lead to the signed root: {0}")]
    Path(MerkleError),
}

/// An inclusion proof with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The stored line of the entry (no newline).
    pub entry: String,
    /// The audit path.
    pub proof: Vec<Hash>,
    /// The signed checkpoint it leads to.
    pub checkpoint: Checkpoint,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    index: u64,
    entry: String,
    leaf_hash: String,
    tree_size: u64,
    proof: Vec<String>,
    checkpoint: serde_json::Value,
}

impl InclusionProof {
    /// Builds the proof of entry `index` against the latest checkpoint of a verified log.
    pub fn build(log: &LogContents, index: u64) -> Result<InclusionProof, ProofError> {
        let entry = index
            .checked_sub(log.prefix.size())
            .and_then(|i| log.entries.get(usize::try_from(i).unwrap_or(usize::MAX)))
            .map(|e| e.line.clone());
        let leaves = log.leaves();
        let source = PrunedLeaves {
            prefix: &log.prefix,
            leaves: &leaves,
        };
        InclusionProof::build_pruned(source, entry, &log.checkpoints, index)
    }

    /// Builds the proof from a verified log's leaf hashes, the stored line of entry `index`
    /// and its checkpoints (the latest is used), for callers that stream the log.
    pub fn build_from(
        leaves: &[Hash],
        entry: Option<String>,
        checkpoints: &[Checkpoint],
        index: u64,
    ) -> Result<InclusionProof, ProofError> {
        let checkpoint = checkpoints.last().ok_or(ProofError::NoCheckpoint)?;
        let tree_size = checkpoint.tree_size;
        let not_covered = ProofError::NotCovered { index, tree_size };
        if index >= tree_size {
            return Err(not_covered);
        }
        let entry = entry.ok_or(not_covered)?;
        let proof = inclusion_proof(leaves, index, tree_size).map_err(ProofError::Path)?;
        Ok(InclusionProof {
            index,
            entry,
            proof,
            checkpoint: checkpoint.clone(),
        })
    }

    /// [`InclusionProof::build_from`] for a log whose prefix retention pruned: `leaves` holds
    /// the pruned prefix's frontier and the retained leaf hashes.
    pub fn build_pruned(
        leaves: PrunedLeaves<'_>,
        entry: Option<String>,
        checkpoints: &[Checkpoint],
        index: u64,
    ) -> Result<InclusionProof, ProofError> {
        let checkpoint = checkpoints.last().ok_or(ProofError::NoCheckpoint)?;
        let tree_size = checkpoint.tree_size;
        let not_covered = ProofError::NotCovered { index, tree_size };
        if index >= tree_size {
            return Err(not_covered);
        }
        let entry = entry.ok_or(not_covered)?;
        let proof = leaves
            .inclusion_proof(index, tree_size)
            .map_err(ProofError::Path)?;
        Ok(InclusionProof {
            index,
            entry,
            proof,
            checkpoint: checkpoint.clone(),
        })
    }

    /// The JSON document.
    pub fn to_json_pretty(&self) -> String {
        let leaf = parse_entry_line(self.entry.as_bytes())
            .map(|e| hex::encode(e.leaf))
            .unwrap_or_default();
        let wire = Wire {
            format: PROOF_FORMAT.to_string(),
            index: self.index,
            entry: self.entry.clone(),
            leaf_hash: leaf,
            tree_size: self.checkpoint.tree_size,
            proof: self.proof.iter().map(hex::encode).collect(),
            checkpoint: self.checkpoint.to_value(),
        };
        serde_json::to_string_pretty(&wire).unwrap_or_default()
    }

    /// Parses a document (does not verify it).
    pub fn from_json(text: &str) -> Result<InclusionProof, ProofError> {
        let wire: Wire =
            serde_json::from_str(text).map_err(|e| ProofError::Malformed(e.to_string()))?;
        if wire.format != PROOF_FORMAT {
            return Err(ProofError::Malformed(format!(
                "format is {:?}, expected {PROOF_FORMAT:?}",
                wire.format
            )));
        }
        let checkpoint =
            Checkpoint::from_value(&wire.checkpoint).map_err(ProofError::Checkpoint)?;
        if checkpoint.tree_size != wire.tree_size {
            return Err(ProofError::Malformed(format!(
                "tree_size {} differs from the checkpoint's {}",
                wire.tree_size, checkpoint.tree_size
            )));
        }
        let proof = wire
            .proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|v| <Hash>::try_from(v).ok())
                    .ok_or_else(|| ProofError::Malformed(format!("{h:?} is not a 32-byte hash")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InclusionProof {
            index: wire.index,
            entry: wire.entry,
            proof,
            checkpoint,
        })
    }

    /// Checks the checkpoint's signature (under one of `trusted`, if any are given), the
    /// entry's own hash and index, and the audit path to the signed root. Returns the entry.
    pub fn verify(&self, trusted: &[[u8; 32]]) -> Result<ParsedEntry, ProofError> {
        self.checkpoint
            .verify_with(trusted)
            .map_err(ProofError::Checkpoint)?;
        let entry = parse_entry_line(self.entry.as_bytes()).map_err(ProofError::BadEntry)?;
        if entry.index != self.index {
            return Err(ProofError::IndexMismatch {
                entry: entry.index,
                proof: self.index,
            });
        }
        verify_inclusion(
            &entry.leaf,
            self.index,
            self.checkpoint.tree_size,
            &self.proof,
            &self.checkpoint.root,
        )
        .map_err(ProofError::Path)?;
        Ok(entry)
    }
}

/// The `format` string of consistency proofs, version 1.
pub const CONSISTENCY_FORMAT: &str = "cloister-audit-consistency-proof/v1";

/// A proof that a later signed checkpoint extends an earlier one: the log was only appended
/// to between them. An auditor who kept the earlier checkpoint checks it without the log.
///
/// Encoding (`cloister-audit-consistency-proof/v1`): a JSON object with `format`, `old_size`,
/// `new_size`, `proof` (hex, RFC 6962 `PROOF`) and the two checkpoint objects `old` and `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The earlier checkpoint.
    pub old: Checkpoint,
    /// The later checkpoint.
    pub new: Checkpoint,
    /// The consistency path.
    pub proof: Vec<Hash>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyWire {
    format: String,
    old_size: u64,
    new_size: u64,
    proof: Vec<String>,
    old: serde_json::Value,
    new: serde_json::Value,
}

fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, ProofError> {
    hashes
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|v| <Hash>::try_from(v).ok())
                .ok_or_else(|| ProofError::Malformed(format!("{h:?} is not a 32-byte hash")))
        })
        .collect()
}

impl ConsistencyProof {
    /// Builds the proof from the earliest checkpoint of size `old_size` to the latest one.
    pub fn build_from(
        leaves: &[Hash],
        checkpoints: &[Checkpoint],
        old_size: u64,
    ) -> Result<ConsistencyProof, ProofError> {
        let prefix = crate::merkle::Frontier::new();
        ConsistencyProof::build_pruned(
            PrunedLeaves {
                prefix: &prefix,
                leaves,
            },
            checkpoints,
            old_size,
        )
    }

    /// [`ConsistencyProof::build_from`] for a log whose prefix retention pruned.
    pub fn build_pruned(
        leaves: PrunedLeaves<'_>,
        checkpoints: &[Checkpoint],
        old_size: u64,
    ) -> Result<ConsistencyProof, ProofError> {
        let new = checkpoints.last().ok_or(ProofError::NoCheckpoint)?;
        let old = checkpoints
            .iter()
            .find(|c| c.tree_size == old_size)
            .ok_or_else(|| {
                ProofError::Malformed(format!("the log has no checkpoint of size {old_size}"))
            })?;
        let proof = leaves
            .consistency_proof(old.tree_size, new.tree_size)
            .map_err(ProofError::Path)?;
        Ok(ConsistencyProof {
            old: old.clone(),
            new: new.clone(),
            proof,
        })
    }

    /// The JSON document.
    pub fn to_json_pretty(&self) -> String {
        let wire = ConsistencyWire {
            format: CONSISTENCY_FORMAT.to_string(),
            old_size: self.old.tree_size,
            new_size: self.new.tree_size,
            proof: self.proof.iter().map(hex::encode).collect(),
            old: self.old.to_value(),
            new: self.new.to_value(),
        };
        serde_json::to_string_pretty(&wire).unwrap_or_default()
    }

    /// Parses a document (does not verify it).
    pub fn from_json(text: &str) -> Result<ConsistencyProof, ProofError> {
        let wire: ConsistencyWire =
            serde_json::from_str(text).map_err(|e| ProofError::Malformed(e.to_string()))?;
        if wire.format != CONSISTENCY_FORMAT {
            return Err(ProofError::Malformed(format!(
                "format is {:?}, expected {CONSISTENCY_FORMAT:?}",
                wire.format
            )));
        }
        let old = Checkpoint::from_value(&wire.old).map_err(ProofError::Checkpoint)?;
        let new = Checkpoint::from_value(&wire.new).map_err(ProofError::Checkpoint)?;
        if (old.tree_size, new.tree_size) != (wire.old_size, wire.new_size) {
            return Err(ProofError::Malformed(
                "old_size/new_size differ from the checkpoints' sizes".into(),
            ));
        }
        Ok(ConsistencyProof {
            old,
            new,
            proof: decode_hashes(&wire.proof)?,
        })
    }

    /// Checks both signatures (under `trusted`, if given), that both name the same log, and
    /// the consistency path between the two signed roots.
    pub fn verify(&self, trusted: &[[u8; 32]]) -> Result<(), ProofError> {
        self.old
            .verify_with(trusted)
            .map_err(ProofError::Checkpoint)?;
        self.new
            .verify_with(trusted)
            .map_err(ProofError::Checkpoint)?;
        if self.old.log_id != self.new.log_id {
            return Err(ProofError::Checkpoint(CheckpointFault::LogIdChanged {
                expected: self.old.log_id.clone(),
                found: self.new.log_id.clone(),
            }));
        }
        crate::merkle::verify_consistency(
            self.old.tree_size,
            self.new.tree_size,
            &self.old.root,
            &self.new.root,
            &self.proof,
        )
        .map_err(ProofError::Path)
    }
}
