//! The verifier: turns an untrusted [`EvidenceBundle`] into [`VerifiedEvidence`], or says why not.
//!
//! This module exists because it is the client's only reason to trust an enclave: it checks the
//! AMD certificate chain against a pinned root, the report signature, the binding of keys,
//! policy, models and nonce into `REPORT_DATA`, and the guest's measurement and policy. It does
//! no IO and reads no clock, so it can be unit-tested and fuzzed on bytes alone.
//!
//! Every check is recorded in order as a [`Check`] so a CLI can print each with its outcome and
//! reason; the overall outcome is the first failure, or a [`VerifiedEvidence`] that no other
//! code can construct.

use std::collections::BTreeMap;
use std::fmt;

use crate::binding::report_data;
use crate::cert::{hw_id_matches, ParsedCert};
use crate::error::{Error, Result};
use crate::evidence::EvidenceBundle;
use crate::report::{self, AttestationReport, Tcb};

/// The names of the checks, in the order [`verify`] runs them.
pub mod checks {
    /// Simulated evidence is only accepted when the policy allows it; `provider` and
    /// `simulated` agree.
    pub const SIMULATED_ALLOWED: &str = "simulated-allowed";
    /// The bundle's ARK is byte-identical to the pinned root and is self-signed.
    pub const ARK_PINNED: &str = "ark-pinned-and-self-signed";
    /// The ASK is signed by the ARK.
    pub const ASK_SIGNED_BY_ARK: &str = "ask-signed-by-ark";
    /// The VCEK is signed by the ASK.
    pub const VCEK_SIGNED_BY_ASK: &str = "vcek-signed-by-ask";
    /// The report is 1184 bytes, version >= 2, signature algorithm 1.
    pub const REPORT_PARSES: &str = "report-parses";
    /// The report's signature verifies under the VCEK's P-384 key.
    pub const REPORT_SIGNATURE: &str = "report-signature";
    /// The VCEK's TCB and hwID extensions equal the report's REPORTED_TCB and CHIP_ID.
    pub const VCEK_MATCHES_REPORT: &str = "vcek-matches-report";
    /// The reported TCB meets the policy's minimum.
    pub const MIN_TCB: &str = "min-tcb";
    /// The report was requested from VMPL 0.
    pub const VMPL0: &str = "vmpl-0";
    /// Guest policy: debug (bit 19) and migration agent (bit 18) disabled.
    pub const DEBUG_AND_MIGRATION_OFF: &str = "debug-and-migration-agent-off";
    /// The measurement is in the policy's allow-list.
    pub const MEASUREMENT_ALLOWED: &str = "measurement-allowed";
    /// REPORT_DATA equals the binding recomputed from the bundle.
    pub const REPORT_DATA_BINDING: &str = "report-data-binding";
    /// `HOST_DATA`, when the launcher set it, equals the policy digest in the bundle.
    pub const HOST_DATA: &str = "host-data-policy";
    /// The sandbox status bound in the evidence meets the policy (`enforce` when required).
    pub const SANDBOX: &str = "sandbox";
    /// The bundle's nonce is the one the verifier asked for.
    pub const NONCE: &str = "nonce";
}

/// What the verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierPolicy {
    /// The pinned ARK certificate (DER): AMD's, or a SIMULATED one in development.
    pub trust_root_der: Vec<u8>,
    /// Launch measurements the client trusts.
    pub allowed_measurements: Vec<[u8; 48]>,
    /// Whether SIMULATED evidence (no hardware isolation) is acceptable. Never in production.
    pub allow_simulated: bool,
    /// Minimum REPORTED_TCB, component-wise; `None` accepts any.
    pub min_tcb: Option<Tcb>,
    /// Refuse enclaves whose bound sandbox status is not `enforce…`.
    pub require_sandbox: bool,
    /// Accept guest policies that allow SMT (simultaneous multithreading, a side-channel
    /// risk); `false` refuses them.
    pub allow_smt: bool,
}

/// One verification step and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// One of [`checks`].
    pub name: &'static str,
    /// Whether it passed. A check that could not run (because an input failed earlier) did not
    /// pass, and its detail starts with "not run".
    pub passed: bool,
    /// Why it passed or failed.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "PASS" } else { "FAIL" };
        write!(f, "[{mark}] {}: {}", self.name, self.detail)
    }
}

/// Evidence that passed every check. Only [`verify`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvidence {
    hpke_key_config: Vec<u8>,
    signing_key: [u8; 32],
    policy_sha256: [u8; 32],
    model_digests: BTreeMap<String, [u8; 32]>,
    measurement: [u8; 48],
    simulated: bool,
    build_version: String,
    sandbox_status: String,
    reported_tcb: Tcb,
    chip_id: [u8; 64],
}

