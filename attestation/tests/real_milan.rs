//! Golden vectors from real AMD hardware (Milan, via the `sev` crate's test data, see
//! `tests/data/README.md`): the report parses to the published values, its signature verifies
//! under the real VCEK, the real RSA-PSS chain ARK → ASK → VCEK verifies, the VCEK's extensions
//! match the report, and flipping a byte breaks each of these.

use cloister_attestation::cert::{hw_id_matches, ParsedCert};
use cloister_attestation::report::{self, AttestationReport, Tcb, SIGNED_LEN};
use cloister_attestation::verify::checks;
use cloister_attestation::{verify, Binding, Error, EvidenceBundle, RawEvidence, VerifierPolicy};
use x509_cert::der::Encode;

fn report_bytes() -> Vec<u8> {
    let hex_text = include_str!("data/report_milan.hex");
    let clean: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).unwrap()
}

fn vcek_der() -> Vec<u8> {
    include_bytes!("data/vcek_milan.der").to_vec()
}

/// (ASK, ARK) DER, from AMD's PEM bundle (ASK first).
fn chain() -> (Vec<u8>, Vec<u8>) {
    let pem = include_str!("data/cert_chain_milan");
    let certs = x509_cert::Certificate::load_pem_chain(pem.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    (certs[0].to_der().unwrap(), certs[1].to_der().unwrap())
}

#[test]
fn real_report_parses_to_published_values() {
    let bytes = report_bytes();
    assert_eq!(bytes.len(), 1184);
    let r = AttestationReport::from_bytes(&bytes).unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.vmpl, 0);
    assert_eq!(r.policy, 0x30000);
    assert!(!r.debug_allowed());
    assert!(!r.migration_agent_allowed());
    assert_eq!(r.signature_algo, 1);
    assert_eq!(
        r.tcb(r.reported_tcb),
        Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None
        }
    );
    // Re-serialising gives back the received bytes (this report has zero reserved bytes).
    assert_eq!(r.to_bytes().as_slice(), bytes.as_slice());
}

#[test]
fn real_report_agrees_with_the_sev_crate_parser() {
    use sev::parser::ByteParser;
    let bytes = report_bytes();
    let ours = AttestationReport::from_bytes(&bytes).unwrap();
    let theirs = sev::firmware::guest::AttestationReport::from_bytes(&bytes).unwrap();
    assert_eq!(ours.version, theirs.version);
    assert_eq!(ours.guest_svn, theirs.guest_svn);
    assert_eq!(ours.policy, u64::from(theirs.policy));
    assert_eq!(ours.vmpl, theirs.vmpl);
    assert_eq!(ours.signature_algo, theirs.sig_algo);
    assert_eq!(ours.report_data, theirs.report_data);
    assert_eq!(ours.measurement, theirs.measurement);
    assert_eq!(ours.host_data, theirs.host_data);
    assert_eq!(ours.id_key_digest, theirs.id_key_digest);
    assert_eq!(ours.author_key_digest, theirs.author_key_digest);
    assert_eq!(ours.report_id, theirs.report_id);
    assert_eq!(ours.report_id_ma, theirs.report_id_ma);
    assert_eq!(ours.chip_id, theirs.chip_id);
    let t = ours.tcb(ours.reported_tcb);
    assert_eq!(t.bootloader, theirs.reported_tcb.bootloader);
    assert_eq!(t.tee, theirs.reported_tcb.tee);
    assert_eq!(t.snp, theirs.reported_tcb.snp);
    assert_eq!(t.microcode, theirs.reported_tcb.microcode);
}

#[test]
fn real_report_signature_verifies_under_real_vcek() {
    let vcek = ParsedCert::from_der("VCEK", &vcek_der()).unwrap();
    let key = vcek.p384_key().unwrap();
    let bytes = report_bytes();
    report::verify_report_signature(&bytes, &key).unwrap();
    for off in [
        0usize,
        0x08,
        0x50,
        0x90,
        0x180,
        0x1A0,
        SIGNED_LEN - 1,
        0x2A0,
        0x2A0 + 72,
    ] {
        let mut b = bytes.clone();
        b[off] ^= 0x01;
        assert!(
            report::verify_report_signature(&b, &key).is_err(),
            "flip at {off:#x} verified"
        );
    }
}

