//! MiniLM (all-MiniLM-L6-v2) latency with the load-time graph passes on and off, in one run.
//!
//! Why a plain harness: the comparison needs the two loads side by side, interleaved run by
//! run so machine noise hits both alike, and the node counts and output agreement printed with
//! the timings; nothing else. Usage:
//!
//! ```text
//! cargo bench -p cloister-engine --bench minilm -- [MODEL_DIR] [RUNS]
//! ```
//!
//! `MODEL_DIR` holds `model.onnx` and `tokenizer.json` as `scripts/export_minilm.py --out`
//! writes them (default: the newest `parity-models-*/minilm` under the cargo target dir, which
//! the parity suite generates). `RUNS` defaults to 20.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloister_engine::{LoadOptions, Model, OpRegistry, Tensor};

/// The sentences the parity suite uses.
const SENTENCES: [&str; 4] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
];

fn default_dir() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&target)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("parity-models-")
        })
        .map(|e| e.path().join("minilm"))
        .filter(|p| p.join("model.onnx").exists())
        .filter_map(|p| Some((p.join("model.onnx").metadata().ok()?.modified().ok()?, p)))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

fn inputs(dir: &Path) -> Vec<(String, Tensor)> {
    let tokenizer =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
    let mut tokenizer = tokenizer;
    tokenizer.with_padding(Some(tokenizers::PaddingParams::default()));
    let enc = tokenizer
        .encode_batch(SENTENCES.to_vec(), true)
        .expect("tokenize");
    let (n, len) = (enc.len(), enc[0].get_ids().len());
    let field = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| {
        let data = enc
            .iter()
            .flat_map(|e| f(e).iter().map(|&v| i64::from(v)))
            .collect();
        Tensor::from_i64(vec![n, len], data).unwrap()
    };
    vec![
        ("input_ids".into(), field(&|e| e.get_ids())),
        ("attention_mask".into(), field(&|e| e.get_attention_mask())),
        ("token_type_ids".into(), field(&|e| e.get_type_ids())),
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args
        .first()
        .map(PathBuf::from)
        .or_else(default_dir)
        .expect("no MiniLM model: pass MODEL_DIR or run the parity suite first");
    let runs: usize = args.get(1).map_or(20, |r| r.parse().expect("RUNS"));
    let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    let load = |optimize: bool| {
        let t = Instant::now();
        let m = Model::from_bytes_with(
            &bytes,
            &OpRegistry::standard(),
            &LoadOptions {
                optimize,
                ..Default::default()
            },
        )
        .expect("load");
        (m, t.elapsed())
    };
    let (plain, plain_load) = load(false);
    let (fused, fused_load) = load(true);
    let feeds = inputs(&dir);
    println!(
        "MiniLM {} (batch {:?}), {runs} runs each, interleaved",
        dir.display(),
        feeds[0].1.shape()
    );
    for (label, m, t) in [
        ("passes off", &plain, plain_load),
        ("passes on", &fused, fused_load),
    ] {
        println!(
            "  {label}: {} nodes, load {t:.1?}, passes {:?}",
            m.graph().nodes.len(),
            m.pass_report()
        );
    }
    // Warm up, and check both give the same embeddings.
    let a = plain.run(feeds.clone()).expect("run");
    let b = fused.run(feeds.clone()).expect("run");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let (x, y) = (x.as_f32().unwrap(), y.as_f32().unwrap());
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let delta = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        println!("  {name}: max |off - on| / scale = {:.2e}", delta / scale);
    }
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        plain.run(feeds.clone()).expect("run");
        off.push(t.elapsed());
        let t = Instant::now();
        fused.run(feeds.clone()).expect("run");
        on.push(t.elapsed());
    }
    let (mo, mn) = (median(off.clone()), median(on.clone()));
    println!(
        "  passes off: median {mo:.2?} (min {:.2?})",
        off.iter().min().unwrap()
    );
    println!(
        "  passes on:  median {mn:.2?} (min {:.2?})",
        on.iter().min().unwrap()
    );
    println!(
        "  speed-up (median): {:.2}x",
        mo.as_secs_f64() / mn.as_secs_f64()
    );
}
