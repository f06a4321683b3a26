//! The compiler: an ONNX float model plus calibration data → a `cloister-he-program/v2`
//! integer program that `Program::analyse` proves exact under TFHE.
//!
//! Why it exists: the shipped programs were quantized by hand in Python; a tenant brings an
//! ONNX model instead. Post-training quantization to the few bits TFHE handles well is a
//! search under hard budgets (noise at every bootstrap, noise and range of every score), and
//! the proof that decides them lives in Rust ([`crate::program`]), so the search runs here
//! and only keeps candidates the same proof accepts.
//!
//! * [`graph`] reads the supported chain out of the ONNX graph (loaded by `cloister-engine`,
//!   the service's own bounded parser): dense layers with Relu between them, a scaler before,
//!   a monotone head (Sigmoid/Softmax) after, which is ignored;
//! * [`calibration`] reads the calibration rows;
//! * [`quantize`] builds candidates and keeps the best that passes.

pub mod calibration;
pub mod error;
pub mod graph;
pub mod quantize;

use std::path::Path;

pub use calibration::Calibration;
pub use error::{CalibrationError, CompileError};
pub use graph::{FloatLayer, FloatModel};
pub use quantize::Params;

use cloister_engine::{LoadOptions, Model, OpRegistry};

use crate::error::HeError;
use crate::program::{Analysis, Decision, Program};
use crate::{plaintext, program};

/// Weight bits when none are given: `|W| <= 127`.
pub const DEFAULT_WEIGHT_BITS: u32 = 8;
/// Input bits searched when none are given (ties go to more bits).
pub const INPUT_BITS_SEARCHED: [u32; 5] = [8, 7, 6, 5, 4];
/// Largest ONNX file read.
pub const MAX_ONNX_BYTES: u64 = 64 << 20;

/// What to compile to.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// `name` of the program.
    pub name: String,
    /// `description`; a default one names the source when empty.
    pub description: String,
    /// Class names (default `"0"`, `"1"`, …).
    pub classes: Option<Vec<String>>,
    /// Cap on integer weights: `|W| <= 2^(weight_bits-1) - 1` (default 8).
    pub weight_bits: Option<u32>,
    /// Bits of each quantized input (default: the best of 4..=8 on the calibration rows).
    pub input_bits: Option<u32>,
}

/// Accuracy of the float model and of the integer program on labelled (or unlabelled) rows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Accuracy {
    pub rows: usize,
    /// Rows whose label the float model predicts (with labels).
    pub float_correct: Option<usize>,
    /// Rows whose label the integer program predicts (with labels).
    pub quantized_correct: Option<usize>,
    /// Rows where both pick the same class.
    pub agreement: usize,
}

impl Accuracy {
    pub fn float(&self) -> Option<f64> {
        self.float_correct.map(|c| c as f64 / self.rows as f64)
    }
    pub fn quantized(&self) -> Option<f64> {
        self.quantized_correct.map(|c| c as f64 / self.rows as f64)
    }
    pub fn agreement(&self) -> f64 {
        self.agreement as f64 / self.rows as f64
    }
}

/// A compiled program and how it was chosen.
pub struct Compiled {
    pub program: Program,
    pub analysis: Analysis,
    pub params: Params,
    pub float_model: FloatModel,
    /// Candidates built, and how many passed the proof.
    pub tried: usize,
    pub accepted: usize,
    /// On the calibration rows.
    pub calibration: Accuracy,
}

/// Read the float chain out of ONNX bytes.
pub fn float_model_from_bytes(bytes: &[u8]) -> Result<FloatModel, CompileError> {
    let options = LoadOptions {
        optimize: false,
        ..LoadOptions::default()
    };
    let model = Model::from_bytes_with(bytes, &OpRegistry::standard(), &options)?;
    graph::extract(&model)
}

/// Read the float chain out of an ONNX file (at most [`MAX_ONNX_BYTES`]).
pub fn load_onnx(path: &Path) -> Result<FloatModel, CompileError> {
    let io = |reason: String| CompileError::Io {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| io(e.to_string()))?
        .len();
    if size > MAX_ONNX_BYTES {
        return Err(io(format!("{size} bytes; the limit is {MAX_ONNX_BYTES}")));
    }
    let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
    float_model_from_bytes(&bytes)
}

