//! The ONNX → integer program compiler: both shipped models compile from their ONNX files and
//! training-row calibration data to programs that meet the accuracy targets on held-out rows
//! (through the plaintext reference), a compiled program is bit-exact under encryption, and
//! unsupported graphs, bad calibration data and models too big for TFHE's noise budget are
//! typed errors.

mod common;

use cloister_engine::onnx::proto::{ModelProto, TensorProto};
use cloister_he::compile::{
    self, Calibration, CalibrationError, CompileError, CompileOptions, FloatModel,
};
use cloister_he::program::Decision;
use cloister_he::{plaintext, Program};
use prost::Message;

fn model_file(dir: &str, file: &str) -> std::path::PathBuf {
    common::repo().join("models").join(dir).join(file)
}

fn onnx_bytes(dir: &str) -> Vec<u8> {
    std::fs::read(model_file(dir, "model.onnx")).unwrap()
}

fn calibration(dir: &str) -> Calibration {
    Calibration::load(&model_file(dir, "calibration.json")).unwrap()
}

fn heldout(path: &std::path::Path) -> Calibration {
    Calibration::load(path).unwrap()
}

fn options(name: &str) -> CompileOptions {
    CompileOptions {
        name: name.into(),
        ..Default::default()
    }
}

/// Compile, check the program survives its own file format, and return it with its held-out
/// accuracy (plaintext reference) and the float model's.
fn compile_and_measure(dir: &str, heldout_path: &std::path::Path) -> (Program, f64, f64) {
    let model = compile::load_onnx(&model_file(dir, "model.onnx")).unwrap();
    let compiled = compile::compile(&model, &calibration(dir), &options(dir)).unwrap();
    let text = serde_json::to_string(&compiled.program).unwrap();
    // The file form is what ships: integers and tables survive exactly (JSON floats may lose
    // a last ulp of the quantizer's scales, which is why accuracy is measured on the reload).
    let reloaded = Program::from_json(&text).unwrap();
    assert_eq!(reloaded.layers, compiled.program.layers);
    assert_eq!(reloaded.output.bits, compiled.program.output.bits);
    assert_eq!(
        reloaded.analyse().unwrap().pbs_count,
        compiled.analysis.pbs_count
    );
    let acc = compile::accuracy(&reloaded, &model, &heldout(heldout_path)).unwrap();
    let (float, quantized) = (acc.float().unwrap(), acc.quantized().unwrap());
    eprintln!(
        "{dir}: {:?}, {} PBS, {} of {} candidates passed; held-out float {:.4}, quantized \
         {:.4}, same class {:.4}; calibration quantized {:.4}",
        compiled.params,
        compiled.analysis.pbs_count,
        compiled.accepted,
        compiled.tried,
        float,
        quantized,
        acc.agreement(),
        compiled.calibration.quantized().unwrap()
    );
    (reloaded, float, quantized)
}

#[test]
fn breast_cancer_lr_compiles_from_onnx_at_97_percent() {
    let (program, float, quantized) = compile_and_measure(
        "breast-cancer-lr",
        &model_file("breast-cancer-lr", "heldout.json"),
    );
    assert!(float >= 0.97, "float model {float}");
    assert!(quantized >= 0.97, "compiled program {quantized}");
    assert_eq!(program.output.decision, Decision::Threshold);
    assert_eq!(program.layers.len(), 1);
    assert_eq!(program.analyse().unwrap().pbs_count, 0);
    assert!(program.layers[0].weights[0].iter().all(|w| w.abs() <= 127));
}

#[test]
fn digits_mlp_compiles_from_onnx_at_92_percent() {
    let (program, float, quantized) =
        compile_and_measure("digits-mlp-he", &model_file("digits", "heldout.json"));
    assert!(float >= 0.96, "float model {float}");
    assert!(quantized >= 0.92, "compiled program {quantized}");
    assert_eq!(program.output.decision, Decision::Argmax);
    assert_eq!(program.layers.len(), 2);
    // 4 bootstraps per hidden neuron (exact low-bit clearing, then the table).
    assert_eq!(program.analyse().unwrap().pbs_count, 80);
}

