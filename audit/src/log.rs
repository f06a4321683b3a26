//! The audit log on disk: a directory of segment files `audit-000001.log`, `audit-000002.log`,
//! … holding one entry per line (format in [`crate::record`]), chained across segments.
//!
//! [`AuditLog`] is the single writer. Opening verifies the whole chain and refuses a log that
//! has been tampered with ([`AuditError::ChainBroken`]). A *torn tail* — bytes after the last
//! newline, or an unparsable final line, which is what a crash during an append leaves — is not
//! tampering: that append never returned, so no response depended on it. `open` truncates it and
//! says so through [`AuditLog::recovery`], so the caller can log it. [`AuditLog::append`]
//! returns only after `fsync` (`sync_data`), so a released response always has its entry on disk.
//!
//! [`verify_dir`] is the read-only counterpart for auditors; it reports a torn tail without
//! repairing it.
//!
//! Not yet here: segment rotation (the writer always appends to the highest segment), an
//! exclusive lock against a second writer, signed checkpoints.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::chain::{BreakReason, ChainState};
use crate::record::{encode_line, AuditRecord};
use crate::AuditError;

/// Bytes at the end of the last segment that are not a complete entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset where the incomplete entry starts (the file's length after repair).
    pub offset: u64,
    /// How many bytes it has.
    pub bytes: u64,
}

/// What [`AuditLog::open`] had to repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing: the log ended with a complete entry (or was empty).
    Clean,
    /// An interrupted append was cut off.
    TruncatedTornTail(TornTail),
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Clean => write!(f, "audit log was clean"),
            Recovery::TruncatedTornTail(t) => write!(
                f,
                "audit log: removed an incomplete entry ({} bytes at offset {} of {}) left by an \
                 interrupted append; it was never acknowledged",
                t.bytes,
                t.offset,
                t.file.display()
            ),
        }
    }
}

/// The result of [`verify_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of valid entries.
    pub entries: u64,
    /// Number of segment files.
    pub segments: u32,
    /// Hex hash of the last entry (64 zeros if there are none).
    pub last_hash: String,
    /// An incomplete final entry, if any (harmless, repaired by the next [`AuditLog::open`]).
    pub torn_tail: Option<TornTail>,
}

/// The append-only writer. One per directory.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    state: ChainState,
    recovery: Recovery,
    poisoned: bool,
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir`, verifies the whole chain, repairs a torn
    /// tail, and positions the writer after the last entry.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let scan = scan(dir)?;
        let mut recovery = Recovery::Clean;
        if let Some(torn) = scan.torn {
            let f = OpenOptions::new()
                .write(true)
                .open(&torn.file)
                .map_err(io_err("open", &torn.file))?;
            f.set_len(torn.offset)
                .map_err(io_err("truncate", &torn.file))?;
            f.sync_all().map_err(io_err("sync", &torn.file))?;
            recovery = Recovery::TruncatedTornTail(torn);
        }
        let path = match scan.segments.last() {
            Some(p) => p.clone(),
            None => {
                let p = dir.join(segment_name(1));
                File::create_new(&p).map_err(io_err("create", &p))?;
                // Make the new directory entry durable too.
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("sync directory", dir))?;
                p
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open for append", &path))?;
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            path,
            file,
            state: scan.state,
            recovery,
            poisoned: false,
        })
    }

    /// Appends `record`, flushes it to stable storage, and returns its index. The enclave
    /// releases a response only after this returns `Ok`.
    pub fn append(&mut self, record: AuditRecord) -> Result<u64, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        let index = self.state.next_index;
        let (line, hash) = encode_line(&record, index, &self.state.last_hash)
            .map_err(|e| AuditError::Encode(e.to_string()))?;
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // The tail may now hold part of a line; only a reopen (which repairs it) is safe.
            self.poisoned = true;
            return Err(AuditError::Io {
                op: "append to",
                path: self.path.clone(),
                source,
            });
        }
        self.state = ChainState {
            next_index: index.saturating_add(1),
            last_hash: hash,
        };
        Ok(index)
    }

    /// What `open` repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The index the next entry will get (= number of entries).
    pub fn next_index(&self) -> u64 {
        self.state.next_index
    }

    /// Hex hash of the last entry (64 zeros if empty).
    pub fn last_hash_hex(&self) -> String {
        hex::encode(self.state.last_hash)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Verifies every entry in `dir` without changing anything; names the first bad entry.
pub fn verify_dir(dir: &Path) -> Result<VerifySummary, AuditError> {
    let scan = scan(dir)?;
    Ok(VerifySummary {
        entries: scan.state.next_index,
        segments: u32::try_from(scan.segments.len()).unwrap_or(u32::MAX),
        last_hash: hex::encode(scan.state.last_hash),
        torn_tail: scan.torn,
    })
}

fn segment_name(n: u32) -> String {
    format!("audit-{n:06}.log")
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io { op, path, source }
}

/// The segment files in order; refuses gaps in the numbering.
fn segments(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix("audit-")
            .and_then(|s| s.strip_suffix(".log"))
            .filter(|d| d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok());
        if let Some(n) = number {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    for (i, (n, _)) in found.iter().enumerate() {
        let expected = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if *n != expected {
            return Err(AuditError::MissingSegment {
                dir: dir.to_path_buf(),
                expected,
            });
        }
    }
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

struct Scan {
    state: ChainState,
    segments: Vec<PathBuf>,
    torn: Option<TornTail>,
}

fn scan(dir: &Path) -> Result<Scan, AuditError> {
    let segments = segments(dir)?;
    let mut state = ChainState::new();
    let mut torn = None;
    for (i, path) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(io_err("read", path))?;
        let mut pos = 0usize;
        let mut line_no = 0u64;
        while pos < bytes.len() {
            line_no += 1;
            let index = state.next_index;
            let broken = |reason| AuditError::ChainBroken {
                file: path.clone(),
                line: line_no,
                index,
                reason,
            };
            let torn_here = || TornTail {
                file: path.clone(),
                offset: pos as u64,
                bytes: (bytes.len() - pos) as u64,
            };
            let Some(len) = bytes[pos..].iter().position(|&b| b == b'\n') else {
                if is_last {
                    torn = Some(torn_here());
                    break;
                }
                return Err(broken(BreakReason::MissingNewline));
            };
            let end = pos + len;
            match state.check_line(&bytes[pos..end]) {
                Ok(()) => pos = end + 1,
                Err(BreakReason::Unparsable(_)) if is_last && end + 1 == bytes.len() => {
                    torn = Some(torn_here());
                    break;
                }
                Err(reason) => return Err(broken(reason)),
            }
        }
    }
    Ok(Scan {
        state,
        segments,
        torn,
    })
}
