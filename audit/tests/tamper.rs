//! Tampering with a signed log is detected and located; crashes are not mistaken for it.
//!
//! Every test builds a log with signed checkpoints, changes the files the way an attacker (or a
//! crash) would, and checks that the auditor's verifier ([`verify_dir_with`]) fails — naming the
//! segment file, byte offset and entry index — or, for a torn tail, reports and repairs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloister_audit::record::encode_line;
use cloister_audit::{
    verify_dir_with, AuditError, AuditLog, AuditRecord, BreakReason, CheckpointFault,
    CheckpointPolicy, Outcome, Position, Recovery, VerifyOptions,
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        time_unix_ms: 1_700_000_000_000 + i,
        request_id: format!("req-{i}"),
        tenant: Some(if i % 2 == 0 { "acme" } else { "globex" }.into()),
        model: Some("digits".into()),
        model_sha256: Some("cd".repeat(32)),
        policy_sha256: "ab".repeat(32),
        outcome: if i % 3 == 2 {
            Outcome::Refused {
                code: "rate_limited".into(),
            }
        } else {
            Outcome::Ok
        },
        input_digest: Some("11".repeat(32)),
        output_digest: None,
        privacy: None,
        latency_us: 1000 + i,
        homomorphic: None,
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn policy(every_records: u64) -> CheckpointPolicy {
    CheckpointPolicy {
        log_id: "test-log".into(),
        every_records,
        every: Duration::from_secs(3600),
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("audit-000001.log")
}

/// The highest-numbered segment (where a crash can leave a torn tail).
fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-"))
        })
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

fn checkpoints(dir: &Path) -> PathBuf {
    dir.join("checkpoints.log")
}

/// A log of `n` entries, checkpointed every 3 entries and at the end (as at shutdown).
fn signed_log(n: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_with_signer(tmp.path(), policy(3), key(1)).unwrap();
    for i in 0..n {
        assert_eq!(log.append(record(i)).unwrap(), i);
    }
    log.checkpoint().unwrap();
    tmp
}

fn strict() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![key(1).verifying_key().to_bytes()],
        allow_unsigned_tail: false,
    }
}

/// Byte offset where each line of the segment starts.
fn line_starts(dir: &Path) -> Vec<u64> {
    let bytes = fs::read(segment(dir)).unwrap();
    let mut starts = vec![0u64];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i as u64 + 1);
        }
    }
    starts
}

/// The place an error names: (file, offset, index).
fn place(e: &AuditError) -> Option<Position> {
    match e {
        AuditError::ChainBroken {
            file,
            offset,
            index,
            ..
        } => Some(Position {
            file: file.clone(),
            offset: *offset,
            index: *index,
        }),
        AuditError::CheckpointInvalid { from, .. } => from.as_deref().cloned(),
        AuditError::Unsigned { from, .. } => Some(from.clone()),
        _ => None,
    }
}

#[track_caller]
fn fails_at(dir: &Path, index: u64, offset: u64) -> AuditError {
    let e = verify_dir_with(dir, &strict()).expect_err("tampering went unnoticed");
    let p = place(&e).unwrap_or_else(|| panic!("error names no place: {e}"));
    assert_eq!((p.index, p.offset), (index, offset), "{e}");
    assert_eq!(p.file, segment(dir), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("audit-000001.log"), "{msg}");
    assert!(msg.contains(&format!("offset {offset}")), "{msg}");
    assert!(msg.contains(&format!("index {index}")), "{msg}");
    e
}

#[test]
fn a_clean_signed_log_verifies_with_the_pinned_key_only() {
    let tmp = signed_log(7);
    let report = verify_dir_with(tmp.path(), &strict()).unwrap();
    assert_eq!(report.entries, 7);
    // At open (empty), after 3 and 6, and the final one.
    let sizes: Vec<u64> = fs::read_to_string(checkpoints(tmp.path()))
        .unwrap()
        .lines()
        .map(|l| {
            cloister_audit::Checkpoint::parse(l.as_bytes())
                .unwrap()
                .tree_size
        })
        .collect();
    assert_eq!(sizes, vec![0, 3, 6, 7]);
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.unsigned_entries, 0);
    assert_eq!(report.latest.as_ref().unwrap().tree_size, 7);
    assert_eq!(
        report.keys,
        vec![hex::encode(key(1).verifying_key().to_bytes())]
    );
    // The key file for offline verification.
    let pubfile = tmp.path().join(cloister_audit::log::key_file_name(
        &key(1).verifying_key().to_bytes(),
    ));
    assert_eq!(
        fs::read_to_string(pubfile).unwrap().trim(),
        hex::encode(key(1).verifying_key().to_bytes())
    );
    // Another key pinned: the genuine checkpoints are not trusted.
    let e = verify_dir_with(
        tmp.path(),
        &VerifyOptions {
            trusted_keys: vec![key(2).verifying_key().to_bytes()],
            allow_unsigned_tail: false,
        },
    )
    .unwrap_err();
    assert!(matches!(
        e,
        AuditError::CheckpointInvalid {
            line: 1,
            fault: CheckpointFault::UntrustedKey { .. },
            ..
        }
    ));
}

