//! Comparisons and boolean logic: `Equal`, `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`,
//! `And`, `Or`, `Xor`, `Not`, and the selector `Where`.
//!
//! Why together: all produce or consume `bool` tensors under numpy broadcasting; comparisons
//! use the element type's own ordering (IEEE for floats, so NaN compares unequal to
//! everything, as in numpy).

use super::{
    broadcast_all, check_arity, dispatch_all, same_dtype, typed, unsupported_dtype, OpRegistry,
    Operator,
};
use crate::broadcast::{broadcast_shape, broadcast_to, zip_broadcast};
use crate::error::{EngineError, Result};
use crate::tensor::{Element, Tensor, TensorData};
use crate::types::TypeShape;
use crate::DType;

/// Which comparison or connective a [`Compare`] node computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CompareKind {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl CompareKind {
    fn name(self) -> &'static str {
        match self {
            CompareKind::Equal => "Equal",
            CompareKind::Less => "Less",
            CompareKind::Greater => "Greater",
            CompareKind::LessOrEqual => "LessOrEqual",
            CompareKind::GreaterOrEqual => "GreaterOrEqual",
            CompareKind::And => "And",
            CompareKind::Or => "Or",
            CompareKind::Xor => "Xor",
        }
    }

    fn accepts(self, d: DType) -> bool {
        match self {
            CompareKind::And | CompareKind::Or | CompareKind::Xor => d == DType::Bool,
            CompareKind::Equal => true,
            _ => d != DType::Bool && d != DType::String,
        }
    }
}

/// A broadcasting comparison or boolean connective; the output is `bool`.
#[derive(Debug, Clone)]
pub struct Compare {
    kind: CompareKind,
}

impl Compare {
    fn apply<T: Element>(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let op = self.kind.name();
        let (x, y) = (typed::<T>(op, a)?, typed::<T>(op, b)?);
        let f: fn(T, T) -> bool = match self.kind {
            CompareKind::Equal => |p, q| p == q,
            CompareKind::Less => |p, q| p < q,
            CompareKind::Greater => |p, q| p > q,
            CompareKind::LessOrEqual => |p, q| p <= q,
            CompareKind::GreaterOrEqual => |p, q| p >= q,
            // The connectives are evaluated on `bool` in `eval` before dispatch.
            CompareKind::And | CompareKind::Or | CompareKind::Xor => |p, q| p != q,
        };
        let (shape, data) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
        Tensor::from_bool(shape, data)
    }
}

impl Operator for Compare {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 2, 2)?;
        let dtype = same_dtype(op, inputs)?;
        if !self.kind.accepts(dtype) {
            return Err(unsupported_dtype(op, dtype));
        }
        Ok(vec![TypeShape::new(DType::Bool, broadcast_all(inputs)?)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        if matches!(
            self.kind,
            CompareKind::And | CompareKind::Or | CompareKind::Xor
        ) {
            let (x, y) = (typed::<bool>(op, a)?, typed::<bool>(op, b)?);
            let f: fn(bool, bool) -> bool = match self.kind {
                CompareKind::And => |p, q| p && q,
                CompareKind::Or => |p, q| p || q,
                _ => |p, q| p ^ q,
            };
            let (shape, data) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
            return Ok(vec![Tensor::from_bool(shape, data)?]);
        }
        if let (TensorData::String(x), TensorData::String(y)) = (a.data(), b.data()) {
            let (xr, yr): (Vec<&String>, Vec<&String>) = (x.iter().collect(), y.iter().collect());
            let (shape, data) = zip_broadcast(&xr, a.shape(), &yr, b.shape(), |p, q| p == q)?;
            return Ok(vec![Tensor::from_bool(shape, data)?]);
        }
        let out = dispatch_all!(a.dtype(), T => self.apply::<T>(a, b)?);
        Ok(vec![out])
    }
}

/// `Not`: boolean negation.
#[derive(Debug, Clone, Default)]
pub struct Not;

impl Operator for Not {
    fn op_type(&self) -> &str {
        "Not"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Not", inputs.len(), 1, 1)?;
        if inputs[0].dtype != DType::Bool {
            return Err(unsupported_dtype("Not", inputs[0].dtype));
        }
        Ok(vec![TypeShape::new(DType::Bool, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Not", inputs.len(), 1, 1)?;
        let v = typed::<bool>("Not", inputs[0])?;
        Ok(vec![Tensor::from_bool(
            inputs[0].shape().to_vec(),
            v.iter().map(|b| !b).collect(),
        )?])
    }
}

/// `Where(cond, X, Y)`: `X` where `cond`, else `Y`, all three broadcast.
#[derive(Debug, Clone, Default)]
pub struct Where;

fn select<T: Element>(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let shape = broadcast_shape(&broadcast_shape(c.shape(), x.shape())?, y.shape())?;
    let cb = broadcast_to(typed::<bool>("Where", c)?, c.shape(), &shape)?;
    let xb = broadcast_to(typed::<T>("Where", x)?, x.shape(), &shape)?;
    let yb = broadcast_to(typed::<T>("Where", y)?, y.shape(), &shape)?;
    let out = cb
        .iter()
        .zip(xb.iter().zip(&yb))
        .map(|(&c, (&p, &q))| if c { p } else { q })
        .collect();
    Tensor::from_vec(shape, out)
}

impl Operator for Where {
    fn op_type(&self) -> &str {
        "Where"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Where", inputs.len(), 3, 3)?;
        if inputs[0].dtype != DType::Bool {
            return Err(EngineError::operand("Where", "condition must be bool"));
        }
        let dtype = same_dtype("Where", &inputs[1..])?;
        Ok(vec![TypeShape::new(dtype, broadcast_all(inputs)?)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Where", inputs.len(), 3, 3)?;
        let (c, x, y) = (inputs[0], inputs[1], inputs[2]);
        let out = dispatch_all!(x.dtype(), T => select::<T>(c, x, y)?);
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for kind in [
        CompareKind::Equal,
        CompareKind::Less,
        CompareKind::Greater,
        CompareKind::LessOrEqual,
        CompareKind::GreaterOrEqual,
        CompareKind::And,
        CompareKind::Or,
        CompareKind::Xor,
    ] {
        r.register("", kind.name(), move |ctx| {
            if ctx.opset < 7 {
                return Err(EngineError::UnsupportedFeature(format!(
                    "{} before opset 7 (legacy broadcast attribute)",
                    ctx.op_type
                )));
            }
            Ok(Box::new(Compare { kind }))
        });
    }
    r.register("", "Not", |_| Ok(Box::new(Not)));
    r.register("", "Where", |_| Ok(Box::new(Where)));
}
