//! ONNX external data and memory-mapped weights (`engine/src/onnx/external.rs`).
//!
//! - A model saved by the `onnx` package with `save_as_external_data=True` gives bit-identical
//!   outputs to the same model saved inline, and its large weight is used in place from the
//!   mapped file.
//! - Every bad reference (absolute path, `..`, a symlink out of the directory, a range beyond
//!   the file, a length that does not match the shape, a wrong checksum, a directory, a missing
//!   file, no directory at all) is a typed error naming the tensor.
//! - A 64 MiB external weight loads and runs without the process's anonymous memory growing by
//!   anything like 64 MiB (the same weight inline does grow it: the measurement can fail).
//! - Rewriting a mapped weight (Conv+BatchNormalization folding, copy-on-write through the
//!   tensor API) never writes to the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use cloister_engine::graph::ValueSource;
use cloister_engine::onnx::external::ExternalDataError;
use cloister_engine::onnx::proto::{StringStringEntryProto, TensorProto};
use cloister_engine::{EngineError, LoadOptions, Model, OpRegistry, Tensor};
use common::{f32_init, model, node, vi, D, FLOAT};

/// Every test holds this lock: the memory test measures the whole process, so nothing else
/// may allocate while it runs.
static MEMORY: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

const EXTERNAL: i32 = 1;

/// A float32 initializer whose data lives at `entries` (key/value pairs of `external_data`).
fn ext(name: &str, dims: &[i64], entries: &[(&str, String)]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        data_location: Some(EXTERNAL),
        external_data: entries
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.clone()),
            })
            .collect(),
        ..Default::default()
    }
}

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `Y = X + W` for `W: float32 [n]` given by `w`.
fn add_model(n: i64, w: TensorProto) -> Vec<u8> {
    model(
        vec![node("Add", &["X", "W"], &["Y"], vec![])],
        vec![w],
        vec![vi("X", FLOAT, &[D::N(n)])],
        vec![vi("Y", FLOAT, &[D::N(n)])],
        17,
    )
}