#[test]
fn every_single_flipped_byte_is_detected_at_its_entry() {
    let tmp = signed_log(5);
    let path = segment(tmp.path());
    let original = fs::read(&path).unwrap();
    let starts = line_starts(tmp.path());
    for at in 0..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let line = starts.iter().rposition(|&s| s <= at as u64).unwrap();
        fails_at(tmp.path(), line as u64, starts[line]);
    }
    fs::write(&path, &original).unwrap();
    verify_dir_with(tmp.path(), &strict()).unwrap();
}

fn lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(segment(dir))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    fs::write(segment(dir), lines.join("\n") + "\n").unwrap();
}

#[test]
fn deleting_a_record_is_detected() {
    let tmp = signed_log(6);
    let starts = line_starts(tmp.path());
    let mut l = lines(tmp.path());
    l.remove(2);
    write_lines(tmp.path(), &l);
    let e = fails_at(tmp.path(), 2, starts[2]);
    assert!(matches!(
        e,
        AuditError::ChainBroken {
            reason: BreakReason::IndexMismatch { found: 3 },
            ..
        }
    ));

    // Deleting the last one: the chain is fine, the signed checkpoint is not.
    let tmp = signed_log(6);
    let starts = line_starts(tmp.path());
    let mut l = lines(tmp.path());
    l.pop();
    write_lines(tmp.path(), &l);
    let e = fails_at(tmp.path(), 5, starts[5]);
    assert!(
        matches!(
            e,
            AuditError::CheckpointInvalid {
                fault: CheckpointFault::BeyondLog {
                    size: 6,
                    entries: 5
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn swapping_two_records_is_detected() {
    let tmp = signed_log(6);
    let mut l = lines(tmp.path());
    l.swap(1, 4);
    write_lines(tmp.path(), &l);
    let e = fails_at(tmp.path(), 1, line_starts(tmp.path())[1]);
    assert!(matches!(
        e,
        AuditError::ChainBroken {
            reason: BreakReason::IndexMismatch { found: 4 },
            ..
        }
    ));
}

#[test]
fn truncating_in_the_middle_is_detected() {
    // Cut inside entry 3: what remains looks like a torn tail, but a signed checkpoint covers
    // more than that, so it is a truncation, located where the log now ends.
    let tmp = signed_log(6);
    let starts = line_starts(tmp.path());
    let f = fs::OpenOptions::new()
        .write(true)
        .open(segment(tmp.path()))
        .unwrap();
    f.set_len(starts[3] + 17).unwrap();
    let e = fails_at(tmp.path(), 3, starts[3]);
    assert!(matches!(
        e,
        AuditError::CheckpointInvalid {
            fault: CheckpointFault::BeyondLog { .. },
            ..
        }
    ));
    // The writer refuses it too instead of "repairing" signed entries away.
    assert!(AuditLog::open_with_signer(tmp.path(), policy(3), key(1)).is_err());

    // Cutting a span out of the middle breaks the chain where the span starts.
    let tmp = signed_log(6);
    let starts = line_starts(tmp.path());
    let bytes = fs::read(segment(tmp.path())).unwrap();
    let mut cut = bytes[..(starts[2] + 10) as usize].to_vec();
    cut.extend_from_slice(&bytes[(starts[4] + 10) as usize..]);
    fs::write(segment(tmp.path()), cut).unwrap();
    fails_at(tmp.path(), 2, starts[2]);
}

#[test]
fn an_appended_forged_record_is_unsigned_and_its_checkpoint_untrusted() {
    let tmp = signed_log(4);
    let path = segment(tmp.path());
    let end = fs::metadata(&path).unwrap().len();
    let last_hash = {
        let l = lines(tmp.path());
        let h = l[3].split("\"hash\":\"").nth(1).unwrap()[..64].to_string();
        <[u8; 32]>::try_from(hex::decode(h).unwrap()).unwrap()
    };
    let mut forged = record(4);
    forged.tenant = Some("mallory".into());
    let (line, _) = encode_line(&forged, 4, &last_hash).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&line);
    fs::write(&path, &bytes).unwrap();

    let e = fails_at(tmp.path(), 4, end);
    assert!(matches!(e, AuditError::Unsigned { count: 1, .. }), "{e}");
    // Told that an unsigned tail is expected (a running enclave), it passes but says so.
    let report = verify_dir_with(
        tmp.path(),
        &VerifyOptions {
            allow_unsigned_tail: true,
            ..strict()
        },
    )
    .unwrap();
    assert_eq!((report.entries, report.unsigned_entries), (5, 1));

    // The forger signs a checkpoint with their own key: refused under the pinned key.
    let mut log = AuditLog::open_with_signer(tmp.path(), policy(3), key(66)).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let e = verify_dir_with(tmp.path(), &strict()).unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::CheckpointInvalid {
                fault: CheckpointFault::UntrustedKey { .. },
                tree_size: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_replaced_checkpoint_signature_is_detected() {
    let tmp = signed_log(6);
    let path = checkpoints(tmp.path());
    let original = fs::read_to_string(&path).unwrap();
    let l: Vec<&str> = original.lines().collect();
    // Line 2's signature replaced by line 3's (a genuine signature, of something else).
    let sig = |s: &str| s.split("\"signature\":\"").nth(1).unwrap()[..128].to_string();
    let mut edited: Vec<String> = l.iter().map(|s| s.to_string()).collect();
    edited[1] = edited[1].replace(&sig(l[1]), &sig(l[2]));
    fs::write(&path, edited.join("\n") + "\n").unwrap();
    let e = verify_dir_with(tmp.path(), &strict()).unwrap_err();
    match &e {
        AuditError::CheckpointInvalid {
            file,
            line: 2,
            fault: CheckpointFault::BadSignature { .. },
            ..
        } => assert_eq!(file, &path),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("checkpoints.log:2"), "{e}");

    // A flipped hex digit in a signature, anywhere.
    let mut edited: Vec<String> = l.iter().map(|s| s.to_string()).collect();
    let s = sig(l[2]);
    let mut flipped = s.clone().into_bytes();
    flipped[77] = if flipped[77] == b'0' { b'1' } else { b'0' };
    edited[2] = edited[2].replace(&s, std::str::from_utf8(&flipped).unwrap());
    fs::write(&path, edited.join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_dir_with(tmp.path(), &strict()),
        Err(AuditError::CheckpointInvalid {
            line: 3,
            fault: CheckpointFault::BadSignature { .. },
            ..
        })
    ));
}

#[test]
fn rewriting_signed_entries_with_fresh_hashes_contradicts_the_signed_root() {
    // The forger rewrites entries 4 and 5 and recomputes the chain: the chain verifies, the
    // checkpoint at 6 does not, and the error names entry 3 (the first entry after the
    // checkpoint at 3 that the bad checkpoint alone covers).
    let tmp = signed_log(6);
    let starts = line_starts(tmp.path());
    let mut l = lines(tmp.path());
    let mut prev: [u8; 32] = hex::decode(&l[3].split("\"hash\":\"").nth(1).unwrap()[..64])
        .unwrap()
        .try_into()
        .unwrap();
    for (i, slot) in l.iter_mut().enumerate().skip(4) {
        let mut r = record(i as u64);
        r.outcome = Outcome::Ok;
        r.latency_us = 1;
        let (line, hash) = encode_line(&r, i as u64, &prev).unwrap();
        *slot = String::from_utf8(line).unwrap().trim_end().to_string();
        prev = hash;
    }
    write_lines(tmp.path(), &l);
    let e = fails_at(tmp.path(), 3, starts[3]);
    assert!(
        matches!(
            e,
            AuditError::CheckpointInvalid {
                fault: CheckpointFault::RootMismatch { size: 6, .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn reordered_or_rolled_back_checkpoints_are_detected() {
    let tmp = signed_log(7);
    let path = checkpoints(tmp.path());
    let mut l: Vec<String> = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    l.swap(1, 2);
    fs::write(&path, l.join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_dir_with(tmp.path(), &strict()),
        Err(AuditError::CheckpointInvalid {
            line: 3,
            fault: CheckpointFault::SizeDecreased {
                size: 3,
                previous: 6
            },
            ..
        })
    ));
}

#[test]
fn a_torn_tail_is_recovered_and_reported_not_called_tampering() {
    let tmp = signed_log(4);
    let path = segment(tmp.path());
    let good_len = fs::metadata(&path).unwrap().len();
    let last_hash = {
        let l = lines(tmp.path());
        let h = l[3].split("\"hash\":\"").nth(1).unwrap()[..64].to_string();
        <[u8; 32]>::try_from(hex::decode(h).unwrap()).unwrap()
    };
    let (line, _) = encode_line(&record(4), 4, &last_hash).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&line[..55]);
    fs::write(&path, &bytes).unwrap();
    // And a torn checkpoint line.
    let cp_path = checkpoints(tmp.path());
    let cp_len = fs::metadata(&cp_path).unwrap().len();
    let mut cps = fs::read(&cp_path).unwrap();
    cps.extend_from_slice(b"{\"log_id\":\"test-log\",\"tree_si");
    fs::write(&cp_path, &cps).unwrap();

    let report = verify_dir_with(tmp.path(), &strict()).unwrap();
    let torn = report.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.bytes), (good_len, 55));
    assert_eq!(report.torn_checkpoint.unwrap().offset, cp_len);
    assert!(torn.to_string().contains("never acknowledged"));

    let mut log = AuditLog::open_with_signer(tmp.path(), policy(3), key(1)).unwrap();
    assert!(matches!(log.recovery(), Recovery::TruncatedTornTail(t) if t.bytes == 55));
    assert_eq!(log.checkpoint_recovery().unwrap().offset, cp_len);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(fs::metadata(&cp_path).unwrap().len(), cp_len);
    log.append(record(4)).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let report = verify_dir_with(tmp.path(), &strict()).unwrap();
    assert_eq!(
        (report.entries, report.torn_tail, report.torn_checkpoint),
        (5, None, None)
    );
}

#[test]
fn a_restarted_enclave_signs_with_its_new_key_and_both_can_be_pinned() {
    let tmp = signed_log(4);
    let mut log = AuditLog::open_with_signer(tmp.path(), policy(3), key(2)).unwrap();
    log.append(record(4)).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let both = VerifyOptions {
        trusted_keys: vec![
            key(1).verifying_key().to_bytes(),
            key(2).verifying_key().to_bytes(),
        ],
        allow_unsigned_tail: false,
    };
    let report = verify_dir_with(tmp.path(), &both).unwrap();
    assert_eq!(report.keys.len(), 2);
    assert!(verify_dir_with(tmp.path(), &strict()).is_err());
}

#[test]
fn time_based_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_with_signer(
        tmp.path(),
        CheckpointPolicy {
            log_id: "t".into(),
            every_records: 0,
            every: Duration::ZERO,
        },
        key(1),
    )
    .unwrap();
    for i in 0..3 {
        log.append(record(i)).unwrap();
    }
    assert!(log.checkpoint().unwrap().is_none(), "nothing new to sign");
    drop(log);
    let n = fs::read_to_string(checkpoints(tmp.path()))
        .unwrap()
        .lines()
        .count();
    assert_eq!(n, 4);
}

#[derive(Debug, Clone)]
enum Op {
    /// Append this many records (group commit when > 1).
    Append(u8),
    /// Crash in the middle of writing the next record: a prefix of its line reaches the file.
    CrashInAppend(u16),
    /// Crash in the middle of writing a checkpoint.
    CrashInCheckpoint(u16),
    /// Crash after appends, before any shutdown checkpoint.
    Kill,
    /// Clean shutdown (final checkpoint) and restart with a new key.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..5).prop_map(Op::Append),
        1 => any::<u16>().prop_map(Op::CrashInAppend),
        1 => any::<u16>().prop_map(Op::CrashInCheckpoint),
        1 => Just(Op::Kill),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever sequence of appends and crashes, the reopened log verifies strictly (under the
    /// keys that signed it), and no acknowledged entry is lost.
    #[test]
    fn appends_and_crashes_always_leave_a_verifiable_log(ops in proptest::collection::vec(op(), 1..14)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut seed = 1u8;
        let mut keys = vec![key(seed).verifying_key().to_bytes()];
        // Small segments, so rotation happens between crashes too.
        let mut log = AuditLog::open_with_signer(dir, policy(4), key(seed))
            .unwrap()
            .with_max_segment_bytes(2000);
        let mut acknowledged = 0u64;
        for op in ops {
            let crashed = match op {
                Op::Append(k) => {
                    let batch: Vec<AuditRecord> = (0..k as u64).map(|j| record(acknowledged + j)).collect();
                    let range = if k == 1 {
                        let i = log.append(batch[0].clone()).unwrap();
                        i..i + 1
                    } else {
                        log.append_batch(&batch).unwrap()
                    };
                    prop_assert_eq!(range, acknowledged..acknowledged + k as u64);
                    acknowledged += k as u64;
                    false
                }
                Op::CrashInAppend(cut) => {
                    let prev: [u8; 32] = hex::decode(log.last_hash_hex()).unwrap().try_into().unwrap();
                    let (line, _) = encode_line(&record(acknowledged), acknowledged, &prev).unwrap();
                    let cut = 1 + cut as usize % (line.len() - 1);
                    let last = last_segment(dir);
                    let mut bytes = fs::read(&last).unwrap();
                    bytes.extend_from_slice(&line[..cut]);
                    fs::write(&last, bytes).unwrap();
                    true
                }
                Op::CrashInCheckpoint(cut) => {
                    let line = b"{\"log_id\":\"test-log\",\"tree_size\":99999,\"root\":\"00\"}\n";
                    let cut = 1 + cut as usize % (line.len() - 1);
                    let mut bytes = fs::read(checkpoints(dir)).unwrap_or_default();
                    bytes.extend_from_slice(&line[..cut]);
                    fs::write(checkpoints(dir), bytes).unwrap();
                    true
                }
                Op::Kill => true,
                Op::Restart => {
                    log.checkpoint().unwrap();
                    true
                }
            };
            if crashed {
                drop(log);
                // The read-only verifier accepts the crashed log (torn tails are reported, an
                // unsigned tail is expected after a kill).
                let before = verify_dir_with(dir, &VerifyOptions {
                    trusted_keys: keys.clone(),
                    allow_unsigned_tail: true,
                }).unwrap();
                prop_assert_eq!(before.entries, acknowledged);
                seed = seed.wrapping_add(1).max(1);
                keys.push(key(seed).verifying_key().to_bytes());
                log = AuditLog::open_with_signer(dir, policy(4), key(seed))
                    .unwrap()
                    .with_max_segment_bytes(2000);
                prop_assert_eq!(log.next_index(), acknowledged);
                // Reopening signs whatever was unsigned: the log now verifies strictly.
                let after = verify_dir_with(dir, &VerifyOptions {
                    trusted_keys: keys.clone(),
                    allow_unsigned_tail: false,
                }).unwrap();
                prop_assert_eq!(after.entries, acknowledged);
                prop_assert_eq!(after.torn_tail, None);
                prop_assert_eq!(after.torn_checkpoint, None);
            }
        }
        log.checkpoint().unwrap();
        drop(log);
        let last = verify_dir_with(dir, &VerifyOptions { trusted_keys: keys, allow_unsigned_tail: false }).unwrap();
        prop_assert_eq!(last.entries, acknowledged);
    }
}

#[test]
fn inclusion_proof_documents_verify_and_reject_tampering() {
    use cloister_audit::{read_log, InclusionProof, ProofError};
    let tmp = signed_log(11);
    let log = read_log(tmp.path()).unwrap();
    let pinned = [key(1).verifying_key().to_bytes()];
    for index in 0..11 {
        let proof = InclusionProof::build(&log, index).unwrap();
        let text = proof.to_json_pretty();
        let back = InclusionProof::from_json(&text).unwrap();
        assert_eq!(back, proof);
        let entry = back.verify(&pinned).unwrap();
        assert_eq!(entry.index, index);
        assert_eq!(entry.record, record(index));
    }
    let proof = InclusionProof::build(&log, 4).unwrap();
    assert!(matches!(
        proof.verify(&[key(9).verifying_key().to_bytes()]),
        Err(ProofError::Checkpoint(CheckpointFault::UntrustedKey { .. }))
    ));
    let mut bad = proof.clone();
    bad.entry = bad.entry.replace("\"latency_us\":1004", "\"latency_us\":1");
    assert!(matches!(bad.verify(&pinned), Err(ProofError::BadEntry(_))));
    let mut bad = proof.clone();
    bad.proof[1][0] ^= 1;
    assert!(matches!(bad.verify(&pinned), Err(ProofError::Path(_))));
    let mut bad = proof.clone();
    bad.index = 5;
    assert!(bad.verify(&pinned).is_err());
    let mut bad = proof.clone();
    bad.checkpoint.tree_size += 1;
    assert!(bad.verify(&pinned).is_err());
    assert!(matches!(
        InclusionProof::build(&log, 11),
        Err(ProofError::NotCovered { .. })
    ));
    assert!(InclusionProof::from_json("{}").is_err());
}

#[test]
fn consistency_proof_documents_between_checkpoints() {
    use cloister_audit::{read_log, ConsistencyProof};
    let tmp = signed_log(11);
    let log = read_log(tmp.path()).unwrap();
    let pinned = [key(1).verifying_key().to_bytes()];
    // Checkpoints at 0, 3, 6, 9 and 11.
    for old in [0, 3, 6, 9, 11] {
        let p = ConsistencyProof::build_from(&log.leaves(), &log.checkpoints, old).unwrap();
        let back = ConsistencyProof::from_json(&p.to_json_pretty()).unwrap();
        assert_eq!(back, p);
        back.verify(&pinned).unwrap();
    }
    assert!(ConsistencyProof::build_from(&log.leaves(), &log.checkpoints, 4).is_err());
    let p = ConsistencyProof::build_from(&log.leaves(), &log.checkpoints, 6).unwrap();
    let mut bad = p.clone();
    bad.proof[0][0] ^= 1;
    assert!(bad.verify(&pinned).is_err());
    // A checkpoint of a forked log, even correctly signed, is not consistent.
    let mut forked = p.clone();
    forked.old = cloister_audit::Checkpoint::sign("test-log", 6, [7u8; 32], 0, &key(1));
    assert!(forked.verify(&pinned).is_err());
    assert!(p.verify(&[key(3).verifying_key().to_bytes()]).is_err());
}

#[test]
fn segments_rotate_by_size_and_verification_spans_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = AuditLog::open_with_signer(dir, policy(4), key(1))
        .unwrap()
        .with_max_segment_bytes(1500);
    for i in 0..9 {
        log.append(record(i)).unwrap();
    }
    // A batch is never split across segments.
    log.append_batch(&[record(9), record(10), record(11)])
        .unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let report = verify_dir_with(dir, &strict()).unwrap();
    assert_eq!(report.entries, 12);
    assert!(report.segments >= 5, "{report:?}");
    for n in 1..=report.segments {
        let len = fs::metadata(dir.join(format!("audit-{n:06}.log")))
            .unwrap()
            .len();
        assert!(len > 0, "segment {n} is empty");
    }

    // A crash right after a rotation leaves an empty last segment: harmless, and the next
    // writer continues in it.
    let next = dir.join(format!("audit-{:06}.log", report.segments + 1));
    fs::write(&next, b"").unwrap();
    verify_dir_with(dir, &strict()).unwrap();
    let mut log = AuditLog::open_with_signer(dir, policy(4), key(1))
        .unwrap()
        .with_max_segment_bytes(1500);
    log.append(record(12)).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    assert!(fs::metadata(&next).unwrap().len() > 0);
    assert_eq!(verify_dir_with(dir, &strict()).unwrap().entries, 13);

    // Tampering in a middle segment is located there.
    let seg3 = dir.join("audit-000003.log");
    let mut bytes = fs::read(&seg3).unwrap();
    bytes[30] ^= 0x01;
    fs::write(&seg3, &bytes).unwrap();
    let e = verify_dir_with(dir, &strict()).unwrap_err();
    let p = place(&e).unwrap();
    assert_eq!((p.file, p.offset), (seg3, 0), "{e}");
    assert!(e.to_string().contains("audit-000003.log:1"), "{e}");
}

#[test]
fn a_failed_rotation_does_not_stop_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = AuditLog::open_with_signer(dir, policy(100), key(1))
        .unwrap()
        .with_max_segment_bytes(1000);
    // Something occupies the next segment's name: rotation fails, appends go on.
    fs::create_dir(dir.join("audit-000002.log")).unwrap();
    for i in 0..4 {
        assert_eq!(log.append(record(i)).unwrap(), i);
    }
    assert!(log.rotation_failure().is_some());
    fs::remove_dir(dir.join("audit-000002.log")).unwrap();
    log.append(record(4)).unwrap();
    assert!(log.rotation_failure().is_none());
    log.checkpoint().unwrap();
    drop(log);
    let report = verify_dir_with(dir, &strict()).unwrap();
    assert_eq!((report.entries, report.segments), (5, 2));
}
