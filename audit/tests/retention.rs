//! Rotation by age (with an injected clock) and retention: deleting old segments keeps the rest
//! verifiable from a signed anchor, `verify` reports the pruned prefix, proofs about retained
//! entries still verify, and tampering after retention is still caught — including deleting
//! segments without the enclave's signed statement.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloister_audit::{
    read_log, verify_dir_with, AuditError, AuditLog, AuditRecord, CheckpointPolicy,
    ConsistencyProof, InclusionProof, Outcome, Rotation, VerifyOptions,
};
use ed25519_dalek::SigningKey;

const T0: u64 = 1_800_000_000_000;
const MINUTE: u64 = 60_000;
const DAY: u64 = 86_400_000;

fn record(i: u64, time: u64) -> AuditRecord {
    AuditRecord {
        time_unix_ms: time,
        request_id: format!("req-{i}"),
        tenant: Some("dev".into()),
        model: Some("digits".into()),
        model_sha256: None,
        policy_sha256: "ab".repeat(32),
        outcome: Outcome::Ok,
        input_digest: None,
        output_digest: None,
        privacy: None,
        latency_us: 10,
        homomorphic: None,
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn policy() -> CheckpointPolicy {
    CheckpointPolicy {
        every_records: 5,
        ..CheckpointPolicy::default()
    }
}

struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Clock {
        Clock(Arc::new(AtomicU64::new(T0)))
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    fn handle(&self) -> cloister_audit::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

fn open(dir: &Path, rotation: Rotation, clock: &Clock) -> AuditLog {
    AuditLog::open_with_signer(dir, policy(), key())
        .unwrap()
        .with_rotation(rotation)
        .with_clock(clock.handle())
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    v.sort();
    v
}

fn pinned() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![key().verifying_key().to_bytes()],
        allow_unsigned_tail: false,
    }
}

#[test]
fn segments_rotate_by_age_of_their_first_record() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let rotation = Rotation {
        segment_max_age: Some(Duration::from_secs(3600)),
        ..Rotation::default()
    };
    let mut log = open(tmp.path(), rotation, &clock);
    log.append(record(0, clock.now())).unwrap();
    clock.advance(59 * MINUTE);
    log.append(record(1, clock.now())).unwrap();
    assert_eq!(segment_files(tmp.path()), ["audit-000001.log"]);
    clock.advance(MINUTE);
    // The first record of segment 1 is now an hour old: the next record starts segment 2.
    log.append(record(2, clock.now())).unwrap();
    log.append(record(3, clock.now())).unwrap();
    assert_eq!(
        segment_files(tmp.path()),
        [
            "audit-000001.log",
            "audit-000002.anchor",
            "audit-000002.log"
        ]
    );
    clock.advance(60 * MINUTE);
    log.append(record(4, clock.now())).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    assert!(tmp.path().join("audit-000003.log").exists());
    let report = verify_dir_with(tmp.path(), &pinned()).unwrap();
    assert_eq!((report.entries, report.segments), (5, 3));
    assert_eq!(report.pruned, None);
    let seg2 = fs::read_to_string(tmp.path().join("audit-000002.log")).unwrap();
    assert_eq!(seg2.lines().count(), 2, "{seg2}");
}

/// A log of 5 segments of 4 records each (rotation by size), retaining 2 segments.
fn pruned_log(dir: &Path, clock: &Clock) -> u64 {
    let line_len = {
        let probe = tempfile::tempdir().unwrap();
        let mut l = AuditLog::open(probe.path()).unwrap();
        l.append(record(0, T0)).unwrap();
        fs::metadata(probe.path().join("audit-000001.log"))
            .unwrap()
            .len()
    };
    let rotation = Rotation {
        // Four records fit (indices up to 19 have the same line length as index 0..9 ± 1).
        segment_max_bytes: Some(4 * line_len + 8),
        retain_segments: Some(2),
        ..Rotation::default()
    };
    let mut log = open(dir, rotation, clock);
    for i in 0..20 {
        log.append(record(i, clock.now())).unwrap();
        clock.advance(1000);
    }
    log.checkpoint().unwrap();
    log.next_index()
}

