//! The audit log on disk: a directory of segment files `audit-000001.log`, `audit-000002.log`,
//! … holding one entry per line (format in [`crate::record`]), chained across segments, plus
//! `checkpoints.log` (signed tree heads, format in [`crate::checkpoint`]) and the public key
//! file(s) `enclave-key-<first 16 hex>.pub` of the enclave(s) that signed them.
//!
//! [`AuditLog`] is the single writer. Opening verifies the whole chain and every checkpoint
//! (signature under the key it names, root against the entries) and refuses a log that has
//! been tampered with ([`AuditError::ChainBroken`], [`AuditError::CheckpointInvalid`]). A *torn
//! tail* — bytes after the last newline, or an unparsable final line, which is what a crash
//! during an append leaves — is not tampering: that append never returned, so no response
//! depended on it, and no checkpoint covers it. `open` truncates it and says so through
//! [`AuditLog::recovery`]. [`AuditLog::append`] returns only after `fsync` (`sync_data`), so a
//! released response always has its entry on disk; [`AuditLog::append_batch`] is the group
//! commit (one write and one `fsync` for many entries).
//!
//! Given the enclave's signing key ([`AuditLog::open_with_signer`]) the writer also appends a
//! signed checkpoint at open (when the log grew since the last one, has none, or the last one
//! was signed by another key — a previous enclave run: the handover checkpoint), every
//! [`CheckpointPolicy::every_records`] entries, on the first append after
//! [`CheckpointPolicy::every`] has passed, and whenever [`AuditLog::checkpoint`] is called
//! (the enclave does at shutdown).
//!
//! [`verify_dir_with`] and [`read_log`] are the read-only counterparts for auditors; they report
//! torn tails without repairing them.
//!
//! [`AuditLog::with_rotation`] rotates to a new segment by size and age and deletes old segments
//! by count and age ([`crate::retention`]: each segment starts with a signed anchor, each
//! deletion is announced by a signed statement, and the verifier starts from the first kept
//! segment's anchor); verification spans segments unchanged.
//!
//! Not yet here: an exclusive lock against a second writer.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;

use crate::chain::{BreakReason, ChainState};
use crate::checkpoint::{Checkpoint, CheckpointFault, CHECKPOINT_FILE};
use crate::merkle::{Frontier, Hash};
use crate::record::{encode_entry, AuditRecord, ParsedEntry};
use crate::retention::{anchor_name, Anchor, Pruned, RetentionStatement, Rotation, RETENTION_FILE};
use crate::AuditError;

/// Where an entry (or the end of the log) is: segment file, byte offset, entry index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset within it.
    pub offset: u64,
    /// The entry index at that place (for the end of the log: the number of entries).
    pub index: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry index {} at {} byte offset {}",
            self.index,
            self.file.display(),
            self.offset
        )
    }
}

/// Bytes at the end of the last segment (or of the checkpoint file) that are not a complete
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The file.
    pub file: PathBuf,
    /// Byte offset where the incomplete line starts (the file's length after repair).
    pub offset: u64,
    /// How many bytes it has.
    pub bytes: u64,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} incomplete bytes at offset {} of {}, left by an interrupted write that was never \
             acknowledged",
            self.bytes,
            self.offset,
            self.file.display()
        )
    }
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

/// When the writer signs checkpoints, and under which log identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// The log identity string every checkpoint names.
    pub log_id: String,
    /// Sign after this many new entries (0: never by count).
    pub every_records: u64,
    /// Sign on the first append after this much time since the last checkpoint.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            log_id: "cloister-audit/v1".to_string(),
            every_records: 1000,
            every: Duration::from_secs(60),
        }
    }
}

/// What the read-only verifier trusts and tolerates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Enclave public keys to trust (from `--key` files or attestation evidence). Empty: every
    /// checkpoint is checked against the key it names, which proves integrity only relative to
    /// whoever holds that key.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Accept entries after the last checkpoint (a running or crashed enclave's log).
    pub allow_unsigned_tail: bool,
}

/// The result of [`verify_dir_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of valid entries.
    pub entries: u64,
    /// Number of segment files.
    pub segments: u32,
    /// Hex chain hash of the last entry.
    pub last_hash: String,
    /// Hex Merkle root of all entries.
    pub root: String,
    /// Number of valid checkpoints.
    pub checkpoints: u64,
    /// The last checkpoint.
    pub latest: Option<Checkpoint>,
    /// Distinct keys that signed checkpoints, in order of first use (hex).
    pub keys: Vec<String>,
    /// Entries after the last checkpoint (0 unless `allow_unsigned_tail`).
    pub unsigned_entries: u64,
    /// An incomplete final entry, if any.
    pub torn_tail: Option<TornTail>,
    /// An incomplete final checkpoint line, if any.
    pub torn_checkpoint: Option<TornTail>,
    /// The prefix retention deleted, if any (verification started from its signed anchor).
    pub pruned: Option<Pruned>,
}

