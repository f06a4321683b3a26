//! Pure verification of the hash chain, one encoded line at a time, with no IO, so the same
//! logic serves the writer's start-up check, the read-only verifier, and (later) fuzzing and
//! checkpoint verification.

use std::fmt;

use crate::record::{parse_entry_line, ParsedEntry, GENESIS_PREV};

/// Why a line does not continue the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// Not a well-formed entry (bad JSON, unknown or missing member, wrong type).
    Unparsable(String),
    /// The entry's `index` is not the next one: an entry was removed, inserted or moved.
    IndexMismatch {
        /// The index found in the line.
        found: u64,
    },
    /// `prev` is not the previous entry's hash: an earlier entry was changed or removed.
    PrevMismatch {
        /// The previous entry's actual hash.
        expected: String,
        /// The `prev` written in this line.
        found: String,
    },
    /// `hash` does not match the entry's contents: this entry was edited.
    HashMismatch {
        /// The hash recomputed from the contents.
        computed: String,
        /// The hash written in the line.
        stored: String,
    },
    /// The line means the same as a valid entry but is not byte-for-byte canonical (edited
    /// formatting or member order).
    NotCanonical,
    /// The segment does not end with a newline, but it is not the last segment.
    MissingNewline,
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Unparsable(e) => write!(f, "entry is not parsable: {e}"),
            BreakReason::IndexMismatch { found } => write!(
                f,
                "entry has index {found} (an entry was removed, inserted or reordered)"
            ),
            BreakReason::PrevMismatch { expected, found } => write!(
                f,
                "prev is {found} but the previous entry's hash is {expected} \
                 (an earlier entry was changed or removed)"
            ),
            BreakReason::HashMismatch { computed, stored } => write!(
                f,
                "stored hash {stored} does not match contents (hash {computed}): \
                 the entry was modified"
            ),
            BreakReason::NotCanonical => write!(f, "entry is not in canonical encoding"),
            BreakReason::MissingNewline => {
                write!(
                    f,
                    "segment ends without a newline but is not the last segment"
                )
            }
        }
    }
}

/// Where the chain stands: the index the next entry must have and the hash it must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    /// The index of the next entry.
    pub next_index: u64,
    /// The hash of the last entry ([`GENESIS_PREV`] before the first).
    pub last_hash: [u8; 32],
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState::new()
    }
}

impl ChainState {
    /// An empty chain.
    pub const fn new() -> ChainState {
        ChainState {
            next_index: 0,
            last_hash: GENESIS_PREV,
        }
    }

    /// Checks one line (without its trailing newline) and, if it continues the chain,
    /// advances and returns the parsed entry. On error the state is unchanged.
    pub fn check_line(&mut self, line: &[u8]) -> Result<ParsedEntry, BreakReason> {
        let entry = parse_entry_line(line)?;
        if entry.index != self.next_index {
            return Err(BreakReason::IndexMismatch { found: entry.index });
        }
        if entry.prev != self.last_hash {
            return Err(BreakReason::PrevMismatch {
                expected: hex::encode(self.last_hash),
                found: hex::encode(entry.prev),
            });
        }
        self.next_index = self.next_index.saturating_add(1);
        self.last_hash = entry.hash;
        Ok(entry)
    }
}
