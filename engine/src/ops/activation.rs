//! Activations: `Relu`, `Sigmoid`, `Tanh`, and the ones with tensor parameters, `PRelu` (a
//! broadcast slope), `Clip` (bounds as inputs, or attributes before opset 11) and `SwiGLU`.
//!
//! Why together: same shape rule (output = input), same driver; each differs only in the scalar
//! function. `Sigmoid` uses the two-branch form so large |x| never overflows `exp`. The
//! attribute-only activations (`LeakyRelu`, `Elu`, ...) live in [`super::unary`].

use super::cast::Convert;
use super::numeric::Float;
use super::{
    check_arity, dispatch_numeric, is_absent, is_absent_tensor, same_dtype, typed,
    unsupported_dtype, OpRegistry, Operator,
};
use crate::broadcast::zip_broadcast;
use crate::error::{EngineError, Result};
use crate::tensor::{Element, Tensor};
use crate::types::TypeShape;
use crate::DType;

/// Which activation an [`Activation`] node applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl ActivationKind {
    fn name(self) -> &'static str {
        match self {
            ActivationKind::Relu => "Relu",
            ActivationKind::Sigmoid => "Sigmoid",
            ActivationKind::Tanh => "Tanh",
        }
    }

    fn accepts(self, d: DType) -> bool {
        match self {
            ActivationKind::Relu => d.is_float() || (d.is_int() && !d.is_unsigned()),
            ActivationKind::Sigmoid | ActivationKind::Tanh => d.is_float(),
        }
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A pointwise activation operator.
#[derive(Debug, Clone)]
pub struct Activation {
    kind: ActivationKind,
}

impl Activation {
    /// An operator of the given kind.
    pub fn new(kind: ActivationKind) -> Activation {
        Activation { kind }
    }

    fn float<T: Float>(&self, x: &Tensor) -> Result<Tensor> {
        let v = typed::<T>(self.kind.name(), x)?;
        let f: fn(f64) -> f64 = match self.kind {
            ActivationKind::Relu => |x| if x > 0.0 { x } else { 0.0 },
            ActivationKind::Sigmoid => sigmoid,
            ActivationKind::Tanh => f64::tanh,
        };
        let out = v.iter().map(|&e| T::from_f64(f(e.to_f64()))).collect();
        Tensor::new(x.shape().to_vec(), T::wrap(out))
    }

    fn relu_int<T: Element + Default>(&self, x: &Tensor) -> Result<Tensor> {
        let v = typed::<T>(self.kind.name(), x)?;
        let zero = T::default();
        let out = v.iter().map(|&e| if e > zero { e } else { zero }).collect();
        Tensor::new(x.shape().to_vec(), T::wrap(out))
    }
}

impl Operator for Activation {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.kind.name(), inputs.len(), 1, 1)?;
        if !self.kind.accepts(inputs[0].dtype) {
            return Err(unsupported_dtype(self.kind.name(), inputs[0].dtype));
        }
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.kind.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        if !self.kind.accepts(x.dtype()) {
            return Err(unsupported_dtype(self.kind.name(), x.dtype()));
        }
        let out = match x.dtype() {
            DType::F32 => self.float::<f32>(x),
            DType::F64 => self.float::<f64>(x),
            DType::F16 => self.float::<half::f16>(x),
            DType::BF16 => self.float::<half::bf16>(x),
            DType::I16 => self.relu_int::<i16>(x),
            DType::I64 => self.relu_int::<i64>(x),
            DType::I32 => self.relu_int::<i32>(x),
            DType::I8 => self.relu_int::<i8>(x),
            other => Err(unsupported_dtype(self.kind.name(), other)),
        }?;
        Ok(vec![out])
    }
}

/// `PRelu`: `x` where `x >= 0`, else `slope * x`, with `slope` broadcast to `x`.
#[derive(Debug, Clone, Default)]
pub struct PRelu;

