//! The audit log on disk: chain continuity, tamper detection, torn-tail recovery, no plaintext.

use std::fs;
use std::path::{Path, PathBuf};

use cloister_audit::{
    keyed_digest, verify_dir, AuditError, AuditLog, AuditRecord, BreakReason, Outcome, Recovery,
};

const KEY: [u8; 32] = [7u8; 32];

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        time_unix_ms: 1_700_000_000_000 + i,
        request_id: format!("req-{i}"),
        tenant: Some("dev".into()),
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
        input_digest: Some(keyed_digest(&KEY, format!("input {i}").as_bytes())),
        output_digest: Some(keyed_digest(&KEY, format!("output {i}").as_bytes())),
        privacy: None,
        latency_us: 1000 + i,
        homomorphic: None,
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("audit-000001.log")
}

/// A log with `n` entries; returns its directory.
fn log_with(n: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open(tmp.path()).unwrap();
    for i in 0..n {
        assert_eq!(log.append(record(i)).unwrap(), i);
    }
    tmp
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

#[track_caller]
fn assert_broken(
    dir: &Path,
    want_index: u64,
    want_line: u64,
    check: impl Fn(&BreakReason) -> bool,
) {
    for result in [AuditLog::open(dir).map(|_| ()), verify_dir(dir).map(|_| ())] {
        match result {
            Err(AuditError::ChainBroken {
                index,
                line,
                reason,
                file,
                ..
            }) => {
                assert_eq!((index, line), (want_index, want_line), "{reason}");
                assert!(check(&reason), "unexpected reason: {reason:?}");
                assert_eq!(file, segment(dir));
            }
            other => panic!("expected ChainBroken, got {other:?}"),
        }
    }
}

#[test]
fn append_and_reopen_continue_the_chain() {
    let tmp = log_with(3);
    let first = &lines(tmp.path())[0];
    assert!(
        first.contains(&format!("\"prev\":\"{}\"", "0".repeat(64))),
        "{first}"
    );
    assert!(first.starts_with("{\"index\":0,"), "{first}");

    let mut log = AuditLog::open(tmp.path()).unwrap();
    assert_eq!(log.recovery(), &Recovery::Clean);
    assert_eq!(log.next_index(), 3);
    let last_hash = log.last_hash_hex();
    assert!(lines(tmp.path())[2].ends_with(&format!("\"hash\":\"{last_hash}\"}}")));
    assert_eq!(log.append(record(3)).unwrap(), 3);
    drop(log);

    let fourth = &lines(tmp.path())[3];
    assert!(
        fourth.contains(&format!("\"prev\":\"{last_hash}\"")),
        "{fourth}"
    );
    let summary = verify_dir(tmp.path()).unwrap();
    assert_eq!(summary.entries, 4);
    assert_eq!(summary.segments, 1);
    assert_eq!(summary.torn_tail, None);
}

#[test]
fn empty_dir_is_created_and_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/audit");
    let log = AuditLog::open(&dir).unwrap();
    assert_eq!(log.next_index(), 0);
    assert_eq!(log.last_hash_hex(), "0".repeat(64));
    assert!(segment(&dir).exists());
    assert_eq!(verify_dir(&dir).unwrap().entries, 0);
    assert!(matches!(
        verify_dir(&tmp.path().join("absent")),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn edited_field_in_the_middle_is_detected_at_that_entry() {
    let tmp = log_with(5);
    let mut l = lines(tmp.path());
    assert!(l[2].contains("\"latency_us\":1002"));
    l[2] = l[2].replace("\"latency_us\":1002", "\"latency_us\":1");
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 2, 3, |r| {
        matches!(r, BreakReason::HashMismatch { .. })
    });
}

#[test]
fn edit_with_recomputed_hash_is_detected_at_the_next_entry() {
    let tmp = log_with(5);
    let mut l = lines(tmp.path());
    // Rewrite entry 2 as a forger would: new contents, correct hash for them.
    let prev: String = l[2].split("\"prev\":\"").nth(1).unwrap()[..64].to_string();
    let mut forged = record(2);
    forged.tenant = Some("someone-else".into());
    let prev: [u8; 32] = hex::decode(prev).unwrap().try_into().unwrap();
    let (line, _) = cloister_audit::record::encode_line(&forged, 2, &prev).unwrap();
    l[2] = String::from_utf8(line).unwrap().trim_end().to_string();
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 3, 4, |r| {
        matches!(r, BreakReason::PrevMismatch { .. })
    });
}

#[test]
fn deleted_middle_line_is_detected() {
    let tmp = log_with(5);
    let mut l = lines(tmp.path());
    l.remove(2);
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 2, 3, |r| {
        *r == BreakReason::IndexMismatch { found: 3 }
    });
}

#[test]
fn reordered_lines_are_detected() {
    let tmp = log_with(5);
    let mut l = lines(tmp.path());
    l.swap(1, 3);
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 1, 2, |r| {
        *r == BreakReason::IndexMismatch { found: 3 }
    });
}

#[test]
fn reformatted_line_is_detected() {
    let tmp = log_with(3);
    let mut l = lines(tmp.path());
    l[1] = l[1].replacen(":", ": ", 1);
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 1, 2, |r| *r == BreakReason::NotCanonical);
}

