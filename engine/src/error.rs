//! The engine's single error type.
//!
//! Why one enum: the enclave maps engine failures to responses in one place, and must be able to
//! tell a caller's mistake (wrong input name, shape or dtype) from a bad model (malformed bytes,
//! unsupported operator) without parsing strings. Each variant's doc says who is at fault.

use crate::dtype::DType;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Model: the bytes are not a decodable ONNX `ModelProto`.
    #[error("model bytes are not a valid ONNX protobuf: {0}")]
    MalformedProtobuf(String),

    /// Operator of the service: a file (the model, or a test-suite file) could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was read.
        path: String,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },

    /// Model: decodes, but violates ONNX structural rules (dangling value, cycle, bad dims...).
    #[error("invalid model: {0}")]
    InvalidModel(String),

    /// Model: uses an operator no registered constructor handles.
    #[error("unsupported operator {domain}::{op_type} (node {node:?})")]
    UnsupportedOp {
        /// The ONNX `op_type`.
        op_type: String,
        /// The operator domain (empty for the default `ai.onnx` domain).
        domain: String,
        /// The node's name, or a generated `#index` when it has none.
        node: String,
    },

    /// Model: uses a valid ONNX feature this engine does not implement yet.
    #[error("unsupported model feature: {0}")]
    UnsupportedFeature(String),

    /// Model or caller: an ONNX element type this engine has no storage for.
    #[error("unsupported ONNX data type code {0}")]
    UnsupportedDtype(i32),

    /// Model: a node attribute is missing, of the wrong kind, or out of range.
    #[error("node {node:?}: attribute {attribute:?}: {reason}")]
    BadAttribute {
        /// The node's name.
        node: String,
        /// The attribute's name.
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Caller: an input name the model does not declare.
    #[error("unknown input {name:?}")]
    UnknownInput {
        /// The name given by the caller.
        name: String,
    },

    /// Caller: a declared model input was not supplied.
    #[error("missing input {name:?}")]
    MissingInput {
        /// The declared input name.
        name: String,
    },

    /// Caller: the same input was supplied twice.
    #[error("input {name:?} given more than once")]
    DuplicateInput {
        /// The repeated name.
        name: String,
    },

    /// Caller: an input tensor has the wrong element type.
    #[error("input {input:?}: expected dtype {expected}, got {got}")]
    DtypeMismatch {
        /// The input name.
        input: String,
        /// The declared element type.
        expected: DType,
        /// The supplied element type.
        got: DType,
    },

    /// Caller: an input tensor's shape does not match the declared shape.
    #[error("input {input:?}: expected shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// The input name.
        input: String,
        /// The declared shape, rendered like `[N, 64]`.
        expected: String,
        /// The supplied shape.
        got: Vec<usize>,
    },

    /// Caller: a symbolic dimension was bound to two different sizes across inputs.
    #[error("symbolic dimension {dim:?} is {first} elsewhere but {second} in input {input:?}")]
    InconsistentDim {
        /// The symbolic dimension's name.
        dim: String,
        /// The size it was first bound to.
        first: usize,
        /// The conflicting size.
        second: usize,
        /// The input where the conflict was found.
        input: String,
    },

    /// Caller of a tensor constructor: data length does not equal the shape's element count.
    #[error("shape {shape:?} holds {expected} elements but {got} were given")]
    DataLength {
        /// The requested shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Number of elements supplied.
        got: usize,
    },

    /// Model or caller: a tensor's element count overflows or exceeds what the engine allows.
    #[error("tensor too large: shape {0:?}")]
    TensorTooLarge(Vec<i64>),

    /// Model or caller: two shapes cannot be broadcast together (numpy rules).
    #[error("shapes {lhs:?} and {rhs:?} cannot be broadcast")]
    Broadcast {
        /// Left operand shape.
        lhs: Vec<usize>,
        /// Right operand shape.
        rhs: Vec<usize>,
    },

    /// Model or caller: operand shapes or values are invalid for the operator.
    #[error("{op}: {reason}")]
    InvalidOperand {
        /// The operator type.
        op: String,
        /// What is wrong.
        reason: String,
    },

    /// Model: an operator was given an element type it does not support.
    #[error("{op}: unsupported operand dtype {dtype}")]
    OperandDtype {
        /// The operator type.
        op: String,
        /// The offending element type.
        dtype: DType,
    },

    /// Model: an operator was given the wrong number of inputs.
    #[error("{op}: expected {expected} inputs, got {got}")]
    Arity {
        /// The operator type.
        op: String,
        /// The accepted count, e.g. `"2"` or `"2..=3"`.
        expected: String,
        /// The number given.
        got: usize,
    },

    /// Caller: integer division by zero (or `MIN / -1`) in a `Div` node.
    #[error("{op}: integer division by zero or overflow")]
    IntegerDivision {
        /// The operator type.
        op: String,
    },

    /// Model: subgraphs (the bodies of `If`, `Loop`, `Scan`) nest deeper than the engine
    /// accepts; names the node whose subgraph crosses the limit.
    #[error("node {node:?}: subgraphs nest deeper than {limit} levels")]
    SubgraphTooDeep {
        /// The node holding the too-deep subgraph.
        node: String,
        /// The deepest nesting accepted.
        limit: usize,
    },

    /// Model: a subgraph reads a name that neither it nor any enclosing graph defines.
    #[error("node {node:?} reads {name:?}, which no enclosing graph defines")]
    UndefinedOuterValue {
        /// The node (inside the subgraph) that reads the name.
        node: String,
        /// The missing name.
        name: String,
    },

    /// Model or caller: a `Loop` would run more iterations than the model was loaded to allow
    /// ([`LoadOptions::max_loop_iterations`](crate::LoadOptions)).
    #[error("loop exceeds the limit of {limit} iterations")]
    IterationLimit {
        /// The limit the model was loaded with.
        limit: u64,
    },

    /// Model: a tensor's external data (ONNX `data_location = EXTERNAL`) cannot be used; see
    /// [`ExternalDataError`](crate::onnx::external::ExternalDataError) for the cases.
    #[error("external data: {0}")]
    ExternalData(#[from] crate::onnx::external::ExternalDataError),

    /// Wraps an error found in a particular named tensor of the model (an initializer, a
    /// tensor attribute or a test-data file), so the message says which one.
    #[error("tensor {tensor:?}: {source}")]
    Tensor {
        /// The tensor's name (empty when the file gives none).
        tensor: String,
        /// The underlying error.
        #[source]
        source: Box<EngineError>,
    },

    /// Wraps an error raised while inferring or evaluating a particular node.
    #[error("node {node:?} ({op_type}): {source}")]
    Node {
        /// The node's name.
        node: String,
        /// The node's operator type.
        op_type: String,
        /// The underlying error.
        #[source]
        source: Box<EngineError>,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// Builds an [`EngineError::InvalidOperand`].
    pub fn operand(op: &str, reason: impl Into<String>) -> Self {
        EngineError::InvalidOperand {
            op: op.to_string(),
            reason: reason.into(),
        }
    }

    /// The innermost error, looking through [`EngineError::Node`] and
    /// [`EngineError::Tensor`] wrappers.
    pub fn root(&self) -> &EngineError {
        match self {
            EngineError::Node { source, .. } | EngineError::Tensor { source, .. } => source.root(),
            other => other,
        }
    }
}
