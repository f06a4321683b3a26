//! The ONNX backend node-test runner behind `cloister conformance`.
//!
//! Why in the engine: conformance is a property of the engine, and the runner needs the same
//! decoding path as real models (so a test that passes here passes in the service). A test
//! directory holds `model.onnx` and `test_data_set_*/{input,output}_*.pb` (serialized
//! `TensorProto`s). Each test is classified:
//!
//! - **skipped** when the model uses an operator type the registry does not claim — the only
//!   reason a test may be skipped;
//! - **passed** when every data set's outputs match: same dtype, same shape, and values within
//!   `|got - want| <= atol + rtol * |want|` (NaN equals NaN, infinities must match exactly);
//! - **failed** otherwise, including load errors and panics (caught as a last line of defence;
//!   a panic is a bug to fix, and is reported as such).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;

use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::onnx::proto::{GraphProto, ModelProto};
use crate::ops::{dispatch_all, normalize_domain, OpRegistry};
use crate::tensor::{Element, Tensor, TensorData};

/// Relative tolerance used by the suite (the measurement the issue compares against).
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance used by the suite.
pub const ATOL: f64 = 1e-4;

/// What happened to one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every data set matched.
    Passed,
    /// Something did not match or did not run; the reason says what.
    Failed(String),
    /// The model uses operator types the registry does not claim (listed).
    Skipped(Vec<String>),
}

/// The result of one test directory.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The directory's name, e.g. `test_add_bcast`.
    pub name: String,
    /// Operator types the model uses (`domain:op` outside the default domain), sorted.
    pub ops: Vec<String>,
    /// The classification.
    pub outcome: Outcome,
    /// Wall time spent on the test.
    pub elapsed: Duration,
}

impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed => write!(f, "PASS {}", self.name),
            Outcome::Failed(why) => write!(f, "FAIL {}: {why}", self.name),
            Outcome::Skipped(ops) => {
                write!(f, "SKIP {} (unsupported: {})", self.name, ops.join(", "))
            }
        }
    }
}

/// Counts for one operator type over the tests that use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tests passed.
    pub passed: usize,
    /// Tests failed.
    pub failed: usize,
    /// Tests skipped.
    pub skipped: usize,
}

/// The results of a whole suite.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per test, in directory-name order.
    pub results: Vec<TestResult>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    /// Number of passed tests.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Number of failed tests.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Number of skipped tests.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// Per operator type: how the tests using it fared (a test counts for every op it uses).
    pub fn per_operator(&self) -> BTreeMap<String, Tally> {
        let mut m: BTreeMap<String, Tally> = BTreeMap::new();
        for r in &self.results {
            for op in &r.ops {
                let t = m.entry(op.clone()).or_default();
                match r.outcome {
                    Outcome::Passed => t.passed += 1,
                    Outcome::Failed(_) => t.failed += 1,
                    Outcome::Skipped(_) => t.skipped += 1,
                }
            }
        }
        m
    }

    /// The summary line: `N passed, M failed, K skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Finds the test directories under `dir`: `dir` itself if it holds `model.onnx`, else its
/// `node/` subdirectory if present, else its subdirectories that hold `model.onnx`; sorted.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("model.onnx").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let root = if dir.join("node").is_dir() {
        dir.join("node")
    } else {
        dir.to_path_buf()
    };
    let mut tests: Vec<PathBuf> = read_dir(&root)?
        .into_iter()
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    tests.sort();
    Ok(tests)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| EngineError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()).map_err(io))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Runs every test under `dir` (see [`discover`]), calling `each` after each test.
pub fn run_suite(
    dir: &Path,
    registry: &OpRegistry,
    mut each: impl FnMut(&TestResult),
) -> Result<Report> {
    let mut report = Report::default();
    for t in discover(dir)? {
        let r = run_test(&t, registry);
        each(&r);
        report.results.push(r);
    }
    Ok(report)
}

/// Runs one test directory. Never panics: a panic inside the engine is caught and reported as
/// a failure naming it.
pub fn run_test(dir: &Path, registry: &OpRegistry) -> TestResult {
    let start = Instant::now();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let (ops, outcome) = match catch_unwind(AssertUnwindSafe(|| classify(dir, registry))) {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => (Vec::new(), Outcome::Failed(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (
                Vec::new(),
                Outcome::Failed(format!("engine panicked (a bug): {msg}")),
            )
        }
    };
    TestResult {
        name,
        ops,
        outcome,
        elapsed: start.elapsed(),
    }
}

/// Operator keys used by a graph, including nested subgraphs' (`domain:op` off the default
/// domain).
fn collect_ops(g: &GraphProto, out: &mut Vec<(String, String)>) {
    for n in &g.node {
        let domain = normalize_domain(n.domain.as_deref().unwrap_or("")).to_string();
        out.push((domain, n.op_type.clone().unwrap_or_default()));
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                collect_ops(sub, out);
            }
            for sub in &a.graphs {
                collect_ops(sub, out);
            }
        }
    }
}

