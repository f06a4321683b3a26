//! A log that spans enclave runs: each run has its own key; a new run signs a handover
//! checkpoint of the log as it finds it, and the verifier accepts the log only when every key is
//! trusted (one `--key`/`--evidence` per run).

use cloister_audit::{
    verify_dir_with, AuditError, AuditLog, AuditRecord, CheckpointFault, CheckpointPolicy, Outcome,
    VerifyOptions,
};
use ed25519_dalek::SigningKey;

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        time_unix_ms: 1_800_000_000_000 + i,
        request_id: format!("r{i}"),
        tenant: Some("dev".into()),
        model: Some("digits".into()),
        model_sha256: None,
        policy_sha256: "ab".repeat(32),
        outcome: Outcome::Ok,
        input_digest: None,
        output_digest: None,
        privacy: None,
        latency_us: 1,
        homomorphic: None,
    }
}

#[test]
fn a_new_run_countersigns_the_log_and_every_run_key_must_be_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let a = SigningKey::from_bytes(&[1u8; 32]);
    let b = SigningKey::from_bytes(&[2u8; 32]);
    let (pa, pb) = (a.verifying_key().to_bytes(), b.verifying_key().to_bytes());
    let mut log = AuditLog::open_with_signer(tmp.path(), CheckpointPolicy::default(), a).unwrap();
    for i in 0..3 {
        log.append(record(i)).unwrap();
    }
    log.checkpoint().unwrap();
    drop(log);
    // Run 2 starts on a fully signed log: it still signs it, with its own key.
    let log = AuditLog::open_with_signer(tmp.path(), CheckpointPolicy::default(), b).unwrap();
    drop(log);
    let lines: Vec<String> = std::fs::read_to_string(tmp.path().join("checkpoints.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(last["key"], hex::encode(pb));
    assert_eq!(before["key"], hex::encode(pa));
    assert_eq!(last["tree_size"], before["tree_size"]);
    assert_eq!(last["root"], before["root"]);

    let trust = |keys: Vec<[u8; 32]>| VerifyOptions {
        trusted_keys: keys,
        allow_unsigned_tail: false,
    };
    let report = verify_dir_with(tmp.path(), &trust(vec![pa, pb])).unwrap();
    assert_eq!(report.keys, vec![hex::encode(pa), hex::encode(pb)]);
    for only in [pa, pb] {
        assert!(matches!(
            verify_dir_with(tmp.path(), &trust(vec![only])),
            Err(AuditError::CheckpointInvalid {
                fault: CheckpointFault::UntrustedKey { .. },
                ..
            })
        ));
    }
}