#[test]
fn compiled_lr_is_bit_exact_under_encryption() {
    let model = compile::load_onnx(&model_file("breast-cancer-lr", "model.onnx")).unwrap();
    let program = compile::compile(
        &model,
        &calibration("breast-cancer-lr"),
        &options("breast-cancer-lr"),
    )
    .unwrap()
    .program;
    let rows = common::heldout("breast-cancer-lr");
    let keys = common::keys();
    for row in [0, 1, 2, 3, 4, 5] {
        let q = program.quantize(&rows.input[row]).unwrap();
        let expected = plaintext::evaluate(&program, &q).unwrap();
        let ct = keys.client.encrypt(&program, &q).unwrap();
        let scores = keys.evaluator.evaluate(&program, &ct).unwrap();
        let decrypted = keys.client.decrypt(&program, &scores).unwrap();
        assert_eq!(decrypted, expected, "row {row}: encrypted != plaintext");
    }
}

#[test]
fn scaler_ops_fold_into_the_first_layer() {
    // model.onnx is Sub(mean), Div(std), Gemm, Sigmoid: the float chain must reproduce
    // onnx's own arithmetic (the engine runs the same file).
    let bytes = onnx_bytes("breast-cancer-lr");
    let float = compile::float_model_from_bytes(&bytes).unwrap();
    assert_eq!(float.head.as_deref(), Some("Sigmoid"));
    let engine = cloister_engine::Model::from_bytes(&bytes).unwrap();
    let rows = common::heldout("breast-cancer-lr");
    for row in &rows.input[..10] {
        let x: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        let t = cloister_engine::Tensor::from_f32(vec![1, x.len()], x).unwrap();
        let out = engine.run(vec![("input".into(), t)]).unwrap();
        let p = f64::from(out[0].1.as_f32().unwrap()[0]);
        let logit = float.pre_activations(row).last().unwrap()[0];
        let ours = 1.0 / (1.0 + (-logit).exp());
        assert!((p - ours).abs() < 1e-4, "engine {p} vs folded chain {ours}");
    }
}

fn decode(dir: &str) -> ModelProto {
    ModelProto::decode(onnx_bytes(dir).as_slice()).unwrap()
}

fn compile_proto(proto: &ModelProto, cal: &Calibration) -> Result<compile::Compiled, CompileError> {
    let model: FloatModel = compile::float_model_from_bytes(&proto.encode_to_vec())?;
    compile::compile(
        &model,
        cal,
        &CompileOptions {
            name: "hostile".into(),
            input_bits: Some(5),
            ..Default::default()
        },
    )
}

#[test]
fn unsupported_ops_are_typed_errors_naming_the_node() {
    let cal = calibration("digits-mlp-he");
    // A Tanh where the Relu was: a real op the engine runs, but no bootstrap table here.
    let mut proto = decode("digits-mlp-he");
    let graph = proto.graph.as_mut().unwrap();
    let relu = graph
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Relu"))
        .unwrap();
    relu.op_type = Some("Tanh".into());
    match compile_proto(&proto, &cal) {
        Err(CompileError::Unsupported { node, op, .. }) => {
            assert_eq!((node.as_str(), op.as_str()), ("relu", "Tanh"))
        }
        other => panic!("expected Unsupported, got {:?}", other.err()),
    }

    // Dropping the Relu leaves two linear layers back to back.
    let mut proto = decode("digits-mlp-he");
    let graph = proto.graph.as_mut().unwrap();
    graph.node.retain(|n| n.op_type.as_deref() != Some("Relu"));
    let second = graph
        .node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some("output"))
        .unwrap();
    second.input[0] = "z1".into();
    match compile_proto(&proto, &cal) {
        Err(CompileError::Unsupported { node, op, reason }) => {
            assert_eq!((node.as_str(), op.as_str()), ("output", "Gemm"));
            assert!(reason.contains("Relu"), "{reason}");
        }
        other => panic!("expected Unsupported, got {:?}", other.err()),
    }

    // Something that is not ONNX at all: the engine's loader refuses it.
    assert!(matches!(
        compile::float_model_from_bytes(b"\x08\x07garbage that is not a model"),
        Err(CompileError::Onnx(_))
    ));
}