/// The first non-tensor value type a graph declares for an input or output, if any.
fn non_tensor_value(g: &GraphProto) -> Option<&'static str> {
    use crate::onnx::proto::type_proto::Value;
    g.input.iter().chain(&g.output).find_map(|v| {
        match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(Value::SequenceType(_)) => Some("sequence"),
            Some(Value::MapType(_)) => Some("map"),
            Some(Value::OptionalType(_)) => Some("optional"),
            Some(Value::SparseTensorType(_)) => Some("sparse tensor"),
            Some(Value::OpaqueType(_)) => Some("opaque"),
            _ => None,
        }
    })
}

fn op_label(domain: &str, op: &str) -> String {
    if domain.is_empty() {
        op.to_string()
    } else {
        format!("{domain}:{op}")
    }
}

fn classify(dir: &Path, registry: &OpRegistry) -> Result<(Vec<String>, Outcome)> {
    let bytes = read(&dir.join("model.onnx"))?;
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|e| EngineError::MalformedProtobuf(e.to_string()))?;
    let mut keys = Vec::new();
    if let Some(g) = &proto.graph {
        collect_ops(g, &mut keys);
    }
    keys.sort();
    keys.dedup();
    let ops: Vec<String> = keys.iter().map(|(d, o)| op_label(d, o)).collect();
    let missing: Vec<String> = keys
        .iter()
        .filter(|(d, o)| !registry.contains(d, o))
        .map(|(d, o)| op_label(d, o))
        .collect();
    if !missing.is_empty() {
        return Ok((ops, Outcome::Skipped(missing)));
    }
    // Sequence, map and optional values are not part of the engine's value model (tensors
    // only); a test whose graph declares one exercises that model, not the operator.
    if let Some(kind) = proto.graph.as_ref().and_then(non_tensor_value) {
        return Ok((ops, Outcome::Skipped(vec![format!("{kind} values")])));
    }
    let outcome = match check(dir, &bytes, registry) {
        Ok(()) => Outcome::Passed,
        Err(why) => Outcome::Failed(why),
    };
    Ok((ops, outcome))
}

/// Loads the model and checks every data set; the error says what went wrong where.
fn check(dir: &Path, bytes: &[u8], registry: &OpRegistry) -> std::result::Result<(), String> {
    let model =
        Model::from_bytes_with_registry(bytes, registry).map_err(|e| format!("load: {e}"))?;
    let mut sets: Vec<PathBuf> = read_dir(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test_data_set_* directory".into());
    }
    for set in sets {
        let set_name = set
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let inputs = numbered(&set, "input_").map_err(|e| format!("{set_name}: {e}"))?;
        let expected = numbered(&set, "output_").map_err(|e| format!("{set_name}: {e}"))?;
        let mut feeds = Vec::with_capacity(inputs.len());
        for (j, (name, t)) in inputs.into_iter().enumerate() {
            let name = match name {
                Some(n) if !n.is_empty() => n,
                _ => model
                    .inputs()
                    .get(j)
                    .map(|i| i.name.clone())
                    .ok_or_else(|| format!("{set_name}: input_{j}.pb has no matching input"))?,
            };
            feeds.push((name, t));
        }
        let got = model
            .run(feeds)
            .map_err(|e| format!("{set_name}: run: {e}"))?;
        if got.len() != expected.len() {
            return Err(format!(
                "{set_name}: model returned {} outputs, expected {}",
                got.len(),
                expected.len()
            ));
        }
        for (k, ((name, g), (_, want))) in got.iter().zip(&expected).enumerate() {
            compare(want, g, RTOL, ATOL)
                .map_err(|why| format!("{set_name}: output {k} ({name:?}): {why}"))?;
        }
    }
    Ok(())
}

/// Reads `PREFIX0.pb`, `PREFIX1.pb`, ... in order.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(Option<String>, Tensor)>> {
    let mut out = Vec::new();
    for j in 0.. {
        let p = dir.join(format!("{prefix}{j}.pb"));
        if !p.is_file() {
            break;
        }
        out.push(crate::onnx::decode_tensor(&read(&p)?)?);
    }
    Ok(out)
}

