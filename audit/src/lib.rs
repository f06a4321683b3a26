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
//! - [`log`]: the files on disk — the writer [`AuditLog`] and the read-only [`verify_dir`].
//!
//! What the chain proves: any edit, deletion, insertion or reordering of entries *before the
//! last one* is detected. Truncating the tail, or rewriting the last entry and its hash, is not
//! detectable from the log alone; signed checkpoints (a later issue) close that gap.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod log;
pub mod record;

use std::path::PathBuf;

pub use chain::{BreakReason, ChainState};
pub use log::{verify_dir, AuditLog, Recovery, TornTail, VerifySummary};
pub use record::{keyed_digest, AuditRecord, Outcome, GENESIS_PREV};

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
    #[error("audit log chain broken at {}:{line} (entry index {index}): {reason}", file.display())]
    ChainBroken {
        /// The segment file.
        file: PathBuf,
        /// 1-based line within that file.
        line: u64,
        /// The index the entry at that position should have.
        index: u64,
        /// What is wrong.
        reason: BreakReason,
    },
    /// Segment files are not numbered 1, 2, 3, … without gaps (a whole file is missing).
    #[error("audit log {}: segment audit-{expected:06}.log is missing", dir.display())]
    MissingSegment {
        /// The log directory.
        dir: PathBuf,
        /// The segment number that should exist.
        expected: u32,
    },
    /// An earlier append failed part-way, so the file's tail is uncertain; reopen the log (which
    /// repairs a torn tail) before appending again.
    #[error("audit log writer is unusable after a failed append; reopen the log")]
    Poisoned,
    /// The entry could not be encoded (not expected to happen for well-formed records).
    #[error("audit record could not be encoded: {0}")]
    Encode(String),
}
