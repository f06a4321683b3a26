//! Pointwise activations: `Relu`, `Sigmoid`, `Tanh`.
//!
//! Why together: same shape rule (output = input), same driver; each differs only in the scalar
//! function. `Sigmoid` uses the two-branch form so large |x| never overflows `exp`.

use super::numeric::Float;
use super::{check_arity, typed, unsupported_dtype, OpRegistry, Operator};
use crate::error::Result;
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
            ActivationKind::Relu => matches!(
                d,
                DType::F32 | DType::F64 | DType::I64 | DType::I32 | DType::I8
            ),
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
            DType::I64 => self.relu_int::<i64>(x),
            DType::I32 => self.relu_int::<i32>(x),
            DType::I8 => self.relu_int::<i8>(x),
            other => Err(unsupported_dtype(self.kind.name(), other)),
        }?;
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
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