/// Compile a float model with calibration data.
pub fn compile(
    model: &FloatModel,
    calibration: &Calibration,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let weight_bits = options.weight_bits.unwrap_or(DEFAULT_WEIGHT_BITS);
    if !(2..=21).contains(&weight_bits) {
        return Err(CompileError::Options(format!(
            "--weight-bits {weight_bits}: must be 2..=21 (|W| <= 2^20)"
        )));
    }
    let input_bits = match options.input_bits {
        Some(b) if (1..=20).contains(&b) => vec![b],
        Some(b) => {
            return Err(CompileError::Options(format!(
                "--input-bits {b}: must be 1..=20"
            )))
        }
        None => INPUT_BITS_SEARCHED.to_vec(),
    };
    let outputs = model.outputs();
    let decision = if outputs == 1 {
        if model.head.as_deref().is_some_and(|h| h != "Sigmoid") {
            return Err(CompileError::Structure(format!(
                "{} over a single output is constant; use Sigmoid or no head",
                model.head.as_deref().unwrap_or_default()
            )));
        }
        Decision::Threshold
    } else {
        Decision::Argmax
    };
    let class_count = if outputs == 1 { 2 } else { outputs };
    if model.layers.len() > program::MAX_LAYERS
        || model.features > program::MAX_FEATURES
        || model
            .layers
            .iter()
            .any(|l| l.biases.len() > program::MAX_NEURONS)
    {
        return Err(CompileError::Structure(format!(
            "the model exceeds the program limits ({} layers, {} features, {} neurons per \
             layer)",
            program::MAX_LAYERS,
            program::MAX_FEATURES,
            program::MAX_NEURONS
        )));
    }
    let classes = match &options.classes {
        Some(c) if c.len() == class_count => c.clone(),
        Some(c) => {
            return Err(CompileError::Options(format!(
                "{} class names given; the model has {class_count} classes",
                c.len()
            )))
        }
        None => (0..class_count).map(|i| i.to_string()).collect(),
    };
    calibration.check(model.features, class_count)?;
    let description = if options.description.is_empty() {
        let shape: Vec<String> = std::iter::once(model.features)
            .chain(model.layers.iter().map(|l| l.biases.len()))
            .map(|n| n.to_string())
            .collect();
        format!(
            "compiled from ONNX by cloister he compile: dense {}{}, post-training \
             quantization on {} calibration rows",
            shape.join("-"),
            if model.layers.len() > 1 {
                " with ReLU"
            } else {
                ""
            },
            calibration.input.len()
        )
    } else {
        options.description.clone()
    };
    let search = quantize::Search {
        model,
        calibration,
        name: options.name.clone(),
        description,
        classes,
        decision,
        weight_bits,
        input_bits,
    };
    let found = search.run()?;
    let calibration_accuracy = accuracy(&found.program, model, calibration)
        .map_err(|e| CompileError::Structure(format!("the chosen program does not run: {e}")))?;
    Ok(Compiled {
        program: found.program,
        analysis: found.analysis,
        params: found.params,
        float_model: model.clone(),
        tried: found.tried,
        accepted: found.accepted,
        calibration: calibration_accuracy,
    })
}

/// Load both files and compile.
pub fn compile_files(
    onnx: &Path,
    calibration: &Path,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let model = load_onnx(onnx)?;
    let calibration = Calibration::load(calibration)?;
    compile(&model, &calibration, options)
}

/// Accuracy of the integer program (through the plaintext reference) and of the float model
/// on `rows`.
pub fn accuracy(
    program: &Program,
    model: &FloatModel,
    rows: &Calibration,
) -> Result<Accuracy, HeError> {
    let mut float_correct = 0;
    let mut quantized_correct = 0;
    let mut agreement = 0;
    for (r, row) in rows.input.iter().enumerate() {
        let q = program.quantize(row)?;
        let scores = plaintext::evaluate(program, &q)?;
        let class = program.decide(&scores).unwrap_or(0);
        let z = model.pre_activations(row);
        let float_class = quantize::float_decision(
            program.output.decision,
            z.last().map_or(&[][..], Vec::as_slice),
        );
        agreement += usize::from(class == float_class);
        if let Some(labels) = &rows.labels {
            quantized_correct += usize::from(class as i64 == labels[r]);
            float_correct += usize::from(float_class as i64 == labels[r]);
        }
    }
    let labelled = rows.labels.is_some();
    Ok(Accuracy {
        rows: rows.input.len(),
        float_correct: labelled.then_some(float_correct),
        quantized_correct: labelled.then_some(quantized_correct),
        agreement,
    })
}
