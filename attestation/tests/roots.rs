//! The built-in AMD roots verify the real chains, and a bare real report verifies offline
//! against the built-in Milan root; a flipped byte anywhere in the signed part fails.

use cloister_attestation::cert::ParsedCert;
use cloister_attestation::offline::{verify_report, ReportAndCerts};
use cloister_attestation::roots::pem_chain_to_der;
use cloister_attestation::{Product, VerifierPolicy};

fn report_bytes() -> Vec<u8> {
    let hex_text = include_str!("data/report_milan.hex");
    let clean: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).unwrap()
}

fn milan_input() -> ReportAndCerts {
    ReportAndCerts {
        report: report_bytes(),
        vcek_der: include_bytes!("data/vcek_milan.der").to_vec(),
        ask_der: Product::Milan.ask_der(),
        ark_der: Product::Milan.ark_der(),
    }
}

fn milan_policy() -> VerifierPolicy {
    VerifierPolicy {
        trust_root_der: Product::Milan.ark_der(),
        allowed_measurements: vec![],
        allow_simulated: false,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    }
}

#[test]
fn built_in_roots_equal_the_real_chains_and_are_self_signed() {
    for (product, chain) in [
        (Product::Milan, include_str!("data/cert_chain_milan")),
        (Product::Turin, include_str!("data/cert_chain_turin")),
    ] {
        let ders = pem_chain_to_der(chain).unwrap();
        assert_eq!(ders[1], product.ark_der(), "{product} ARK");
        assert_eq!(ders[0], product.ask_der(), "{product} ASK");
        assert_eq!(Product::from_ark_der(&ders[1]), Some(product));
    }
    for p in Product::ALL {
        let ark = ParsedCert::from_der("ARK", &p.ark_der()).unwrap();
        ark.verify_signed_by(&ark).unwrap();
        let ask = ParsedCert::from_der("ASK", &p.ask_der()).unwrap();
        ask.verify_signed_by(&ark).unwrap();
        assert!(!ark.is_simulated());
        assert_eq!(p.name().parse::<Product>().unwrap(), p);
    }
    // A Turin VCEK chains to the Turin root, not to Milan's.
    let vcek = ParsedCert::from_der("VCEK", include_bytes!("data/vcek_turin.der")).unwrap();
    let turin_ask = ParsedCert::from_der("ASK", &Product::Turin.ask_der()).unwrap();
    let milan_ask = ParsedCert::from_der("ASK", &Product::Milan.ask_der()).unwrap();
    vcek.verify_signed_by(&turin_ask).unwrap();
    assert!(vcek.verify_signed_by(&milan_ask).is_err());
}

#[test]
fn real_milan_report_verifies_offline_against_the_built_in_root() {
    let checks = verify_report(&milan_input(), &milan_policy());
    for c in &checks {
        assert!(c.passed, "{c}");
    }
    assert!(checks.iter().any(|c| c.name == "report-signature"));
    assert!(checks.iter().any(|c| c.name == "vcek-matches-report"));
    assert!(!checks.iter().any(|c| c.name == "nonce"));
}

#[test]
fn every_byte_of_the_signed_report_range_matters() {
    let policy = milan_policy();
    let base = milan_input();
    // Every byte of the signed range 0x000..0x2A0.
    for offset in 0..0x2A0 {
        let mut input = base.clone();
        input.report[offset] ^= 0x01;
        let checks = verify_report(&input, &policy);
        assert!(
            checks.iter().any(|c| !c.passed),
            "flipping report byte {offset:#x} went unnoticed"
        );
    }
}

#[test]
fn a_flipped_vcek_byte_fails_at_a_seeded_sample_of_200_positions() {
    let policy = milan_policy();
    let base = milan_input();
    let len = base.vcek_der.len();
    let mut state: u64 = 0x5EED_C0DE;
    for _ in 0..200 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (state >> 33) as usize % len;
        let mut input = base.clone();
        input.vcek_der[offset] ^= 0x01;
        let checks = verify_report(&input, &policy);
        assert!(
            checks.iter().any(|c| !c.passed),
            "flipping VCEK byte {offset} went unnoticed"
        );
    }
}

#[test]
fn the_wrong_product_root_is_refused() {
    let mut policy = milan_policy();
    policy.trust_root_der = Product::Genoa.ark_der();
    let checks = verify_report(&milan_input(), &policy);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    assert!(failed.contains(&"ark-pinned-and-self-signed"), "{failed:?}");
}