impl VerifiedEvidence {
    /// The attested HPKE key configuration: seal requests to this.
    pub fn hpke_key_config(&self) -> &[u8] {
        &self.hpke_key_config
    }
    /// The attested Ed25519 signing public key.
    pub fn signing_key(&self) -> &[u8; 32] {
        &self.signing_key
    }
    /// SHA-256 of the attested policy file.
    pub fn policy_sha256(&self) -> &[u8; 32] {
        &self.policy_sha256
    }
    /// Attested model digests.
    pub fn model_digests(&self) -> &BTreeMap<String, [u8; 32]> {
        &self.model_digests
    }
    /// The launch measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    /// True if this came from the SIMULATED provider (no hardware isolation).
    pub fn simulated(&self) -> bool {
        self.simulated
    }
    /// The attested build version.
    pub fn build_version(&self) -> &str {
        &self.build_version
    }
    /// The sandbox status the enclave bound into its evidence.
    pub fn sandbox_status(&self) -> &str {
        &self.sandbox_status
    }
    /// The reported TCB.
    pub fn reported_tcb(&self) -> Tcb {
        self.reported_tcb
    }
    /// The chip id.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
}

impl fmt::Display for VerifiedEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.simulated {
            write!(f, "SIMULATED (no hardware isolation) ")?;
        }
        write!(
            f,
            "enclave build {} measurement {} TCB {}",
            self.build_version,
            hex::encode(self.measurement),
            self.reported_tcb
        )
    }
}

/// Every check with its outcome, and the overall result.
#[derive(Debug)]
pub struct Verification {
    /// The checks, in the order run.
    pub checks: Vec<Check>,
    /// The verified evidence, or the first failure.
    pub outcome: Result<VerifiedEvidence>,
}

impl Verification {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
    /// Drops the check list.
    pub fn into_result(self) -> Result<VerifiedEvidence> {
        self.outcome
    }
}

#[derive(Default)]
struct Recorder {
    checks: Vec<Check>,
    first_failure: Option<Error>,
}

impl Recorder {
    /// Records a check; returns whether it passed.
    fn record(&mut self, name: &'static str, result: std::result::Result<String, String>) -> bool {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        if !passed && self.first_failure.is_none() {
            self.first_failure = Some(Error::CheckFailed {
                check: name,
                detail: detail.clone(),
            });
        }
        self.checks.push(Check {
            name,
            passed,
            detail,
        });
        passed
    }

    fn not_run(&mut self, name: &'static str, why: &str) -> bool {
        self.record(name, Err(format!("not run: {why}")))
    }
}

fn first_parse<T>(a: &Result<T>, what: &str) -> String {
    match a {
        Ok(_) => String::new(),
        Err(e) => format!("{what}: {e}"),
    }
}

