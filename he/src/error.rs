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
    #[error("input.features is {0}; must be 1..={max}", max = crate::program::MAX_FEATURES)]
    Features(usize),
    #[error("input range {min}..={max} is empty or too wide")]
    InputRange { min: i64, max: i64 },
    #[error("v1 input.bits is {0}; must be 1..=16")]
    InputBits(u32),
    #[error("input.{name} has {len} entries; need 1 or {features}")]
    QuantizerLength {
        name: &'static str,
        len: usize,
        features: usize,
    },
    #[error("quantizer offsets must be finite and scales finite and positive, got {0}")]
    Step(f64),
    #[error("a program has 1..={max} layers, got {0}", max = crate::program::MAX_LAYERS)]
    LayerCount(usize),
    #[error("no layers")]
    NoLayers,
    #[error("layer {layer} has {neurons} neurons; must be 1..={max}", max = crate::program::MAX_NEURONS)]
    Neurons { layer: usize, neurons: usize },
    #[error("layer {layer}: weights has {rows} rows but there are {neurons} biases")]
    WeightRows {
        layer: usize,
        rows: usize,
        neurons: usize,
    },
    #[error("layer {layer}: weights row {row} has {len} entries, expected {expected}")]
    WeightCols {
        layer: usize,
        row: usize,
        len: usize,
        expected: usize,
    },
    #[error("layer {layer}: weight {value} at [{row}][{col}] is outside -{max}..={max}")]
    WeightRange {
        layer: usize,
        row: usize,
        col: usize,
        value: i64,
        max: i64,
    },
    #[error("layer {layer}: bias {value} is too large")]
    BiasRange { layer: usize, value: i64 },
    #[error("layer {layer}: every layer but the last needs an activation, the last has none")]
    ActivationPlacement { layer: usize },
    #[error("activation low_bits is {0}; must be 0..=5")]
    LowBits(u32),
    #[error("layer {layer}: need one table of 16 small integers per neuron")]
    Tables { layer: usize },
    #[error("output.bits is {0}; must be in 2..=32")]
    ScoreBits(u32),
    #[error("{classes} classes do not fit {scores} scores and the decision rule")]
    Classes { classes: usize, scores: usize },
    #[error(
        "score {class} spans {span} values, which does not fit output.bits = {bits}; \
         widen output.bits or shrink the last layer"
    )]
    MayOverflow { class: usize, span: i64, bits: u32 },
    #[error(
        "layer {layer}, neuron {neuron}: noise at the {what} is {ratio:.3e} times what the \
         parameter set allows; shrink the weights (or output.bits)"
    )]
    Noise {
        layer: usize,
        neuron: usize,
        what: &'static str,
        ratio: f64,
    },
}

/// Errors of key handling, encryption and encrypted evaluation.
#[derive(Debug, Error)]
pub enum HeError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("input has {found} features, the program expects {expected}")]
    InputLength { found: usize, expected: usize },
    #[error("input feature {index} is {value}, outside {min}..={max}")]
    InputRange {
        index: usize,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("input feature {index} is not a finite number")]
    InputNotFinite { index: usize },
    #[error(
        "ciphertexts have LWE dimension {found}; this key's parameter set \
         (PARAM_MESSAGE_2_CARRY_2_KS_PBS) uses {expected}"
    )]
    ParameterMismatch { found: usize, expected: usize },
    #[error("ciphertexts were encrypted for key {found}, this key is {expected}")]
    KeyMismatch { found: String, expected: String },
    #[error("encrypted scores hold {found} ciphertexts, expected {expected}")]
    ScoreShape { found: usize, expected: usize },
    #[error("could not serialise {what}: {reason}")]
    Serialize { what: &'static str, reason: String },
    #[error("could not deserialise {what}: {reason}")]
    Deserialize { what: &'static str, reason: String },
}
