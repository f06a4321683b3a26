//! Confident-GNMax, ensemble regression and heuristic output noise through the real service:
//! what leaves the enclave, what is charged (on disk, to the nano-ρ), what the receipt and the
//! audit record say.

use std::collections::HashMap;
use std::path::Path;

use cloister::sdk::Client;
use cloister_e2e::{heldout_rows, Service};
use cloister_protocol::tensor::parse_inputs;
use serde_json::Value;

fn audit_text(svc: &Service) -> String {
    let mut log = String::new();
    for entry in std::fs::read_dir(svc.audit_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("audit-") && !name.contains("checkpoint") {
            log.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
    }
    log
}

fn ledger_lines(svc: &Service) -> HashMap<String, u64> {
    std::fs::read_to_string(svc.dir.ledger().join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["request_id"].as_str().unwrap().to_string(),
                v["cost_nano"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn audit_privacy(log: &str, request_id: &str) -> Value {
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no audit record for {request_id}"))["privacy"]
        .clone()
}

fn replace_in_policy(svc_dir: &cloister::datadir::DataDir, from: &str, to: &str) {
    let path = svc_dir.policy();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "default policy changed: {from}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_regression_ensemble_releases_a_noisy_clamped_mean_and_charges_it() {
    let svc = Service::start();
    let client = Client::new(svc.profile.clone()).unwrap();
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/diabetes-ensemble/heldout.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // 15 values at 0.1 ρ: 1.5 of the tenant's 2 ρ.
    let n = 15;
    let rows = data["input"].as_array().unwrap()[..n].to_vec();
    let inputs = parse_inputs(&serde_json::json!({ "input": rows })).unwrap();
    let r = svc
        .block_on(client.infer("diabetes-ensemble", inputs))
        .unwrap()
        .response;
    // Only the noisy mean leaves the enclave, never the teachers' predictions.
    assert_eq!(r.outputs.keys().collect::<Vec<_>>(), vec!["prediction"]);
    let released: Vec<f64> = r.outputs["prediction"]
        .data
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(released.len(), n);
    // Noise is centred on the clamped mean of the teachers (onnxruntime's predictions, clamped
    // to the policy's [50, 300]) with σ = 15.625 / √0.2 ≈ 34.9: the average error over 15 rows
    // lies within 4.5 standard errors, and the values are not the noiseless means.
    let sigma = 15.625 / (0.2f64).sqrt();
    let truth: Vec<f64> = data["onnxruntime_predictions"].as_array().unwrap()[..n]
        .iter()
        .map(|row| {
            let p: Vec<f64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap().clamp(50.0, 300.0))
                .collect();
            p.iter().sum::<f64>() / p.len() as f64
        })
        .collect();
    let errors: Vec<f64> = released.iter().zip(&truth).map(|(a, b)| a - b).collect();
    let mean_err = errors.iter().sum::<f64>() / n as f64;
    assert!(
        mean_err.abs() < 4.5 * sigma / (n as f64).sqrt(),
        "mean error {mean_err}"
    );
    let rms = (errors.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt();
    assert!(
        rms > sigma / 3.0 && rms < sigma * 2.0,
        "rms {rms} vs σ {sigma}"
    );

    let p = r.privacy.expect("receipt");
    assert_eq!(p.mechanism, "ensemble-regression");
    assert_eq!(p.cost_nano_rho, 100_000_000 * n as u64, "0.1 ρ per value");
    assert!(p.guarantee.contains("zCDP") && p.guarantee.contains("clamped"));
    assert_eq!(p.label, None);
    assert_eq!(p.remaining_rho["tenant/dev"], Some(0.5));
    assert_eq!(p.remaining_rho["model/diabetes-ensemble"], Some(1.5));
    assert_eq!(ledger_lines(&svc)[&r.request_id], 1_500_000_000);
    assert_eq!(
        audit_privacy(&audit_text(&svc), &r.request_id),
        serde_json::json!({"mechanism": "ensemble-regression", "cost_nano_rho": 1_500_000_000u64})
    );
}

#[test]
fn confident_gnmax_answers_agreement_abstains_otherwise_and_charges_exactly_that() {
    let svc = Service::start_with(|dir| {
        replace_in_policy(
            dir,
            "mechanism = \"gnmax\"              # noisy arg-max over the teachers' votes (OpenDP, zCDP)\n\
             votes_output = \"votes\"           # [N, 25] int64: each teacher's class\n\
             classes = 10\n\
             rho_per_query = 0.01             # cost of one released label\n",
            "mechanism = \"confident-gnmax\"\nvotes_output = \"votes\"\nclasses = 10\n\
             threshold = 18\nsigma1 = 1.5\nsigma2 = 3.0\n",
        )
    });
    let client = Client::new(svc.profile.clone()).unwrap();
    // Rows 6, 11, 14: all 25 teachers agree. Rows 119, 136, 145: the largest vote is 11.
    // With T = 18 and σ₁ = 1.5 the first pass and the others abstain but with probability
    // below 2e-6 per row (4.67σ).
    let picks = [6usize, 119, 11, 136, 14, 145];
    let mut rows = Vec::new();
    let heldout: Value =
        serde_json::from_str(&std::fs::read_to_string(cloister_e2e::heldout_path()).unwrap())
            .unwrap();
    let labels = heldout["labels"].as_array().unwrap();
    for &i in &picks {
        rows.push(heldout["input"][i].clone());
    }
    let inputs = parse_inputs(&serde_json::json!({ "input": rows })).unwrap();
    let r = svc
        .block_on(client.infer("digits-ensemble", inputs))
        .unwrap()
        .response;
    let released: Vec<i64> = r.outputs["label"]
        .data
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    let p = r.privacy.expect("receipt");
    assert_eq!(p.mechanism, "confident-gnmax");
    assert_eq!(p.abstained_rows, vec![1, 3, 5], "{}", p.guarantee);
    for (k, &i) in picks.iter().enumerate() {
        if k % 2 == 1 {
            assert_eq!(released[k], -1, "an abstention carries no label");
        } else {
            // Unanimous votes with σ₂ = 3: the noisy arg-max is the teachers' label (5.9σ).
            assert_eq!(released[k], labels[i].as_i64().unwrap());
        }
    }
    // The cost: 6 checks (σ₁ = 1.5, sensitivity 1: ρ = 1/4.5 each) + 3 answers (σ₂ = 3,
    // sensitivity √2: ρ = 1/9 each), from OpenDP's maps (which round up by at most 0.1%).
    let on_disk = ledger_lines(&svc);
    let checks = on_disk[&r.request_id];
    let answers = on_disk[&format!("{}/answer", r.request_id)];
    assert!((1_333_333_334..1_334_700_000).contains(&checks), "{checks}");
    assert!((333_333_334..333_700_000).contains(&answers), "{answers}");
    assert_eq!(p.cost_nano_rho, checks + answers, "receipt == disk");
    assert_eq!(
        audit_privacy(&audit_text(&svc), &r.request_id)["cost_nano_rho"],
        checks + answers
    );
    assert!(p.guarantee.contains("abstains"), "{}", p.guarantee);
}

#[test]
fn heuristic_noise_is_labelled_everywhere_and_never_called_differential_privacy() {
    let svc = Service::start_with(|dir| {
        replace_in_policy(
            dir,
            "description = \"Digit classifier trained on scikit-learn's load_digits\"\n",
            "description = \"Digit classifier trained on scikit-learn's load_digits\"\n\n\
             [models.privacy]\nmechanism = \"heuristic-output-noise\"\n\
             output = \"probabilities\"\nnoise_scale = 0.05\n",
        )
    });
    let client = Client::new(svc.profile.clone()).unwrap();
    let inference = svc
        .block_on(client.infer("digits", heldout_rows(0, 3)))
        .unwrap();
    let r = &inference.response;

    // 1. The response.
    let p = r
        .privacy
        .as_ref()
        .expect("a heuristic release carries a receipt");
    assert_eq!(p.mechanism, "heuristic-output-noise");
    assert_eq!(p.label.as_deref(), Some("heuristic"));
    assert!(p.guarantee.starts_with("heuristic"), "{}", p.guarantee);
    let lower = p.guarantee.to_lowercase();
    assert!(
        !lower.contains("differential") && !lower.contains("zcdp"),
        "{}",
        p.guarantee
    );
    assert_eq!((p.cost_nano_rho, p.cost_rho), (0, 0.0));
    // Noise was added: probabilities no longer sum to exactly 1 in every row.
    let probs: Vec<f64> = r.outputs["probabilities"]
        .data
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert!(probs
        .chunks(10)
        .any(|row| (row.iter().sum::<f64>() - 1.0).abs() > 1e-4));

    // 2. The audit record.
    let record = audit_privacy(&audit_text(&svc), &r.request_id);
    assert_eq!(
        record,
        serde_json::json!({"mechanism": "heuristic-output-noise", "cost_nano_rho": 0})
    );

    // 3. The evidence: it binds the policy's digest, and the attested policy's model entry is
    //    the heuristic one (the only way to switch the noise on).
    let policy_bytes = std::fs::read(svc.dir.policy()).unwrap();
    assert_eq!(
        inference.evidence.policy_sha256(),
        &cloister_protocol::auth::sha256(&policy_bytes)
    );
    let policy = cloister_policy::Policy::load(&svc.dir.policy()).unwrap();
    assert!(matches!(
        policy.model("digits").unwrap().privacy,
        cloister_policy::ModelPrivacy::HeuristicOutputNoise { .. }
    ));

    // It charged no budget: it proves nothing, so there is nothing to account.
    assert!(!ledger_lines(&svc).contains_key(&r.request_id));
}
