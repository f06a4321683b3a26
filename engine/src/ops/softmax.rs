//! `Softmax` and `LogSoftmax`, with both axis conventions.
//!
//! Why the care: opset < 13 flattens the input to 2-D at `axis` (default 1) and normalises over
//! the whole trailing block, while opset >= 13 normalises along the single `axis` (default -1).
//! Both subtract the maximum before exponentiating and accumulate in `f64`, except that 16-bit
//! floats round after every step like the numpy reference (1 ulp of `bfloat16` is 0.4%, so
//! "more accurate" would mean "different").

use super::numeric::Float;
use super::{check_arity, typed, unsupported_dtype, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

/// A softmax (or log-softmax) operator.
#[derive(Debug, Clone)]
pub struct Softmax {
    axis: i64,
    /// Opset < 13: coerce to 2-D at `axis` and normalise over everything after it.
    legacy: bool,
    log: bool,
}

impl Softmax {
    /// Builds the operator; `legacy` selects opset < 13 semantics.
    pub fn new(axis: i64, legacy: bool, log: bool) -> Softmax {
        Softmax { axis, legacy, log }
    }

    fn name(&self) -> &'static str {
        if self.log {
            "LogSoftmax"
        } else {
            "Softmax"
        }
    }

    /// Splits `shape` into (outer, axis length, inner) blocks per the opset's rule.
    fn blocks(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        let rank = shape.len();
        if rank == 0 {
            return Err(EngineError::operand(
                self.name(),
                "input must have rank >= 1",
            ));
        }
        let axis = normalize_axis(self.name(), self.axis, rank)?;
        let outer: usize = shape[..axis].iter().product();
        if self.legacy {
            let n: usize = shape[axis..].iter().product();
            Ok((outer, n, 1))
        } else {
            let inner: usize = shape[axis + 1..].iter().product();
            Ok((outer, shape[axis], inner))
        }
    }

    fn compute<T: Float>(&self, x: &Tensor) -> Result<Tensor> {
        let v = typed::<T>(self.name(), x)?;
        let (outer, n, inner) = self.blocks(x.shape())?;
        let mut out = vec![T::from_f64(0.0); v.len()];
        let mut buf = vec![0f64; n];
        let narrow = matches!(T::DTYPE, DType::F16 | DType::BF16);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * n + k) * inner + i;
                let max = (0..n)
                    .map(|k| v[at(k)].to_f64())
                    .fold(f64::NEG_INFINITY, f64::max);
                if narrow && !self.log {
                    // 16-bit floats round after every step, as numpy (the reference) does:
                    // exp(x - max) rounded, summed, rounded, then divided.
                    // numpy sums float16 in float32 (pairwise) but ml_dtypes' bfloat16
                    // sequentially in bfloat16.
                    let mut sum = 0.0;
                    for (k, b) in buf.iter_mut().enumerate() {
                        let d = T::from_f64(v[at(k)].to_f64() - max).to_f64();
                        *b = T::from_f64(d.exp()).to_f64();
                        sum = if T::DTYPE == DType::BF16 {
                            T::from_f64(sum + *b).to_f64()
                        } else {
                            sum + *b
                        };
                    }
                    let sum = T::from_f64(sum).to_f64();
                    let sum = if sum == 0.0 { 1.0 } else { sum };
                    for (k, b) in buf.iter().enumerate() {
                        out[at(k)] = T::from_f64(b / sum);
                    }
                    continue;
                }
                let mut sum = 0.0;
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = v[at(k)].to_f64() - max;
                    sum += b.exp();
                }
                for (k, b) in buf.iter().enumerate() {
                    let y = if self.log {
                        b - sum.ln()
                    } else {
                        b.exp() / sum
                    };
                    out[at(k)] = T::from_f64(y);
                }
            }
        }
        Tensor::new(x.shape().to_vec(), T::wrap(out))
    }
}

impl Operator for Softmax {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        if !x.dtype.is_float() {
            return Err(unsupported_dtype(self.name(), x.dtype));
        }
        if x.rank() == 0 {
            return Err(EngineError::operand(
                self.name(),
                "input must have rank >= 1",
            ));
        }
        normalize_axis(self.name(), self.axis, x.rank())?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        let out = match x.dtype() {
            DType::F32 => self.compute::<f32>(x),
            DType::F64 => self.compute::<f64>(x),
            DType::F16 => self.compute::<half::f16>(x),
            DType::BF16 => self.compute::<half::bf16>(x),
            other => Err(unsupported_dtype(self.name(), other)),
        }?;
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for log in [false, true] {
        let op = if log { "LogSoftmax" } else { "Softmax" };
        r.register("", op, move |ctx| {
            let legacy = ctx.opset < 13;
            let axis = ctx.attributes.int_or("axis", if legacy { 1 } else { -1 })?;
            Ok(Box::new(Softmax::new(axis, legacy, log)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn last_axis_rows_sum_to_one() {
        let x = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 1000., 1000., 1000.]).unwrap();
        let y = Softmax::new(-1, false, false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        // softmax([1,2,3]) = [0.09003057, 0.24472847, 0.66524096]
        close(
            y.as_f32().unwrap(),
            &[
                0.090_030_57,
                0.244_728_47,
                0.665_240_96,
                1. / 3.,
                1. / 3.,
                1. / 3.,
            ],
        );
    }

    #[test]
    fn opset13_axis0_vs_legacy_flattening() {
        // shape [2, 2], axis 0: normalise down columns.
        let x = Tensor::from_f32(vec![2, 2], vec![0., 0., 0., (3f32).ln()]).unwrap();
        let y = Softmax::new(0, false, false).eval(&[&x]).unwrap().remove(0);
        close(y.as_f32().unwrap(), &[0.5, 0.25, 0.5, 0.75]);
        // Legacy axis 0 flattens everything into one row of 4.
        let y = Softmax::new(0, true, false).eval(&[&x]).unwrap().remove(0);
        close(y.as_f32().unwrap(), &[1. / 6., 1. / 6., 1. / 6., 0.5]);
        // Legacy axis 1 on [1, 2, 2] normalises over the trailing 4 elements.
        let x3 = x.clone().reshaped(vec![1, 2, 2]).unwrap();
        let y = Softmax::new(1, true, false).eval(&[&x3]).unwrap().remove(0);
        close(y.as_f32().unwrap(), &[1. / 6., 1. / 6., 1. / 6., 0.5]);
        // Opset 13 axis 1 on [1, 2, 2] normalises pairs down axis 1.
        let y = Softmax::new(1, false, false)
            .eval(&[&x3])
            .unwrap()
            .remove(0);
        close(y.as_f32().unwrap(), &[0.5, 0.25, 0.5, 0.75]);
    }

    #[test]
    fn log_softmax_and_bad_axis() {
        let x = Tensor::from_f64(vec![2], vec![0.0, 0.0]).unwrap();
        let y = Softmax::new(-1, false, true).eval(&[&x]).unwrap().remove(0);
        assert!((y.as_f64().unwrap()[0] - 0.5f64.ln()).abs() < 1e-12);
        assert!(Softmax::new(2, false, false).eval(&[&x]).is_err());
    }
}
