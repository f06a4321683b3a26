//! Broadcasting arithmetic: `Add`, `Sub`, `Mul`, `Div`, `Mod`, `Pow`, `BitShift`, and the
//! variadic `Max`, `Min`, `Sum`, `Mean`.
//!
//! Why one module: they share inference (numpy broadcasting, one dtype) and the driver
//! [`zip_broadcast`]; only the scalar function differs. Integer semantics come from [`Arith`]
//! (wrapping, checked division); integer `Mod`/`Pow`/`BitShift` compute in `i128` so no
//! intermediate can overflow, then wrap to the element type like numpy.

use super::cast::Convert;
use super::numeric::Arith;
use super::{
    broadcast_all, check_arity, dispatch_numeric, same_dtype, typed, unsupported_dtype, OpRegistry,
    Operator,
};
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
    /// Remainder: `fmod` semantics (sign of the dividend) or, for integers without `fmod`,
    /// Python's (sign of the divisor).
    Mod {
        /// The `fmod` attribute.
        fmod: bool,
    },
    /// `A ^ B`; the exponent may have another dtype, the result has `A`'s.
    Pow,
    /// Unsigned-integer shift; `left` or right.
    BitShift {
        /// Direction `LEFT`.
        left: bool,
    },
}

impl BinaryKind {
    fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "Add",
            BinaryKind::Sub => "Sub",
            BinaryKind::Mul => "Mul",
            BinaryKind::Div => "Div",
            BinaryKind::Mod { .. } => "Mod",
            BinaryKind::Pow => "Pow",
            BinaryKind::BitShift { .. } => "BitShift",
        }
    }

    fn accepts(self, d: DType) -> bool {
        match self {
            BinaryKind::BitShift { .. } => d.is_int(),
            _ => d.is_numeric(),
        }
    }
}

/// A broadcasting binary arithmetic operator.
#[derive(Debug, Clone)]
pub struct Binary {
    kind: BinaryKind,
}

fn int_mod(x: i128, y: i128, fmod: bool) -> Option<i128> {
    let r = x.checked_rem(y)?;
    if !fmod && r != 0 && ((r < 0) != (y < 0)) {
        Some(r + y)
    } else {
        Some(r)
    }
}

/// numpy's float remainder: `fmod`, or (without `fmod`) the sign of the divisor, with a zero
/// result taking the divisor's sign.
fn float_mod(a: f64, b: f64, fmod: bool) -> f64 {
    let m = a % b;
    if fmod || b == 0.0 {
        return m;
    }
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        0f64.copysign(b)
    }
}

fn int_pow(base: i128, exp: i128) -> i128 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 if exp % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        };
    }
    let mut acc: i128 = 1;
    let mut b = base;
    let mut e = exp;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    acc
}

impl Binary {
    /// An operator of the given kind.
    pub fn new(kind: BinaryKind) -> Binary {
        Binary { kind }
    }

    fn apply<T: Arith + Convert>(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let op = self.kind.name();
        if self.kind == BinaryKind::Pow {
            let x = typed::<T>(op, a)?;
            return dispatch_numeric!(b.dtype(), E => {
                let y = typed::<E>(op, b)?;
                pow::<T, E>(x, a.shape(), y, b.shape())
            }, other => Err(unsupported_dtype(op, other)));
        }
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
            BinaryKind::Mod { fmod } => zip_broadcast(x, a.shape(), y, b.shape(), |p, q| {
                if T::FLOAT {
                    T::from_f64(float_mod(p.to_f64(), q.to_f64(), fmod))
                } else {
                    match int_mod(p.to_i128(), q.to_i128(), fmod) {
                        Some(r) => T::from_i128(r),
                        None => {
                            div_error = true;
                            T::zero()
                        }
                    }
                }
            })?,
            BinaryKind::BitShift { left } => {
                zip_broadcast(x, a.shape(), y, b.shape(), |p, q| {
                    // numpy semantics: a shift by >= the width (or a negative one)
                    // saturates to 0, or -1 for an arithmetic right shift of a negative.
                    let (v, s) = (p.to_i128(), q.to_i128());
                    let s = if (0..127).contains(&s) { s as u32 } else { 127 };
                    T::from_i128(if left { v.wrapping_shl(s) } else { v >> s })
                })?
            }
            BinaryKind::Pow => unreachable_pow()?,
        };
        if div_error {
            return Err(EngineError::IntegerDivision { op: op.to_string() });
        }
        Tensor::new(shape, T::wrap(data))
    }
}

/// `Pow` is dispatched before the match; this arm exists for exhaustiveness only.
fn unreachable_pow<T>() -> Result<T> {
    Err(EngineError::operand("Pow", "internal dispatch error"))
}

fn pow<T: Convert, E: Convert>(x: &[T], xs: &[usize], y: &[E], ys: &[usize]) -> Result<Tensor> {
    let out_shape = crate::broadcast::broadcast_shape(xs, ys)?;
    let xb = crate::broadcast::broadcast_to(x, xs, &out_shape)?;
    let yb = crate::broadcast::broadcast_to(y, ys, &out_shape)?;
    let data: Vec<T> = xb
        .iter()
        .zip(&yb)
        .map(|(&p, &q)| {
            if !T::FLOAT && !E::FLOAT {
                T::from_i128(int_pow(p.to_i128(), q.to_i128()))
            } else {
                T::from_f64(p.to_f64().powf(q.to_f64()))
            }
        })
        .collect();
    Tensor::from_vec(out_shape, data)
}

