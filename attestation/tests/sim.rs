//! The SIMULATED provider end to end: a round trip passes every check, and every tampering the
//! hostile gateway could try (flipped report bytes, swapped keys, models, nonce, roots) fails
//! the check named for it.

use std::collections::BTreeMap;

use cloister_attestation::report::{self, AttestationReport, SIGNATURE_OFFSET, SIGNED_LEN};
use cloister_attestation::verify::checks;
use cloister_attestation::{
    measure_file, report_data, verify, AttestationProvider, Binding, Error, EvidenceBundle,
    SimProvider, SimRoot, Tcb, Verification, VerifierPolicy,
};

const MEASUREMENT: [u8; 48] = [0x5A; 48];
const NONCE: &[u8] = b"client-nonce-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    root: SimRoot,
    bundle: EvidenceBundle,
    policy: VerifierPolicy,
}

fn binding(nonce: &[u8]) -> Binding {
    let mut models = BTreeMap::new();
    models.insert("iris".to_string(), [0x11; 32]);
    models.insert("mnist".to_string(), [0x22; 32]);
    Binding {
        hpke_key_config: vec![0x01, 0x00, 0x20, 0xAA, 0xBB],
        signing_key: [0x33; 32],
        policy_sha256: [0x44; 32],
        model_digests: models,
        build_version: "cloister 0.1.0 (test)".into(),
        sandbox_status: "enforce: test".into(),
        nonce: nonce.to_vec(),
    }
}

fn bundle_for(provider: &SimProvider, b: Binding) -> EvidenceBundle {
    let raw = provider.report(report_data(&b)).unwrap();
    EvidenceBundle::new(provider.name(), provider.simulated(), raw, b)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = SimRoot::generate(dir.path()).unwrap();
    let provider = SimProvider::new(root.clone(), MEASUREMENT);
    let bundle = bundle_for(&provider, binding(NONCE));
    let policy = VerifierPolicy {
        trust_root_der: root.ark_der().to_vec(),
        allowed_measurements: vec![[0u8; 48], MEASUREMENT],
        allow_simulated: true,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    };
    Fixture {
        _dir: dir,
        root,
        bundle,
        policy,
    }
}

fn failed(v: &Verification) -> Vec<&'static str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

fn assert_fails_only(v: &Verification, names: &[&str]) {
    assert_eq!(failed(v), names, "checks: {:#?}", v.checks);
    match &v.outcome {
        Err(Error::CheckFailed { check, .. }) => assert_eq!(*check, names[0]),
        other => panic!("expected CheckFailed({}), got {other:?}", names[0]),
    }
}

#[test]
fn round_trip_passes_every_check() {
    let f = fixture();
    // Through JSON, as the gateway relays it.
    let bundle = EvidenceBundle::from_json(&f.bundle.to_json().unwrap()).unwrap();
    let v = verify(&bundle, NONCE, &f.policy);
    let names: Vec<_> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            checks::SIMULATED_ALLOWED,
            checks::ARK_PINNED,
            checks::ASK_SIGNED_BY_ARK,
            checks::VCEK_SIGNED_BY_ASK,
            checks::REPORT_PARSES,
            checks::REPORT_SIGNATURE,
            checks::VCEK_MATCHES_REPORT,
            checks::MIN_TCB,
            checks::VMPL0,
            checks::DEBUG_AND_MIGRATION_OFF,
            checks::MEASUREMENT_ALLOWED,
            checks::REPORT_DATA_BINDING,
            checks::HOST_DATA,
            checks::SANDBOX,
            checks::NONCE,
        ]
    );
    assert!(failed(&v).is_empty(), "{:#?}", v.checks);
    assert!(v.checks[0].detail.contains("SIMULATED"));
    let e = v.into_result().unwrap();
    let b = binding(NONCE);
    assert!(e.simulated());
    assert_eq!(e.hpke_key_config(), b.hpke_key_config.as_slice());
    assert_eq!(e.signing_key(), &b.signing_key);
    assert_eq!(e.policy_sha256(), &b.policy_sha256);
    assert_eq!(e.model_digests(), &b.model_digests);
    assert_eq!(e.build_version(), b.build_version);
    assert_eq!(e.measurement(), &MEASUREMENT);
    assert_eq!(e.reported_tcb(), f.root.tcb());
    assert!(e.to_string().starts_with("SIMULATED"));
}

