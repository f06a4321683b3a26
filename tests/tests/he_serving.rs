//! Homomorphic mode through the real service: the tenant's TFHE server key is uploaded in
//! chunks through the seal and stored by the enclave; encrypted breast-cancer rows are
//! evaluated on ciphertexts and decrypt to exactly the plaintext integer program's scores; bad
//! keys and ciphertexts are refused with typed errors while the service keeps serving; every
//! request is in the audit log, and the homomorphic ones say the input was never decrypted.

use cloister::he_infer::decode_scores;
use cloister::sdk::{Client, ClientError};
use cloister_e2e::Service;
use cloister_he::client::{generate_keys, EncryptedInput};
use cloister_he::program::Program;
use cloister_protocol::error::ErrorCode;
use cloister_protocol::he::{HeKeyChunk, HeKeyChunkAck};
use serde_json::Value;

const MODEL: &str = "breast-cancer-lr";

fn program() -> Program {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/breast-cancer-lr/program.json"
    );
    Program::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn heldout() -> (Vec<Vec<f64>>, Vec<i64>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/breast-cancer-lr/heldout.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = v["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let labels = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    (rows, labels)
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Enclave { error, .. }) => error.code,
        other => panic!("expected a sealed error, got {other:?}"),
    }
}

fn audit_records(svc: &Service) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(svc.audit_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("audit-") && !name.contains("checkpoint") {
            for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if v.get("request_id").is_some() {
                        lines.push(v);
                    }
                }
            }
        }
    }
    lines
}

