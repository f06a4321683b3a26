//! `cloister audit …`: read-only review of an audit directory (`DATA_DIR/audit` under
//! `cloister up`, or a copy of it), with no enclave running.
//!
//! - `verify` checks every record, every checkpoint's signature and root, and that the
//!   checkpoints are consistent with each other and with the log; exit 0 only when all holds.
//! - `show` and `stats` read the (verified) log for people.
//! - `report` writes a self-contained HTML page for people ([`crate::audit_report`]).
//! - `prove` and `verify-proof` produce and check self-contained inclusion proofs (a record is
//!   in the signed log) and consistency proofs (a later checkpoint extends an earlier one).
//!
//! Which key to trust is the auditor's decision: `--key FILE` pins a key file (the
//! `enclave-key-*.pub` the enclave writes), `--evidence FILE` takes the Ed25519 key from an
//! attestation evidence bundle (verify the bundle itself with `cloister attest --evidence`).
//! Without either, signatures are checked against the keys the checkpoints name, which proves
//! integrity only relative to whoever held those keys; the output says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cloister_attestation::evidence::EvidenceBundle;
use cloister_audit::{
    for_each_entry, merkle::PrunedLeaves, proof::CONSISTENCY_FORMAT, verify_dir_with, Checkpoint,
    ConsistencyProof, InclusionProof, LogEntry, Outcome, VerifyOptions, VerifyReport,
};
use serde_json::json;