/// Compares an output with its expected value: same dtype, same shape, values within
/// `atol + rtol * |want|` (floats; NaN equals NaN, infinities exactly), equal otherwise.
pub fn compare(
    want: &Tensor,
    got: &Tensor,
    rtol: f64,
    atol: f64,
) -> std::result::Result<(), String> {
    if want.dtype() != got.dtype() {
        return Err(format!(
            "dtype {} but expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if want.shape() != got.shape() {
        return Err(format!(
            "shape {:?} but expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if want.dtype().is_float() || crate::lowp::is_lowp(want.dtype()) {
        let (w, g) = (as_f64(want), as_f64(got));
        for (i, (&x, &y)) in w.iter().zip(&g).enumerate() {
            let ok = if x.is_nan() || y.is_nan() {
                x.is_nan() && y.is_nan()
            } else if x.is_infinite() || y.is_infinite() {
                x == y
            } else {
                (x - y).abs() <= atol + rtol * x.abs()
            };
            if !ok {
                return Err(format!("element {i}: got {y}, expected {x}"));
            }
        }
        return Ok(());
    }
    if let (TensorData::String(w), TensorData::String(g)) = (want.data(), got.data()) {
        return match w.iter().zip(g).position(|(p, q)| p != q) {
            Some(i) => Err(format!("element {i}: got {:?}, expected {:?}", g[i], w[i])),
            None => Ok(()),
        };
    }
    if want.data() != got.data() {
        let first = || -> Result<usize> {
            dispatch_all!(want.dtype(), T => first_difference::<T>(want, got))
        };
        let i = first().unwrap_or(0);
        return Err(format!("values differ (first at element {i})"));
    }
    Ok(())
}

fn first_difference<T: Element>(a: &Tensor, b: &Tensor) -> Result<usize> {
    Ok(match (a.as_slice::<T>(), b.as_slice::<T>()) {
        (Some(x), Some(y)) => x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(0),
        _ => 0,
    })
}

/// A float tensor's values widened to `f64` (empty for other dtypes).
fn as_f64(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .as_f32()
            .map(|v| v.iter().map(|&x| f64::from(x)).collect()),
        DType::F64 => t.as_f64().map(<[f64]>::to_vec),
        DType::F16 => t
            .as_slice::<half::f16>()
            .map(|v| v.iter().map(|x| x.to_f64()).collect()),
        DType::BF16 => t
            .as_slice::<half::bf16>()
            .map(|v| v.iter().map(|x| x.to_f64()).collect()),
        d => match t.data() {
            TensorData::Bits { codes, .. } => Some(crate::lowp::to_f64(d, codes)),
            _ => None,
        },
    }
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_rules() {
        let a = Tensor::from_f32(vec![3], vec![1.0, f32::NAN, f32::INFINITY]).unwrap();
        let b = Tensor::from_f32(vec![3], vec![1.0005, f32::NAN, f32::INFINITY]).unwrap();
        assert!(compare(&a, &b, RTOL, ATOL).is_ok());
        let c = Tensor::from_f32(vec![3], vec![1.01, f32::NAN, f32::INFINITY]).unwrap();
        assert!(compare(&a, &c, RTOL, ATOL)
            .unwrap_err()
            .contains("element 0"));
        let d = Tensor::from_f32(vec![3], vec![1.0, 0.0, f32::INFINITY]).unwrap();
        assert!(compare(&a, &d, RTOL, ATOL).is_err());
        let e = Tensor::from_f32(vec![1, 3], vec![1.0, f32::NAN, f32::INFINITY]).unwrap();
        assert!(compare(&a, &e, RTOL, ATOL).unwrap_err().contains("shape"));
        let f = Tensor::from_f64(vec![3], vec![1.0, f64::NAN, f64::INFINITY]).unwrap();
        assert!(compare(&a, &f, RTOL, ATOL).unwrap_err().contains("dtype"));
        let i = Tensor::from_i64(vec![2], vec![1, 2]).unwrap();
        let j = Tensor::from_i64(vec![2], vec![1, 3]).unwrap();
        assert!(compare(&i, &j, RTOL, ATOL)
            .unwrap_err()
            .contains("element 1"));
        assert!(compare(&i, &i, RTOL, ATOL).is_ok());
    }

    #[test]
    fn missing_directory_is_an_error_not_a_panic() {
        let r = run_test(Path::new("/nonexistent/test_x"), &OpRegistry::standard());
        assert!(matches!(r.outcome, Outcome::Failed(_)));
        assert!(discover(Path::new("/nonexistent")).is_err());
    }
}
