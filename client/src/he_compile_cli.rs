//! `cloister he compile`: an ONNX float model plus calibration rows → the integer program
//! homomorphic mode evaluates (`cloister-he-program/v2`), proved exact at compile time by the
//! same `Program::analyse` the enclave runs at load.
//!
//! Runs locally, no service: the model owner compiles, inspects the printed parameters, PBS
//! count and accuracy, and ships the program file. Accuracy is shown on the calibration rows
//! and, with `--heldout FILE`, on rows the search never saw.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use cloister_he::compile::{self, Accuracy, Calibration, CompileOptions};

/// `cloister he …`.
#[derive(Subcommand, Debug)]
pub enum HeCommand {
    /// Compile an ONNX model (Gemm/MatMul layers with Relu between them) plus calibration data
    /// into a homomorphic integer program.
    Compile(CompileArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    /// The float ONNX model.
    #[arg(long, value_name = "MODEL.onnx")]
    pub onnx: PathBuf,
    /// Calibration rows: JSON {"input": [[...]], "labels": [...]} (labels optional), e.g. the
    /// training rows. Never the rows you report accuracy on.
    #[arg(long, value_name = "FILE.json")]
    pub calibration: PathBuf,
    /// Where to write the program (JSON).
    #[arg(long, value_name = "program.json")]
    pub out: PathBuf,
    /// Cap on integer weights, |W| <= 2^(N-1) - 1 (default 8).
    #[arg(long, value_name = "N")]
    pub weight_bits: Option<u32>,
    /// Bits per quantized input (default: the best of 4..=8 on the calibration rows).
    #[arg(long, value_name = "N")]
    pub input_bits: Option<u32>,
    /// Program name (default: the ONNX file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Class names, comma-separated (default 0, 1, …).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Also report float and quantized accuracy on these held-out rows (same JSON form).
    #[arg(long, value_name = "FILE.json")]
    pub heldout: Option<PathBuf>,
}

/// Run a `cloister he` command.
pub fn run(command: HeCommand) -> Result<ExitCode> {
    match command {
        HeCommand::Compile(args) => compile_cmd(&args),
    }
}

fn compile_cmd(args: &CompileArgs) -> Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| {
        args.onnx
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let options = CompileOptions {
        name,
        description: String::new(),
        classes: args.classes.clone(),
        weight_bits: args.weight_bits,
        input_bits: args.input_bits,
    };
    let t = Instant::now();
    let compiled = compile::compile_files(&args.onnx, &args.calibration, &options)?;
    let secs = t.elapsed().as_secs_f64();
    let program = &compiled.program;
    let p = &compiled.params;
    let a = &compiled.analysis;
    let shape: Vec<String> = std::iter::once(program.input.features)
        .chain(program.layers.iter().map(|l| l.biases.len()))
        .map(|n| n.to_string())
        .collect();
    println!(
        "compiled {} ({}) in {secs:.2} s: {} candidates built, {} passed the noise and range proof",
        args.onnx.display(),
        shape.join("-"),
        compiled.tried,
        compiled.accepted
    );
    println!(
        "  inputs:  {} bits each (calibration min/max per feature)",
        p.input_bits
    );
    println!(
        "  weights: |W| <= {} (weight bits {}); last layer max |W| {}",
        (1i64 << (p.weight_bits - 1)) - 1,
        p.weight_bits,
        p.output_weight_max
    );
    if program.layers.len() > 1 {
        println!(
            "  hidden:  window covers the {}th percentile of |z| ({}), activations 0..={} \
             (top level at the {}th percentile), low_bits {:?}",
            p.window_percentile,
            if p.per_neuron {
                "per neuron"
            } else {
                "per layer"
            },
            p.levels,
            p.level_percentile,
            program
                .layers
                .iter()
                .filter_map(|l| l.activation.as_ref().map(|a| a.low_bits))
                .collect::<Vec<_>>()
        );
    }
    println!(
        "  scores:  {} bits, {:?}; PBS per inference: {}",
        program.output.bits, program.output.decision, a.pbs_count
    );
    println!(
        "  noise:   worst bootstrap input {:.2e} of budget, worst score {:.2e} of budget",
        a.worst_pbs_noise_ratio, a.worst_output_noise_ratio
    );
    print_accuracy("calibration", &compiled.calibration);
    if let Some(path) = &args.heldout {
        let rows =
            Calibration::load(path).with_context(|| format!("held-out rows {}", path.display()))?;
        rows.check(program.input.features, program.output.classes.len())
            .with_context(|| format!("held-out rows {}", path.display()))?;
        let acc = compile::accuracy(program, &compiled.float_model, &rows)?;
        print_accuracy("held-out", &acc);
    }
    let mut text = serde_json::to_string(program)?;
    text.push('\n');
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn print_accuracy(what: &str, acc: &Accuracy) {
    match (acc.float(), acc.quantized()) {
        (Some(f), Some(q)) => println!(
            "  {what} ({} rows): float {:.2} %, quantized {:.2} %, same class {:.2} %",
            acc.rows,
            100.0 * f,
            100.0 * q,
            100.0 * acc.agreement()
        ),
        _ => println!(
            "  {what} ({} rows, no labels): quantized picks the float model's class on {:.2} %",
            acc.rows,
            100.0 * acc.agreement()
        ),
    }
}
