//! The confidential request path, end to end, against real processes.

use std::collections::BTreeMap;
use std::time::Duration;

use cloister::https::HttpsClient;
use cloister::sdk::{Client, ClientError};
use cloister_e2e::{heldout_path, Service, TapMode};
use cloister_protocol::auth::gateway_token;
use cloister_protocol::error::ErrorCode;
use cloister_protocol::frame::FrameKind;
use cloister_protocol::inner::InferRequest;
use cloister_protocol::tensor::{parse_inputs, WireTensor};
use cloister_protocol::OHTTP_REQUEST_MEDIA_TYPE;
use serde_json::{json, Value};

fn heldout() -> Value {
    serde_json::from_str(&std::fs::read_to_string(heldout_path()).unwrap()).unwrap()
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.partial_cmp(b.1).unwrap())
        .unwrap()
        .0
}

fn digits_inputs(rows: &Value) -> BTreeMap<String, WireTensor> {
    parse_inputs(&json!({ "input": rows })).unwrap()
}

#[test]
fn attested_sealed_inference_classifies_heldout_digits_and_the_gateway_sees_no_plaintext() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let data = heldout();
    let rows = data["input"].as_array().unwrap().clone();
    let labels: Vec<usize> = data["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let reference = data["onnxruntime_probabilities"].as_array().unwrap();

    let result = svc
        .block_on(client.infer("digits", digits_inputs(&Value::Array(rows.clone()))))
        .expect("sealed inference");
    let probs = &result.response.outputs["probabilities"];
    assert_eq!(probs.shape, vec![rows.len(), 10]);
    assert_eq!(probs.dtype.as_deref(), Some("float32"));
    let values: Vec<f64> = probs.data.iter().map(|s| s.as_f64().unwrap()).collect();
    let mut correct = 0;
    for (i, row) in values.chunks(10).enumerate() {
        let expected: Vec<f64> = reference[i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (a, b) in row.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "row {i}: {a} vs onnxruntime {b}");
        }
        assert_eq!(argmax(row), argmax(&expected), "row {i}");
        correct += usize::from(argmax(row) == labels[i]);
    }
    let accuracy = correct as f64 / labels.len() as f64;
    assert!(accuracy > 0.9, "held-out accuracy {accuracy}");
    assert!(result.evidence.simulated());

    // The gateway forwarded a sealed request and a sealed response, and
    // nothing it handled contains the plaintext input, output or API key.
    assert_eq!(svc.frames(FrameKind::SealedRequest).len(), 1);
    assert_eq!(svc.frames(FrameKind::SealedResponse).len(), 1);
    let seen = svc.all_bytes();
    let contains = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    let first_row = serde_json::to_string(&rows[0]).unwrap();
    for needle in [
        first_row.as_bytes(),
        b"\"inputs\"",
        b"\"probabilities\"",
        b"request_id",
        svc.profile.api_key.as_bytes(),
        result.response.audit.hash.as_bytes(),
    ] {
        assert!(
            !contains(needle),
            "gateway saw plaintext {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    // The gateway's own configuration holds no API key either.
    let gw_config = std::fs::read_to_string(svc.dir.gateway_config()).unwrap();
    assert!(!gw_config.contains(&svc.profile.api_key));

    // The audit log holds one verified record of this request.
    let summary = cloister_audit::verify_dir(&svc.audit_dir()).expect("audit chain verifies");
    assert_eq!(summary.entries, 1, "{summary:?}");
}

fn assert_refused_before_sending(svc: &Service, client: &Client, check: &str) {
    let before = svc.frames(FrameKind::SealedRequest).len();
    let rows = heldout()["input"].as_array().unwrap()[..1].to_vec();
    match svc.block_on(client.infer("digits", digits_inputs(&Value::Array(rows)))) {
        Err(ClientError::EvidenceRejected(checks)) => {
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name)
                .collect();
            assert!(
                failed.contains(&check),
                "expected {check} to fail, failed: {failed:?}"
            );
        }
        Err(other) => panic!("expected EvidenceRejected, got {other}"),
        Ok(_) => panic!("tampered evidence was accepted"),
    }
    assert_eq!(
        svc.frames(FrameKind::SealedRequest).len(),
        before,
        "a request was sent despite failed verification"
    );
}

