//! `cloister attest` helpers that need no running service: re-verifying a saved evidence
//! bundle, and verifying a bare SEV-SNP report with its certificates (`verify-report`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cloister_attestation::offline::{verify_report as verify_bare, ReportAndCerts};
use cloister_attestation::roots::{pem_chain_to_der, pem_to_der};
use cloister_attestation::{verify, EvidenceBundle, Product, VerifierPolicy};

use crate::sdk::{Attestation, Client};

/// Re-verifies a saved bundle with the client's policy, using the bundle's own nonce.
pub fn reverify_saved(client: &Client, file: &Path) -> Result<Attestation> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read evidence {}", file.display()))?;
    let bundle = EvidenceBundle::from_json(&text)
        .with_context(|| format!("{} is not an evidence bundle", file.display()))?;
    let verification = verify(&bundle, &bundle.nonce.clone(), client.verifier_policy());
    Ok(Attestation {
        checks: verification.checks.clone(),
        verified: verification.outcome.ok(),
        bundle,
    })
}

fn read_report(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() == cloister_attestation::report::REPORT_LEN {
        return Ok(bytes);
    }
    let text: String = String::from_utf8(bytes)
        .ok()
        .map(|t| t.chars().filter(|c| !c.is_whitespace()).collect())
        .unwrap_or_default();
    match hex::decode(&text) {
        Ok(b) => Ok(b),
        Err(_) => bail!(
            "{}: expected {} raw bytes or hex text",
            path.display(),
            cloister_attestation::report::REPORT_LEN
        ),
    }
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8(bytes)?;
        Ok(pem_to_der(&text).with_context(|| format!("{}: bad PEM", path.display()))?)
    } else {
        Ok(bytes)
    }
}

/// `cloister attest verify-report`.
pub fn verify_report(
    report: &Path,
    vcek: &Path,
    chain: Option<&Path>,
    product: &str,
    measurements: &[String],
    json: bool,
) -> Result<ExitCode> {
    let product: Product = product.parse().map_err(|_| {
        anyhow::anyhow!("unknown product {product:?}; expected milan, genoa or turin")
    })?;
    let (ask_der, ark_der) = match chain {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let ders = pem_chain_to_der(&text)
                .with_context(|| format!("{}: expected AMD's PEM bundle", path.display()))?;
            if ders.len() != 2 {
                bail!(
                    "{}: expected two certificates (ASK, then ARK), found {}",
                    path.display(),
                    ders.len()
                );
            }
            (ders[0].clone(), ders[1].clone())
        }
        None => (product.ask_der(), product.ark_der()),
    };
    let allowed = measurements
        .iter()
        .map(|m| {
            let mut out = [0u8; 48];
            hex::decode_to_slice(m, &mut out)
                .with_context(|| format!("measurement {m} is not 96 hex characters"))?;
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    let input = ReportAndCerts {
        report: read_report(report)?,
        vcek_der: read_cert(vcek)?,
        ask_der,
        ark_der,
    };
    let policy = VerifierPolicy {
        trust_root_der: product.ark_der(),
        allowed_measurements: allowed,
        allow_simulated: false,
        min_tcb: None,
        require_sandbox: false,
        allow_smt: true,
    };
    let checks = verify_bare(&input, &policy);
    let passed = checks.iter().all(|c| c.passed);
    if json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "passed": c.passed, "detail": c.detail}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "passed": passed, "product": product.name(), "checks": list
            }))?
        );
    } else {
        println!("Pinned root: AMD {product} ARK (built in)");
        for c in &checks {
            println!("{c}");
        }
        println!(
            "{}",
            if passed {
                "OK: the report and its certificates verify."
            } else {
                "REFUSED: the report or its certificates failed verification."
            }
        );
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
