//! Broadcasting binary arithmetic: `Add`, `Sub`, `Mul`, `Div`.
//!
//! Why one module: the four share inference (same dtype, numpy broadcasting) and the kernel
//! driver; only the scalar function differs. Integer semantics come from [`Arith`].

use super::numeric::Arith;
use super::{check_arity, same_dtype, typed, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::{broadcast_dims, zip_broadcast};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

/// Which arithmetic a [`Binary`] node performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// `A + B`.
    Add,
    /// `A - B`.
    Sub,
    /// `A * B`.
    Mul,
    /// `A / B` (integers truncate toward zero).
    Div,
}

impl BinaryKind {
    fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "Add",
            BinaryKind::Sub => "Sub",
            BinaryKind::Mul => "Mul",
            BinaryKind::Div => "Div",
        }
    }
}

/// A broadcasting binary arithmetic operator.
#[derive(Debug, Clone)]
pub struct Binary {
    kind: BinaryKind,
}

impl Binary {
    /// An operator of the given kind.
    pub fn new(kind: BinaryKind) -> Binary {
        Binary { kind }
    }

    fn apply<T: Arith>(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let op = self.kind.name();
        let (x, y) = (typed::<T>(op, a)?, typed::<T>(op, b)?);
        let mut div_error = false;
        let (shape, data) = match self.kind {
            BinaryKind::Add => zip_broadcast(x, a.shape(), y, b.shape(), T::add)?,
            BinaryKind::Sub => zip_broadcast(x, a.shape(), y, b.shape(), T::sub)?,
            BinaryKind::Mul => zip_broadcast(x, a.shape(), y, b.shape(), T::mul)?,
            BinaryKind::Div => zip_broadcast(x, a.shape(), y, b.shape(), |p, q| {
                p.div(q).unwrap_or_else(|| {
                    div_error = true;
                    T::zero()
                })
            })?,
        };
        if div_error {
            return Err(EngineError::IntegerDivision { op: op.to_string() });
        }
        Tensor::new(shape, T::wrap(data))
    }
}

impl Operator for Binary {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.kind.name(), inputs.len(), 2, 2)?;
        let dtype = same_dtype(self.kind.name(), inputs)?;
        if dtype == DType::Bool {
            return Err(unsupported_dtype(self.kind.name(), dtype));
        }
        let shape = broadcast_dims(&inputs[0].shape, &inputs[1].shape)?;
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.kind.name(), inputs.len(), 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        let out = match a.dtype() {
            DType::F32 => self.apply::<f32>(a, b),
            DType::F64 => self.apply::<f64>(a, b),
            DType::I64 => self.apply::<i64>(a, b),
            DType::I32 => self.apply::<i32>(a, b),
            DType::I8 => self.apply::<i8>(a, b),
            DType::U8 => self.apply::<u8>(a, b),
            DType::Bool => Err(unsupported_dtype(self.kind.name(), a.dtype())),
        }?;
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for kind in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
    ] {
        r.register("", kind.name(), move |ctx| {
            // Opset < 7 used `broadcast`/`axis` attributes with different semantics.
            if ctx.opset < 7 {
                return Err(EngineError::UnsupportedFeature(format!(
                    "{} before opset 7 (legacy broadcast attribute)",
                    ctx.op_type
                )));
            }
            Ok(Box::new(Binary::new(kind)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: BinaryKind, a: Tensor, b: Tensor) -> Result<Tensor> {
        Ok(Binary::new(kind).eval(&[&a, &b])?.remove(0))
    }

    #[test]
    fn add_broadcasts_row_vector() {
        let a = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Tensor::from_f32(vec![3], vec![10., 20., 30.]).unwrap();
        let c = run(BinaryKind::Add, a, b).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.as_f32().unwrap(), &[11., 22., 33., 14., 25., 36.]);
    }

    #[test]
    fn sub_mul_div_broadcast_both_ways() {
        let a = Tensor::from_f32(vec![2, 1], vec![1., 2.]).unwrap();
        let b = Tensor::from_f32(vec![1, 3], vec![1., 2., 4.]).unwrap();
        let s = run(BinaryKind::Sub, a.clone(), b.clone()).unwrap();
        assert_eq!(s.shape(), &[2, 3]);
        assert_eq!(s.as_f32().unwrap(), &[0., -1., -3., 1., 0., -2.]);
        let m = run(BinaryKind::Mul, a.clone(), b.clone()).unwrap();
        assert_eq!(m.as_f32().unwrap(), &[1., 2., 4., 2., 4., 8.]);
        let d = run(BinaryKind::Div, a, b).unwrap();
        assert_eq!(d.as_f32().unwrap(), &[1., 0.5, 0.25, 2., 1., 0.5]);
    }

    #[test]
    fn scalar_and_integer_semantics() {
        let a = Tensor::from_i64(vec![3], vec![7, -7, i64::MAX]).unwrap();
        let b = Tensor::scalar(2i64);
        let d = run(BinaryKind::Div, a.clone(), b.clone()).unwrap();
        assert_eq!(d.as_i64().unwrap(), &[3, -3, i64::MAX / 2]);
        let s = run(BinaryKind::Add, a.clone(), b).unwrap();
        assert_eq!(s.as_i64().unwrap()[2], i64::MIN + 1, "integers wrap");
        let zero = Tensor::scalar(0i64);
        assert!(matches!(
            run(BinaryKind::Div, a, zero),
            Err(EngineError::IntegerDivision { .. })
        ));
    }

    #[test]
    fn rejects_mismatches() {
        let a = Tensor::from_f32(vec![2, 3], vec![0.; 6]).unwrap();
        let b = Tensor::from_f32(vec![2], vec![0.; 2]).unwrap();
        assert!(matches!(
            run(BinaryKind::Add, a.clone(), b),
            Err(EngineError::Broadcast { .. })
        ));
        let c = Tensor::from_i64(vec![3], vec![0; 3]).unwrap();
        assert!(matches!(
            run(BinaryKind::Add, a, c),
            Err(EngineError::OperandDtype { .. })
        ));
        let f = |d| TypeShape::fixed(d, &[3]);
        assert!(Binary::new(BinaryKind::Add)
            .infer(&[f(DType::F32), f(DType::I64)])
            .is_err());
    }
}
