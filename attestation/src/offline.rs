//! Offline verification of a bare SEV-SNP report and its certificates, with no Cloister
//! evidence bundle around it (`cloister attest verify-report`).
//!
//! It runs the same verifier as the online path, on a bundle that carries only the report and
//! the certificates, and leaves out the checks that need a bundle (the `REPORT_DATA` binding,
//! `HOST_DATA` against the policy digest, the sandbox status and the nonce). The measurement is checked only when an allow-list is given.

use crate::evidence::EvidenceBundle;
use crate::verify::{checks, verify, Check, VerifierPolicy};

/// A report and the certificates that vouch for it.
#[derive(Debug, Clone)]
pub struct ReportAndCerts {
    /// The raw 1184-byte report.
    pub report: Vec<u8>,
    /// VCEK, DER.
    pub vcek_der: Vec<u8>,
    /// ASK, DER.
    pub ask_der: Vec<u8>,
    /// ARK, DER.
    pub ark_der: Vec<u8>,
}

/// Verifies a bare report against `policy`; every check that applies, in order.
pub fn verify_report(input: &ReportAndCerts, policy: &VerifierPolicy) -> Vec<Check> {
    let bundle = EvidenceBundle {
        format_version: crate::evidence::FORMAT_VERSION,
        provider: "snp".into(),
        simulated: false,
        report: input.report.clone(),
        vcek_der: input.vcek_der.clone(),
        ask_der: input.ask_der.clone(),
        ark_der: input.ark_der.clone(),
        hpke_key_config: Vec::new(),
        signing_key: [0; 32],
        policy_sha256: [0; 32],
        model_digests: Default::default(),
        build_version: String::new(),
        sandbox_status: String::new(),
        nonce: Vec::new(),
    };
    let verification = verify(&bundle, &[], policy);
    verification
        .checks
        .into_iter()
        .filter(|c| {
            ![
                checks::REPORT_DATA_BINDING,
                checks::HOST_DATA,
                checks::SANDBOX,
                checks::NONCE,
            ]
            .contains(&c.name)
        })
        .map(|c| {
            if c.name == checks::MEASUREMENT_ALLOWED && policy.allowed_measurements.is_empty() {
                let measurement = crate::report::AttestationReport::from_bytes(&input.report)
                    .map(|r| hex::encode(r.measurement))
                    .unwrap_or_else(|_| "unknown".into());
                Check {
                    name: c.name,
                    passed: true,
                    detail: format!("not checked (no allow-list given); measurement {measurement}"),
                }
            } else {
                c
            }
        })
        .collect()
}
