//! Operators: the [`Operator`] trait, the registry that builds them from ONNX nodes, and the
//! reference implementations of the standard (`ai.onnx`) operators.
//!
//! Why this split: an operator is constructed once per node at load time (attributes parsed
//! and validated then, never per request), answers shape/type inference separately from
//! evaluation (so the graph can be checked and planned before any data arrives), and is looked
//! up by `(domain, op_type)` so other crates can register custom operators without touching the
//! engine. Kernels here are portable reference implementations; faster backends must agree with
//! them within stated tolerances.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::attributes::Attributes;
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::TypeShape;

pub mod activation;
pub mod argmax;
pub mod attention;
pub mod bits;
pub mod cast;
pub mod constant;
pub mod control;
pub mod conv;
pub mod dropout;
pub mod einsum;
pub mod elementwise;
pub mod fused;
pub mod gemm;
pub mod indexing;
pub mod layout;
pub mod logical;
pub mod loss;
pub mod matmul;
pub mod normalization;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod shape_ops;
pub mod signal;
pub mod softmax;
pub mod tensor_ops;
pub mod unary;

mod numeric;

/// A constructed operator instance (one per graph node).
pub trait Operator: Send + Sync + fmt::Debug {
    /// The ONNX `op_type` this instance implements (used in error messages).
    fn op_type(&self) -> &str;

    /// Output element types and shapes from input facts. Must not need input data, except
    /// what constant inputs carry in [`TypeShape::value`]. Unknown sizes are [`Dim::unknown`].
    ///
    /// [`Dim::unknown`]: crate::Dim::unknown
    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>>;

    /// Computes the outputs. Inputs are the node's inputs in order; trailing optional inputs
    /// the node omits are absent.
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>>;
}

/// What an operator constructor is told about the node it builds.
#[derive(Debug, Clone, Copy)]
pub struct NodeContext<'a> {
    /// The node's name (or `#index` when unnamed).
    pub name: &'a str,
    /// The ONNX `op_type`.
    pub op_type: &'a str,
    /// The operator domain, normalised (`""` for `ai.onnx`).
    pub domain: &'a str,
    /// The opset version the model imports for this domain.
    pub opset: i64,
    /// The node's attributes.
    pub attributes: &'a Attributes,
    /// How many inputs the node supplies (after dropping trailing omitted ones).
    pub num_inputs: usize,
    /// How many outputs the node declares.
    pub num_outputs: usize,
}

/// Builds an operator for one node.
pub type OpConstructor = Arc<dyn Fn(&NodeContext<'_>) -> Result<Box<dyn Operator>> + Send + Sync>;

/// Maps `(domain, op_type)` to operator constructors.
#[derive(Clone, Default)]
pub struct OpRegistry {
    ctors: HashMap<(String, String), OpConstructor>,
}

impl fmt::Debug for OpRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.ctors.keys().collect();
        keys.sort();
        f.debug_struct("OpRegistry").field("ops", &keys).finish()
    }
}

