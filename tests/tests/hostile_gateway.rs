//! A hostile gateway between the client and the real enclave: every attack is noticed, by the
//! client (evidence) or the enclave (replays), and the test names the check that caught it.

use std::sync::Arc;

use cloister::sdk::{Client, ClientError};
use cloister_e2e::{heldout_rows, Service, TapMode};
use cloister_protocol::frame::FrameKind;
use cloister_protocol::tensor::WireTensor;
use std::collections::BTreeMap;

fn rows(n: usize) -> BTreeMap<String, WireTensor> {
    heldout_rows(0, n)
}

/// Runs an inference that must be refused at attestation; returns the failed check names and
/// asserts that no sealed request reached the enclave.
fn refused_checks(svc: &Service, client: &Client) -> Vec<&'static str> {
    let before = svc.frames(FrameKind::SealedRequest).len();
    let failed = match svc.block_on(client.infer("digits", rows(1))) {
        Err(ClientError::EvidenceRejected(checks)) => checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect(),
        Err(e) => panic!("expected EvidenceRejected, got {e}"),
        Ok(_) => panic!("the attack went unnoticed"),
    };
    assert_eq!(
        svc.frames(FrameKind::SealedRequest).len(),
        before,
        "data was sent"
    );
    failed
}

#[test]
fn replayed_evidence_from_an_earlier_nonce_fails_the_nonce_check() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.block_on(client.attest()).unwrap();
    let old = svc.frames(FrameKind::Evidence).pop().unwrap();
    svc.set_mode(TapMode::ReplayEvidence(old));
    let failed = refused_checks(&svc, &client);
    assert_eq!(failed, vec!["nonce"], "only freshness is wrong");
}

#[test]
fn a_substituted_hpke_key_fails_the_report_data_binding() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.set_mode(TapMode::SubstituteKey);
    assert_eq!(refused_checks(&svc, &client), vec!["report-data-binding"]);
}

#[test]
fn a_valid_report_from_another_root_binding_the_gateways_key_fails_the_pinned_root() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = cloister_attestation::SimRoot::generate(tmp.path()).unwrap();
    svc.set_mode(TapMode::ForgeWithOwnRoot(Arc::new(root)));
    let failed = refused_checks(&svc, &client);
    assert!(failed.contains(&"ark-pinned-and-self-signed"), "{failed:?}");
    assert!(
        !failed.contains(&"report-data-binding"),
        "the forgery is self-consistent: {failed:?}"
    );
    assert!(!failed.contains(&"measurement-allowed"), "{failed:?}");
}

#[test]
fn evidence_from_a_different_measurement_is_refused() {
    let svc = Service::start();
    let mut profile = svc.profile.clone();
    profile.expected_measurements = vec!["00".repeat(48)];
    let client = Client::new(profile).unwrap();
    assert_eq!(refused_checks(&svc, &client), vec!["measurement-allowed"]);
}

#[test]
fn stripped_nonce_is_refused() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.set_mode(TapMode::StripNonce);
    let failed = refused_checks(&svc, &client);
    assert!(failed.contains(&"nonce"), "{failed:?}");
    assert!(failed.contains(&"report-data-binding"), "{failed:?}");
}

#[test]
fn a_sealed_request_replayed_by_the_gateway_is_refused_by_the_enclave() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.set_mode(TapMode::ReplaySealed);
    svc.block_on(client.infer("digits", rows(2)))
        .expect("the original is served");
    let answers = svc.frames(FrameKind::SealedResponse);
    assert_eq!(
        answers.len(),
        2,
        "original and replay both answered (sealed)"
    );
    let summary = cloister_audit::verify_dir(&svc.audit_dir()).unwrap();
    assert_eq!(summary.entries, 2);
    let mut log = String::new();
    for entry in std::fs::read_dir(svc.audit_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            log.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    assert_eq!(log.matches("\"replay\"").count(), 1, "{log}");
}

#[test]
fn responses_swapped_between_two_concurrent_clients_do_not_open() {
    let svc = Service::start();
    let a = Client::new(svc.profile.clone()).unwrap();
    let b = Client::new(svc.profile.clone()).unwrap();
    // Attest first so both requests are in flight together.
    svc.block_on(a.verified_evidence()).unwrap();
    svc.block_on(b.verified_evidence()).unwrap();
    svc.set_mode(TapMode::SwapResponses);
    let (ra, rb) = svc
        .block_on(async { tokio::join!(a.infer("digits", rows(1)), b.infer("digits", rows(2))) });
    for (who, r) in [("a", ra), ("b", rb)] {
        match r {
            Err(ClientError::Seal(e)) => {
                assert!(e.to_string().contains("cannot open"), "{who}: {e}")
            }
            Err(e) => panic!("{who}: expected a seal failure, got {e}"),
            Ok(_) => panic!("{who}: opened a response meant for the other client"),
        }
    }
}