impl Operator for Binary {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 2, 2)?;
        let dtype = if self.kind == BinaryKind::Pow {
            if !inputs[1].dtype.is_numeric() {
                return Err(unsupported_dtype(op, inputs[1].dtype));
            }
            inputs[0].dtype
        } else {
            same_dtype(op, inputs)?
        };
        if !self.kind.accepts(dtype) {
            return Err(unsupported_dtype(op, dtype));
        }
        let shape = broadcast_dims(&inputs[0].shape, &inputs[1].shape)?;
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        if !self.kind.accepts(a.dtype()) {
            return Err(unsupported_dtype(op, a.dtype()));
        }
        let out = dispatch_numeric!(a.dtype(), T => self.apply::<T>(a, b)?,
            other => return Err(unsupported_dtype(op, other)));
        Ok(vec![out])
    }
}

/// Which fold a [`Variadic`] node performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariadicKind {
    /// Elementwise maximum (NaN propagates).
    Max,
    /// Elementwise minimum (NaN propagates).
    Min,
    /// Elementwise sum.
    Sum,
    /// Elementwise mean.
    Mean,
}

impl VariadicKind {
    fn name(self) -> &'static str {
        match self {
            VariadicKind::Max => "Max",
            VariadicKind::Min => "Min",
            VariadicKind::Sum => "Sum",
            VariadicKind::Mean => "Mean",
        }
    }
}

/// `Max`, `Min`, `Sum`, `Mean` over one or more broadcast inputs.
#[derive(Debug, Clone)]
pub struct Variadic {
    kind: VariadicKind,
}

fn is_nan<T: Convert>(x: T) -> bool {
    T::FLOAT && x.to_f64().is_nan()
}

impl Variadic {
    fn fold<T: Arith + Convert>(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let op = self.kind.name();
        let mut shape = inputs[0].shape().to_vec();
        let mut acc: Vec<T> = typed::<T>(op, inputs[0])?.to_vec();
        for t in &inputs[1..] {
            let v = typed::<T>(op, t)?;
            let (s, d) = match self.kind {
                VariadicKind::Max => zip_broadcast(&acc, &shape, v, t.shape(), |p, q| {
                    if is_nan(p) || q > p {
                        if is_nan(p) {
                            p
                        } else {
                            q
                        }
                    } else {
                        p
                    }
                })?,
                VariadicKind::Min => zip_broadcast(&acc, &shape, v, t.shape(), |p, q| {
                    if is_nan(p) || q < p {
                        if is_nan(p) {
                            p
                        } else {
                            q
                        }
                    } else {
                        p
                    }
                })?,
                VariadicKind::Sum | VariadicKind::Mean => {
                    zip_broadcast(&acc, &shape, v, t.shape(), T::add)?
                }
            };
            // NaN in the newer operand propagates too.
            let d = if matches!(self.kind, VariadicKind::Max | VariadicKind::Min) && T::FLOAT {
                let vb = crate::broadcast::broadcast_to(v, t.shape(), &s)?;
                d.into_iter()
                    .zip(vb)
                    .map(|(r, q)| if is_nan(q) { q } else { r })
                    .collect()
            } else {
                d
            };
            shape = s;
            acc = d;
        }
        if self.kind == VariadicKind::Mean {
            let n = inputs.len() as f64;
            acc = acc
                .into_iter()
                .map(|x| T::from_f64(x.to_f64() / n))
                .collect();
        }
        Tensor::from_vec(shape, acc)
    }
}

impl Operator for Variadic {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 1, usize::MAX)?;
        let dtype = same_dtype(op, inputs)?;
        let ok = match self.kind {
            VariadicKind::Max | VariadicKind::Min => dtype.is_numeric(),
            _ => dtype.is_float(),
        };
        if !ok {
            return Err(unsupported_dtype(op, dtype));
        }
        Ok(vec![TypeShape::new(dtype, broadcast_all(inputs)?)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 1, usize::MAX)?;
        let out = dispatch_numeric!(inputs[0].dtype(), T => self.fold::<T>(inputs)?,
            other => return Err(unsupported_dtype(op, other)));
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for kind in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Pow,
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
    r.register("", "Mod", |ctx| {
        let fmod = ctx.attributes.int_or("fmod", 0)? != 0;
        Ok(Box::new(Binary::new(BinaryKind::Mod { fmod })))
    });
    r.register("", "BitShift", |ctx| {
        let left = match ctx.attributes.string("direction")? {
            Some("LEFT") => true,
            Some("RIGHT") => false,
            other => {
                return Err(ctx
                    .attributes
                    .invalid("direction", format!("must be LEFT or RIGHT, not {other:?}")))
            }
        };
        Ok(Box::new(Binary::new(BinaryKind::BitShift { left })))
    });
    for kind in [
        VariadicKind::Max,
        VariadicKind::Min,
        VariadicKind::Sum,
        VariadicKind::Mean,
    ] {
        r.register("", kind.name(), move |ctx| {
            if ctx.opset < 8 {
                return Err(EngineError::UnsupportedFeature(format!(
                    "{} before opset 8 (no broadcasting)",
                    ctx.op_type
                )));
            }
            Ok(Box::new(Variadic { kind }))
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
