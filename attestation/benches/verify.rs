//! How long one evidence bundle takes to verify (target: ≤ 5 ms), for the SIMULATED chain
//! (ECDSA P-384 throughout) and for the real AMD Milan chain (RSA-4096 PSS + ECDSA P-384).
//!
//! Run: `cargo bench -p cloister-attestation --bench verify`

use std::collections::BTreeMap;

use cloister_attestation::offline::{verify_report, ReportAndCerts};
use cloister_attestation::{
    report_data, verify, AttestationProvider, Binding, EvidenceBundle, Product, SimProvider,
    SimRoot, VerifierPolicy,
};
use criterion::{criterion_group, criterion_main, Criterion};

fn sim_bundle() -> (EvidenceBundle, VerifierPolicy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = SimRoot::generate(dir.path()).unwrap();
    let measurement = [7u8; 48];
    let provider = SimProvider::new(root.clone(), measurement);
    let mut models = BTreeMap::new();
    models.insert("digits".to_string(), [1u8; 32]);
    let binding = Binding {
        hpke_key_config: vec![1; 41],
        signing_key: [2; 32],
        policy_sha256: [3; 32],
        model_digests: models,
        build_version: "cloister bench".into(),
        sandbox_status: "enforce".into(),
        nonce: vec![9; 32],
    };
    let raw = provider.report(report_data(&binding)).unwrap();
    let bundle = EvidenceBundle::new("sim", true, raw, binding);
    let policy = VerifierPolicy {
        trust_root_der: root.ark_der().to_vec(),
        allowed_measurements: vec![measurement],
        allow_simulated: true,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    };
    (bundle, policy, dir)
}

fn benches(c: &mut Criterion) {
    let (bundle, policy, _dir) = sim_bundle();
    assert!(verify(&bundle, &[9; 32], &policy).passed());
    c.bench_function("verify SIMULATED bundle (P-384 chain)", |b| {
        b.iter(|| verify(&bundle, &[9; 32], &policy))
    });

    let hex_text = include_str!("../tests/data/report_milan.hex");
    let clean: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
    let input = ReportAndCerts {
        report: hex::decode(clean).unwrap(),
        vcek_der: include_bytes!("../tests/data/vcek_milan.der").to_vec(),
        ask_der: Product::Milan.ask_der(),
        ark_der: Product::Milan.ark_der(),
    };
    let milan = VerifierPolicy {
        trust_root_der: Product::Milan.ark_der(),
        allowed_measurements: vec![],
        allow_simulated: false,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    };
    assert!(verify_report(&input, &milan).iter().all(|c| c.passed));
    c.bench_function("verify real Milan report (RSA-PSS + P-384 chain)", |b| {
        b.iter(|| verify_report(&input, &milan))
    });
}

criterion_group!(verify_benches, benches);
criterion_main!(verify_benches);