#[test]
fn retention_keeps_the_rest_verifiable_and_reports_the_pruned_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let n = pruned_log(tmp.path(), &clock);
    let files = segment_files(tmp.path());
    let logs: Vec<&String> = files.iter().filter(|f| f.ends_with(".log")).collect();
    assert_eq!(logs.len(), 2, "{files:?}");
    assert!(!tmp.path().join("audit-000001.log").exists());
    let first_kept: u32 = logs[0][6..12].parse().unwrap();
    assert!(first_kept > 1);
    assert!(tmp
        .path()
        .join(format!("audit-{first_kept:06}.anchor"))
        .exists());

    let report = verify_dir_with(tmp.path(), &pinned()).unwrap();
    let pruned = report.pruned.clone().expect("pruned prefix reported");
    assert_eq!(pruned.first_segment, first_kept);
    assert!(pruned.first_index > 0 && pruned.first_index < n);
    assert_eq!(report.entries, n);
    assert_eq!(report.latest.as_ref().unwrap().tree_size, n);

    // Proofs about retained entries still verify against the latest checkpoint.
    let log = read_log(tmp.path()).unwrap();
    assert_eq!(log.entries[0].entry.index, pruned.first_index);
    for index in [pruned.first_index, n - 1] {
        let proof = InclusionProof::build(&log, index).unwrap();
        proof.verify(&pinned().trusted_keys).unwrap();
    }
    assert!(InclusionProof::build(&log, 0).is_err(), "pruned entry");
    // And the latest checkpoint is consistent with a retained earlier one.
    let old = log
        .checkpoints
        .iter()
        .find(|c| c.tree_size >= pruned.first_index && c.tree_size < n)
        .expect("a retained checkpoint")
        .tree_size;
    let leaves = log.leaves();
    let proof = ConsistencyProof::build_pruned(
        cloister_audit::merkle::PrunedLeaves {
            prefix: &log.prefix,
            leaves: &leaves,
        },
        &log.checkpoints,
        old,
    )
    .unwrap();
    proof.verify(&pinned().trusted_keys).unwrap();

    // The writer reopens the pruned log and continues it.
    let mut writer = open(tmp.path(), Rotation::default(), &clock);
    assert_eq!(writer.append(record(n, clock.now())).unwrap(), n);
    writer.checkpoint().unwrap();
    drop(writer);
    assert_eq!(
        verify_dir_with(tmp.path(), &pinned()).unwrap().entries,
        n + 1
    );
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_old() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let rotation = Rotation {
        segment_max_age: Some(Duration::from_secs(86_400)),
        retain_age: Some(Duration::from_secs(7 * 86_400)),
        ..Rotation::default()
    };
    let mut log = open(tmp.path(), rotation, &clock);
    for day in 0..10 {
        log.append(record(day, clock.now())).unwrap();
        clock.advance(DAY);
    }
    log.checkpoint().unwrap();
    drop(log);
    // One segment per day; on day 9 the segments of days 0 and 1 (newest record 8+ days old)
    // are gone, day 2's (7 days old) is deleted too, day 3's is kept.
    assert!(!tmp.path().join("audit-000003.log").exists());
    assert!(tmp.path().join("audit-000004.log").exists());
    let report = verify_dir_with(tmp.path(), &pinned()).unwrap();
    assert_eq!(report.pruned.unwrap().first_index, 3);
    assert_eq!(report.entries, 10);
}

fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn tampering_after_retention_is_still_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    pruned_log(tmp.path(), &clock);
    let report = verify_dir_with(tmp.path(), &pinned()).unwrap();
    let first = report.pruned.unwrap().first_segment;
    let seg = |d: &Path, n: u32| d.join(format!("audit-{n:06}.log"));
    let anchor = |d: &Path, n: u32| d.join(format!("audit-{n:06}.anchor"));

    // A flipped byte in a retained record.
    let c = copy(tmp.path());
    let mut bytes = fs::read(seg(c.path(), first)).unwrap();
    bytes[30] ^= 1;
    fs::write(seg(c.path(), first), bytes).unwrap();
    assert!(matches!(
        verify_dir_with(c.path(), &pinned()),
        Err(AuditError::ChainBroken { .. })
    ));

    // Deleting a retained segment too (no statement announces it).
    let c = copy(tmp.path());
    fs::remove_file(seg(c.path(), first)).unwrap();
    let e = verify_dir_with(c.path(), &pinned()).unwrap_err();
    assert!(
        e.to_string().contains("no signed retention statement"),
        "{e}"
    );

    // Deleting the retention statements.
    let c = copy(tmp.path());
    fs::remove_file(c.path().join("retention.log")).unwrap();
    assert!(matches!(
        verify_dir_with(c.path(), &pinned()),
        Err(AuditError::Pruned { .. })
    ));

    // An edited anchor (a different starting state).
    let c = copy(tmp.path());
    let text = fs::read_to_string(anchor(c.path(), first)).unwrap();
    let idx = text.find("\"prev\":\"").unwrap() + 8;
    let mut b = text.into_bytes();
    b[idx] = if b[idx] == b'0' { b'1' } else { b'0' };
    fs::write(anchor(c.path(), first), b).unwrap();
    let e = verify_dir_with(c.path(), &pinned()).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");

    // A missing anchor.
    let c = copy(tmp.path());
    fs::remove_file(anchor(c.path(), first)).unwrap();
    assert!(matches!(
        verify_dir_with(c.path(), &pinned()),
        Err(AuditError::Pruned { .. })
    ));

    // Anchor and statement signed by another key are refused when the key is pinned.
    let other = VerifyOptions {
        trusted_keys: vec![[9u8; 32]],
        allow_unsigned_tail: false,
    };
    assert!(verify_dir_with(tmp.path(), &other).is_err());

    // Truncating the newest records is still truncation.
    let c = copy(tmp.path());
    let last = seg(c.path(), first + 1);
    let bytes = fs::read(&last).unwrap();
    let cut = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    fs::write(&last, &bytes[..cut]).unwrap();
    let e = verify_dir_with(c.path(), &pinned()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn without_a_signer_nothing_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut log = AuditLog::open(tmp.path())
        .unwrap()
        .with_rotation(Rotation {
            segment_max_bytes: Some(1),
            retain_segments: Some(1),
            ..Rotation::default()
        })
        .with_clock(clock.handle());
    for i in 0..4 {
        log.append(record(i, clock.now())).unwrap();
    }
    drop(log);
    assert_eq!(
        segment_files(tmp.path()),
        [
            "audit-000001.log",
            "audit-000002.log",
            "audit-000003.log",
            "audit-000004.log"
        ]
    );
}