/// The `cloister audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every record, each checkpoint's signature and root, and checkpoint consistency.
    Verify {
        /// The audit directory.
        dir: PathBuf,
        #[command(flatten)]
        trust: Trust,
        /// Accept records after the last signed checkpoint (the log of a running enclave).
        #[arg(long)]
        allow_unsigned_tail: bool,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Print records as a table or JSON lines.
    Show {
        /// The audit directory.
        dir: PathBuf,
        #[command(flatten)]
        filter: Filter,
        /// Print the stored JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Requests and refusals by reason, per tenant and model.
    Stats {
        /// The audit directory.
        dir: PathBuf,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Write an inclusion proof of record N (or a consistency proof from an earlier
    /// checkpoint) against the latest signed checkpoint.
    Prove {
        /// The audit directory.
        dir: PathBuf,
        /// The record's index.
        #[arg(long, required_unless_present = "consistency_from")]
        index: Option<u64>,
        /// Instead: prove that the latest checkpoint extends the checkpoint of this tree size.
        #[arg(long, value_name = "SIZE", conflicts_with = "index")]
        consistency_from: Option<u64>,
        /// Prove against this checkpoint instead of the latest: a JSON file holding the
        /// checkpoint from a response's audit receipt (the checkpoint object, the receipt, or
        /// `cloister infer --json` output). Fails if the log no longer matches it.
        #[arg(long, value_name = "FILE", requires = "index")]
        checkpoint: Option<PathBuf>,
        /// Write the proof here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write a self-contained HTML report (summary, charts, refusals, per tenant and model);
    /// exits 1 (after writing it) when the log does not verify.
    Report {
        /// The audit directory.
        dir: PathBuf,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        #[command(flatten)]
        trust: Trust,
        /// Accept records after the last signed checkpoint (the log of a running enclave).
        #[arg(long)]
        allow_unsigned_tail: bool,
    },
    /// Check an inclusion or consistency proof written by `cloister audit prove`.
    VerifyProof {
        /// The proof file (JSON).
        file: PathBuf,
        #[command(flatten)]
        trust: Trust,
        /// Also require the record's chain hash to be this (from a response's audit receipt).
        #[arg(long, value_name = "HEX")]
        hash: Option<String>,
    },
}

/// Which enclave keys to trust.
#[derive(Args, Debug, Default)]
pub struct Trust {
    /// Trust this enclave public key file (64 hex digits; `enclave-key-*.pub`). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// Trust the signing key in this attestation evidence bundle (JSON). Repeatable.
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    pub evidence: Vec<PathBuf>,
}

/// Record filters for `show`.
#[derive(Args, Debug, Default)]
pub struct Filter {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only records at or after this time (Unix milliseconds, or YYYY-MM-DD[THH:MM[:SS]][Z], UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this outcome: ok, refused, error, or a reason code such as rate_limited.
    #[arg(long)]
    pub outcome: Option<String>,
}

/// Runs one `cloister audit` subcommand.
pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match &command {
        AuditCommand::Verify { dir, .. }
        | AuditCommand::Show { dir, .. }
        | AuditCommand::Stats { dir, .. }
        | AuditCommand::Prove { dir, .. }
        | AuditCommand::Report { dir, .. } => check_dir(dir)?,
        AuditCommand::VerifyProof { .. } => {}
    }
    match command {
        AuditCommand::Verify {
            dir,
            trust,
            allow_unsigned_tail,
            json,
        } => verify(&dir, &trust, allow_unsigned_tail, json),
        AuditCommand::Show { dir, filter, json } => show(&dir, &filter, json),
        AuditCommand::Stats { dir, json } => stats(&dir, json),
        AuditCommand::Prove {
            dir,
            index,
            consistency_from,
            checkpoint,
            out,
        } => prove(
            &dir,
            index,
            consistency_from,
            checkpoint.as_deref(),
            out.as_deref(),
        ),
        AuditCommand::Report {
            dir,
            html,
            trust,
            allow_unsigned_tail,
        } => {
            let opts = VerifyOptions {
                trusted_keys: trusted_keys(&trust)?,
                allow_unsigned_tail,
            };
            let verified = crate::audit_report::write_report(&dir, &opts, &html)?;
            println!(
                "wrote {} ({})",
                html.display(),
                if verified {
                    "the log verified"
                } else {
                    "the log does NOT verify; the report says why"
                }
            );
            Ok(if verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::VerifyProof { file, trust, hash } => {
            verify_proof(&file, &trust, hash.as_deref())
        }
    }
}

fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// The trusted keys from `--key` and `--evidence` files.
pub fn trusted_keys(trust: &Trust) -> Result<Vec<[u8; 32]>> {
    let mut keys = Vec::new();
    for path in &trust.key {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let key = parse_key_hex(&text).with_context(|| {
            format!(
                "key file {} does not hold a 32-byte Ed25519 public key as 64 hex digits",
                path.display()
            )
        })?;
        keys.push(key);
    }
    for path in &trust.evidence {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read evidence file {}", path.display()))?;
        let bundle: EvidenceBundle = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an evidence bundle", path.display()))?;
        keys.push(bundle.signing_key);
    }
    Ok(keys)
}

fn trust_note(trusted: &[[u8; 32]]) -> &'static str {
    if trusted.is_empty() {
        "NOT PINNED: signatures were checked against the keys the checkpoints name; pass --key \
         or --evidence to tie them to the attested enclave"
    } else {
        "pinned (every checkpoint is signed by a trusted key)"
    }
}

fn verify(dir: &Path, trust: &Trust, allow_unsigned_tail: bool, json: bool) -> Result<ExitCode> {
    let trusted = trusted_keys(trust)?;
    let opts = VerifyOptions {
        trusted_keys: trusted.clone(),
        allow_unsigned_tail,
    };
    let result = verify_dir_with(dir, &opts);
    if json {
        let doc = match &result {
            Ok(r) => json!({
                "passed": true,
                "entries": r.entries,
                "segments": r.segments,
                "last_hash": r.last_hash,
                "root": r.root,
                "checkpoints": r.checkpoints,
                "latest_checkpoint": r.latest.as_ref().map(|c| c.to_value()),
                "keys": r.keys,
                "keys_pinned": !trusted.is_empty(),
                "unsigned_entries": r.unsigned_entries,
                "torn_tail": r.torn_tail.as_ref().map(|t| t.to_string()),
                "torn_checkpoint": r.torn_checkpoint.as_ref().map(|t| t.to_string()),
                "pruned": r.pruned.as_ref().map(|p| json!({
                    "first_segment": p.first_segment,
                    "first_index": p.first_index,
                    "anchor_time_unix_ms": p.anchor_time_unix_ms,
                    "statement_time_unix_ms": p.statement.time_unix_ms,
                })),
            }),
            Err(e) => json!({"passed": false, "error": e.to_string()}),
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        match &result {
            Ok(r) => print_report(dir, r, &trusted),
            Err(e) => println!("FAILED: {e}"),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(dir: &Path, r: &VerifyReport, trusted: &[[u8; 32]]) {
    println!("audit log {}", dir.display());
    println!(
        "  records:     {} in {} segment(s), hash chain intact",
        r.entries, r.segments
    );
    println!("  merkle root: {}", r.root);
    if let Some(p) = &r.pruned {
        println!(
            "  pruned:      records 0..{} (segments before audit-{:06}.log) were deleted by the \
             retention policy (signed statement of {}); verification starts from the signed \
             anchor of that segment",
            p.first_index,
            p.first_segment,
            format_time(p.statement.time_unix_ms)
        );
    }
    match &r.latest {
        Some(c) => println!(
            "  checkpoints: {} — signatures valid, each root matches the log, consistent; \
             latest covers {} record(s), signed {}",
            r.checkpoints,
            c.tree_size,
            format_time(c.time_unix_ms)
        ),
        None => println!("  checkpoints: none"),
    }
    for k in &r.keys {
        println!("  signed by:   {k}");
    }
    println!("  keys:        {}", trust_note(trusted));
    if r.unsigned_entries > 0 {
        println!(
            "  WARNING: {} record(s) after the latest checkpoint are not signed (accepted by \
             --allow-unsigned-tail)",
            r.unsigned_entries
        );
    }
    if let Some(t) = &r.torn_tail {
        println!("  torn tail:   {t}; the enclave removes it at its next start");
    }
    if let Some(t) = &r.torn_checkpoint {
        println!("  torn checkpoint: {t}");
    }
    println!("OK");
}

/// A time bound from `--since`/`--until`.
fn parse_time(s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "time {s:?} is neither Unix milliseconds nor YYYY-MM-DD[THH:MM[:SS]][Z] (UTC)"
        )
    };
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |p: &str| p.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, day] = d[..] else {
        return Err(bad());
    };
    let (y, m, day) = (num(y)?, num(m)?, num(day)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, day) * 86_400;
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let h = num(parts[0])?;
        let min = num(parts[1])?;
        let sec = parts.get(2).map(|p| num(p)).transpose()?.unwrap_or(0);
        if h > 23 || min > 59 || sec > 60 {
            return Err(bad());
        }
        secs += h * 3600 + min * 60 + sec;
    }
    u64::try_from(secs * 1000).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_time(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Ok => "ok".into(),
        Outcome::Refused { code } => format!("refused:{code}"),
        Outcome::Error { code } => format!("error:{code}"),
    }
}

fn matches(e: &LogEntry, f: &Filter, since: Option<u64>, until: Option<u64>) -> bool {
    let r = &e.entry.record;
    if f.tenant
        .as_ref()
        .is_some_and(|t| r.tenant.as_ref() != Some(t))
    {
        return false;
    }
    if f.model
        .as_ref()
        .is_some_and(|m| r.model.as_ref() != Some(m))
    {
        return false;
    }
    if since.is_some_and(|s| r.time_unix_ms < s) || until.is_some_and(|u| r.time_unix_ms >= u) {
        return false;
    }
    if let Some(want) = &f.outcome {
        let ok = match (&r.outcome, want.as_str()) {
            (Outcome::Ok, "ok") => true,
            (Outcome::Refused { .. }, "refused") => true,
            (Outcome::Error { .. }, "error") => true,
            (Outcome::Refused { code } | Outcome::Error { code }, w) => code == w,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn show(dir: &Path, f: &Filter, json: bool) -> Result<ExitCode> {
    let since = f.since.as_deref().map(parse_time).transpose()?;
    let until = f.until.as_deref().map(parse_time).transpose()?;
    // Only the selected records are kept; nothing is printed unless the whole log verifies.
    let mut total = 0u64;
    let mut kept: Vec<LogEntry> = Vec::new();
    for_each_entry(dir, |e| {
        total += 1;
        if matches(&e, f, since, until) {
            kept.push(e);
        }
    })
    .with_context(|| {
        format!(
            "the audit log in {} does not verify; run `cloister audit verify` for details",
            dir.display()
        )
    })?;
    let selected: Vec<&LogEntry> = kept.iter().collect();
    if json {
        for e in selected {
            println!("{}", e.line);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = |f: fn(&LogEntry) -> usize, title: &str| {
        selected
            .iter()
            .map(|e| f(e))
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let tw = width(
        |e| e.entry.record.tenant.as_deref().map_or(1, str::len),
        "TENANT",
    );
    let mw = width(
        |e| e.entry.record.model.as_deref().map_or(1, str::len),
        "MODEL",
    );
    let ow = width(|e| outcome_text(&e.entry.record.outcome).len(), "OUTCOME");
    println!(
        "{:>6}  {:<24}  {:<tw$}  {:<mw$}  {:<ow$}  {:>10}  REQUEST",
        "INDEX", "TIME (UTC)", "TENANT", "MODEL", "OUTCOME", "LATENCY_MS"
    );
    for e in &selected {
        let r = &e.entry.record;
        println!(
            "{:>6}  {:<24}  {:<tw$}  {:<mw$}  {:<ow$}  {:>10.3}  {}",
            e.entry.index,
            format_time(r.time_unix_ms),
            r.tenant.as_deref().unwrap_or("-"),
            r.model.as_deref().unwrap_or("-"),
            outcome_text(&r.outcome),
            r.latency_us as f64 / 1000.0,
            if r.request_id.is_empty() {
                "-"
            } else {
                &r.request_id
            },
        );
    }
    println!("{} of {} record(s)", selected.len(), total);
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Group {
    requests: u64,
    ok: u64,
    refused: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Privacy budget spent, nano-ρ.
    spent_nano_rho: u64,
}

fn stats(dir: &Path, json: bool) -> Result<ExitCode> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let (mut count, mut first, mut last) = (0u64, None, None);
    for_each_entry(dir, |e| {
        let r = &e.entry.record;
        count += 1;
        first = first.or(Some(r.time_unix_ms));
        last = Some(r.time_unix_ms);
        let key = (
            r.tenant.clone().unwrap_or_else(|| "-".into()),
            r.model.clone().unwrap_or_else(|| "-".into()),
        );
        let g = groups.entry(key).or_default();
        g.requests += 1;
        if let Some(p) = &r.privacy {
            g.spent_nano_rho = g.spent_nano_rho.saturating_add(p.cost_nano_rho);
        }
        match &r.outcome {
            Outcome::Ok => g.ok += 1,
            Outcome::Refused { code } => *g.refused.entry(code.clone()).or_default() += 1,
            Outcome::Error { code } => *g.errors.entry(code.clone()).or_default() += 1,
        }
    })
    .with_context(|| {
        format!(
            "the audit log in {} does not verify; run `cloister audit verify` for details",
            dir.display()
        )
    })?;
    if json {
        let rows: Vec<_> = groups
            .iter()
            .map(|((tenant, model), g)| {
                json!({
                    "tenant": tenant, "model": model, "requests": g.requests, "ok": g.ok,
                    "refused": g.refused, "errors": g.errors,
                    "privacy_spent_rho": g.spent_nano_rho as f64 / 1e9,
                })
            })
            .collect();
        let doc = json!({
            "records": count,
            "first_time_unix_ms": first,
            "last_time_unix_ms": last,
            "groups": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} record(s){}",
        count,
        match (first, last) {
            (Some(a), Some(b)) => format!(" from {} to {}", format_time(a), format_time(b)),
            _ => String::new(),
        }
    );
    let tw = groups.keys().map(|k| k.0.len()).max().unwrap_or(0).max(6);
    let mw = groups.keys().map(|k| k.1.len()).max().unwrap_or(0).max(5);
    println!(
        "{:<tw$}  {:<mw$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>10}  REASONS",
        "TENANT", "MODEL", "REQUESTS", "OK", "REFUSED", "ERRORS", "SPENT ρ"
    );
    for ((tenant, model), g) in &groups {
        let reasons: Vec<String> = g
            .refused
            .iter()
            .chain(g.errors.iter())
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        println!(
            "{:<tw$}  {:<mw$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>10}  {}",
            tenant,
            model,
            g.requests,
            g.ok,
            g.refused.values().sum::<u64>(),
            g.errors.values().sum::<u64>(),
            g.spent_nano_rho as f64 / 1e9,
            reasons.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a checkpoint from a file holding the checkpoint object, a receipt (`{"checkpoint":
/// …}`) or a whole response (`{"audit": {"checkpoint": …}}`).
fn read_checkpoint_file(path: &Path) -> Result<Checkpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoint file {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let candidates = [&v, &v["checkpoint"], &v["audit"]["checkpoint"]];
    let found = candidates
        .into_iter()
        .find(|c| c.get("tree_size").is_some())
        .with_context(|| format!("{} holds no audit checkpoint", path.display()))?;
    Checkpoint::from_value(found).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn prove(
    dir: &Path,
    index: Option<u64>,
    consistency_from: Option<u64>,
    checkpoint: Option<&Path>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let mut leaves: Vec<cloister_audit::merkle::Hash> = Vec::new();
    let mut entry = None;
    let log = for_each_entry(dir, |e| {
        leaves.push(e.entry.leaf);
        if Some(e.entry.index) == index {
            entry = Some(e.line);
        }
    })
    .with_context(|| {
        format!(
            "the audit log in {} does not verify; run `cloister audit verify` for details",
            dir.display()
        )
    })?;
    // After retention the leaves start at the pruned prefix, whose frontier stands in for it.
    let source = PrunedLeaves {
        prefix: &log.prefix,
        leaves: &leaves,
    };
    let held = checkpoint.map(read_checkpoint_file).transpose()?;
    let text = match (index, consistency_from, held) {
        (Some(index), None, Some(cp)) => {
            let size = cp.tree_size;
            let root = source.root_at(size).with_context(|| {
                format!(
                    "the log in {} does not hold the {size} records the checkpoint covers \
                     (truncated or rolled back)",
                    dir.display()
                )
            })?;
            if root != cp.root {
                println!(
                    "FAILED: the log's first {size} records have Merkle root {} but the \
                     checkpoint signed {}: records it covers were changed or removed",
                    hex::encode(root),
                    hex::encode(cp.root)
                );
                return Ok(ExitCode::FAILURE);
            }
            if index >= size {
                bail!("record {index} is not covered by the checkpoint ({size} records)");
            }
            let proof = source.inclusion_proof(index, size)?;
            InclusionProof {
                index,
                entry: entry.context("the record is not in the log")?,
                proof,
                checkpoint: cp,
            }
            .to_json_pretty()
        }
        (_, Some(old), _) => {
            ConsistencyProof::build_pruned(source, &log.checkpoints, old)?.to_json_pretty()
        }
        (Some(index), None, None) => {
            InclusionProof::build_pruned(source, entry, &log.checkpoints, index)?.to_json_pretty()
        }
        (None, None, _) => bail!("pass --index N or --consistency-from SIZE"),
    } + "\n";
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_proof(file: &Path, trust: &Trust, hash: Option<&str>) -> Result<ExitCode> {
    let trusted = trusted_keys(trust)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read proof file {}", file.display()))?;
    if text.contains(CONSISTENCY_FORMAT) {
        return verify_consistency_proof(&text, &trusted);
    }
    let proof = match InclusionProof::from_json(&text) {
        Ok(p) => p,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let entry = match proof.verify(&trusted) {
        Ok(e) => e,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(want) = hash {
        if !want.trim().eq_ignore_ascii_case(&hex::encode(entry.hash)) {
            println!(
                "FAILED: the record's chain hash is {} but the receipt says {}",
                hex::encode(entry.hash),
                want.trim()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let r = &entry.record;
    let cp = &proof.checkpoint;
    println!(
        "record {} ({} tenant={} model={} outcome={}) is in log {:?} of {} record(s)",
        entry.index,
        format_time(r.time_unix_ms),
        r.tenant.as_deref().unwrap_or("-"),
        r.model.as_deref().unwrap_or("-"),
        outcome_text(&r.outcome),
        cp.log_id,
        cp.tree_size
    );
    println!(
        "checkpoint signed {} by key {}",
        format_time(cp.time_unix_ms),
        hex::encode(cp.key)
    );
    println!("key: {}", trust_note(&trusted));
    println!("OK");
    Ok(ExitCode::SUCCESS)
}

fn verify_consistency_proof(text: &str, trusted: &[[u8; 32]]) -> Result<ExitCode> {
    let proof = match ConsistencyProof::from_json(text) {
        Ok(p) => p,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(e) = proof.verify(trusted) {
        println!("FAILED: {e}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "the checkpoint of {} record(s) signed {} extends the checkpoint of {} record(s) signed \
         {} in log {:?}: the log was only appended to",
        proof.new.tree_size,
        format_time(proof.new.time_unix_ms),
        proof.old.tree_size,
        format_time(proof.old.time_unix_ms),
        proof.new.log_id
    );
    println!("keys: {}", trust_note(trusted));
    println!("OK");
    Ok(ExitCode::SUCCESS)
}

/// Fails unless `dir` looks like an audit directory (for friendlier errors). After retention
/// the first segment may be a later one than `audit-000001.log`.
pub fn check_dir(dir: &Path) -> Result<()> {
    let has_segment = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
            })
        })
        .unwrap_or(false);
    if !has_segment {
        bail!(
            "{} is not an audit directory (no audit-NNNNNN.log segment)",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parsing_and_formatting_round_trip() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time("2024-02-29T00:00").unwrap(), 1_709_164_800_000);
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        for bad in ["yesterday", "2024-13-01", "2024-01-01T25:00", "2024-01"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
