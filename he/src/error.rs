//! Typed errors: a malformed program, bad input, or a key or ciphertext that does not belong
//! together is a clear error, never a panic or a wrong answer.

use thiserror::Error;

/// Why a program file was refused.
#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("program is not valid JSON for the schema: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported program format {found:?} (expected {expected:?})")]
    Format {
        found: String,
        expected: &'static str,
    },
    #[error("input.features must be at least 1")]
    NoFeatures,
    #[error("input.bits is {0}; this version supports 1..={max} (one TFHE block per feature)", max = crate::BLOCK_BITS)]
    InputBits(u32),
    #[error("input.step must be finite and positive, got {0}")]
    Step(f64),
    #[error("need at least 2 classes, got {0}")]
    TooFewClasses(usize),
    #[error("weights has {rows} rows but there are {classes} classes")]
    WeightRows { rows: usize, classes: usize },
    #[error("weights row {row} has {len} entries but input.features is {features}")]
    WeightCols {
        row: usize,
        len: usize,
        features: usize,
    },
    #[error("biases has {len} entries but there are {classes} classes")]
    Biases { len: usize, classes: usize },
    #[error("score_bits is {0}; must be even (whole 2-bit blocks) and in 4..=32")]
    ScoreBits(u32),
    #[error("weight {value} at [{row}][{col}] is outside -{max}..={max}")]
    WeightRange {
        row: usize,
        col: usize,
        value: i64,
        max: i64,
    },
    #[error(
        "class {class} may reach |score| = {bound}, which does not fit score_bits = {bits} \
         (limit {limit}); widen score_bits or shrink the weights"
    )]
    MayOverflow {
        class: usize,
        bound: i64,
        bits: u32,
        limit: i64,
    },
}

/// Errors of key handling, encryption and encrypted evaluation.
#[derive(Debug, Error)]
pub enum HeError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("input has {found} features, the program expects {expected}")]
    InputLength { found: usize, expected: usize },
    #[error("input feature {index} is {value}, outside 0..={max}")]
    InputRange { index: usize, value: u8, max: u8 },
    #[error("input feature {index} is not a finite number")]
    InputNotFinite { index: usize },
    #[error("ciphertext {index} does not match the server key's parameters")]
    NonConformantCiphertext { index: usize },
    #[error("ciphertexts were encrypted for key {found}, this server key is {expected}")]
    KeyMismatch { found: String, expected: String },
    #[error("encrypted scores hold {found} blocks, expected {expected}")]
    ScoreShape { found: usize, expected: usize },
    #[error("could not serialise {what}: {reason}")]
    Serialize { what: &'static str, reason: String },
    #[error("could not deserialise {what}: {reason}")]
    Deserialize { what: &'static str, reason: String },
    #[error("internal: {0}")]
    Internal(String),
}