fn prelu<T: Convert>(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    let (xv, sv) = (typed::<T>("PRelu", x)?, typed::<T>("PRelu", s)?);
    let (shape, out) = zip_broadcast(xv, x.shape(), sv, s.shape(), |p, q| {
        if T::FLOAT {
            let f = p.to_f64();
            if f < 0.0 {
                T::from_f64(f * q.to_f64())
            } else {
                p
            }
        } else {
            let i = p.to_i128();
            if i < 0 {
                T::from_i128(i * q.to_i128())
            } else {
                p
            }
        }
    })?;
    if shape != x.shape() {
        return Err(EngineError::operand(
            "PRelu",
            format!(
                "slope {:?} does not broadcast to X {:?}",
                s.shape(),
                x.shape()
            ),
        ));
    }
    Tensor::from_vec(shape, out)
}

impl Operator for PRelu {
    fn op_type(&self) -> &str {
        "PRelu"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("PRelu", inputs.len(), 2, 2)?;
        let dtype = same_dtype("PRelu", inputs)?;
        if !dtype.is_numeric() {
            return Err(unsupported_dtype("PRelu", dtype));
        }
        Ok(vec![TypeShape::new(dtype, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("PRelu", inputs.len(), 2, 2)?;
        let out = dispatch_numeric!(inputs[0].dtype(), T => prelu::<T>(inputs[0], inputs[1])?,
            other => return Err(unsupported_dtype("PRelu", other)));
        Ok(vec![out])
    }
}

/// `Clip`: clamps to `[min, max]` (either bound optional); NaN stays NaN.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Bounds from attributes (opset < 11); otherwise they are inputs 1 and 2.
    attr_bounds: Option<(f32, f32)>,
}

fn bound<T: Element>(t: Option<&&Tensor>) -> Result<Option<T>> {
    match t {
        None => Ok(None),
        Some(t) if is_absent_tensor(t) => Ok(None),
        Some(t) => {
            let v = typed::<T>("Clip", t)?;
            if v.len() != 1 {
                return Err(EngineError::operand("Clip", "min and max must be scalars"));
            }
            Ok(Some(v[0]))
        }
    }
}

fn clip<T: Convert>(x: &Tensor, lo: Option<T>, hi: Option<T>) -> Result<Tensor> {
    let v = typed::<T>("Clip", x)?;
    let out = v
        .iter()
        .map(|&e| {
            let e = match lo {
                Some(l) if e < l => l,
                _ => e,
            };
            match hi {
                Some(h) if e > h => h,
                _ => e,
            }
        })
        .collect();
    Tensor::from_vec(x.shape().to_vec(), out)
}

impl Operator for Clip {
    fn op_type(&self) -> &str {
        "Clip"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Clip", inputs.len(), 1, 3)?;
        let x = &inputs[0];
        if !x.dtype.is_numeric() {
            return Err(unsupported_dtype("Clip", x.dtype));
        }
        for b in &inputs[1..] {
            if !is_absent(b) && b.dtype != x.dtype {
                return Err(EngineError::operand("Clip", "bounds must have X's dtype"));
            }
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Clip", inputs.len(), 1, 3)?;
        let x = inputs[0];
        let out = dispatch_numeric!(x.dtype(), T => {
            let (lo, hi) = match self.attr_bounds {
                Some((l, h)) => (
                    Some(<T as Convert>::from_f64(f64::from(l))),
                    Some(<T as Convert>::from_f64(f64::from(h))),
                ),
                None => (bound::<T>(inputs.get(1))?, bound::<T>(inputs.get(2))?),
            };
            clip::<T>(x, lo, hi)?
        }, other => return Err(unsupported_dtype("Clip", other)));
        Ok(vec![out])
    }
}

/// `SwiGLU(A, B)`: `A * sigmoid(alpha * A) * B` (same shapes, no broadcasting), rounding to
/// the element type after each step like the reference.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    alpha: f64,
}

impl Operator for SwiGlu {
    fn op_type(&self) -> &str {
        "SwiGLU"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("SwiGLU", inputs.len(), 2, 2)?;
        let d = same_dtype("SwiGLU", inputs)?;
        if !d.is_float() || inputs[0].shape != inputs[1].shape {
            return Err(EngineError::operand(
                "SwiGLU",
                "A and B must be floats of one shape",
            ));
        }
        Ok(vec![TypeShape::new(d, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("SwiGLU", inputs.len(), 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        if a.shape() != b.shape() || a.dtype() != b.dtype() {
            return Err(EngineError::operand(
                "SwiGLU",
                "A and B must have one shape and dtype",
            ));
        }
        let f = |t: &Tensor| -> Result<Vec<f64>> {
            let c = super::cast::Cast::new(DType::F64).eval(&[t])?.remove(0);
            Ok(c.as_f64().unwrap_or_default().to_vec())
        };
        let r = |v: f64| -> f64 {
            match a.dtype() {
                DType::F32 => f64::from(v as f32),
                DType::F16 => half::f16::from_f64(v).to_f64(),
                DType::BF16 => half::bf16::from_f64(v).to_f64(),
                _ => v,
            }
        };
        let (av, bv) = (f(a)?, f(b)?);
        let y: Vec<f64> = av
            .iter()
            .zip(&bv)
            .map(|(&x, &z)| {
                let s = r(1.0 / r(1.0 + r(r(-self.alpha * x).exp())));
                r(r(x * s) * z)
            })
            .collect();
        let t = Tensor::from_f64(a.shape().to_vec(), y)?;
        super::cast::Cast::new(a.dtype()).eval(&[&t])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "SwiGLU", |ctx| {
        Ok(Box::new(SwiGlu {
            alpha: f64::from(ctx.attributes.float_or("alpha", 1.0)?),
        }))
    });
    r.register("", "PRelu", |ctx| {
        if ctx.opset < 7 {
            return Err(EngineError::UnsupportedFeature(
                "PRelu before opset 7".into(),
            ));
        }
        Ok(Box::new(PRelu))
    });
    r.register("", "Clip", |ctx| {
        let attr_bounds = if ctx.opset < 11 {
            let a = ctx.attributes;
            Some((a.float_or("min", f32::MIN)?, a.float_or("max", f32::MAX)?))
        } else {
            None
        };
        Ok(Box::new(Clip { attr_bounds }))
    });
    for kind in [
        ActivationKind::Relu,
        ActivationKind::Sigmoid,
        ActivationKind::Tanh,
    ] {
        r.register("", kind.name(), move |_| {
            Ok(Box::new(Activation::new(kind)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: ActivationKind, x: Tensor) -> Tensor {
        Activation::new(kind).eval(&[&x]).unwrap().remove(0)
    }

    #[test]
    fn relu_clamps_negatives() {
        let x = Tensor::from_f32(vec![4], vec![-1.0, 0.0, 2.5, -0.0]).unwrap();
        assert_eq!(
            run(ActivationKind::Relu, x).as_f32().unwrap(),
            &[0.0, 0.0, 2.5, 0.0]
        );
        let x = Tensor::from_i64(vec![2], vec![-3, 3]).unwrap();
        assert_eq!(run(ActivationKind::Relu, x).as_i64().unwrap(), &[0, 3]);
    }

    #[test]
    fn sigmoid_is_stable_and_exact_at_zero() {
        let x = Tensor::from_f32(vec![4], vec![0.0, 1000.0, -1000.0, 2.0]).unwrap();
        let y = run(ActivationKind::Sigmoid, x);
        let y = y.as_f32().unwrap();
        assert_eq!(y[0], 0.5);
        assert_eq!(y[1], 1.0);
        assert_eq!(y[2], 0.0);
        assert!((y[3] - 0.880_797_1).abs() < 1e-6);
        assert!(y.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn tanh_matches_std() {
        let x = Tensor::from_f64(vec![3], vec![-1.0, 0.0, 0.5]).unwrap();
        let y = run(ActivationKind::Tanh, x);
        assert_eq!(y.as_f64().unwrap(), &[(-1f64).tanh(), 0.0, 0.5f64.tanh()]);
    }

    #[test]
    fn sigmoid_rejects_integers() {
        let x = Tensor::from_i64(vec![1], vec![1]).unwrap();
        assert!(Activation::new(ActivationKind::Sigmoid)
            .eval(&[&x])
            .is_err());
    }
}
