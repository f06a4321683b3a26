//! `cloister audit` on the log of a real run: the enclave signs checkpoints with its attested
//! key (the last one at shutdown), and the review CLI verifies the log offline against that
//! key, shows and counts the records, and proves a served request's record is in the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use cloister::sdk::Client;
use cloister_e2e::{bin_dir, heldout_path, Service};
use cloister_protocol::tensor::parse_inputs;
use serde_json::{json, Value};

fn cloister(args: &[&str]) -> Output {
    Command::new(bin_dir().join("cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn cloister_audit_verifies_shows_counts_and_proves_the_log_of_a_real_run() {
    let mut svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // The auditor's trust anchor: the attested evidence of this enclave.
    let attestation = svc.block_on(client.attest()).expect("attest");
    assert!(attestation.verified.is_some());
    let evidence = tmp.path().join("evidence.json");
    std::fs::write(&evidence, serde_json::to_vec(&attestation.bundle).unwrap()).unwrap();

    let heldout: Value =
        serde_json::from_str(&std::fs::read_to_string(heldout_path()).unwrap()).unwrap();
    let rows = Value::Array(heldout["input"].as_array().unwrap()[..2].to_vec());
    let inputs = || parse_inputs(&json!({ "input": rows })).unwrap();
    let served = svc
        .block_on(client.infer("digits", inputs()))
        .expect("inference");
    assert!(
        svc.block_on(client.infer("no-such-model", inputs()))
            .is_err(),
        "unknown model is refused"
    );
    svc.block_on(client.infer("digits", inputs()))
        .expect("inference");
    let (_, enclave) = svc.stop();
    assert!(enclave.success(), "enclave exit {enclave:?}");

    let dir = svc.audit_dir();
    let dir_s = dir.to_str().unwrap();

    // No audit file holds the inputs or outputs (only keyed digests of them).
    let mut all = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    let first_row = serde_json::to_string(&rows[0]).unwrap();
    let probs = serde_json::to_string(&served.response.outputs).unwrap();
    for needle in [first_row.as_bytes(), probs.as_bytes(), b"probabilities"] {
        assert!(
            !all.windows(needle.len()).any(|w| w == needle),
            "audit dir holds {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    let ev = evidence.to_str().unwrap();

    // verify: strict (every record signed by the shutdown checkpoint), key from the evidence.
    let out = cloister(&["audit", "verify", dir_s, "--evidence", ev]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("3 in 1 segment"), "{t}");
    assert!(t.contains("pinned"), "{t}");
    assert!(t.trim_end().ends_with("OK"), "{t}");

    // The same with the key file the enclave wrote, and as JSON.
    let key_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("enclave-key-")
        })
        .expect("enclave key file");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        hex::encode(attestation.bundle.signing_key)
    );
    let out = cloister(&[
        "audit",
        "verify",
        dir_s,
        "--key",
        key_file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["entries"], 3);
    assert_eq!(report["unsigned_entries"], 0);
    assert_eq!(report["latest_checkpoint"]["tree_size"], 3);

    // show: JSON lines are the stored records; the filter works.
    let out = cloister(&["audit", "show", dir_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["outcome"]["kind"], "refused");
    let out = cloister(&["audit", "show", dir_s, "--outcome", "refused"]);
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("1 of 3 record(s)"),
        "{t}"
    );
    assert!(t.contains("unknown_model"), "{t}");

    // stats: per tenant and model, refusals by reason.
    let out = cloister(&["audit", "stats", dir_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups: BTreeMap<String, Value> = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["model"].as_str().unwrap().to_string(), g.clone()))
        .collect();
    assert_eq!(groups["digits"]["requests"], 2);
    assert_eq!(groups["digits"]["ok"], 2);
    assert_eq!(groups["no-such-model"]["refused"]["unknown_model"], 1);

    // prove + verify-proof: the served request's receipt is in the signed log.
    let receipt = &served.response.audit;
    let proof = tmp.path().join("proof.json");
    let out = cloister(&[
        "audit",
        "prove",
        dir_s,
        "--index",
        &receipt.index.to_string(),
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cloister(&[
        "audit",
        "verify-proof",
        proof.to_str().unwrap(),
        "--evidence",
        ev,
        "--hash",
        &receipt.hash,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK"));
    let out = cloister(&[
        "audit",
        "verify-proof",
        proof.to_str().unwrap(),
        "--evidence",
        ev,
        "--hash",
        &"00".repeat(32),
    ]);
    assert!(!out.status.success(), "{}", text(&out));

    // A consistency proof from the start-up checkpoint (empty log) to the shutdown one.
    let cproof = tmp.path().join("consistency.json");
    let out = cloister(&[
        "audit",
        "prove",
        dir_s,
        "--consistency-from",
        "0",
        "--out",
        cproof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cloister(&[
        "audit",
        "verify-proof",
        cproof.to_str().unwrap(),
        "--evidence",
        ev,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("only appended to"), "{}", text(&out));

    // A tampered copy fails and names the segment, offset and index.
    let copy = tmp.path().join("audit-copy");
    copy_dir(&dir, &copy);
    let seg = copy.join("audit-000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let at = second + 40;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let out = cloister(&["audit", "verify", copy.to_str().unwrap(), "--evidence", ev]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAILED"), "{t}");
    assert!(t.contains("audit-000001.log"), "{t}");
    assert!(t.contains(&format!("byte offset {second}")), "{t}");
    assert!(t.contains("entry index 1"), "{t}");
}

/// Responses carry a signed checkpoint that covers their own record. A client keeps it, and
/// later — after the enclave restarted with a new key — obtains an inclusion proof against that
/// very checkpoint from the operator's log and checks it with its own evidence. A rolled-back
/// log, which `verify` alone cannot tell from an honest shorter one, cannot produce that proof.
#[test]
fn a_client_proves_its_record_against_the_checkpoint_in_its_own_response() {
    let mut svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let save_evidence = |svc: &Service, name: &str| {
        let a = svc.block_on(client.attest()).expect("attest");
        let path = tmp.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&a.bundle).unwrap()).unwrap();
        path
    };
    let ev1 = save_evidence(&svc, "evidence-run1.json");
    let rows = cloister_e2e::heldout_rows;
    svc.block_on(client.infer("digits", rows(0, 1))).unwrap();
    let served = svc.block_on(client.infer("digits", rows(1, 1))).unwrap();
    let receipt = served.response.audit.clone();
    let checkpoint = receipt
        .checkpoint
        .clone()
        .expect("the response carries a checkpoint");
    assert!(checkpoint.tree_size > receipt.index, "it covers the record");
    // The SDK already checked it under the attested key; check the check can fail.
    let verified = served.evidence.clone();
    let mut forged = receipt.clone();
    forged.checkpoint.as_mut().unwrap().tree_size += 1;
    assert!(cloister::sdk::verify_receipt_checkpoint(&verified, &forged).is_err());
    let mut short = receipt.clone();
    short.index = checkpoint.tree_size;
    assert!(cloister::sdk::verify_receipt_checkpoint(&verified, &short).is_err());
    let kept = tmp.path().join("receipt.json");
    std::fs::write(&kept, serde_json::to_vec(&receipt).unwrap()).unwrap();

    // The enclave restarts (new key); more traffic; then the service stops.
    svc.restart_enclave();
    let ev2 = save_evidence(&svc, "evidence-run2.json");
    for i in 2..5 {
        svc.block_on(client.infer("digits", rows(i, 1))).unwrap();
    }
    let (_, enclave) = svc.stop();
    assert!(enclave.success());
    let dir = svc.audit_dir();
    let dir_s = dir.to_str().unwrap();
    let (ev1, ev2) = (ev1.to_str().unwrap(), ev2.to_str().unwrap());

    // Both runs' keys are needed to verify the whole log.
    let out = cloister(&["audit", "verify", dir_s, "--evidence", ev1]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not a trusted enclave key"),
        "{}",
        text(&out)
    );
    let out = cloister(&[
        "audit",
        "verify",
        dir_s,
        "--evidence",
        ev1,
        "--evidence",
        ev2,
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // The inclusion proof against the client's own checkpoint, checked with its own evidence.
    let proof = tmp.path().join("proof.json");
    let index = receipt.index.to_string();
    let out = cloister(&[
        "audit",
        "prove",
        dir_s,
        "--index",
        &index,
        "--checkpoint",
        kept.to_str().unwrap(),
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    assert_eq!(doc["checkpoint"]["tree_size"], checkpoint.tree_size);
    assert_eq!(
        doc["checkpoint"]["signature"],
        checkpoint.signature.as_str()
    );
    let out = cloister(&[
        "audit",
        "verify-proof",
        proof.to_str().unwrap(),
        "--evidence",
        ev1,
        "--hash",
        &receipt.hash,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Under the other run's key alone the checkpoint is not trusted.
    let out = cloister(&[
        "audit",
        "verify-proof",
        proof.to_str().unwrap(),
        "--evidence",
        ev2,
    ]);
    assert!(!out.status.success(), "{}", text(&out));

    // A rollback: drop the client's record and everything after it, and every checkpoint that
    // covers it. The copy verifies on its own; the client's checkpoint exposes it.
    let copy = tmp.path().join("rolled-back");
    copy_dir(&dir, &copy);
    let seg = copy.join("audit-000001.log");
    let kept_lines: Vec<String> = std::fs::read_to_string(&seg)
        .unwrap()
        .lines()
        .take(receipt.index as usize)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&seg, kept_lines.concat()).unwrap();
    let cps: Vec<String> = std::fs::read_to_string(copy.join("checkpoints.log"))
        .unwrap()
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["tree_size"].as_u64().unwrap() <= receipt.index
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(copy.join("checkpoints.log"), cps.concat()).unwrap();
    let copy_s = copy.to_str().unwrap();
    // (The records before the client's are left unsigned, as after a crash.)
    let out = cloister(&[
        "audit",
        "verify",
        copy_s,
        "--evidence",
        ev1,
        "--evidence",
        ev2,
        "--allow-unsigned-tail",
    ]);
    assert!(
        out.status.success(),
        "the rollback alone verifies: {}",
        text(&out)
    );
    let out = cloister(&[
        "audit",
        "prove",
        copy_s,
        "--index",
        &index,
        "--checkpoint",
        kept.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rolled back"), "{}", text(&out));
}