/// `ai.onnx` is the default domain and may be spelled either way.
pub fn normalize_domain(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

impl OpRegistry {
    /// A registry with no operators.
    pub fn empty() -> OpRegistry {
        OpRegistry::default()
    }

    /// A registry with every built-in `ai.onnx` operator, and the `ai.cloister` operators the
    /// fusion passes produce ([`fused`]).
    pub fn standard() -> OpRegistry {
        let mut r = OpRegistry::empty();
        elementwise::register(&mut r);
        activation::register(&mut r);
        softmax::register(&mut r);
        matmul::register(&mut r);
        gemm::register(&mut r);
        shape_ops::register(&mut r);
        cast::register(&mut r);
        argmax::register(&mut r);
        constant::register(&mut r);
        unary::register(&mut r);
        logical::register(&mut r);
        reduce::register(&mut r);
        tensor_ops::register(&mut r);
        indexing::register(&mut r);
        loss::register(&mut r);
        normalization::register(&mut r);
        conv::register(&mut r);
        bits::register(&mut r);
        layout::register(&mut r);
        quant::register(&mut r);
        dropout::register(&mut r);
        attention::register(&mut r);
        einsum::register(&mut r);
        signal::register(&mut r);
        resize::register(&mut r);
        control::register(&mut r);
        fused::register(&mut r);
        r
    }

    /// Registers (or replaces) the constructor for `(domain, op_type)`.
    pub fn register<F>(&mut self, domain: &str, op_type: &str, ctor: F)
    where
        F: Fn(&NodeContext<'_>) -> Result<Box<dyn Operator>> + Send + Sync + 'static,
    {
        self.ctors.insert(
            (normalize_domain(domain).to_string(), op_type.to_string()),
            Arc::new(ctor),
        );
    }

    /// Every registered `(domain, op_type)`, sorted.
    pub fn op_types(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self.ctors.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Whether `(domain, op_type)` has a constructor.
    pub fn contains(&self, domain: &str, op_type: &str) -> bool {
        self.ctors
            .contains_key(&(normalize_domain(domain).to_string(), op_type.to_string()))
    }

    /// Builds the operator for a node, or [`EngineError::UnsupportedOp`].
    pub fn build(&self, ctx: &NodeContext<'_>) -> Result<Box<dyn Operator>> {
        let key = (
            normalize_domain(ctx.domain).to_string(),
            ctx.op_type.to_string(),
        );
        let ctor = self
            .ctors
            .get(&key)
            .ok_or_else(|| EngineError::UnsupportedOp {
                op_type: ctx.op_type.to_string(),
                domain: key.0.clone(),
                node: ctx.name.to_string(),
            })?;
        ctor(ctx)
    }
}

/// Checks an operator's input count is within `min..=max`.
pub fn check_arity(op: &str, got: usize, min: usize, max: usize) -> Result<()> {
    if got < min || got > max {
        let expected = if min == max {
            min.to_string()
        } else {
            format!("{min}..={max}")
        };
        return Err(EngineError::Arity {
            op: op.to_string(),
            expected,
            got,
        });
    }
    Ok(())
}

/// Checks all inputs share one dtype and returns it.
pub(crate) fn same_dtype(op: &str, inputs: &[TypeShape]) -> Result<crate::DType> {
    let first = inputs
        .first()
        .ok_or_else(|| EngineError::operand(op, "no inputs"))?
        .dtype;
    if let Some(other) = inputs.iter().find(|t| t.dtype != first) {
        return Err(EngineError::operand(
            op,
            format!("operands have different dtypes {first} and {}", other.dtype),
        ));
    }
    Ok(first)
}

/// Instantiates `$body` with `$T` bound to the Rust type of every dtype.
macro_rules! dispatch_all {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            other => return Err($crate::ops::no_kernel(other)),
        }
    };
}
pub(crate) use dispatch_all;

/// The error for a generic kernel asked to handle a dtype without an element type (strings,
/// low-precision codes).
pub(crate) fn no_kernel(dtype: crate::DType) -> EngineError {
    EngineError::OperandDtype {
        op: "element kernel".to_string(),
        dtype,
    }
}

/// Instantiates `$body` with `$T` bound to the Rust type of every numeric (non-bool) dtype;
/// `$other` binds any other dtype for the fallback arm.
macro_rules! dispatch_numeric {
    ($dtype:expr, $T:ident => $body:expr, $other:ident => $fallback:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    };
}
pub(crate) use dispatch_numeric;

/// Whether an optional input was omitted (the graph passes omitted inputs that precede present
/// ones as an empty 1-D constant).
pub(crate) fn is_absent(t: &TypeShape) -> bool {
    t.shape == [crate::Dim::Fixed(0)] && t.value.is_some()
}

/// Whether an optional input tensor was omitted (see [`is_absent`]).
pub(crate) fn is_absent_tensor(t: &Tensor) -> bool {
    t.shape() == [0]
}

/// Broadcasts the shapes of all `inputs` (numpy rules).
pub(crate) fn broadcast_all(inputs: &[TypeShape]) -> Result<Vec<crate::Dim>> {
    let mut shape: Vec<crate::Dim> = Vec::new();
    for t in inputs {
        shape = crate::broadcast::broadcast_dims(&shape, &t.shape)?;
    }
    Ok(shape)
}

/// Borrows `t` as `T`, or reports that `op` does not support its dtype.
pub(crate) fn typed<'a, T: crate::tensor::Element>(op: &str, t: &'a Tensor) -> Result<&'a [T]> {
    t.as_slice::<T>().ok_or_else(|| EngineError::OperandDtype {
        op: op.to_string(),
        dtype: t.dtype(),
    })
}

/// The error for a dtype an operator does not support.
pub(crate) fn unsupported_dtype(op: &str, dtype: crate::DType) -> EngineError {
    EngineError::OperandDtype {
        op: op.to_string(),
        dtype,
    }
}
