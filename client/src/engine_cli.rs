//! `cloister run` and `cloister conformance`: the inference engine on this machine, with no
//! service, attestation or sealing involved.
//!
//! Why in the client: these are developer tools for checking a model (does it load, what does
//! it output) and the engine (does it agree with ONNX's own test suite) before trusting the
//! service with either. Inputs use the JSON form of `cloister infer` (nested arrays or
//! `{"shape","data"}`), with each tensor's dtype taken from the model, so a file that works
//! here works with `cloister infer`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use cloister_engine::conformance::{run_suite, Outcome};
use cloister_engine::ops::cast::Cast;
use cloister_engine::{DType, Model, OpRegistry, Operator, Tensor, TensorData};
use cloister_protocol::tensor::{parse_inputs, Scalar, WireTensor};
use serde_json::{Map, Value};

/// `cloister run MODEL --input FILE [--output FILE]`: prints (or writes) the outputs as JSON,
/// `{"name": {"shape": [...], "dtype": "...", "data": [...]}}`.
pub fn run_model(model: &Path, input: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let m = Model::load(model).map_err(|e| anyhow!("{e}"))?;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
    let wire = parse_inputs(&doc).map_err(|e| anyhow!("{}: {e}", input.display()))?;
    let mut feeds = Vec::with_capacity(wire.len());
    for (name, t) in &wire {
        let info = m.inputs().iter().find(|i| &i.name == name).ok_or_else(|| {
            let names: Vec<&str> = m.inputs().iter().map(|i| i.name.as_str()).collect();
            anyhow!(
                "the model has no input {name:?} (inputs: {})",
                names.join(", ")
            )
        })?;
        let tensor = from_wire(name, t, info.dtype)?;
        feeds.push((name.clone(), tensor));
    }
    let outputs = m
        .run(feeds)
        .map_err(|e| anyhow!("running the model: {e}"))?;
    let mut doc = Map::new();
    for (name, t) in &outputs {
        let w = to_wire(t).with_context(|| format!("output {name:?}"))?;
        doc.insert(name.clone(), serde_json::to_value(w)?);
    }
    let text = serde_json::to_string_pretty(&Value::Object(doc))?;
    match output {
        Some(path) => {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} output(s) to {}", outputs.len(), path.display());
        }
        None => say(&text),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Casts with the engine's own `Cast` (the same conversion a model would do).
fn cast(t: &Tensor, to: DType) -> Result<Tensor> {
    Cast::new(to)
        .eval(&[t])?
        .pop()
        .ok_or_else(|| anyhow!("Cast returned nothing"))
}

/// Converts one JSON tensor to the model's dtype: numbers go through `f64` (floats) or exact
/// `i64` (integers, range-checked), booleans and strings as themselves.
fn from_wire(name: &str, t: &WireTensor, dtype: DType) -> Result<Tensor> {
    let bad = |i: usize| anyhow!("input {name:?}: element {i} is not a valid {dtype}");
    let shape = t.shape.clone();
    let collect = |f: &dyn Fn(&Scalar) -> Option<Value>| -> Result<Vec<Value>> {
        t.data
            .iter()
            .enumerate()
            .map(|(i, s)| f(s).ok_or_else(|| bad(i)))
            .collect()
    };
    let tensor = if dtype == DType::Bool {
        let v: Vec<bool> = collect(&|s| s.as_bool().map(Value::Bool))?
            .into_iter()
            .map(|v| v.as_bool().unwrap_or_default())
            .collect();
        Tensor::from_bool(shape, v)?
    } else if dtype == DType::String {
        let v = t
            .data
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Scalar::String(s) => Ok(s.clone()),
                _ => Err(bad(i)),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::new(shape, TensorData::String(v))?
    } else if dtype.is_int() {
        let v = t
            .data
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_i64().ok_or_else(|| bad(i)))
            .collect::<Result<Vec<i64>>>()?;
        let wide = Tensor::from_i64(shape, v)?;
        let narrow = cast(&wide, dtype)?;
        if cast(&narrow, DType::I64)? != wide {
            bail!("input {name:?}: a value is out of range for {dtype}");
        }
        narrow
    } else {
        let v = t
            .data
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_f64().ok_or_else(|| bad(i)))
            .collect::<Result<Vec<f64>>>()?;
        cast(&Tensor::from_f64(shape, v)?, dtype)?
    };
    Ok(tensor)
}

/// Converts an output to JSON, naming its dtype.
fn to_wire(t: &Tensor) -> Result<WireTensor> {
    let dtype = t.dtype();
    let data: Vec<Scalar> = match t.data() {
        TensorData::Bool(v) => v.iter().map(|&b| Scalar::Bool(b)).collect(),
        TensorData::String(v) => v.iter().map(|s| Scalar::String(s.clone())).collect(),
        TensorData::F32(v) => v.iter().map(|&x| Scalar::from_f32(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| Scalar::Number(x.into())).collect(),
        _ if dtype.is_int() => cast(t, DType::I64)?
            .as_i64()
            .unwrap_or_default()
            .iter()
            .map(|&x| Scalar::Number(x.into()))
            .collect(),
        _ => cast(t, DType::F64)?
            .as_f64()
            .unwrap_or_default()
            .iter()
            .map(|&x| Scalar::from_f64(x))
            .collect(),
    };
    Ok(WireTensor {
        shape: t.shape().to_vec(),
        dtype: Some(dtype.name().to_string()),
        data,
    })
}

/// `cloister conformance --onnx-tests DIR`: one line per test, the results per operator, then
/// `N passed, M failed, K skipped`; exits non-zero when any test failed.
pub fn conformance(dir: &Path) -> Result<ExitCode> {
    let registry = OpRegistry::standard();
    // Engine errors carry their cause in the message; flatten so it prints once.
    let report = run_suite(dir, &registry, |r| say(&r.to_string())).map_err(|e| anyhow!("{e}"))?;
    if report.results.is_empty() {
        bail!(
            "no ONNX tests (directories with model.onnx) under {}",
            dir.display()
        );
    }
    say("");
    say(&format!(
        "{:<32} {:>7} {:>7} {:>7}",
        "operator", "passed", "failed", "skipped"
    ));
    for (op, t) in report.per_operator() {
        say(&format!(
            "{op:<32} {:>7} {:>7} {:>7}",
            t.passed, t.failed, t.skipped
        ));
    }
    say("");
    say(&report.summary());
    let failed = report
        .results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed(_)));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_uses_model_dtypes() {
        let doc: Value = serde_json::json!({"x": [[1, 2], [3, 4]], "b": [true, false]});
        let w = parse_inputs(&doc).unwrap();
        let x = from_wire("x", &w["x"], DType::F32).unwrap();
        assert_eq!(x.shape(), &[2, 2]);
        assert_eq!(x.as_f32().unwrap(), &[1., 2., 3., 4.]);
        let i = from_wire("x", &w["x"], DType::I8).unwrap();
        assert_eq!(i.dtype(), DType::I8);
        assert!(from_wire("b", &w["b"], DType::F32).is_err());
        let big: Value = serde_json::json!({"x": [300]});
        let w2 = parse_inputs(&big).unwrap();
        assert!(from_wire("x", &w2["x"], DType::U8).is_err());
        let out = to_wire(&i).unwrap();
        assert_eq!(out.dtype.as_deref(), Some("int8"));
        assert_eq!(out.data[3], Scalar::Number(4.into()));
    }
}