/// One verified entry, as [`read_log`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Where it is.
    pub position: Position,
    /// The parsed, verified entry.
    pub entry: ParsedEntry,
    /// The stored line (without newline), which is also its JSON form.
    pub line: String,
}

/// A whole verified log in memory, for review tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogContents {
    /// Every entry in order.
    pub entries: Vec<LogEntry>,
    /// Every checkpoint in order (each verified against the key it names and the entries).
    pub checkpoints: Vec<Checkpoint>,
    /// Torn tails, if any (entries, checkpoints).
    pub torn: (Option<TornTail>, Option<TornTail>),
    /// The Merkle frontier of the entries retention deleted (empty when none were), from the
    /// verified anchor; `entries` start at index `prefix.size()`.
    pub prefix: Frontier,
    /// The pruned prefix, if any.
    pub pruned: Option<Pruned>,
}

impl LogContents {
    /// The Merkle leaf hashes of all entries.
    pub fn leaves(&self) -> Vec<Hash> {
        self.entries.iter().map(|e| e.entry.leaf).collect()
    }
}

struct Signer {
    key: SigningKey,
    policy: CheckpointPolicy,
    path: PathBuf,
    file: File,
    /// The checkpoint file's length (tracked so no `fstat` is needed inside the sandbox).
    len: u64,
    last_size: Option<u64>,
    last_time: Instant,
    failure: Option<String>,
}

/// "Now" in Unix milliseconds; injectable so rotation and retention by age can be tested
/// without waiting.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the writer knows about one segment on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegInfo {
    pub number: u32,
    /// Index of its first entry.
    pub first_index: u64,
    /// Time of its first and last entry.
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    /// Whether it has an anchor (so the segments before it may be deleted).
    pub anchored: bool,
}