#[test]
fn sim_report_has_the_specified_fields() {
    let f = fixture();
    let r = AttestationReport::from_bytes(&f.bundle.report).unwrap();
    assert_eq!(f.bundle.report.len(), 0x4A0);
    assert_eq!(r.version, 3);
    assert_eq!(r.guest_svn, 0);
    assert_eq!(r.policy, 0x30000);
    assert_eq!(r.vmpl, 0);
    assert_eq!(r.signature_algo, 1);
    assert_eq!(r.measurement, MEASUREMENT);
    assert_eq!(r.report_data, report_data(&binding(NONCE)));
    assert_eq!(&r.chip_id, f.root.chip_id());
    assert_eq!(r.tcb(r.reported_tcb), f.root.tcb());
    assert_eq!(r.tcb(r.current_tcb), f.root.tcb());
    assert_eq!(r.tcb(r.committed_tcb), f.root.tcb());
    assert_eq!(r.tcb(r.launch_tcb), f.root.tcb());
    assert_ne!(r.report_id, [0; 32]);
    // AMD's signature encoding: r and s little-endian, zero-padded to 72 bytes.
    let sig = &f.bundle.report[SIGNATURE_OFFSET..];
    assert!(sig[48..72].iter().all(|&b| b == 0));
    assert!(sig[72 + 48..144].iter().all(|&b| b == 0));
    assert!(sig[144..].iter().all(|&b| b == 0));
    // The serialiser reproduces the signed bytes exactly.
    assert_eq!(r.to_bytes().as_slice(), f.bundle.report.as_slice());
}

#[test]
fn everything_says_simulated() {
    let f = fixture();
    let provider = SimProvider::new(f.root.clone(), MEASUREMENT);
    assert!(provider.to_string().contains("SIMULATED"));
    assert!(f.root.to_string().contains("SIMULATED"));
    assert!(format!("{:?}", f.root).contains("SIMULATED"));
    for der in [f.root.ark_der(), f.root.ask_der(), f.root.vcek_der()] {
        let c = cloister_attestation::cert::ParsedCert::from_der("x", der).unwrap();
        assert!(c.subject().contains("SIMULATED"), "{}", c.subject());
        assert!(c.subject().contains("not AMD"), "{}", c.subject());
    }
    assert_eq!(provider.name(), "sim");
    assert!(provider.simulated());
}