#[test]
fn the_client_refuses_tampered_evidence_before_sending_anything() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();

    // A flipped byte in the measurement, in REPORT_DATA, and in the signature.
    for (offset, check) in [
        (0x90, "report-signature"),
        (0x50, "report-signature"),
        (0x2A0 + 5, "report-signature"),
    ] {
        svc.set_mode(TapMode::FlipReportByte(offset));
        assert_refused_before_sending(&svc, &client, check);
    }

    // Evidence replayed from an earlier attestation: wrong nonce.
    svc.set_mode(TapMode::Pass);
    let old = svc
        .frames(FrameKind::Evidence)
        .pop()
        .expect("evidence seen");
    svc.set_mode(TapMode::ReplayEvidence(old));
    assert_refused_before_sending(&svc, &client, "nonce");

    // A client that expects another measurement.
    svc.set_mode(TapMode::Pass);
    let mut profile = svc.profile.clone();
    profile.expected_measurements = vec!["ab".repeat(48)];
    let strict = Client::new(profile).unwrap();
    assert_refused_before_sending(&svc, &strict, "measurement-allowed");

    // A client that does not accept simulated evidence.
    let mut profile = svc.profile.clone();
    profile.allow_simulated = false;
    let strict = Client::new(profile).unwrap();
    assert_refused_before_sending(&svc, &strict, "simulated-allowed");

    // And the honest path still works afterwards.
    let rows = heldout()["input"].as_array().unwrap()[..2].to_vec();
    svc.block_on(client.infer("digits", digits_inputs(&Value::Array(rows))))
        .expect("untampered inference");
}