#[test]
fn encrypted_inference_is_bit_exact_keys_are_checked_and_nothing_is_lost() {
    let mut svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let program = program();
    let keys = generate_keys(&mut |_| {}).unwrap();
    let he = keys.client;
    let server_key = keys.server_key_bytes;

    // The served program is the pinned one, checked by the SDK against the attested digest.
    let (served, _) = svc.block_on(client.he_program(MODEL)).unwrap();
    assert_eq!(served, program);

    // A plaintext request to a homomorphic-only model is refused.
    let plain = svc.block_on(
        client.infer(
            MODEL,
            [(
                "input".to_string(),
                cloister_protocol::tensor::WireTensor::from_json(
                    "input",
                    &serde_json::json!([[1.0, 2.0]]),
                )
                .unwrap(),
            )]
            .into(),
        ),
    );
    assert_eq!(code(plain), ErrorCode::HeModeMismatch);

    let (rows, labels) = heldout();
    let encrypt = |row: &[f64]| -> (Vec<i64>, EncryptedInput) {
        let q = program.quantize(row).unwrap();
        let ct = he.encrypt(&program, &q).unwrap();
        (q, ct)
    };

    // Before the key is uploaded, the input names an unknown key.
    let (_, first) = encrypt(&rows[0]);
    assert_eq!(
        code(svc.block_on(client.he_infer(MODEL, &first))),
        ErrorCode::HeKeyUnknown
    );

    // A key whose bytes do not hash to the announced id is refused at the end; nothing stored.
    let mut corrupt = server_key.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 1;
    let bad_upload = svc.block_on(async {
        let id = hex::encode(cloister_he::client::key_id_of(&server_key));
        let mut offset = 0usize;
        loop {
            let end = (offset + cloister::he_infer::KEY_CHUNK_BYTES).min(corrupt.len());
            let chunk = HeKeyChunk {
                request_id: cloister::sdk::random_hex(16),
                issued_at_ms: now_ms(),
                key_id: id.clone(),
                total_bytes: corrupt.len() as u64,
                offset: offset as u64,
                data: b64(&corrupt[offset..end]),
            };
            let r: Result<HeKeyChunkAck, _> = client.he_raw_key_chunk(&chunk).await;
            match r {
                Ok(ack) if !ack.stored => offset = ack.received_bytes as usize,
                other => return other,
            }
        }
    });
    assert_eq!(code(bad_upload), ErrorCode::HeKeyInvalid);
    let store = svc.dir.he_key_store().join("dev");
    let stored_files = || {
        std::fs::read_dir(&store)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    assert_eq!(stored_files(), 0, "an invalid key must not be stored");

    // An oversized key is refused before any byte is held.
    let huge = HeKeyChunk {
        request_id: cloister::sdk::random_hex(16),
        issued_at_ms: now_ms(),
        key_id: "00".repeat(32),
        total_bytes: 1 << 40,
        offset: 0,
        data: b64(b"x"),
    };
    assert_eq!(
        code(svc.block_on(client.he_raw_key_chunk(&huge))),
        ErrorCode::TooLarge
    );

    // The real upload, with progress.
    let mut acks = Vec::new();
    svc.block_on(client.he_upload_key(&server_key, &mut |done, total| acks.push((done, total))))
        .unwrap();
    assert!(acks.len() >= 2, "uploaded in chunks: {acks:?}");
    assert_eq!(acks.last().unwrap().0, server_key.len() as u64);
    let key_file = store.join(format!("{}.key", hex::encode(he.key_id())));
    assert_eq!(std::fs::read(&key_file).unwrap(), server_key);

    // Bit-exact against the plaintext integer program, and the right classes.
    let mut correct = 0;
    let n = 6;
    for (row, label) in rows.iter().zip(&labels).take(n) {
        let (q, ct) = encrypt(row);
        let resp = svc.block_on(client.he_infer(MODEL, &ct)).unwrap();
        assert!(!resp.input_decrypted);
        assert!(resp.guarantee.contains("never decrypted"));
        let scores = he
            .decrypt(&program, &decode_scores(&resp).unwrap())
            .unwrap();
        let reference = cloister_he::plaintext::evaluate(&program, &q).unwrap();
        assert_eq!(scores, reference, "encrypted and plaintext programs differ");
        if program.decide(&scores) == Some(*label as usize) {
            correct += 1;
        }
    }
    assert!(correct >= n - 1, "{correct} of {n} correct");

    // Bad ciphertexts: typed errors, and the service keeps serving.
    let (_, ct) = encrypt(&rows[1]);
    let mut bytes = ct.to_bytes();
    bytes.truncate(bytes.len() - 3);
    assert_eq!(
        code(svc.block_on(client.he_raw_infer(MODEL, &b64(&bytes)))),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        code(svc.block_on(client.he_raw_infer(MODEL, "not base64!"))),
        ErrorCode::MalformedRequest
    );
    let other = generate_keys(&mut |_| {}).unwrap().client;
    let foreign = other
        .encrypt(&program, &program.quantize(&rows[1]).unwrap())
        .unwrap();
    assert_eq!(
        code(svc.block_on(client.he_infer(MODEL, &foreign))),
        ErrorCode::HeKeyUnknown
    );
    assert!(svc.block_on(client.he_infer(MODEL, &ct)).is_ok());

    // The audit log holds every request; homomorphic ones say the input was never decrypted.
    let records = audit_records(&svc);
    let he_records: Vec<&Value> = records
        .iter()
        .filter(|r| r["model"] == MODEL || r.get("homomorphic").is_some())
        .collect();
    // program, plaintext refusal, unknown key, bad upload chunks, huge, upload chunks, n
    // inferences, 2 bad ciphertexts, foreign key, one more inference.
    assert!(
        he_records.len() >= 2 + 1 + acks.len() + n + 4,
        "{}",
        he_records.len()
    );
    let served: Vec<&&Value> = he_records
        .iter()
        .filter(|r| r["outcome"]["kind"] == "ok" && r["homomorphic"]["bootstraps"].is_u64())
        .collect();
    for r in &he_records {
        if let Some(h) = r.get("homomorphic") {
            assert_eq!(h["input_never_decrypted"], true, "{r}");
        }
    }
    let inferences = served
        .iter()
        .filter(|r| {
            r["homomorphic"]["key_id"] == hex::encode(he.key_id()) && r["output_digest"].is_string()
        })
        .count();
    assert!(inferences > n, "{inferences}");

    // The key survives a restart (read from the store, checked against its name).
    svc.restart_enclave();
    let client = Client::new(svc.profile.clone()).unwrap();
    let (q, ct) = encrypt(&rows[2]);
    let resp = svc.block_on(client.he_infer(MODEL, &ct)).unwrap();
    let scores = he
        .decrypt(&program, &decode_scores(&resp).unwrap())
        .unwrap();
    assert_eq!(
        scores,
        cloister_he::plaintext::evaluate(&program, &q).unwrap()
    );

    // A key file altered on disk is never used: after the next restart (cache empty) it is
    // discarded, the input is refused as naming an unknown key, and a fresh upload works.
    let mut altered = std::fs::read(&key_file).unwrap();
    let last = altered.len() - 1;
    altered[last] ^= 0x40;
    std::fs::write(&key_file, altered).unwrap();
    svc.restart_enclave();
    let client = Client::new(svc.profile.clone()).unwrap();
    assert_eq!(
        code(svc.block_on(client.he_infer(MODEL, &ct))),
        ErrorCode::HeKeyUnknown
    );
    assert!(!key_file.exists(), "the altered key file was discarded");
    svc.block_on(client.he_upload_key(&server_key, &mut |_, _| {}))
        .unwrap();
    let resp = svc.block_on(client.he_infer(MODEL, &ct)).unwrap();
    assert_eq!(
        he.decrypt(&program, &decode_scores(&resp).unwrap())
            .unwrap(),
        cloister_he::plaintext::evaluate(&program, &q).unwrap()
    );
    // Still serving plaintext models.
    let digits = cloister_e2e::heldout_rows(0, 1);
    assert!(svc.block_on(client.infer("digits", digits)).is_ok());
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