#[test]
fn garbage_or_unknown_members_in_the_middle_are_tampering() {
    let tmp = log_with(3);
    let mut l = lines(tmp.path());
    l[1] = "not json".into();
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 1, 2, |r| {
        matches!(r, BreakReason::Unparsable(_))
    });

    let tmp = log_with(3);
    let mut l = lines(tmp.path());
    l[0] = l[0].replacen("{", "{\"input\":\"secret\",", 1);
    write_lines(tmp.path(), &l);
    assert_broken(tmp.path(), 0, 1, |r| {
        matches!(r, BreakReason::Unparsable(_))
    });
}

#[test]
fn torn_tail_is_recovered_and_reported() {
    let tmp = log_with(3);
    let path = segment(tmp.path());
    let good_len = fs::metadata(&path).unwrap().len();
    let (partial, _) = {
        let log = AuditLog::open(tmp.path()).unwrap();
        let prev: [u8; 32] = hex::decode(log.last_hash_hex())
            .unwrap()
            .try_into()
            .unwrap();
        cloister_audit::record::encode_line(&record(3), 3, &prev).unwrap()
    };
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&partial[..40]);
    fs::write(&path, &bytes).unwrap();

    // The read-only verifier reports it and changes nothing.
    let summary = verify_dir(tmp.path()).unwrap();
    assert_eq!(summary.entries, 3);
    let torn = summary.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.bytes), (good_len, 40));
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len + 40);

    // The writer repairs it, says so, and continues the chain.
    let mut log = AuditLog::open(tmp.path()).unwrap();
    match log.recovery() {
        Recovery::TruncatedTornTail(t) => {
            assert_eq!((t.offset, t.bytes), (good_len, 40));
            assert!(log.recovery().to_string().contains("40 bytes"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(log.next_index(), 3);
    assert_eq!(log.append(record(3)).unwrap(), 3);
    drop(log);
    let summary = verify_dir(tmp.path()).unwrap();
    assert_eq!((summary.entries, summary.torn_tail), (4, None));
    assert_eq!(
        AuditLog::open(tmp.path()).unwrap().recovery(),
        &Recovery::Clean
    );
}

#[test]
fn unparsable_final_line_is_a_torn_tail() {
    let tmp = log_with(2);
    let path = segment(tmp.path());
    let good_len = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\0\0\0\0\0\0\n");
    fs::write(&path, &bytes).unwrap();
    let log = AuditLog::open(tmp.path()).unwrap();
    assert!(matches!(log.recovery(), Recovery::TruncatedTornTail(t) if t.bytes == 7));
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(log.next_index(), 2);
}

#[test]
fn records_never_contain_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = b"PATIENT 4711 glucose=182 mg/dL";
    let output = b"class=diabetic p=0.93";
    let mut log = AuditLog::open(tmp.path()).unwrap();
    let mut r = record(0);
    r.input_digest = Some(keyed_digest(&KEY, input));
    r.output_digest = Some(keyed_digest(&KEY, output));
    log.append(r).unwrap();
    drop(log);
    let bytes = fs::read(segment(tmp.path())).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    for secret in [&input[..], &output[..]] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        assert!(!text.contains(&hex::encode(secret)));
        // Nor its unkeyed SHA-256, which would let anyone confirm a guessed input.
        let plain = <sha2::Sha256 as sha2::Digest>::digest(secret);
        assert!(!text.contains(&hex::encode(plain)));
    }
    assert!(text.contains(&keyed_digest(&KEY, input)));
}

#[test]
fn chain_spans_segments_and_gaps_are_detected() {
    let tmp = log_with(4);
    let l = lines(tmp.path());
    write_lines(tmp.path(), &l[..2]);
    fs::write(
        tmp.path().join("audit-000002.log"),
        l[2..].join("\n") + "\n",
    )
    .unwrap();
    let summary = verify_dir(tmp.path()).unwrap();
    assert_eq!((summary.entries, summary.segments), (4, 2));
    let mut log = AuditLog::open(tmp.path()).unwrap();
    assert_eq!(log.append(record(4)).unwrap(), 4);
    drop(log);
    assert_eq!(
        fs::read_to_string(tmp.path().join("audit-000002.log"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    // An earlier segment without its final newline is broken, not torn.
    let seg1 = fs::read(segment(tmp.path())).unwrap();
    fs::write(segment(tmp.path()), &seg1[..seg1.len() - 1]).unwrap();
    assert!(matches!(
        verify_dir(tmp.path()),
        Err(AuditError::ChainBroken {
            reason: BreakReason::MissingNewline,
            ..
        })
    ));

    // A missing first segment, with no signed anchor and retention statement to explain it.
    fs::remove_file(segment(tmp.path())).unwrap();
    assert!(matches!(
        AuditLog::open(tmp.path()),
        Err(AuditError::Pruned {
            first_segment: 2,
            ..
        })
    ));
    // A gap in the middle.
    fs::write(tmp.path().join("audit-000004.log"), "").unwrap();
    assert!(matches!(
        verify_dir(tmp.path()),
        Err(AuditError::MissingSegment { expected: 3, .. })
    ));
}

#[test]
fn error_messages_name_the_place() {
    let tmp = log_with(3);
    let mut l = lines(tmp.path());
    l.remove(1);
    write_lines(tmp.path(), &l);
    let e = verify_dir(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("audit-000001.log:2"), "{e}");
    assert!(e.contains("index 1"), "{e}");
    assert!(e.contains("removed, inserted or reordered"), "{e}");
}
