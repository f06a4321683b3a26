//! `cloister-he-bench`: measure key generation, key sizes, and per-inference encryption,
//! evaluation (latency, bootstraps) and decryption for every committed homomorphic model on
//! this machine; check every row bit for bit against the plaintext reference; print Markdown
//! rows for BENCHMARKS.md.
//!
//! Usage: `cloister-he-bench [ROWS]` (default 20 rows per model; the MLP uses ROWS / 4).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cloister_he::client::{generate_keys, EncryptedInput, HeClient};
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

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn heldout(path: &Path) -> Res<(Vec<Vec<f64>>, Vec<usize>)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let rows = v["input"]
        .as_array()
        .ok_or("input")?
        .iter()
        .map(|r| {
            r.as_array()
                .map(|r| r.iter().filter_map(|x| x.as_f64()).collect())
                .ok_or("row")
        })
        .collect::<Result<_, _>>()?;
    let labels = v["labels"]
        .as_array()
        .ok_or("labels")?
        .iter()
        .map(|x| x.as_u64().map(|x| x as usize).ok_or("label"))
        .collect::<Result<_, _>>()?;
    Ok((rows, labels))
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");

    let t = Instant::now();
    let keys = generate_keys(&mut |line| eprintln!("{line}"))?;
    let keygen = t.elapsed();
    let client_bytes = keys.client.to_bytes()?;
    let t = Instant::now();
    let evaluator = Evaluator::from_compressed_bytes(&keys.server_key_bytes)?;
    let load = t.elapsed();

    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| key generation (client key + compressed server key + serialisation) | {:.2} s (client key {:.3} s, compressed server key {:.2} s) |",
        keygen.as_secs_f64(),
        keys.timings.client_key.as_secs_f64(),
        keys.timings.compressed_server_key.as_secs_f64()
    );
    println!(
        "| compressed server key (uploaded once) | {:.1} MiB |",
        keys.server_key_bytes.len() as f64 / (1024.0 * 1024.0)
    );
    println!("| client key (secret) | {} bytes |", client_bytes.len());
    println!(
        "| server key deserialise + check + decompress | {:.2} s |",
        load.as_secs_f64()
    );
    println!("| rayon threads | {} |", rayon::current_num_threads());
    // One keyswitch + programmable bootstrap, single-threaded, as TFHE-rs runs it.
    let ck = tfhe::shortint::ClientKey::new(cloister_he::PARAMETERS);
    let sk = tfhe::shortint::ServerKey::new(&ck);
    let lut = sk.generate_lookup_table(|x| x);
    let ct = ck.encrypt(1);
    let _ = sk.apply_lookup_table(&ct, &lut);
    let t = Instant::now();
    for _ in 0..10 {
        let _ = sk.apply_lookup_table(&ct, &lut);
    }
    println!(
        "| one keyswitch + PBS (1 thread; shortint's own call / the evaluator's) | {:.1} ms / {:.1} ms |",
        t.elapsed().as_secs_f64() * 100.0,
        evaluator.time_pbs(10).as_secs_f64() * 100.0
    );
    println!();
    println!("| model | rows (all bit-exact) | accuracy on those rows | PBS / inference | encrypt | evaluate (server) | decrypt | upload | download |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (model, held, n) in [
        (
            "breast-cancer-lr",
            "models/breast-cancer-lr/heldout.json",
            rows,
        ),
        ("digits-he", "models/digits/heldout.json", rows),
        (
            "digits-mlp-he",
            "models/digits/heldout.json",
            (rows / 4).max(1),
        ),
    ] {
        let program = Program::load(&root.join("models").join(model).join("program.json"))?;
        let (inputs, labels) = heldout(&root.join(held))?;
        bench_model(
            model,
            &program,
            &keys.client,
            &evaluator,
            &inputs,
            &labels,
            n,
        )?;
    }
    Ok(())
}

fn bench_model(
    model: &str,
    program: &Program,
    client: &HeClient,
    evaluator: &Evaluator,
    inputs: &[Vec<f64>],
    labels: &[usize],
    rows: usize,
) -> Res<()> {
    let (mut enc, mut eval, mut dec) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut pbs, mut correct, mut up, mut down) = (0usize, 0usize, 0usize, 0usize);
    let rows = rows.min(inputs.len());
    for row in 0..rows {
        let q = program.quantize(&inputs[row])?;
        let expected = plaintext::evaluate(program, &q)?;
        let t = Instant::now();
        let ct = client.encrypt(program, &q)?;
        let bytes = ct.to_bytes();
        enc += t.elapsed();
        up += bytes.len();
        let t = Instant::now();
        let received = EncryptedInput::from_bytes(&bytes)?;
        let scores = evaluator.evaluate(program, &received)?;
        let e = t.elapsed();
        eval += e;
        pbs += scores.pbs_count;
        down += scores.to_bytes().len();
        let t = Instant::now();
        let got = client.decrypt(program, &scores)?;
        dec += t.elapsed();
        if got != expected {
            return Err(
                format!("{model} row {row}: encrypted {got:?} != plaintext {expected:?}").into(),
            );
        }
        correct += usize::from(program.decide(&got) == Some(labels[row]));
        eprintln!(
            "{model} row {row}: {:.2} ms, {} PBS, bit-exact",
            e.as_secs_f64() * 1e3,
            scores.pbs_count
        );
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / rows.max(1) as f64;
    let fmt = |ms: f64| {
        if ms >= 100.0 {
            format!("{:.0} ms", ms)
        } else {
            format!("{:.2} ms", ms)
        }
    };
    println!(
        "| {model} | {rows} | {:.1} % | {} | {} | {} | {} | {:.1} KiB | {:.1} KiB |",
        100.0 * correct as f64 / rows.max(1) as f64,
        pbs / rows.max(1),
        fmt(per(enc)),
        fmt(per(eval)),
        fmt(per(dec)),
        up as f64 / 1024.0 / rows.max(1) as f64,
        down as f64 / 1024.0 / rows.max(1) as f64,
    );
    Ok(())
}
