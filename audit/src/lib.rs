//! cloister-audit: the tamper-evident audit log.
//!
//! Every decision the enclave makes — served, refused, failed — is appended here *before* the
//! response is released, so an auditor can later check who used which model under which policy.
//! Records hold identifiers and keyed digests, never the data itself.
//!
//! The crate is split so a later issue can add Merkle trees and signed checkpoints without
//! touching the record type:
//! - [`record`]: what one entry says ([`AuditRecord`]), its canonical encoding and hash;
//! - [`chain`]: pure, IO-free verification of a sequence of encoded lines;
//! - [`merkle`]: RFC 6962/9162 Merkle tree hashing, inclusion and consistency proofs;
//! - [`checkpoint`]: signed tree heads (size + root + time + log id, Ed25519);
//! - [`proof`]: self-contained inclusion proof documents against a signed checkpoint;
//! - [`group`]: group commit for concurrent writers ([`SharedLog`]), with a signed checkpoint per
//!   batch for the responses' receipts;
//! - [`retention`]: rotation by size and age, and retention behind signed anchors and
//!   retention statements;
//! - [`log`]: the files on disk — the writer [`AuditLog`] (which also writes checkpoints when
//!   given the enclave's key) and the read-only [`verify_dir_with`] and [`read_log`].
//!
//! What the chain proves: any edit, deletion, insertion or reordering of entries *before the
//! last one* is detected. What the checkpoints add: truncating the tail, or rewriting the last
//! entries with fresh hashes, contradicts a signed root; and a single entry can be proved to
//! be in the log with a logarithmic inclusion proof. The format is documented in
//! `docs/audit.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod checkpoint;
pub mod group;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod record;
pub mod retention;

use std::path::PathBuf;

pub use chain::{BreakReason, ChainState};
pub use checkpoint::{Checkpoint, CheckpointFault};
pub use group::{Committed, SharedLog};
pub use log::{
    for_each_entry, read_log, system_clock, verify_dir, verify_dir_with, AuditLog,
    CheckpointPolicy, Clock, LogContents, LogEntry, Position, Recovery, TornTail, VerifyOptions,
    VerifyReport, VerifySummary,
};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};
pub use record::{keyed_digest, AuditRecord, HomomorphicUse, Outcome, PrivacyCharge, GENESIS_PREV};
pub use retention::{Anchor, Pruned, RetentionStatement, Rotation};

/// Everything that can go wrong reading or writing the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file-system operation failed (the environment is at fault, not the log's contents).
    #[error("audit log: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"append to"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The log's contents are inconsistent: an entry was edited, removed, inserted or moved.
    /// The log refuses to open; nothing is appended to a broken chain.
    #[error(
        "audit log chain broken at {}:{line} (byte offset {offset}, entry index {index}): {reason}",
        file.display()
    )]
    ChainBroken {
        /// The segment file.
        file: PathBuf,
        /// 1-based line within that file.
        line: u64,
        /// Byte offset of that line within the file.
        offset: u64,
        /// The index the entry at that position should have.
        index: u64,
        /// What is wrong.
        reason: BreakReason,
    },
    /// A signed checkpoint is unacceptable: bad signature or key, or it contradicts the log.
    #[error("audit checkpoint {}:{line} (tree size {tree_size}): {fault}{}", file.display(),
        from.as_ref().map(|p| format!("; the first entry it covers that no earlier valid \
            checkpoint covers is {p}")).unwrap_or_default())]
    CheckpointInvalid {
        /// The checkpoint file.
        file: PathBuf,
        /// 1-based line within that file.
        line: u64,
        /// The tree size the checkpoint claims.
        tree_size: u64,
        /// What is wrong.
        fault: CheckpointFault,
        /// For a root mismatch, where the entries start that only this checkpoint covers; for a
        /// truncated log, where the log now ends.
        from: Option<Box<Position>>,
    },
    /// Entries at the end of the log are covered by no signed checkpoint, so nothing proves
    /// the enclave wrote them (expected only while the enclave runs, or after a crash).
    #[error(
        "{count} entries from {from} onward are not covered by any signed checkpoint: \
        they may have been appended by someone other than the enclave"
    )]
    Unsigned {
        /// The first uncovered entry.
        from: Position,
        /// How many entries are uncovered.
        count: u64,
    },
    /// Segment files are not numbered 1, 2, 3, … without gaps (a whole file is missing).
    #[error("audit log {}: segment audit-{expected:06}.log is missing", dir.display())]
    MissingSegment {
        /// The log directory.
        dir: PathBuf,
        /// The segment number that should exist.
        expected: u32,
    },
    /// The first segment is not `audit-000001.log` and the deletion of the earlier ones is not
    /// backed by a valid signed anchor and retention statement.
    #[error("audit log {}: segments before audit-{first_segment:06}.log are missing: {reason}",
        dir.display())]
    Pruned {
        /// The log directory.
        dir: PathBuf,
        /// The lowest segment present.
        first_segment: u32,
        /// What is missing or wrong.
        reason: String,
    },
    /// An earlier append failed part-way, so the file's tail is uncertain; reopen the log (which
    /// repairs a torn tail) before appending again.
    #[error("audit log writer is unusable after a failed append; reopen the log")]
    Poisoned,
    /// Another thread's group commit, which included this record, failed.
    #[error("audit log group commit failed: {0}")]
    GroupCommit(String),
    /// The entry could not be encoded (not expected to happen for well-formed records).
    #[error("audit record could not be encoded: {0}")]
    Encode(String),
}