/// The append-only writer. One per directory.
pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The number of the segment being written, and its length in bytes (tracked so no
    /// `fstat` is needed inside the sandbox).
    segment: (u32, u64),
    /// When to start a new segment and which old ones to delete.
    rotation: Rotation,
    clock: Clock,
    /// Every segment on disk, oldest first; the last is being written.
    segs: Vec<SegInfo>,
    /// The last failure to start a new segment (the log keeps growing the current one).
    rotation_failure: Option<String>,
    state: ChainState,
    frontier: Frontier,
    recovery: Recovery,
    checkpoint_recovery: Option<TornTail>,
    poisoned: bool,
    signer: Option<Signer>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("path", &self.path)
            .field("state", &self.state)
            .field("recovery", &self.recovery)
            .field("signing", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn truncate_torn(torn: &TornTail) -> Result<(), AuditError> {
    let f = OpenOptions::new()
        .write(true)
        .open(&torn.file)
        .map_err(io_err("open", &torn.file))?;
    f.set_len(torn.offset)
        .map_err(io_err("truncate", &torn.file))?;
    f.sync_all().map_err(io_err("sync", &torn.file))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// The file name under which the writer stores an enclave's public key.
pub fn key_file_name(key: &[u8; 32]) -> String {
    format!("enclave-key-{}.pub", &hex::encode(key)[..16])
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir`, verifies the whole chain and the
    /// checkpoints, repairs a torn tail, and positions the writer after the last entry. Writes
    /// no checkpoints.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_inner(dir, None)
    }

    /// Like [`AuditLog::open`], and signs checkpoints with `key` under `policy`. Writes the
    /// public key to `enclave-key-<first 16 hex>.pub` and a checkpoint right away when the log
    /// has entries no checkpoint covers (or no checkpoint at all).
    pub fn open_with_signer(
        dir: &Path,
        policy: CheckpointPolicy,
        key: SigningKey,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::open_inner(dir, Some((policy, key)))
    }

    fn open_inner(
        dir: &Path,
        signing: Option<(CheckpointPolicy, SigningKey)>,
    ) -> Result<AuditLog, AuditError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let scan = scan(dir, &[], |_| Ok(()))?;
        let mut recovery = Recovery::Clean;
        if let Some(torn) = scan.torn {
            truncate_torn(&torn)?;
            recovery = Recovery::TruncatedTornTail(torn);
        }
        if let Some(torn) = &scan.torn_checkpoint {
            truncate_torn(torn)?;
        }
        let path = match scan.segments.last() {
            Some(p) => p.clone(),
            None => {
                let p = dir.join(segment_name(1));
                File::create_new(&p).map_err(io_err("create", &p))?;
                // Make the new directory entry durable too.
                sync_dir(dir)?;
                p
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open for append", &path))?;
        let segment_len = file.metadata().map_err(io_err("inspect", &path))?.len();
        let segment_no = scan
            .first_segment
            .saturating_add(u32::try_from(scan.segments.len().max(1)).unwrap_or(u32::MAX) - 1);
        let mut segs = scan.seg_info;
        if segs.is_empty() {
            segs.push(SegInfo {
                number: 1,
                first_index: 0,
                first_ms: None,
                last_ms: None,
                anchored: false,
            });
        }
        let signer = match signing {
            None => None,
            Some((policy, key)) => {
                let public = key.verifying_key().to_bytes();
                let key_path = dir.join(key_file_name(&public));
                if !key_path.exists() {
                    let mut f = File::create(&key_path).map_err(io_err("create", &key_path))?;
                    f.write_all(format!("{}\n", hex::encode(public)).as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(io_err("write", &key_path))?;
                }
                let cp_path = dir.join(CHECKPOINT_FILE);
                let cp_file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&cp_path)
                    .map_err(io_err("open for append", &cp_path))?;
                sync_dir(dir)?;
                let len = cp_file
                    .metadata()
                    .map_err(io_err("inspect", &cp_path))?
                    .len();
                Some(Signer {
                    key,
                    policy,
                    path: cp_path,
                    file: cp_file,
                    len,
                    // A new key (a new enclave run) always signs the log as it finds it, even
                    // when the previous run's last checkpoint already covers it: the handover
                    // checkpoint, in which the new run vouches for the same root.
                    last_size: scan
                        .checkpoints
                        .last()
                        .filter(|c| c.key == public)
                        .map(|c| c.tree_size),
                    last_time: Instant::now(),
                    failure: None,
                })
            }
        };
        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            path,
            file,
            segment: (segment_no, segment_len),
            rotation: Rotation::default(),
            clock: system_clock(),
            segs,
            rotation_failure: None,
            state: scan.state,
            frontier: scan.frontier,
            recovery,
            checkpoint_recovery: scan.torn_checkpoint,
            poisoned: false,
            signer,
        };
        if log
            .signer
            .as_ref()
            .is_some_and(|s| s.last_size != Some(log.frontier.size()))
        {
            log.checkpoint()?;
        }
        Ok(log)
    }

    /// Appends `record`, flushes it to stable storage, and returns its index. The enclave
    /// releases a response only after this returns `Ok`. May also write a due checkpoint; a
    /// failure to do so does not fail the append (the entry is durable) but is kept in
    /// [`AuditLog::checkpoint_failure`] and retried.
    pub fn append(&mut self, record: AuditRecord) -> Result<u64, AuditError> {
        let range = self.append_batch(std::slice::from_ref(&record))?;
        Ok(range.start)
    }

    /// Group commit: appends all `records` with one write and one `fsync`; returns their
    /// indices. Either all are durable when this returns `Ok`, or the writer is poisoned.
    pub fn append_batch(
        &mut self,
        records: &[AuditRecord],
    ) -> Result<std::ops::Range<u64>, AuditError> {
        let first = self.state.next_index;
        let hashes = self.append_batch_hashes(records)?;
        Ok(first..first + hashes.len() as u64)
    }

    /// [`AuditLog::append_batch`], returning each new entry's chain hash (for receipts).
    pub fn append_batch_hashes(
        &mut self,
        records: &[AuditRecord],
    ) -> Result<Vec<[u8; 32]>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        let mut state = self.state;
        let mut bytes = Vec::with_capacity(records.len() * 512);
        let mut leaves = Vec::with_capacity(records.len());
        let mut hashes = Vec::with_capacity(records.len());
        for record in records {
            let e = encode_entry(record, state.next_index, &state.last_hash)
                .map_err(|e| AuditError::Encode(e.to_string()))?;
            bytes.extend_from_slice(&e.line);
            leaves.push(e.leaf);
            hashes.push(e.hash);
            state = ChainState {
                next_index: state.next_index.saturating_add(1),
                last_hash: e.hash,
            };
        }
        if self.rotation_due(bytes.len() as u64) {
            // A failed rotation must not stop the service: keep growing this segment and
            // retry on the next commit.
            self.rotation_failure = self.rotate().err().map(|e| e.to_string());
        }
        if self.rotation_failure.is_none() && self.rotation.prunes() {
            // Likewise a failed deletion: the old segments stay and it is retried.
            self.rotation_failure = self.prune().err().map(|e| e.to_string());
        }
        let written = self
            .file
            .write_all(&bytes)
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
        self.state = state;
        self.segment.1 += bytes.len() as u64;
        if let Some(current) = self.segs.last_mut() {
            current.first_ms = current.first_ms.or(records.first().map(|r| r.time_unix_ms));
            current.last_ms = records.last().map(|r| r.time_unix_ms).or(current.last_ms);
        }
        for leaf in leaves {
            self.frontier.push(leaf);
        }
        if self.checkpoint_due() {
            if let Err(e) = self.checkpoint() {
                if let Some(s) = self.signer.as_mut() {
                    s.failure = Some(e.to_string());
                }
            }
        }
        Ok(hashes)
    }

    /// Rotates to a new segment once the current one would exceed `max_bytes` (a single
    /// commit is never split, so a segment can exceed it by one batch when it starts empty).
    /// The chain and the Merkle tree continue across segments unchanged.
    pub fn with_max_segment_bytes(mut self, max_bytes: u64) -> AuditLog {
        self.rotation.segment_max_bytes = Some(max_bytes.max(1));
        self
    }

    /// Rotation by size and age and retention ([`Rotation`]); deletion needs a signer (each
    /// deletion is announced by a signed retention statement, and each segment after the first
    /// starts with a signed anchor).
    pub fn with_rotation(mut self, mut rotation: Rotation) -> AuditLog {
        if let Some(b) = rotation.segment_max_bytes.as_mut() {
            *b = (*b).max(1);
        }
        self.rotation = rotation;
        self
    }

    /// Replaces the clock used for rotation and retention by age (tests).
    pub fn with_clock(mut self, clock: Clock) -> AuditLog {
        self.clock = clock;
        self
    }

    fn rotation_due(&self, incoming: u64) -> bool {
        if self.segment.1 == 0 {
            return false;
        }
        let by_size = self
            .rotation
            .segment_max_bytes
            .is_some_and(|max| self.segment.1.saturating_add(incoming) > max);
        let by_age = self.rotation.segment_max_age.is_some_and(|age| {
            let first = self.segs.last().and_then(|s| s.first_ms);
            first.is_some_and(|t| {
                (self.clock)().saturating_sub(t)
                    >= u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
            })
        });
        by_size || by_age
    }

    /// Deletes the oldest segments the retention policy no longer keeps: never the current
    /// one, and only up to a segment that has an anchor. Appends and syncs a signed retention
    /// statement first, so a crash leaves either nothing deleted or an announced deletion.
    fn prune(&mut self) -> Result<(), AuditError> {
        let Some(signer) = self.signer.as_ref() else {
            return Ok(());
        };
        let now = (self.clock)();
        let mut k = 0usize;
        while k + 1 < self.segs.len() {
            let seg = &self.segs[k];
            let over_count = self
                .rotation
                .retain_segments
                .is_some_and(|n| (self.segs.len() - k) as u64 > u64::from(n.max(1)));
            let too_old = self.rotation.retain_age.is_some_and(|age| {
                seg.last_ms.is_some_and(|t| {
                    now.saturating_sub(t) >= u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
                })
            });
            if !(over_count || too_old) || !self.segs[k + 1].anchored {
                break;
            }
            k += 1;
        }
        if k == 0 {
            return Ok(());
        }
        let keep = &self.segs[k];
        let statement = RetentionStatement::sign(
            &signer.policy.log_id,
            keep.number,
            keep.first_index,
            now_ms(),
            &signer.key,
        );
        let path = self.dir.join(RETENTION_FILE);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("open for append", &path))?;
        f.write_all(format!("{}\n", statement.to_json()).as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(io_err("append to", &path))?;
        sync_dir(&self.dir)?;
        for seg in &self.segs[..k] {
            for name in [segment_name(seg.number), anchor_name(seg.number)] {
                let p = self.dir.join(name);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(AuditError::Io {
                            op: "delete",
                            path: p,
                            source,
                        })
                    }
                }
            }
        }
        sync_dir(&self.dir)?;
        self.segs.drain(..k);
        Ok(())
    }

    /// Starts segment `n + 1`: created empty and synced (with its directory entry) before any
    /// entry goes into it, so a crash leaves at most an empty last segment.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let next = self.segment.0.saturating_add(1);
        let path = self.dir.join(segment_name(next));
        // The anchor first: a segment never exists without it (when signing), so retention
        // can later delete everything before it.
        let anchored = match &self.signer {
            None => false,
            Some(s) => {
                let anchor = Anchor::sign(
                    &s.policy.log_id,
                    next,
                    self.state.last_hash,
                    &self.frontier,
                    now_ms(),
                    &s.key,
                );
                let apath = self.dir.join(anchor_name(next));
                let mut f = File::create(&apath).map_err(io_err("create", &apath))?;
                f.write_all(format!("{}\n", anchor.to_json()).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(io_err("write", &apath))?;
                true
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .and_then(|f| f.sync_all().map(|()| f))
            .map_err(io_err("create", &path))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.path = path;
        self.segment = (next, 0);
        self.segs.push(SegInfo {
            number: next,
            first_index: self.state.next_index,
            first_ms: None,
            last_ms: None,
            anchored,
        });
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let Some(s) = &self.signer else { return false };
        let size = self.frontier.size();
        let last = s.last_size.unwrap_or(0);
        if size <= last && s.last_size.is_some() {
            return false;
        }
        let by_count = s.policy.every_records > 0 && size - last >= s.policy.every_records;
        by_count || s.last_time.elapsed() >= s.policy.every || s.failure.is_some()
    }

    /// Signs and durably appends a checkpoint of the log as it is now, if the log has grown
    /// since the last one (or none exists). `Ok(None)` when there is nothing new or no signer.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, AuditError> {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let Some(s) = self.signer.as_mut() else {
            return Ok(None);
        };
        if s.last_size == Some(size) {
            return Ok(None);
        }
        let cp = Checkpoint::sign(&s.policy.log_id, size, root, now_ms(), &s.key);
        let line = format!("{}\n", cp.to_json());
        let written = s
            .file
            .write_all(line.as_bytes())
            .and_then(|()| s.file.sync_data());
        if let Err(source) = written {
            // Best effort: cut a partial line so the next attempt starts clean; if this fails
            // too, the next open treats it as a torn tail.
            let _ = s.file.set_len(s.len);
            return Err(AuditError::Io {
                op: "append checkpoint to",
                path: s.path.clone(),
                source,
            });
        }
        s.len += line.len() as u64;
        s.last_size = Some(size);
        s.last_time = Instant::now();
        s.failure = None;
        Ok(Some(cp))
    }

    /// A checkpoint of the log as it is now, signed with the enclave key but *not* written to
    /// `checkpoints.log`: what a response carries so its client holds a signed root covering
    /// its record. `None` without a signer.
    pub fn sign_head(&self) -> Option<Checkpoint> {
        let s = self.signer.as_ref()?;
        Some(Checkpoint::sign(
            &s.policy.log_id,
            self.frontier.size(),
            self.frontier.root(),
            now_ms(),
            &s.key,
        ))
    }

    /// The last failure to write a periodic checkpoint, if it has not since succeeded.
    pub fn checkpoint_failure(&self) -> Option<&str> {
        self.signer.as_ref().and_then(|s| s.failure.as_deref())
    }

    /// The last failure to start a new segment, if it has not since succeeded.
    pub fn rotation_failure(&self) -> Option<&str> {
        self.rotation_failure.as_deref()
    }

    /// What `open` repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// An incomplete checkpoint line `open` removed, if any.
    pub fn checkpoint_recovery(&self) -> Option<&TornTail> {
        self.checkpoint_recovery.as_ref()
    }

    /// The index the next entry will get (= number of entries).
    pub fn next_index(&self) -> u64 {
        self.state.next_index
    }

    /// Hex hash of the last entry (64 zeros if empty).
    pub fn last_hash_hex(&self) -> String {
        hex::encode(self.state.last_hash)
    }

    /// The Merkle root of all entries.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Verifies every entry in `dir` and every checkpoint against the key it names, without
/// changing anything; names the first bad entry. Tolerates entries after the last checkpoint.
pub fn verify_dir(dir: &Path) -> Result<VerifySummary, AuditError> {
    let scan = scan(dir, &[], |_| Ok(()))?;
    Ok(VerifySummary {
        entries: scan.state.next_index,
        segments: u32::try_from(scan.segments.len()).unwrap_or(u32::MAX),
        last_hash: hex::encode(scan.state.last_hash),
        torn_tail: scan.torn,
    })
}

/// The auditor's full check: every entry; every checkpoint's encoding, signature (under a
/// trusted key, if any are given), log identity, order and root against the entries — which
/// also establishes that consecutive checkpoints are consistent, since both roots are computed
/// from one verified sequence of entries; and, unless allowed, that no entry is left unsigned
/// after the last checkpoint. Changes nothing.
pub fn verify_dir_with(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let scan = scan(dir, &opts.trusted_keys, |_| Ok(()))?;
    let covered = scan.checkpoints.last().map(|c| c.tree_size).unwrap_or(0);
    let entries = scan.state.next_index;
    let unsigned = entries - covered.min(entries);
    if unsigned > 0 && !opts.allow_unsigned_tail {
        return Err(AuditError::Unsigned {
            from: scan.first_uncovered.unwrap_or(Position {
                file: dir.to_path_buf(),
                offset: 0,
                index: covered,
            }),
            count: unsigned,
        });
    }
    let mut keys: Vec<String> = Vec::new();
    for c in &scan.checkpoints {
        let k = hex::encode(c.key);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    Ok(VerifyReport {
        entries,
        segments: u32::try_from(scan.segments.len()).unwrap_or(u32::MAX),
        last_hash: hex::encode(scan.state.last_hash),
        root: hex::encode(scan.frontier.root()),
        checkpoints: scan.checkpoints.len() as u64,
        latest: scan.checkpoints.last().cloned(),
        keys,
        unsigned_entries: unsigned,
        torn_tail: scan.torn,
        torn_checkpoint: scan.torn_checkpoint,
        pruned: scan.pruned,
    })
}

/// Reads and verifies the whole log (as [`verify_dir`] does) into memory for review tools.
pub fn read_log(dir: &Path) -> Result<LogContents, AuditError> {
    let mut entries = Vec::new();
    let mut contents = for_each_entry(dir, |e| entries.push(e))?;
    contents.entries = entries;
    Ok(contents)
}

/// Streams every entry to `f`, in order, as the verification reaches it, without holding the
/// log in memory; returns the checkpoints and torn tails (with `entries` empty). Entries are
/// handed over before the checkpoints after them are checked: only an `Ok` result means the
/// whole log verified.
pub fn for_each_entry(dir: &Path, mut f: impl FnMut(LogEntry)) -> Result<LogContents, AuditError> {
    let scan = scan(dir, &[], |e| {
        f(LogEntry {
            position: Position {
                file: e.file.to_path_buf(),
                offset: e.offset,
                index: e.entry.index,
            },
            entry: e.entry.clone(),
            line: String::from_utf8_lossy(e.bytes).into_owned(),
        });
        Ok(())
    })?;
    Ok(LogContents {
        entries: Vec::new(),
        checkpoints: scan.checkpoints,
        torn: (scan.torn, scan.torn_checkpoint),
        prefix: scan.prefix,
        pruned: scan.pruned,
    })
}

fn segment_name(n: u32) -> String {
    format!("audit-{n:06}.log")
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io { op, path, source }
}

/// The segment files in order, and the number of the first; refuses gaps in the numbering.
/// The first may be above 1 when retention deleted older segments ([`scan`] checks that).
fn segments(dir: &Path) -> Result<(u32, Vec<PathBuf>), AuditError> {
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
    let first = found.first().map_or(1, |f| f.0);
    for (i, (n, _)) in found.iter().enumerate() {
        let expected = first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        if *n != expected {
            return Err(AuditError::MissingSegment {
                dir: dir.to_path_buf(),
                expected,
            });
        }
    }
    Ok((first, found.into_iter().map(|(_, p)| p).collect()))
}

/// Reads `retention.log` (each line parsed and signed by a trusted key, if any are given); a
/// final incomplete line is ignored, as an interrupted append.
fn read_statements(dir: &Path, trusted: &[[u8; 32]]) -> Result<Vec<RetentionStatement>, String> {
    let path = dir.join(RETENTION_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let Some(line) = line.strip_suffix(b"\n") else {
            break;
        };
        let st = RetentionStatement::parse(line)
            .and_then(|st| st.verify(trusted).map(|()| st))
            .map_err(|f| format!("{}:{}: {f}", path.display(), i + 1))?;
        out.push(st);
    }
    Ok(out)
}

/// For a log whose first segment is `first > 1`: its verified anchor and the retention
/// statement that announced the deletion.
fn check_pruned(
    dir: &Path,
    first: u32,
    trusted: &[[u8; 32]],
) -> Result<(Anchor, Frontier, Pruned), AuditError> {
    let fail = |reason: String| AuditError::Pruned {
        dir: dir.to_path_buf(),
        first_segment: first,
        reason,
    };
    let apath = dir.join(anchor_name(first));
    let text = fs::read(&apath).map_err(|e| {
        fail(format!(
            "its anchor {} cannot be read ({e}), so nothing proves the state the log \
             continues from",
            apath.display()
        ))
    })?;
    let anchor = Anchor::parse(&text).map_err(|f| fail(format!("{}: {f}", apath.display())))?;
    if anchor.segment != first {
        return Err(fail(format!(
            "{} is the anchor of segment {}",
            apath.display(),
            anchor.segment
        )));
    }
    let frontier = anchor
        .verify(trusted)
        .map_err(|f| fail(format!("{}: {f}", apath.display())))?;
    let statements = read_statements(dir, trusted).map_err(fail)?;
    let statement = statements
        .iter()
        .rev()
        .find(|st| st.segments_before >= first && st.log_id == anchor.log_id)
        .cloned()
        .ok_or_else(|| {
            fail(
                "no signed retention statement announces their deletion: segments were \
                 deleted by someone other than the enclave"
                    .to_string(),
            )
        })?;
    if statement.segments_before == first && statement.entries_before != anchor.index {
        return Err(fail(format!(
            "the retention statement says entries before {} were deleted but the anchor \
             starts at entry {}",
            statement.entries_before, anchor.index
        )));
    }
    let pruned = Pruned {
        first_segment: first,
        first_index: anchor.index,
        anchor_time_unix_ms: anchor.time_unix_ms,
        statement,
    };
    Ok((anchor, frontier, pruned))
}

/// One entry as the scan meets it.
struct EntryRef<'a> {
    file: &'a Path,
    offset: u64,
    entry: &'a ParsedEntry,
    bytes: &'a [u8],
}

struct Scan {
    state: ChainState,
    frontier: Frontier,
    /// The number of the first segment (above 1 after retention).
    first_segment: u32,
    segments: Vec<PathBuf>,
    seg_info: Vec<SegInfo>,
    /// The frontier of the pruned prefix (empty when nothing was pruned).
    prefix: Frontier,
    pruned: Option<Pruned>,
    torn: Option<TornTail>,
    checkpoints: Vec<Checkpoint>,
    torn_checkpoint: Option<TornTail>,
    /// The first entry the last checkpoint does not cover, if any.
    first_uncovered: Option<Position>,
}

/// A checkpoint line that parsed and verified on its own.
struct CheckpointLine {
    line: u64,
    checkpoint: Checkpoint,
}

/// Reads `checkpoints.log`: each line canonical, signed (by a trusted key if any are given),
/// naming the same log, sizes non-decreasing. A final incomplete or unparsable line is a torn
/// tail.
fn read_checkpoints(
    dir: &Path,
    trusted: &[[u8; 32]],
) -> Result<(PathBuf, Vec<CheckpointLine>, Option<TornTail>), AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, Vec::new(), None)),
        Err(source) => {
            return Err(AuditError::Io {
                op: "read",
                path,
                source,
            })
        }
    };
    let mut out: Vec<CheckpointLine> = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0u64;
    while pos < bytes.len() {
        line_no += 1;
        let torn = TornTail {
            file: path.clone(),
            offset: pos as u64,
            bytes: (bytes.len() - pos) as u64,
        };
        let Some(len) = bytes[pos..].iter().position(|&b| b == b'\n') else {
            return Ok((path, out, Some(torn)));
        };
        let end = pos + len;
        let invalid = |fault, tree_size| AuditError::CheckpointInvalid {
            file: path.clone(),
            line: line_no,
            tree_size,
            fault,
            from: None,
        };
        let cp = match Checkpoint::parse(&bytes[pos..end]) {
            Ok(cp) => cp,
            Err(CheckpointFault::Unparsable(_)) if end + 1 == bytes.len() => {
                return Ok((path, out, Some(torn)));
            }
            Err(fault) => return Err(invalid(fault, 0)),
        };
        cp.verify_with(trusted)
            .map_err(|f| invalid(f, cp.tree_size))?;
        if let Some(first) = out.first() {
            if first.checkpoint.log_id != cp.log_id {
                return Err(invalid(
                    CheckpointFault::LogIdChanged {
                        expected: first.checkpoint.log_id.clone(),
                        found: cp.log_id.clone(),
                    },
                    cp.tree_size,
                ));
            }
        }
        if let Some(prev) = out.last() {
            if cp.tree_size < prev.checkpoint.tree_size {
                return Err(invalid(
                    CheckpointFault::SizeDecreased {
                        size: cp.tree_size,
                        previous: prev.checkpoint.tree_size,
                    },
                    cp.tree_size,
                ));
            }
        }
        out.push(CheckpointLine {
            line: line_no,
            checkpoint: cp,
        });
        pos = end + 1;
    }
    Ok((path, out, None))
}

fn scan(
    dir: &Path,
    trusted: &[[u8; 32]],
    mut visit: impl FnMut(&EntryRef<'_>) -> Result<(), AuditError>,
) -> Result<Scan, AuditError> {
    let (first_segment, segments) = segments(dir)?;
    let (cp_path, checkpoints, torn_checkpoint) = read_checkpoints(dir, trusted)?;
    let mut state = ChainState::new();
    let mut frontier = Frontier::new();
    let mut pruned = None;
    if first_segment > 1 {
        let (anchor, f, p) = check_pruned(dir, first_segment, trusted)?;
        state = ChainState {
            next_index: anchor.index,
            last_hash: anchor.prev,
        };
        frontier = f;
        pruned = Some(p);
    }
    let prefix = frontier.clone();
    let mut seg_info = Vec::with_capacity(segments.len());
    let mut torn = None;
    // Checkpoints are checked in order as the tree reaches their size. Those of the pruned
    // prefix were checked for signature, log and order only: their entries are gone (the
    // anchor's root, signed by the enclave, stands in for them).
    let mut next_cp = checkpoints
        .iter()
        .take_while(|c| c.checkpoint.tree_size < prefix.size())
        .count();
    // Where the entries start that no verified checkpoint covers yet.
    let mut uncovered_from: Option<Position> = None;
    let check_due = |frontier: &Frontier,
                     next_cp: &mut usize,
                     uncovered_from: &mut Option<Position>|
     -> Result<(), AuditError> {
        while let Some(c) = checkpoints.get(*next_cp) {
            if c.checkpoint.tree_size != frontier.size() {
                break;
            }
            let computed = frontier.root();
            if computed != c.checkpoint.root {
                return Err(AuditError::CheckpointInvalid {
                    file: cp_path.clone(),
                    line: c.line,
                    tree_size: c.checkpoint.tree_size,
                    fault: CheckpointFault::RootMismatch {
                        size: c.checkpoint.tree_size,
                        computed: hex::encode(computed),
                        signed: hex::encode(c.checkpoint.root),
                    },
                    from: uncovered_from.clone().map(Box::new),
                });
            }
            *uncovered_from = None;
            *next_cp += 1;
        }
        Ok(())
    };
    check_due(&frontier, &mut next_cp, &mut uncovered_from)?;
    let mut end = Position {
        file: dir.join(segment_name(first_segment)),
        offset: 0,
        index: state.next_index,
    };
    for (i, path) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(io_err("read", path))?;
        let number = first_segment.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        let mut info = SegInfo {
            number,
            first_index: state.next_index,
            first_ms: None,
            last_ms: None,
            anchored: number > 1 && dir.join(anchor_name(number)).exists(),
        };
        let mut pos = 0usize;
        let mut line_no = 0u64;
        while pos < bytes.len() {
            line_no += 1;
            let index = state.next_index;
            let broken = |reason| AuditError::ChainBroken {
                file: path.clone(),
                line: line_no,
                offset: pos as u64,
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
            let end_of_line = pos + len;
            match state.check_line(&bytes[pos..end_of_line]) {
                Ok(entry) => {
                    if uncovered_from.is_none() {
                        uncovered_from = Some(Position {
                            file: path.clone(),
                            offset: pos as u64,
                            index,
                        });
                    }
                    visit(&EntryRef {
                        file: path,
                        offset: pos as u64,
                        entry: &entry,
                        bytes: &bytes[pos..end_of_line],
                    })?;
                    frontier.push(entry.leaf);
                    info.first_ms = info.first_ms.or(Some(entry.record.time_unix_ms));
                    info.last_ms = Some(entry.record.time_unix_ms);
                    check_due(&frontier, &mut next_cp, &mut uncovered_from)?;
                    pos = end_of_line + 1;
                }
                Err(BreakReason::Unparsable(_)) if is_last && end_of_line + 1 == bytes.len() => {
                    torn = Some(torn_here());
                    break;
                }
                Err(reason) => return Err(broken(reason)),
            }
        }
        end = Position {
            file: path.clone(),
            offset: pos as u64,
            index: state.next_index,
        };
        seg_info.push(info);
    }
    if let Some(c) = checkpoints.get(next_cp) {
        return Err(AuditError::CheckpointInvalid {
            file: cp_path,
            line: c.line,
            tree_size: c.checkpoint.tree_size,
            fault: CheckpointFault::BeyondLog {
                size: c.checkpoint.tree_size,
                entries: state.next_index,
            },
            from: Some(Box::new(end)),
        });
    }
    Ok(Scan {
        state,
        frontier,
        first_segment,
        segments,
        seg_info,
        prefix,
        pruned,
        torn,
        checkpoints: checkpoints.into_iter().map(|c| c.checkpoint).collect(),
        torn_checkpoint,
        first_uncovered: uncovered_from,
    })
}