fn write_model(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn initializer(m: &Model, name: &str) -> Tensor {
    let g = m.graph();
    let v = g
        .values
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no value {name:?}"));
    match &v.source {
        ValueSource::Initializer(t) => (**t).clone(),
        other => panic!("{name:?} is not an initializer: {other:?}"),
    }
}

fn run1(m: &Model, name: &str, x: Tensor) -> Tensor {
    m.run(vec![(name.to_string(), x)])
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .1
}

#[test]
fn small_external_tensor_loads_with_the_right_values() {
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    // Tensor at offset 8 of a file with other bytes around it.
    let mut file = vec![0xAAu8; 8];
    file.extend(le(&[1.0, 2.0, 3.0, 4.0]));
    file.extend([0xBB; 5]);
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/w.bin"), &file).unwrap();
    let w = ext(
        "W",
        &[4],
        &[
            ("location", "weights/w.bin".into()),
            ("offset", "8".into()),
            ("length", "16".into()),
        ],
    );
    let path = write_model(dir.path(), &add_model(4, w));
    let m = Model::load(&path).unwrap();
    let w = initializer(&m, "W");
    assert!(!w.is_shared(), "tensors under 1 MiB are copied");
    assert_eq!(w.as_f32().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
    let y = run1(
        &m,
        "X",
        Tensor::from_f32(vec![4], vec![10.0, 20.0, 30.0, 40.0]).unwrap(),
    );
    assert_eq!(y.as_f32().unwrap(), &[11.0, 22.0, 33.0, 44.0]);

    // Without `length`, the rest of the file is the tensor.
    std::fs::write(dir.path().join("rest.bin"), le(&[5.0, 6.0, 7.0, 8.0])).unwrap();
    let w = ext("W", &[4], &[("location", "rest.bin".into())]);
    let path = write_model(dir.path(), &add_model(4, w));
    let m = Model::load(&path).unwrap();
    assert_eq!(
        initializer(&m, "W").as_f32().unwrap(),
        &[5.0, 6.0, 7.0, 8.0]
    );
}

/// Loads `Y = X + W` with `W: float32 [4]` external as given; returns the error.
fn load_err(dir: &Path, entries: &[(&str, String)]) -> EngineError {
    let path = write_model(dir, &add_model(4, ext("W", &[4], entries)));
    let err = Model::load(&path).expect_err("the model must be refused");
    let text = err.to_string();
    assert!(
        text.contains("tensor \"W\""),
        "the error must name the tensor: {text}"
    );
    err
}

fn root_of(err: &EngineError) -> &ExternalDataError {
    match err.root() {
        EngineError::ExternalData(e) => e,
        other => panic!("expected an external-data error, got {other:?}"),
    }
}

#[test]
fn bad_references_are_typed_errors_naming_the_tensor() {
    let _serial = lock();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("model");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let sixteen = le(&[1.0, 2.0, 3.0, 4.0]);
    std::fs::write(dir.join("w.bin"), &sixteen).unwrap();
    std::fs::write(outside.join("secret.bin"), &sixteen).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("escape.bin")).unwrap();
    std::os::unix::fs::symlink(dir.join("w.bin"), dir.join("inside.bin")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("outdir")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    let loc = |l: &str| ("location", l.to_string());

    // A symlink that stays inside the directory is fine.
    let path = write_model(&dir, &add_model(4, ext("W", &[4], &[loc("inside.bin")])));
    assert_eq!(
        initializer(&Model::load(&path).unwrap(), "W")
            .as_f32()
            .unwrap(),
        &[1.0, 2.0, 3.0, 4.0]
    );

    let abs = outside.join("secret.bin").display().to_string();
    let e = load_err(&dir, &[loc(&abs)]);
    assert!(
        matches!(root_of(&e), ExternalDataError::AbsolutePath { .. }),
        "{e}"
    );

    let e = load_err(&dir, &[loc("../outside/secret.bin")]);
    assert!(
        matches!(root_of(&e), ExternalDataError::ParentComponent { .. }),
        "{e}"
    );
    let e = load_err(&dir, &[loc("sub/../../outside/secret.bin")]);
    assert!(
        matches!(root_of(&e), ExternalDataError::ParentComponent { .. }),
        "{e}"
    );

    let e = load_err(&dir, &[loc("escape.bin")]);
    assert!(
        matches!(root_of(&e), ExternalDataError::EscapesDirectory { .. }),
        "{e}"
    );
    let e = load_err(&dir, &[loc("outdir/secret.bin")]);
    assert!(
        matches!(root_of(&e), ExternalDataError::EscapesDirectory { .. }),
        "{e}"
    );

    let e = load_err(&dir, &[loc("sub")]);
    assert!(
        matches!(root_of(&e), ExternalDataError::NotAFile { .. }),
        "{e}"
    );
    let e = load_err(&dir, &[loc("missing.bin")]);
    assert!(matches!(root_of(&e), ExternalDataError::Io { .. }), "{e}");
    let e = load_err(&dir, &[("offset", "0".into())]);
    assert!(
        matches!(root_of(&e), ExternalDataError::MissingLocation),
        "{e}"
    );
    let e = load_err(&dir, &[loc("w.bin"), ("offset", "x".into())]);
    assert!(
        matches!(root_of(&e), ExternalDataError::BadNumber { .. }),
        "{e}"
    );

    // Ranges: offset past the end, offset + length past the end, an overflowing sum.
    for (offset, length) in [
        ("17", None),
        ("4", Some("16")),
        ("8", Some("18446744073709551615")),
    ] {
        let mut entries = vec![loc("w.bin"), ("offset", offset.to_string())];
        if let Some(l) = length {
            entries.push(("length", l.to_string()));
        }
        let e = load_err(&dir, &entries);
        assert!(
            matches!(root_of(&e), ExternalDataError::OutOfRange { .. }),
            "{e}"
        );
    }

    // Lengths that do not match float32 [4] (16 bytes): declared, or the rest of the file.
    let e = load_err(&dir, &[loc("w.bin"), ("length", "12".into())]);
    assert!(
        matches!(
            root_of(&e),
            ExternalDataError::LengthMismatch {
                expected: 16,
                got: 12,
                ..
            }
        ),
        "{e}"
    );
    let e = load_err(&dir, &[loc("w.bin"), ("offset", "4".into())]);
    assert!(
        matches!(
            root_of(&e),
            ExternalDataError::LengthMismatch { got: 12, .. }
        ),
        "{e}"
    );

    // Checksums: the right SHA-1 loads, a wrong one is refused.
    let sha1 = python_sha1(&dir.join("w.bin"));
    let path = write_model(
        &dir,
        &add_model(
            4,
            ext("W", &[4], &[loc("w.bin"), ("checksum", sha1.clone())]),
        ),
    );
    Model::load(&path).unwrap();
    let mut wrong = sha1.into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let e = load_err(
        &dir,
        &[
            loc("w.bin"),
            ("checksum", String::from_utf8(wrong).unwrap()),
        ],
    );
    assert!(
        matches!(root_of(&e), ExternalDataError::ChecksumMismatch { .. }),
        "{e}"
    );

    // From bytes there is no directory: refused, naming the tensor.
    let bytes = add_model(4, ext("W", &[4], &[loc("w.bin")]));
    let e = Model::from_bytes(&bytes).unwrap_err();
    assert!(e.to_string().contains("tensor \"W\""), "{e}");
    assert!(
        matches!(root_of(&e), ExternalDataError::NoBaseDirectory),
        "{e}"
    );
    // ... unless the caller names one.
    Model::from_bytes_in_dir(
        &bytes,
        &dir,
        &OpRegistry::standard(),
        &LoadOptions::default(),
    )
    .unwrap();
}

/// SHA-1 of a file, computed by Python's hashlib (an independent implementation).
fn python_sha1(path: &Path) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha1(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(path)
        .output()
        .expect("python3 starts (run scripts/install-deps.sh)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Builds the same model twice with the `onnx` package: inline, and with
/// `save_as_external_data=True` (all tensors in `weights.bin`).
const SAVE_BOTH: &str = r#"
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(7)
w1 = (rng.standard_normal((256, 1024)) / 16).astype(np.float32)  # 1 MiB: mapped
b1 = rng.standard_normal(1024).astype(np.float32)                 # 4 KiB: copied
w2 = (rng.standard_normal((1024, 16)) / 32).astype(np.float32)
h16 = rng.standard_normal(16).astype(np.float16)
shape = np.array([4, 4], dtype=np.int64)
inits = [
    numpy_helper.from_array(w1, "W1"),
    numpy_helper.from_array(b1, "B1"),
    numpy_helper.from_array(w2, "W2"),
    numpy_helper.from_array(h16, "H16"),
    numpy_helper.from_array(shape, "shape"),
]
nodes = [
    helper.make_node("MatMul", ["X", "W1"], ["m1"]),
    helper.make_node("Add", ["m1", "B1"], ["a1"]),
    helper.make_node("Relu", ["a1"], ["r1"]),
    helper.make_node("MatMul", ["r1", "W2"], ["m2"]),
    helper.make_node("Cast", ["H16"], ["h32"], to=TensorProto.FLOAT),
    helper.make_node("Add", ["m2", "h32"], ["a2"]),
    helper.make_node("Reshape", ["a2", "shape"], ["Y"]),
]
graph = helper.make_graph(
    nodes, "external",
    [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 256])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 4])],
    inits,
)
m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(m)
onnx.save_model(m, out + "/inline.onnx")
onnx.save_model(
    m, out + "/ext/model.onnx", save_as_external_data=True,
    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0,
)
"#;

