//! Bit-level operators: `BitwiseAnd`, `BitwiseOr`, `BitwiseXor`, `BitwiseNot` on integers,
//! and `BitCast`, which reinterprets each element's little-endian bytes as another dtype of
//! the same width.
//!
//! Why separate from arithmetic: these treat integers as bit patterns (two's complement, at the
//! element's width), never as numbers; computing through `i128` and wrapping back gives exactly
//! that for every width.

use super::cast::Convert;
use super::{broadcast_all, check_arity, dispatch_numeric, same_dtype, typed, unsupported_dtype};
use super::{OpRegistry, Operator};
use crate::broadcast::zip_broadcast;
use crate::error::{EngineError, Result};
use crate::tensor::{Tensor, TensorData};
use crate::types::TypeShape;
use crate::DType;

/// Which bitwise operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum BitwiseKind {
    And,
    Or,
    Xor,
    Not,
}

impl BitwiseKind {
    fn name(self) -> &'static str {
        match self {
            BitwiseKind::And => "BitwiseAnd",
            BitwiseKind::Or => "BitwiseOr",
            BitwiseKind::Xor => "BitwiseXor",
            BitwiseKind::Not => "BitwiseNot",
        }
    }

    fn arity(self) -> usize {
        if self == BitwiseKind::Not {
            1
        } else {
            2
        }
    }
}

/// A bitwise operator on integer tensors (broadcasting for the binary ones).
#[derive(Debug, Clone)]
pub struct Bitwise {
    kind: BitwiseKind,
}

impl Bitwise {
    fn apply<T: Convert>(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let op = self.kind.name();
        let a = inputs[0];
        let x = typed::<T>(op, a)?;
        if self.kind == BitwiseKind::Not {
            let v = x.iter().map(|&e| T::from_i128(!e.to_i128())).collect();
            return Tensor::from_vec(a.shape().to_vec(), v);
        }
        let b = inputs[1];
        let y = typed::<T>(op, b)?;
        let f = |p: T, q: T| {
            let (p, q) = (p.to_i128(), q.to_i128());
            T::from_i128(match self.kind {
                BitwiseKind::And => p & q,
                BitwiseKind::Or => p | q,
                _ => p ^ q,
            })
        };
        let (shape, v) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
        Tensor::from_vec(shape, v)
    }
}

impl Operator for Bitwise {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), self.kind.arity(), self.kind.arity())?;
        let dtype = same_dtype(op, inputs)?;
        if !dtype.is_int() {
            return Err(unsupported_dtype(op, dtype));
        }
        Ok(vec![TypeShape::new(dtype, broadcast_all(inputs)?)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), self.kind.arity(), self.kind.arity())?;
        let d = inputs[0].dtype();
        if !d.is_int() {
            return Err(unsupported_dtype(op, d));
        }
        let out = dispatch_numeric!(d, T => self.apply::<T>(inputs)?,
            other => return Err(unsupported_dtype(op, other)));
        Ok(vec![out])
    }
}

/// `BitCast`: same bytes, another dtype of the same width.
#[derive(Debug, Clone)]
pub struct BitCast {
    to: DType,
}

/// The little-endian bytes of a tensor's elements, for fixed-width dtypes.
fn le_bytes(t: &Tensor) -> Option<Vec<u8>> {
    fn flat<const W: usize, T: Copy>(v: &[T], f: impl Fn(T) -> [u8; W]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    Some(match t.data() {
        TensorData::F32(v) => flat(v, f32::to_le_bytes),
        TensorData::F64(v) => flat(v, f64::to_le_bytes),
        TensorData::I64(v) => flat(v, i64::to_le_bytes),
        TensorData::I32(v) => flat(v, i32::to_le_bytes),
        TensorData::I8(v) => flat(v, i8::to_le_bytes),
        TensorData::U8(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::F16(v) => flat(v, half::f16::to_le_bytes),
        TensorData::BF16(v) => flat(v, half::bf16::to_le_bytes),
        TensorData::I16(v) => flat(v, i16::to_le_bytes),
        TensorData::U16(v) => flat(v, u16::to_le_bytes),
        TensorData::U32(v) => flat(v, u32::to_le_bytes),
        TensorData::U64(v) => flat(v, u64::to_le_bytes),
        _ => return None,
    })
}

fn fixed_width(d: DType) -> bool {
    d.is_numeric() || d == DType::Bool
}

impl Operator for BitCast {
    fn op_type(&self) -> &str {
        "BitCast"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("BitCast", inputs.len(), 1, 1)?;
        let from = inputs[0].dtype;
        if !fixed_width(from) || !fixed_width(self.to) || from.size_of() != self.to.size_of() {
            return Err(EngineError::operand(
                "BitCast",
                format!("cannot reinterpret {from} as {}", self.to),
            ));
        }
        Ok(vec![TypeShape::new(self.to, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("BitCast", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let bytes = le_bytes(x).ok_or_else(|| unsupported_dtype("BitCast", x.dtype()))?;
        if x.dtype().size_of() != self.to.size_of() || !fixed_width(self.to) {
            return Err(unsupported_dtype("BitCast", self.to));
        }
        Tensor::new(x.shape().to_vec(), crate::onnx::decode_raw(self.to, &bytes)).map(|t| vec![t])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for kind in [
        BitwiseKind::And,
        BitwiseKind::Or,
        BitwiseKind::Xor,
        BitwiseKind::Not,
    ] {
        r.register("", kind.name(), move |_| Ok(Box::new(Bitwise { kind })));
    }
    r.register("", "BitCast", |ctx| {
        let code = ctx.attributes.required_int("to")?;
        let code = i32::try_from(code).map_err(|_| {
            ctx.attributes
                .invalid("to", format!("bad type code {code}"))
        })?;
        Ok(Box::new(BitCast {
            to: DType::from_onnx(code)?,
        }))
    });
}
