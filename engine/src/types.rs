//! Static descriptions of values: dimensions, type-and-shape facts, and graph I/O signatures.
//!
//! Why separate from `tensor`: these describe values *before* they exist — at load time, for
//! shape/type inference and for validating requests — and carry symbolic dimensions that a
//! concrete [`Tensor`] never has.

use std::fmt;
use std::sync::Arc;

use crate::dtype::DType;
use crate::tensor::Tensor;

/// One dimension of a declared or inferred shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Fixed(usize),
    /// A named size (ONNX `dim_param`), e.g. the batch dimension `N`. Dims with the same name
    /// must take the same size within one run. Inference uses the name `?` for "unknown".
    Symbolic(String),
}

impl Dim {
    /// The unknown dimension produced by inference when a size cannot be determined.
    pub fn unknown() -> Dim {
        Dim::Symbolic("?".to_string())
    }

    /// The size, if fixed.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Symbolic(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Renders a shape like `[N, 64]`.
pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// A declared graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    /// The value's name in the graph.
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Its shape; symbolic dims match any size but must be consistent across inputs.
    pub shape: Vec<Dim>,
}

/// What shape/type inference knows about a value: element type, shape, and — when the value is
/// a constant (initializer) — the value itself, so operators like `Reshape` can infer exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeShape {
    /// Element type.
    pub dtype: DType,
    /// Shape, possibly with symbolic dims.
    pub shape: Vec<Dim>,
    /// The constant value, when known at load time.
    pub value: Option<Arc<Tensor>>,
}

impl TypeShape {
    /// A fact with the given dtype and dims, no constant value.
    pub fn new(dtype: DType, shape: Vec<Dim>) -> TypeShape {
        TypeShape {
            dtype,
            shape,
            value: None,
        }
    }

    /// A fact with fully known dims.
    pub fn fixed(dtype: DType, shape: &[usize]) -> TypeShape {
        TypeShape::new(dtype, shape.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// The exact fact about a known tensor.
    pub fn of_constant(t: Arc<Tensor>) -> TypeShape {
        let mut ts = TypeShape::fixed(t.dtype(), t.shape());
        ts.value = Some(t);
        ts
    }

    /// Rank of the value.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The concrete shape, if every dim is fixed.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(Dim::fixed).collect()
    }
}
