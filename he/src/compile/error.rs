//! Why a model could not be compiled: each error names what to fix (the ONNX node, the
//! calibration row, or the constraint of the noise and range proof that no candidate met).

use thiserror::Error;

/// A calibration file that cannot be used.
#[derive(Debug, Error)]
pub enum CalibrationError {
    #[error("could not read the calibration file {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the calibration file is {size} bytes; the limit is {max}")]
    TooLarge { size: u64, max: u64 },
    #[error(
        "calibration data is not JSON of the form {{\"input\": [[...]], \"labels\": [...]}}: {0}"
    )]
    Json(#[from] serde_json::Error),
    #[error("calibration data has no rows")]
    NoRows,
    #[error("calibration data has {0} rows; the limit is {max}", max = super::calibration::MAX_ROWS)]
    TooManyRows(usize),
    #[error("calibration row {row} has {found} values; the model has {expected} inputs")]
    RowLength {
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("calibration row {row}, value {col} is not a finite number")]
    NotFinite { row: usize, col: usize },
    #[error("calibration data has {labels} labels for {rows} rows")]
    LabelCount { labels: usize, rows: usize },
    #[error("calibration label {label} (row {row}) is not a class index 0..{classes}")]
    Label {
        row: usize,
        label: i64,
        classes: usize,
    },
}

/// Why an ONNX model plus calibration data did not become an integer program.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error("could not read the ONNX model {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the ONNX model does not load: {0}")]
    Onnx(#[from] cloister_engine::EngineError),
    #[error(
        "node {node:?} ({op}) is not supported by the homomorphic compiler: {reason} \
         (supported: Gemm or MatMul[+Add] layers with Relu between them; Identity, Flatten and \
         Add/Sub/Mul/Div by constants before the first layer; Sigmoid, Softmax or LogSoftmax at \
         the end)"
    )]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("the model's graph is not a supported chain: {0}")]
    Structure(String),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("bad option: {0}")]
    Options(String),
    #[error(
        "no quantization fits TFHE's budgets ({tried} candidates tried); the constraint that \
         failed for the smallest candidate: {constraint}"
    )]
    NoFit { tried: usize, constraint: String },
}