/// Verifies `bundle` against `policy`, expecting it to carry `expected_nonce`.
pub fn verify(
    bundle: &EvidenceBundle,
    expected_nonce: &[u8],
    policy: &VerifierPolicy,
) -> Verification {
    let mut rec = Recorder::default();

    let pinned = ParsedCert::from_der("pinned ARK", &policy.trust_root_der);
    let ark = ParsedCert::from_der("ARK", &bundle.ark_der);
    let ask = ParsedCert::from_der("ASK", &bundle.ask_der);
    let vcek = ParsedCert::from_der("VCEK", &bundle.vcek_der);
    let parsed = AttestationReport::from_bytes(&bundle.report);

    // 1. Simulated evidence only where allowed. Simulated-ness is taken from every source
    //    (flag, provider name, subjects of the bundle's and the pinned ARK), so a SIMULATED
    //    bundle cannot pass by claiming `simulated: false`.
    let consistent = matches!(
        (bundle.provider.as_str(), bundle.simulated),
        ("sim", true) | ("snp", false)
    );
    let sim_cert = ark.as_ref().is_ok_and(|c| c.is_simulated())
        || pinned.as_ref().is_ok_and(|c| c.is_simulated());
    let simulated = bundle.simulated || bundle.provider != "snp" || sim_cert;
    rec.record(
        checks::SIMULATED_ALLOWED,
        if !consistent {
            Err(format!(
                "provider {:?} and simulated={} disagree",
                bundle.provider, bundle.simulated
            ))
        } else if !simulated {
            Ok("hardware (snp) evidence".into())
        } else if policy.allow_simulated {
            tracing::warn!("accepting SIMULATED attestation evidence: no hardware isolation");
            Ok("SIMULATED evidence, allowed by policy (no hardware isolation)".into())
        } else {
            Err("SIMULATED evidence refused: policy does not allow simulated".into())
        },
    );

    // 2. ARK: pinned and self-signed.
    let ark_ok = match (&pinned, &ark) {
        (Err(e), _) => rec.record(checks::ARK_PINNED, Err(format!("pinned root: {e}"))),
        (_, Err(e)) => rec.record(checks::ARK_PINNED, Err(e.to_string())),
        (Ok(_), Ok(a)) => rec.record(
            checks::ARK_PINNED,
            if bundle.ark_der != policy.trust_root_der {
                Err(format!(
                    "bundle ARK ({}) is not the pinned root",
                    a.subject()
                ))
            } else {
                a.verify_signed_by(a)
                    .map(|()| format!("{} (pinned, self-signed)", a.subject()))
                    .map_err(|e| e.to_string())
            },
        ),
    };

    // 3. ASK signed by ARK.
    let ask_ok = match (&ark, &ask) {
        (Ok(a), Ok(s)) if ark_ok => rec.record(
            checks::ASK_SIGNED_BY_ARK,
            s.verify_signed_by(a)
                .map(|()| s.subject())
                .map_err(|e| e.to_string()),
        ),
        (_, Err(e)) => rec.record(checks::ASK_SIGNED_BY_ARK, Err(e.to_string())),
        _ => rec.not_run(checks::ASK_SIGNED_BY_ARK, "ARK not trusted"),
    };

    // 4. VCEK signed by ASK.
    let chain_ok = match (&ask, &vcek) {
        (Ok(s), Ok(v)) if ask_ok => rec.record(
            checks::VCEK_SIGNED_BY_ASK,
            v.verify_signed_by(s)
                .map(|()| v.subject())
                .map_err(|e| e.to_string()),
        ),
        (_, Err(e)) => rec.record(checks::VCEK_SIGNED_BY_ASK, Err(e.to_string())),
        _ => rec.not_run(checks::VCEK_SIGNED_BY_ASK, "ASK not trusted"),
    };

    // 5. Report parses.
    rec.record(
        checks::REPORT_PARSES,
        match &parsed {
            Ok(r) => Ok(format!(
                "version {}, {} bytes, signature algorithm {}",
                r.version,
                report::REPORT_LEN,
                r.signature_algo
            )),
            Err(e) => Err(e.to_string()),
        },
    );

    // 6. Report signature under the VCEK key.
    match (&vcek, &parsed) {
        (Ok(v), Ok(_)) => {
            let res = v
                .p384_key()
                .and_then(|k| report::verify_report_signature(&bundle.report, &k));
            rec.record(
                checks::REPORT_SIGNATURE,
                res.map(|()| {
                    if chain_ok {
                        "ECDSA P-384/SHA-384 over bytes 0x000..0x2A0 verifies under the VCEK".into()
                    } else {
                        "verifies under the VCEK, but the VCEK is not trusted".into()
                    }
                })
                .map_err(|e| e.to_string()),
            );
        }
        _ => {
            let why = format!(
                "{}{}",
                first_parse(&vcek, "VCEK"),
                first_parse(&parsed, " report")
            );
            rec.not_run(checks::REPORT_SIGNATURE, why.trim());
        }
    }

    // 7. VCEK extensions match the report.
    match (&vcek, &parsed) {
        (Ok(v), Ok(r)) => {
            let res = v
                .vcek_extensions()
                .map_err(|e| e.to_string())
                .and_then(|ext| {
                    let reported = r.tcb(r.reported_tcb);
                    if ext.tcb != reported {
                        Err(format!(
                            "VCEK TCB ({}) differs from REPORTED_TCB ({reported})",
                            ext.tcb
                        ))
                    } else if !hw_id_matches(&ext.hw_id, &r.chip_id) {
                        Err("VCEK hwID differs from the report's CHIP_ID".into())
                    } else {
                        Ok(format!("TCB {reported}; hwID equals CHIP_ID"))
                    }
                });
            rec.record(checks::VCEK_MATCHES_REPORT, res);
        }
        _ => {
            rec.not_run(checks::VCEK_MATCHES_REPORT, "VCEK or report did not parse");
        }
    }

    let Ok(r) = &parsed else {
        for name in [
            checks::MIN_TCB,
            checks::VMPL0,
            checks::DEBUG_AND_MIGRATION_OFF,
            checks::MEASUREMENT_ALLOWED,
            checks::REPORT_DATA_BINDING,
            checks::HOST_DATA,
            checks::SANDBOX,
        ] {
            rec.not_run(name, "report did not parse");
        }
        nonce_check(&mut rec, bundle, expected_nonce);
        return finish(rec, None, bundle, simulated);
    };

    // 8. Minimum TCB.
    let reported = r.tcb(r.reported_tcb);
    rec.record(
        checks::MIN_TCB,
        match &policy.min_tcb {
            None => Ok(format!("no minimum; reported {reported}")),
            Some(min) if reported.meets(min) => Ok(format!("{reported} >= {min}")),
            Some(min) => Err(format!("reported {reported} is below minimum {min}")),
        },
    );

    // 9. VMPL 0.
    rec.record(
        checks::VMPL0,
        if r.vmpl == 0 {
            Ok("VMPL 0".into())
        } else {
            Err(format!("report requested from VMPL {}", r.vmpl))
        },
    );

    // 10. Debug and migration agent off.
    rec.record(
        checks::DEBUG_AND_MIGRATION_OFF,
        if r.debug_allowed() {
            Err(format!("guest policy {:#x} allows debugging", r.policy))
        } else if r.migration_agent_allowed() {
            Err(format!(
                "guest policy {:#x} allows a migration agent",
                r.policy
            ))
        } else if !policy.allow_smt && r.policy & report::policy::SMT != 0 {
            Err(format!(
                "guest policy {:#x} allows SMT, which this client refuses",
                r.policy
            ))
        } else {
            Ok(format!("guest policy {:#x}", r.policy))
        },
    );

    // 11. Measurement allowed.
    rec.record(
        checks::MEASUREMENT_ALLOWED,
        if policy.allowed_measurements.contains(&r.measurement) {
            Ok(hex::encode(r.measurement))
        } else {
            Err(format!(
                "measurement {} is not in the allow-list",
                hex::encode(r.measurement)
            ))
        },
    );

    // 12. REPORT_DATA binding.
    let want = report_data(&bundle.binding());
    rec.record(
        checks::REPORT_DATA_BINDING,
        if want == r.report_data {
            Ok("REPORT_DATA = SHA-512(binding) of keys, policy, models, build, nonce".into())
        } else {
            Err("REPORT_DATA does not match the bundle's keys/policy/models/build/nonce".into())
        },
    );

    // 13. HOST_DATA: set by the launcher, outside the guest's control; Cloister's launcher puts
    //     the policy digest there. All zero means the launcher did not set it.
    rec.record(
        checks::HOST_DATA,
        if r.host_data == [0; 32] {
            Ok(
                "not set by the launcher (all zero); the policy is bound by REPORT_DATA only"
                    .into(),
            )
        } else if r.host_data == bundle.policy_sha256 {
            Ok("HOST_DATA = SHA-256 of the policy in the bundle".into())
        } else {
            Err("HOST_DATA differs from the bundle's policy digest".into())
        },
    );

    // 14. Sandbox status (trustworthy because it is part of the binding above).
    let status = &bundle.sandbox_status;
    rec.record(
        checks::SANDBOX,
        if policy.require_sandbox && !status.starts_with("enforce") {
            Err(format!(
                "sandbox status {status:?} is not enforce, which this client requires"
            ))
        } else {
            Ok(format!("{status} (bound in REPORT_DATA)"))
        },
    );

    // 15. Nonce.
    nonce_check(&mut rec, bundle, expected_nonce);

    finish(rec, Some(r), bundle, simulated)
}