#[test]
fn real_vcek_extensions_match_real_report() {
    let vcek = ParsedCert::from_der("VCEK", &vcek_der()).unwrap();
    let ext = vcek.vcek_extensions().unwrap();
    let r = AttestationReport::from_bytes(&report_bytes()).unwrap();
    assert_eq!(ext.tcb, r.tcb(r.reported_tcb));
    assert_eq!(ext.hw_id.len(), 64);
    assert!(hw_id_matches(&ext.hw_id, &r.chip_id));
}

#[test]
fn real_rsa_pss_chain_verifies() {
    let (ask_der, ark_der) = chain();
    let ark = ParsedCert::from_der("ARK", &ark_der).unwrap();
    let ask = ParsedCert::from_der("ASK", &ask_der).unwrap();
    let vcek = ParsedCert::from_der("VCEK", &vcek_der()).unwrap();
    assert!(ark.subject().contains("ARK-Milan"), "{}", ark.subject());
    assert!(!ark.is_simulated());
    ark.verify_signed_by(&ark).unwrap();
    ask.verify_signed_by(&ark).unwrap();
    vcek.verify_signed_by(&ask).unwrap();
    // Wrong issuer.
    assert!(matches!(
        vcek.verify_signed_by(&ark),
        Err(Error::CertificateSignatureInvalid { .. })
    ));
    // A VCEK is EC: it cannot have signed an RSA-PSS certificate.
    assert!(matches!(
        ask.verify_signed_by(&vcek),
        Err(Error::PublicKey { .. })
    ));
}

#[test]
fn flipped_byte_in_real_vcek_breaks_the_chain() {
    let (ask_der, _) = chain();
    let ask = ParsedCert::from_der("ASK", &ask_der).unwrap();
    let der = vcek_der();
    // Inside the tbsCertificate (the serial number / extensions) and in the signature value.
    for off in [20usize, 600, der.len() - 10] {
        let mut d = der.clone();
        d[off] ^= 0x01;
        match ParsedCert::from_der("VCEK", &d) {
            Err(_) => {}
            Ok(v) => assert!(v.verify_signed_by(&ask).is_err(), "flip at {off} verified"),
        }
    }
}

#[test]
fn full_verifier_on_real_evidence() {
    let (ask_der, ark_der) = chain();
    let bytes = report_bytes();
    let r = AttestationReport::from_bytes(&bytes).unwrap();
    let nonce = b"n".to_vec();
    let bundle = EvidenceBundle::new(
        "snp",
        false,
        RawEvidence {
            report: bytes,
            vcek_der: vcek_der(),
            ask_der,
            ark_der: ark_der.clone(),
        },
        Binding {
            nonce: nonce.clone(),
            ..Default::default()
        },
    );
    let policy = VerifierPolicy {
        trust_root_der: ark_der,
        allowed_measurements: vec![r.measurement],
        allow_simulated: false,
        min_tcb: Some(Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        }),
        require_sandbox: false,
        allow_smt: true,
    };
    let v = verify(&bundle, &nonce, &policy);
    // Everything but the Cloister binding holds: this report was not made by Cloister.
    let failed: Vec<_> = v
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, [checks::REPORT_DATA_BINDING], "{:#?}", v.checks);
    assert!(!v.passed());
    // Flipping a byte of the measurement breaks the signature.
    let mut b = bundle.clone();
    b.report[0x90] ^= 1;
    let v = verify(&b, &nonce, &policy);
    assert!(v
        .checks
        .iter()
        .any(|c| c.name == checks::REPORT_SIGNATURE && !c.passed));
}