#[test]
fn onnx_saved_external_data_matches_the_inline_model() {
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ext")).unwrap();
    let out = Command::new(python())
        .args(["-c", SAVE_BOTH])
        .arg(dir.path())
        .output()
        .expect("python3 starts (run scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "the onnx package must be installed (scripts/install-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ext_path = dir.path().join("ext/model.onnx");
    let ext_bytes = std::fs::read(&ext_path).unwrap();
    assert!(
        ext_bytes.len() < 4096,
        "the weights are not in the model file"
    );

    let x = Tensor::from_f32(
        vec![1, 256],
        (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect(),
    )
    .unwrap();
    for optimize in [false, true] {
        let options = LoadOptions {
            optimize,
            ..Default::default()
        };
        let reg = OpRegistry::standard();
        let inline = Model::load_with(&dir.path().join("inline.onnx"), &reg, &options).unwrap();
        let external = Model::load_with(&ext_path, &reg, &options).unwrap();
        let a = run1(&inline, "X", x.clone());
        let b = run1(&external, "X", x.clone());
        assert_eq!(a.shape(), &[4, 4]);
        assert_eq!(
            a.as_f32().unwrap(),
            b.as_f32().unwrap(),
            "optimize={optimize}"
        );
        if !optimize {
            let w1 = initializer(&external, "W1");
            assert!(w1.is_shared(), "a 1 MiB float32 weight is used in place");
            assert_eq!(w1, initializer(&inline, "W1"));
            assert!(!initializer(&external, "B1").is_shared());
            assert!(!initializer(&inline, "W1").is_shared());
        }
    }

    // The same bytes without their directory are refused, naming the first external tensor.
    let e = Model::from_bytes(&ext_bytes).unwrap_err();
    assert!(matches!(root_of(&e), ExternalDataError::NoBaseDirectory));
    assert!(e.to_string().contains("tensor \"W1\""), "{e}");
}

#[test]
fn misaligned_and_bool_weights_are_copied_not_mapped() {
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let n = 300_000usize; // 1.2 MB of float32: over the mapping threshold
    let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let mut file = vec![0u8; 2]; // offset 2: not 4-aligned
    file.extend(le(&values));
    std::fs::write(dir.path().join("w.bin"), &file).unwrap();
    let w = ext(
        "W",
        &[n as i64],
        &[("location", "w.bin".into()), ("offset", "2".into())],
    );
    let path = write_model(dir.path(), &add_model(n as i64, w));
    let m = Model::load(&path).unwrap();
    let w = initializer(&m, "W");
    assert!(!w.is_shared());
    assert_eq!(w.as_f32().unwrap(), &values[..]);

    // Aligned, the same values are mapped.
    std::fs::write(dir.path().join("w.bin"), &file[2..]).unwrap();
    let w = ext("W", &[n as i64], &[("location", "w.bin".into())]);
    let path = write_model(dir.path(), &add_model(n as i64, w));
    let m = Model::load(&path).unwrap();
    let w = initializer(&m, "W");
    assert!(w.is_shared());
    assert_eq!(w.as_f32().unwrap(), &values[..]);
}

/// `RssAnon` of this process in KiB: memory the process allocated itself (file-backed pages of
/// a mapping are `RssFile`).
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}

#[test]
fn a_64_mib_weight_is_mapped_not_copied() {
    let _serial = lock();
    const N: usize = 4096; // W: float32 [4096, 4096] = 64 MiB
    let dir = tempfile::tempdir().unwrap();
    let w: Vec<f32> = (0..N * N)
        .map(|i| ((i % 1013) as f32 - 506.0) / 4096.0)
        .collect();
    let bytes = le(&w);
    std::fs::write(dir.path().join("w.bin"), &bytes).unwrap();
    let x: Vec<f32> = (0..N).map(|i| ((i % 7) as f32 - 3.0) / 8.0).collect();
    // y[j] = Σ_i x[i] w[i, j], computed here in f64 as the reference.
    let mut reference = vec![0f64; N];
    for (i, &xi) in x.iter().enumerate() {
        for (j, r) in reference.iter_mut().enumerate() {
            *r += f64::from(xi) * f64::from(w[i * N + j]);
        }
    }
    let matmul = |w: TensorProto| {
        model(
            vec![node("MatMul", &["X", "W"], &["Y"], vec![])],
            vec![w],
            vec![vi("X", FLOAT, &[D::N(1), D::N(N as i64)])],
            vec![vi("Y", FLOAT, &[D::N(1), D::N(N as i64)])],
            17,
        )
    };
    let path = write_model(
        dir.path(),
        &matmul(ext(
            "W",
            &[N as i64, N as i64],
            &[("location", "w.bin".into())],
        )),
    );
    let inline_path = dir.path().join("inline.onnx");
    std::fs::write(
        &inline_path,
        matmul(f32_init("W", &[N as i64, N as i64], &w)),
    )
    .unwrap();
    drop(w);
    drop(bytes);
    let file_kib = (N * N * 4 / 1024) as u64;

    let before = rss_anon_kib();
    let m = Model::load(&path).unwrap();
    let loaded = rss_anon_kib();
    assert!(initializer(&m, "W").is_shared());
    assert_eq!(m.mapped_weight_bytes(), N * N * 4);
    let y = run1(&m, "X", Tensor::from_f32(vec![1, N], x.clone()).unwrap());
    let ran = rss_anon_kib();
    let got = y.as_f32().unwrap();
    for (g, r) in got.iter().zip(&reference) {
        assert!(
            (f64::from(*g) - r).abs() <= 1e-3 * (1.0 + r.abs()),
            "{g} vs {r}"
        );
    }
    eprintln!(
        "external 64 MiB weight: RssAnon +{} KiB at load, +{} KiB after a run (file {file_kib} KiB)",
        loaded.saturating_sub(before),
        ran.saturating_sub(before)
    );
    assert!(
        loaded.saturating_sub(before) < file_kib / 4,
        "loading grew anonymous memory by {} KiB for a {file_kib} KiB mapped weight",
        loaded - before
    );
    assert!(
        ran.saturating_sub(before) < file_kib / 4,
        "running grew anonymous memory by {} KiB for a {file_kib} KiB mapped weight",
        ran - before
    );
    drop(m);

    // Control: the same weight inline is decoded into owned memory, so the measurement above
    // would have caught a copy.
    let before = rss_anon_kib();
    let m = Model::load(&inline_path).unwrap();
    let grown = rss_anon_kib().saturating_sub(before);
    eprintln!("inline 64 MiB weight: RssAnon +{grown} KiB at load");
    assert!(!initializer(&m, "W").is_shared());
    assert_eq!(m.mapped_weight_bytes(), 0);
    assert!(
        grown >= file_kib * 3 / 4,
        "the inline weight grew anonymous memory by only {grown} KiB"
    );
}

/// Conv [256, 256, 2, 2] (1 MiB, mapped) followed by BatchNormalization, which the load-time
/// passes fold into new Conv weights.
fn conv_bn_model(dir: &Path) -> PathBuf {
    let (co, ci) = (256usize, 256usize);
    let weights: Vec<f32> = (0..co * ci * 4)
        .map(|i| ((i % 97) as f32 - 48.0) / 200.0)
        .collect();
    std::fs::write(dir.join("conv.bin"), le(&weights)).unwrap();
    let per_channel = |name: &str, f: &dyn Fn(usize) -> f32| {
        f32_init(name, &[co as i64], &(0..co).map(f).collect::<Vec<_>>())
    };
    let bytes = model(
        vec![
            node("Conv", &["X", "W"], &["c"], vec![]),
            node(
                "BatchNormalization",
                &["c", "scale", "bias", "mean", "var"],
                &["Y"],
                vec![],
            ),
        ],
        vec![
            ext(
                "W",
                &[co as i64, ci as i64, 2, 2],
                &[("location", "conv.bin".into())],
            ),
            per_channel("scale", &|i| 0.5 + i as f32 / 256.0),
            per_channel("bias", &|i| i as f32 / 100.0 - 1.0),
            per_channel("mean", &|i| (i % 5) as f32 / 10.0),
            per_channel("var", &|i| 1.0 + (i % 3) as f32),
        ],
        vec![vi(
            "X",
            FLOAT,
            &[D::N(1), D::N(ci as i64), D::N(3), D::N(3)],
        )],
        vec![vi(
            "Y",
            FLOAT,
            &[D::N(1), D::N(co as i64), D::N(2), D::N(2)],
        )],
        17,
    );
    write_model(dir, &bytes)
}

/// The name of the folded model's Conv weight (the pass gives it a new name).
fn folded_weight(m: &Model) -> &str {
    let g = m.graph();
    let conv = g
        .nodes
        .iter()
        .find(|n| n.op_type.contains("Conv"))
        .expect("a Conv node");
    &g.values[conv.inputs[1]].name
}

#[test]
fn rewriting_a_mapped_weight_never_writes_the_file() {
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let path = conv_bn_model(dir.path());
    let file_before = std::fs::read(dir.path().join("conv.bin")).unwrap();
    let reg = OpRegistry::standard();
    let plain = Model::load_with(
        &path,
        &reg,
        &LoadOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap();
    let folded = Model::load(&path).unwrap();
    assert!(initializer(&plain, "W").is_shared());
    assert!(
        folded
            .pass_report()
            .iter()
            .any(|(p, n)| p.contains("BatchNormalization") && *n > 0),
        "BatchNormalization must be folded into the Conv: {:?}",
        folded.pass_report()
    );
    assert!(!initializer(&folded, folded_weight(&folded)).is_shared());
    let x = Tensor::from_f32(
        vec![1, 256, 3, 3],
        (0..256 * 9)
            .map(|i| ((i % 11) as f32 - 5.0) / 5.0)
            .collect(),
    )
    .unwrap();
    let a = run1(&plain, "X", x.clone());
    let b = run1(&folded, "X", x);
    let scale = a.as_f32().unwrap().iter().fold(0f32, |m, v| m.max(v.abs()));
    for (p, q) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
        assert!((p - q).abs() <= 1e-5 * scale.max(1.0), "{p} vs {q}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("conv.bin")).unwrap(),
        file_before,
        "folding rewrote the weight file"
    );

    // Copy-on-write through the tensor API: the copy changes, the mapping and file do not.
    let shared = initializer(&plain, "W");
    let mut copy = shared.clone();
    for v in copy.as_mut_slice::<f32>().unwrap() {
        *v = -1.0;
    }
    assert!(!copy.is_shared());
    assert!(shared.is_shared());
    assert_eq!(shared.as_f32().unwrap()[0], -48.0 / 200.0);
    let (_, data) = shared.clone().into_parts();
    assert_eq!(data.len(), 256 * 256 * 4);
    assert_eq!(
        std::fs::read(dir.path().join("conv.bin")).unwrap(),
        file_before
    );
}