fn nonce_check(rec: &mut Recorder, bundle: &EvidenceBundle, expected: &[u8]) {
    rec.record(
        checks::NONCE,
        if bundle.nonce == expected {
            Ok("nonce matches".into())
        } else {
            Err("bundle nonce differs from the nonce requested".into())
        },
    );
}

fn finish(
    rec: Recorder,
    report: Option<&AttestationReport>,
    bundle: &EvidenceBundle,
    simulated: bool,
) -> Verification {
    let outcome = match (rec.first_failure, report) {
        (Some(e), _) => Err(e),
        (None, Some(r)) => Ok(VerifiedEvidence {
            hpke_key_config: bundle.hpke_key_config.clone(),
            signing_key: bundle.signing_key,
            policy_sha256: bundle.policy_sha256,
            model_digests: bundle.model_digests.clone(),
            measurement: r.measurement,
            simulated,
            build_version: bundle.build_version.clone(),
            sandbox_status: bundle.sandbox_status.clone(),
            reported_tcb: r.tcb(r.reported_tcb),
            chip_id: r.chip_id,
        }),
        // INVARIANT: without a parsed report the report-parses check failed, so
        // first_failure is set; this arm only guards against future edits.
        (None, None) => Err(Error::CheckFailed {
            check: checks::REPORT_PARSES,
            detail: "report did not parse".into(),
        }),
    };
    Verification {
        checks: rec.checks,
        outcome,
    }
}