/// Sends raw bytes to /v1/infer with a given outer token.
fn post_raw(svc: &Service, token: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let https = HttpsClient::new(
        &svc.profile.gateway_url,
        &svc.profile.ca_cert,
        Duration::from_secs(30),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let resp = svc
        .block_on(https.post(
            "/v1/infer",
            &[
                ("content-type", OHTTP_REQUEST_MEDIA_TYPE),
                ("authorization", &bearer),
            ],
            body,
        ))
        .unwrap();
    (resp.status, resp.body.to_vec())
}

fn inner_request(model: &str, rows: Value) -> Vec<u8> {
    let req = InferRequest {
        request_id: "00112233445566778899aabbccddeeff".into(),
        issued_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        model: model.into(),
        inputs: digits_inputs(&rows),
    };
    serde_json::to_vec(&req).unwrap()
}

fn audit_text(svc: &Service) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(svc.audit_dir()).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

fn api_error(bytes: &[u8]) -> cloister_protocol::error::ApiError {
    cloister_protocol::error::ApiError::from_body(bytes)
        .unwrap_or_else(|| panic!("not a typed error: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn bad_input_gets_typed_errors_the_service_keeps_serving_and_every_decision_is_audited() {
    let mut svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let evidence = svc
        .block_on(client.attest())
        .unwrap()
        .verified
        .expect("evidence verifies");
    let config = evidence.hpke_key_config().to_vec();
    let token = gateway_token(&svc.profile.api_key);
    let one_row = Value::Array(heldout()["input"].as_array().unwrap()[..1].to_vec());
    let mut expected_records = 0;

    // Sealed to the right key, with a wrong credential inside: the enclave refuses.
    let (sealed, pending) = cloister_seal::client::seal_request(
        &config,
        "ck_not_a_tenant",
        &inner_request("digits", one_row.clone()),
    )
    .unwrap();
    let (status, body) = post_raw(&svc, &token, sealed);
    assert_eq!(status, 200, "the gateway forwards; the refusal is sealed");
    let inner = pending.open(&body).unwrap();
    assert_eq!(inner.status, 401);
    assert_eq!(api_error(&inner.body).code, ErrorCode::BadCredential);
    expected_records += 1;

    // A wrong outer token: the gateway refuses and forwards nothing.
    let forwarded = svc.frames(FrameKind::SealedRequest).len();
    let (status, body) = post_raw(&svc, "not-a-token", b"x".to_vec());
    assert_eq!(status, 401);
    assert_eq!(api_error(&body).code, ErrorCode::Unauthorized);
    assert_eq!(svc.frames(FrameKind::SealedRequest).len(), forwarded);

    // Garbage and truncated sealed bodies: typed, unsealed errors.
    let (status, body) = post_raw(&svc, &token, b"this is not OHTTP".to_vec());
    assert_eq!(
        (status, api_error(&body).code),
        (400, ErrorCode::SealInvalid)
    );
    expected_records += 1;
    let (sealed, pending) = cloister_seal::client::seal_request(
        &config,
        &svc.profile.api_key,
        &inner_request("digits", one_row.clone()),
    )
    .unwrap();
    let (status, body) = post_raw(&svc, &token, sealed[..sealed.len() - 7].to_vec());
    assert_eq!(
        (status, api_error(&body).code),
        (400, ErrorCode::SealInvalid)
    );
    expected_records += 1;

    // A valid request, then its replay: the replay is refused (sealed, so the
    // gateway cannot tell) and recorded as such in the audit log.
    let (status, first) = post_raw(&svc, &token, sealed.clone());
    assert_eq!(status, 200);
    assert_eq!(pending.open(&first).unwrap().status, 200);
    expected_records += 1;
    let (status, second) = post_raw(&svc, &token, sealed);
    assert_eq!(status, 200, "replay answered with a sealed error");
    assert_ne!(first, second);
    expected_records += 1;
    let log = audit_text(&svc);
    assert_eq!(log.matches("\"code\":\"replay\"").count(), 1, "{log}");

    // Unknown model, wrong shape, wrong dtype, malformed JSON inside the seal.
    let cases: Vec<(Vec<u8>, u16, ErrorCode)> = vec![
        (
            inner_request("nope", one_row.clone()),
            404,
            ErrorCode::UnknownModel,
        ),
        (
            inner_request("digits", json!([[1, 2, 3]])),
            400,
            ErrorCode::InvalidInput,
        ),
        (
            inner_request("digits", json!([vec![true; 64]])),
            400,
            ErrorCode::InvalidInput,
        ),
        (b"{\"model\": ".to_vec(), 400, ErrorCode::MalformedRequest),
    ];
    for (body, want_status, want_code) in cases {
        let (sealed, pending) =
            cloister_seal::client::seal_request(&config, &svc.profile.api_key, &body).unwrap();
        let (status, answer) = post_raw(&svc, &token, sealed);
        assert_eq!(status, 200);
        let inner = pending.open(&answer).unwrap();
        assert_eq!(
            (inner.status, api_error(&inner.body).code),
            (want_status, want_code)
        );
        expected_records += 1;
    }

    // Too large: refused by the gateway without forwarding.
    // (Sent as headers only: the gateway answers from the declared length without reading.)
    let (status, body) = svc.raw_https(&format!(
        "POST /v1/infer HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: message/ohttp-req\r\n\
         authorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    ));
    assert!(status.contains("413"), "{status}");
    assert_eq!(api_error(body.as_bytes()).code, ErrorCode::TooLarge);

    // Bad nonce and unknown routes.
    let https = HttpsClient::new(
        &svc.profile.gateway_url,
        &svc.profile.ca_cert,
        Duration::from_secs(30),
    )
    .unwrap();
    let r = svc.block_on(https.get("/v1/attestation?nonce=zz")).unwrap();
    assert_eq!(
        (r.status, api_error(&r.body).code),
        (400, ErrorCode::BadRequest)
    );
    let r = svc.block_on(https.get("/v1/attestation?nonce=00")).unwrap();
    assert_eq!(r.status, 400);
    let r = svc.block_on(https.get("/nope")).unwrap();
    assert_eq!(r.status, 404);
    let r = svc.block_on(https.get("/healthz")).unwrap();
    assert_eq!(r.status, 200);

    // Still serving, and every decision made by the enclave is in the verified log.
    let rows = Value::Array(heldout()["input"].as_array().unwrap()[..3].to_vec());
    svc.block_on(client.infer("digits", digits_inputs(&rows)))
        .expect("still serving");
    expected_records += 1;
    assert!(svc.alive());
    let summary = cloister_audit::verify_dir(&svc.audit_dir()).expect("audit verifies");
    assert_eq!(summary.entries, expected_records, "{summary:?}");
    let (g, e) = svc.stop();
    assert!(
        g.success() && e.success(),
        "clean stop: gateway {g}, enclave {e}"
    );
}
