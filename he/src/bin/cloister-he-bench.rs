//! `cloister-he-bench`: measure key generation, encryption, encrypted evaluation and
//! decryption of the digits program on this machine, check every row bit for bit against the
//! plaintext reference, and print a Markdown table for BENCHMARKS.md.
//!
//! Usage: `cloister-he-bench [ROWS] [PROGRAM] [HELDOUT]` (defaults: 10 rows, the committed
//! `models/digits-he/program.json` and `models/digits/heldout.json`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cloister_he::client::generate_keys;
use cloister_he::program::argmax;
use cloister_he::server::Evaluator;
use cloister_he::{plaintext, Program};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rows: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let program_path = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/digits-he/program.json"));
    let heldout_path = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/digits/heldout.json"));
    let program = Program::load(&program_path)?;
    let heldout: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(heldout_path)?)?;
    let inputs = heldout["input"].as_array().ok_or("heldout.input")?;
    let labels = heldout["labels"].as_array().ok_or("heldout.labels")?;

    let t = Instant::now();
    let keys = generate_keys(&mut |line| eprintln!("{line}"))?;
    let keygen = t.elapsed();
    let t = Instant::now();
    let evaluator = Evaluator::from_compressed_bytes(&keys.server_key_bytes)?;
    let load = t.elapsed();

    let (mut enc, mut eval, mut dec) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut pbs, mut correct) = (0usize, 0usize);
    let rows = rows.min(inputs.len());
    for row in 0..rows {
        let raw: Vec<f64> = inputs[row]
            .as_array()
            .ok_or("row")?
            .iter()
            .map(|x| x.as_f64().ok_or("number"))
            .collect::<Result<_, _>>()?;
        let q = program.quantize(&raw)?;
        let expected = plaintext::evaluate(&program, &q)?;

        let t = Instant::now();
        let ct = keys.client.encrypt(&program, &q)?;
        enc += t.elapsed();
        let t = Instant::now();
        let scores = evaluator.evaluate(&program, &ct)?;
        let e = t.elapsed();
        eval += e;
        pbs += scores.pbs_count;
        let t = Instant::now();
        let got = keys.client.decrypt(&program, &scores)?;
        dec += t.elapsed();
        if got != expected {
            return Err(format!("row {row}: encrypted {got:?} != plaintext {expected:?}").into());
        }
        let label = labels[row].as_u64().ok_or("label")? as usize;
        correct += usize::from(argmax(&got) == Some(label));
        eprintln!(
            "row {row}: {:.2} s, {} PBS, bit-exact",
            e.as_secs_f64(),
            scores.pbs_count
        );
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / rows.max(1) as f64;
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| key generation (client key + compressed server key + serialisation) | {:.2} s (client key {:.3} s, compressed server key {:.2} s) |",
        keygen.as_secs_f64(),
        keys.timings.client_key.as_secs_f64(),
        keys.timings.compressed_server_key.as_secs_f64()
    );
    println!(
        "| compressed server key size | {:.1} MiB ({} bytes) |",
        keys.server_key_bytes.len() as f64 / (1024.0 * 1024.0),
        keys.server_key_bytes.len()
    );
    println!(
        "| server key deserialise + check + decompress | {:.2} s |",
        load.as_secs_f64()
    );
    println!("| encrypt one row (64 blocks) | {:.1} ms |", per(enc));
    println!("| evaluate one row (10 classes) | {:.0} ms |", per(eval));
    println!(
        "| bootstraps per row | {:.0} |",
        pbs as f64 / rows.max(1) as f64
    );
    println!("| decrypt one row (10 scores) | {:.2} ms |", per(dec));
    println!(
        "| rows, all bit-exact with the plaintext reference | {rows} ({correct} correct labels) |"
    );
    println!("| rayon threads | {} |", rayon::current_num_threads());
    Ok(())
}