#[test]
fn load_reads_back_the_generated_root() {
    let dir = tempfile::tempdir().unwrap();
    let a = SimRoot::generate(dir.path()).unwrap();
    let b = SimRoot::load(dir.path()).unwrap();
    assert_eq!(a.ark_der(), b.ark_der());
    assert_eq!(a.ask_der(), b.ask_der());
    assert_eq!(a.vcek_der(), b.vcek_der());
    assert_eq!(a.chip_id(), b.chip_id());
    assert_eq!(a.tcb(), b.tcb());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("vcek-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A report from the loaded root verifies against the generated root's ARK.
    let p = SimProvider::new(b, MEASUREMENT);
    let bundle = bundle_for(&p, binding(NONCE));
    let policy = VerifierPolicy {
        trust_root_der: a.ark_der().to_vec(),
        allowed_measurements: vec![MEASUREMENT],
        allow_simulated: true,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    };
    assert!(verify(&bundle, NONCE, &policy).passed());
}

#[test]
fn load_rejects_a_key_that_does_not_match_the_vcek() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    SimRoot::generate(d1.path()).unwrap();
    SimRoot::generate(d2.path()).unwrap();
    std::fs::copy(
        d2.path().join("vcek-key.pem"),
        d1.path().join("vcek-key.pem"),
    )
    .unwrap();
    assert!(matches!(SimRoot::load(d1.path()), Err(Error::Pem { .. })));
    assert!(matches!(
        SimRoot::load(&d1.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

fn vcek_key(root: &SimRoot) -> p384::ecdsa::VerifyingKey {
    cloister_attestation::cert::ParsedCert::from_der("VCEK", root.vcek_der())
        .unwrap()
        .p384_key()
        .unwrap()
}

#[test]
fn flipping_any_byte_of_the_signed_part_fails() {
    let f = fixture();
    let key = vcek_key(&f.root);
    // Every byte of the header (version .. REPORT_DATA start) and every 4th byte after it,
    // through the last signed byte, breaks the report signature (debug-build P-384 is slow,
    // so not all 672) ...
    for off in (0..0x60)
        .chain((0x60..SIGNED_LEN).step_by(4))
        .chain([SIGNED_LEN - 1])
    {
        let mut r = f.bundle.report.clone();
        r[off] ^= 0x01;
        assert!(
            report::verify_report_signature(&r, &key).is_err(),
            "flip at {off:#x} verified"
        );
    }
    // ... and a sparser sample, run through the whole verifier, fails it.
    for off in (0..SIGNED_LEN).step_by(29).chain([SIGNED_LEN - 1]) {
        let mut b = f.bundle.clone();
        b.report[off] ^= 0x01;
        let v = verify(&b, NONCE, &f.policy);
        assert!(!v.passed(), "flip at {off:#x} passed");
        let sig = v
            .checks
            .iter()
            .find(|c| c.name == checks::REPORT_SIGNATURE)
            .unwrap();
        assert!(!sig.passed, "flip at {off:#x}: signature check passed");
    }
}

#[test]
fn flipping_any_byte_of_the_signature_fails() {
    let f = fixture();
    let key = vcek_key(&f.root);
    for off in SIGNATURE_OFFSET..SIGNATURE_OFFSET + 144 {
        let mut r = f.bundle.report.clone();
        r[off] ^= 0x80;
        assert!(
            report::verify_report_signature(&r, &key).is_err(),
            "flip at {off:#x} verified"
        );
    }
    for off in (SIGNATURE_OFFSET..SIGNATURE_OFFSET + 144).step_by(11) {
        let mut b = f.bundle.clone();
        b.report[off] ^= 0x80;
        let v = verify(&b, NONCE, &f.policy);
        assert_fails_only(&v, &[checks::REPORT_SIGNATURE]);
    }
}

#[test]
fn truncated_report_fails_to_parse() {
    let f = fixture();
    let mut b = f.bundle.clone();
    b.report.truncate(1000);
    let v = verify(&b, NONCE, &f.policy);
    assert_eq!(failed(&v)[0], checks::REPORT_PARSES);
    assert!(!v.passed());
}

#[test]
fn wrong_measurement_fails() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.allowed_measurements = vec![[0x5B; 48]];
    assert_fails_only(
        &verify(&f.bundle, NONCE, &policy),
        &[checks::MEASUREMENT_ALLOWED],
    );
    policy.allowed_measurements.clear();
    assert_fails_only(
        &verify(&f.bundle, NONCE, &policy),
        &[checks::MEASUREMENT_ALLOWED],
    );
}

#[test]
fn wrong_nonce_fails() {
    let f = fixture();
    // The client asked for another nonce (replayed evidence).
    assert_fails_only(&verify(&f.bundle, b"other", &f.policy), &[checks::NONCE]);
    // The gateway rewrites the bundle's nonce to the one the client asked for.
    let mut b = f.bundle.clone();
    b.nonce = b"other".to_vec();
    assert_fails_only(
        &verify(&b, b"other", &f.policy),
        &[checks::REPORT_DATA_BINDING],
    );
}

#[test]
fn tampered_binding_fields_fail_report_data() {
    let f = fixture();
    let tamper: Vec<fn(&mut EvidenceBundle)> = vec![
        |b| b.hpke_key_config[2] ^= 1,
        |b| b.hpke_key_config.push(0),
        |b| b.signing_key[0] ^= 1,
        |b| b.policy_sha256[31] ^= 1,
        |b| {
            b.model_digests.get_mut("iris").unwrap()[0] ^= 1;
        },
        |b| {
            b.model_digests.insert("extra".into(), [0; 32]);
        },
        |b| {
            b.model_digests.remove("mnist");
        },
        |b| b.build_version.push('!'),
    ];
    for t in tamper {
        let mut b = f.bundle.clone();
        t(&mut b);
        assert_fails_only(
            &verify(&b, NONCE, &f.policy),
            &[checks::REPORT_DATA_BINDING],
        );
    }
}

#[test]
fn unpinned_sim_root_fails() {
    let f = fixture();
    let other = fixture();
    // A whole bundle from another SIMULATED root.
    let v = verify(&other.bundle, NONCE, &f.policy);
    assert_eq!(failed(&v)[0], checks::ARK_PINNED);
    assert!(!v.passed());
    // The pinned ARK, but an ASK/VCEK chain from another root.
    let mut b = other.bundle.clone();
    b.ark_der = f.root.ark_der().to_vec();
    let v = verify(&b, NONCE, &f.policy);
    assert_eq!(failed(&v)[0], checks::ASK_SIGNED_BY_ARK);
    // The pinned ARK and ASK, a VCEK from another root (and a report it signed).
    let mut b = other.bundle.clone();
    b.ark_der = f.root.ark_der().to_vec();
    b.ask_der = f.root.ask_der().to_vec();
    let v = verify(&b, NONCE, &f.policy);
    assert_eq!(failed(&v)[0], checks::VCEK_SIGNED_BY_ASK);
    // The pinned chain, but a report signed by another VCEK.
    let mut b = f.bundle.clone();
    b.report = other.bundle.report.clone();
    let v = verify(&b, NONCE, &f.policy);
    assert_eq!(failed(&v)[0], checks::REPORT_SIGNATURE);
}

#[test]
fn simulated_refused_unless_allowed() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.allow_simulated = false;
    assert_fails_only(
        &verify(&f.bundle, NONCE, &policy),
        &[checks::SIMULATED_ALLOWED],
    );
    // Lying about it does not help: the chain's subjects say SIMULATED.
    let mut b = f.bundle.clone();
    b.provider = "snp".into();
    b.simulated = false;
    assert_fails_only(&verify(&b, NONCE, &policy), &[checks::SIMULATED_ALLOWED]);
    // Inconsistent claims fail even where simulated evidence is allowed.
    let mut b = f.bundle.clone();
    b.simulated = false;
    assert_fails_only(&verify(&b, NONCE, &f.policy), &[checks::SIMULATED_ALLOWED]);
}

#[test]
fn min_tcb_is_enforced() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.min_tcb = Some(f.root.tcb());
    assert!(verify(&f.bundle, NONCE, &policy).passed());
    policy.min_tcb = Some(Tcb {
        snp: f.root.tcb().snp + 1,
        ..f.root.tcb()
    });
    assert_fails_only(&verify(&f.bundle, NONCE, &policy), &[checks::MIN_TCB]);
}

#[test]
fn garbage_certificates_fail_with_typed_reasons() {
    let f = fixture();
    let mut b = f.bundle.clone();
    b.vcek_der = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    let v = verify(&b, NONCE, &f.policy);
    assert_eq!(
        failed(&v),
        [
            checks::VCEK_SIGNED_BY_ASK,
            checks::REPORT_SIGNATURE,
            checks::VCEK_MATCHES_REPORT
        ]
    );
    assert!(v.checks[3].detail.contains("VCEK"), "{}", v.checks[3]);
    let mut policy = f.policy.clone();
    policy.trust_root_der = vec![1, 2, 3];
    let v = verify(&f.bundle, NONCE, &policy);
    assert_eq!(failed(&v)[0], checks::ARK_PINNED);
}

#[test]
fn measure_file_is_sha384() {
    use sha2::{Digest, Sha384};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("enclave");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    let want: [u8; 48] = Sha384::digest(&data).into();
    assert_eq!(measure_file(&p).unwrap(), want);
    assert!(matches!(
        measure_file(&dir.path().join("nope")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn report_signature_helper_rejects_nonzero_padding() {
    let f = fixture();
    let vcek = vcek_key(&f.root);
    report::verify_report_signature(&f.bundle.report, &vcek).unwrap();
    let mut r = f.bundle.report.clone();
    r[SIGNATURE_OFFSET + 60] = 1;
    assert!(matches!(
        report::verify_report_signature(&r, &vcek),
        Err(Error::MalformedReportSignature(_))
    ));
}

#[test]
fn a_client_that_requires_the_sandbox_refuses_evidence_without_it() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.require_sandbox = true;
    // The fixture binds "enforce: test": accepted.
    assert!(verify(&f.bundle, NONCE, &policy).passed());
    // An enclave that binds "none" is refused by the sandbox check alone.
    let provider = SimProvider::new(f.root.clone(), MEASUREMENT);
    let mut b = binding(NONCE);
    b.sandbox_status = "none".into();
    let bundle = bundle_for(&provider, b);
    assert_fails_only(&verify(&bundle, NONCE, &policy), &[checks::SANDBOX]);
    // Claiming "enforce" without re-signing breaks the binding instead.
    let mut lying = bundle.clone();
    lying.sandbox_status = "enforce".into();
    assert_fails_only(
        &verify(&lying, NONCE, &policy),
        &[checks::REPORT_DATA_BINDING],
    );
}

#[test]
fn host_data_must_match_the_policy_digest_when_the_launcher_set_it() {
    let f = fixture();
    let b = binding(NONCE);
    // The launcher put the policy digest in HOST_DATA: passes.
    let good = SimProvider::new(f.root.clone(), MEASUREMENT).with_host_data(b.policy_sha256);
    let bundle = bundle_for(&good, b.clone());
    assert!(verify(&bundle, NONCE, &f.policy).passed());
    // A launcher that measured another policy: refused by this check alone.
    let other = SimProvider::new(f.root.clone(), MEASUREMENT).with_host_data([0xEE; 32]);
    let bundle = bundle_for(&other, b);
    assert_fails_only(&verify(&bundle, NONCE, &f.policy), &[checks::HOST_DATA]);
}

#[test]
fn a_client_that_forbids_smt_refuses_a_guest_policy_that_allows_it() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.allow_smt = false;
    assert_fails_only(
        &verify(&f.bundle, NONCE, &policy),
        &[checks::DEBUG_AND_MIGRATION_OFF],
    );
}