#[test]
fn bad_calibration_files_are_typed_errors() {
    let model = compile::float_model_from_bytes(&onnx_bytes("breast-cancer-lr")).unwrap();
    let good = calibration("breast-cancer-lr");
    let opts = options("bc");
    let err = |cal: &Calibration| match compile::compile(&model, cal, &opts) {
        Err(CompileError::Calibration(e)) => e,
        other => panic!("expected a calibration error, got {:?}", other.err()),
    };

    // Rows one feature short.
    let mut short = good.clone();
    for row in &mut short.input {
        row.pop();
    }
    assert!(matches!(
        err(&short),
        CalibrationError::RowLength {
            found: 29,
            expected: 30,
            ..
        }
    ));
    // A label that is not a class of a binary model.
    let mut labels = good.clone();
    labels.labels.as_mut().unwrap()[7] = 2;
    assert!(matches!(
        err(&labels),
        CalibrationError::Label {
            row: 7,
            label: 2,
            classes: 2
        }
    ));

    // Parsing: not JSON, no rows, ragged rows, label count, overflowing numbers.
    for (text, check) in [
        ("{\"input\": [[1, 2]", "Json"),
        ("{\"input\": []}", "NoRows"),
        ("{\"input\": [[1, 2], [3]]}", "RowLength"),
        ("{\"input\": [[1, 2]], \"labels\": [0, 1]}", "LabelCount"),
        ("{\"input\": [[1e999, 2]]}", "Json"),
        ("{\"rows\": [[1, 2]]}", "Json"),
    ] {
        let e = Calibration::from_json(text).unwrap_err();
        let name = format!("{e:?}");
        assert!(name.starts_with(check), "{text}: {name}");
    }
    let missing = Calibration::load(std::path::Path::new("/nonexistent/calibration.json"));
    assert!(matches!(missing, Err(CalibrationError::Io { .. })));
}

/// A float tensor initializer.
fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: data,
        ..Default::default()
    }
}

#[test]
fn a_model_too_wide_for_the_noise_budget_is_refused_with_the_constraint() {
    // The digits graph with 1500 hidden neurons: every candidate's output layer needs more
    // score bits than bootstrap noise leaves room for.
    const HIDDEN: usize = 1500;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let mut proto = decode("digits-mlp-he");
    let graph = proto.graph.as_mut().unwrap();
    graph.initializer = vec![
        tensor(
            "w1",
            &[HIDDEN as i64, 64],
            (0..HIDDEN * 64).map(|_| uniform() * 0.1).collect(),
        ),
        tensor(
            "b1",
            &[HIDDEN as i64],
            (0..HIDDEN).map(|_| uniform()).collect(),
        ),
        tensor(
            "w2",
            &[10, HIDDEN as i64],
            (0..HIDDEN * 10).map(|_| uniform()).collect(),
        ),
        tensor("b2", &[10], (0..10).map(|_| uniform()).collect()),
    ];
    let mut cal = calibration("digits-mlp-he");
    cal.input.truncate(16);
    cal.labels.as_mut().unwrap().truncate(16);
    match compile_proto(&proto, &cal) {
        Err(CompileError::NoFit { tried, constraint }) => {
            eprintln!("{tried} candidates: {constraint}");
            assert!(tried > 0);
            assert!(
                constraint.contains("noise at the score decryption"),
                "{constraint}"
            );
        }
        Ok(c) => panic!("a {HIDDEN}-neuron layer fit: {:?}", c.params),
        Err(e) => panic!("expected NoFit, got {e}"),
    }
}

#[test]
fn bad_options_are_refused() {
    let model = compile::float_model_from_bytes(&onnx_bytes("breast-cancer-lr")).unwrap();
    let cal = calibration("breast-cancer-lr");
    for opts in [
        CompileOptions {
            weight_bits: Some(1),
            ..Default::default()
        },
        CompileOptions {
            input_bits: Some(0),
            ..Default::default()
        },
        CompileOptions {
            classes: Some(vec!["only one".into()]),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            compile::compile(&model, &cal, &opts),
            Err(CompileError::Options(_))
        ));
    }
}
