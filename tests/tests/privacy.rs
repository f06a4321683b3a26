//! Differential-privacy budgets through the real service: the teacher ensemble answers with
//! noisy labels and a receipt; every label is charged to the tenant, the model and the global
//! account before it exists; an exhausted budget is a typed refusal that charges nothing and
//! survives a restart; a retried request id is answered again without a second charge.

use std::collections::BTreeMap;

use cloister::sdk::{random_hex, Client, ClientError};
use cloister_e2e::{heldout_path, heldout_rows, Service};
use cloister_protocol::error::ErrorCode;
use cloister_protocol::inner::{BudgetReport, InferRequest};
use cloister_protocol::tensor::WireTensor;
use serde_json::Value;

fn rows(from: usize, n: usize) -> BTreeMap<String, WireTensor> {
    heldout_rows(from, n)
}

fn labels() -> Vec<i64> {
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(heldout_path()).unwrap()).unwrap();
    data["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn spent(report: &BudgetReport, account: &str) -> f64 {
    report
        .accounts
        .iter()
        .find(|a| a.account == account)
        .unwrap_or_else(|| panic!("no account {account} in {report:?}"))
        .spent_rho
}

/// A service whose development tenant can afford five labels (0.05 ρ at 0.01 each).
fn small_budget() -> Service {
    Service::start_with(|dir| {
        let path = dir.policy();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("budget_rho = 2.0"), "default policy changed");
        std::fs::write(path, text.replace("budget_rho = 2.0", "budget_rho = 0.05")).unwrap();
    })
}

#[test]
fn the_ensemble_answers_noisy_labels_with_a_receipt_and_charges_every_account() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let n = 40;
    let r = svc
        .block_on(client.infer("digits-ensemble", rows(0, n)))
        .unwrap()
        .response;
    // Only the noisy labels leave the enclave, never the votes.
    assert_eq!(r.outputs.keys().collect::<Vec<_>>(), vec!["label"]);
    let released: Vec<i64> = r.outputs["label"]
        .data
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert_eq!(released.len(), n);
    assert!(released.iter().all(|l| (0..10).contains(l)));
    let correct = released
        .iter()
        .zip(labels())
        .filter(|(a, b)| **a == *b)
        .count();
    // The noiseless plurality is 92.5% accurate; with the noise of 0.01 ρ per label the
    // expected accuracy stays far above chance (10%).
    assert!(
        correct >= n / 2,
        "only {correct}/{n} noisy labels are right"
    );

    let p = r.privacy.expect("privacy receipt");
    assert_eq!(p.mechanism, "gnmax");
    assert_eq!(p.cost_nano_rho, 10_000_000 * n as u64, "0.01 ρ per label");
    assert!(
        p.guarantee.contains("zCDP") || p.guarantee.contains("concentrated"),
        "{}",
        p.guarantee
    );
    assert!(p.cost_epsilon > 0.0 && p.delta == 1e-6);
    assert_eq!(p.remaining_rho["tenant/dev"], Some(2.0 - 0.4));
    assert_eq!(p.remaining_rho["model/digits-ensemble"], Some(5.0 - 0.4));
    assert_eq!(p.remaining_rho["global"], Some(10.0 - 0.4));

    // The plain model costs nothing and carries no receipt.
    let r = svc
        .block_on(client.infer("digits", rows(0, 2)))
        .unwrap()
        .response;
    assert!(r.privacy.is_none());
    let report = svc.block_on(client.budget()).unwrap();
    assert!((spent(&report, "tenant/dev") - 0.4).abs() < 1e-12);
    assert!(report.refresh.starts_with("never"));

    // The audit record carries the mechanism and the exact charge, and nothing of the noise.
    let mut log = String::new();
    for entry in std::fs::read_dir(svc.audit_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("audit-")
        {
            log.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    assert!(
        log.contains(r#""privacy":{"mechanism":"gnmax","cost_nano_rho":400000000}"#),
        "{log}"
    );
    assert!(!log.contains("votes"), "votes must never reach the log");
}

#[test]
fn an_exhausted_budget_refuses_charges_nothing_and_survives_a_restart() {
    let mut svc = small_budget();
    let client = Client::new(svc.profile.clone()).unwrap();
    let ledger = svc.dir.ledger().join("ledger.jsonl");
    svc.block_on(client.infer("digits-ensemble", rows(0, 3)))
        .expect("3 of 5 labels");
    let before = std::fs::read(&ledger).unwrap();
    // Three more would overflow the tenant's budget: refused, typed, nothing charged.
    match svc.block_on(client.infer("digits-ensemble", rows(3, 3))) {
        Err(ClientError::Enclave { status, error }) => {
            assert_eq!((status, error.code), (403, ErrorCode::BudgetExhausted));
            assert!(error.message.contains("tenant/dev"), "{}", error.message);
        }
        other => panic!("expected budget_exhausted, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&ledger).unwrap(),
        before,
        "a refusal wrote to the ledger"
    );
    // Exactly what remains still fits.
    svc.block_on(client.infer("digits-ensemble", rows(3, 2)))
        .expect("the last 2 labels");
    let report = svc.block_on(client.budget()).unwrap();
    assert_eq!(report.accounts[0].remaining_rho, Some(0.0));

    // A restart reads back exactly the spent totals; the refusal persists.
    svc.restart_enclave();
    let after = svc
        .block_on(client.budget())
        .expect("re-attests after the restart");
    assert!(
        (spent(&after, "tenant/dev") - 0.05).abs() < 1e-12,
        "{after:?}"
    );
    assert_eq!(after.accounts, report.accounts);
    match svc.block_on(client.infer("digits-ensemble", rows(0, 1))) {
        Err(ClientError::Enclave { error, .. }) => {
            assert_eq!(error.code, ErrorCode::BudgetExhausted)
        }
        other => panic!("expected budget_exhausted after restart, got {other:?}"),
    }
    // Models without a mechanism still serve.
    svc.block_on(client.infer("digits", rows(0, 1)))
        .expect("plain model");
}

#[test]
fn a_retried_request_id_gets_the_same_answer_and_is_charged_once() {
    let mut svc = small_budget();
    let client = Client::new(svc.profile.clone()).unwrap();
    let evidence = svc.block_on(client.verified_evidence()).unwrap();
    let request = InferRequest {
        request_id: random_hex(16),
        issued_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        model: "digits-ensemble".into(),
        inputs: rows(10, 2),
    };
    let first = svc
        .block_on(client.send_request(&evidence, &request))
        .unwrap();
    // The same request id, sealed afresh (so not a replay of the sealed bytes).
    let second = svc
        .block_on(client.send_request(&evidence, &request))
        .unwrap();
    assert_eq!(
        first, second,
        "a retried request id must not draw a new sample"
    );
    let report = svc.block_on(client.budget()).unwrap();
    assert!(
        (spent(&report, "tenant/dev") - 0.02).abs() < 1e-12,
        "{report:?}"
    );

    // After a restart the answer is gone: refused rather than sampled again.
    svc.restart_enclave();
    let evidence = svc
        .block_on(async {
            let c = Client::new(svc.profile.clone()).unwrap();
            c.verified_evidence().await
        })
        .unwrap();
    match svc.block_on(client.send_request(&evidence, &request)) {
        Err(ClientError::Enclave { error, .. }) => {
            assert_eq!(error.code, ErrorCode::DuplicateRequest)
        }
        other => panic!("expected duplicate_request, got {other:?}"),
    }
}
