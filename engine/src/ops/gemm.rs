//! `Gemm`: `Y = alpha * op(A) * op(B) + beta * C`, with `op` an optional transpose and `C`
//! unidirectionally broadcast to `[M, N]`.
//!
//! Why separate from `MatMul`: different attributes and broadcasting rule, 2-D only; it is the
//! shape most exporters emit for dense layers, so it gets its own reference kernel.

use super::matmul::matmul_2d;
use super::numeric::Float;
use super::{check_arity, same_dtype, typed, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::broadcast_to;
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

const OP: &str = "Gemm";

/// The `Gemm` operator.
#[derive(Debug, Clone)]
pub struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    /// Builds a Gemm with the given attributes.
    pub fn new(alpha: f32, beta: f32, trans_a: bool, trans_b: bool) -> Gemm {
        Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        }
    }

    fn compute<T: Float + super::numeric::Accumulate>(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let (a, b) = (inputs[0], inputs[1]);
        let (x, y) = (typed::<T>(OP, a)?, typed::<T>(OP, b)?);
        if a.rank() != 2 || b.rank() != 2 {
            return Err(EngineError::operand(OP, "A and B must be 2-D"));
        }
        let (m, k) = dims(a.shape(), self.trans_a);
        let (k2, n) = dims(b.shape(), self.trans_b);
        if k != k2 {
            return Err(EngineError::operand(
                OP,
                format!(
                    "inner dimensions differ: A {:?} (transA={}) x B {:?} (transB={})",
                    a.shape(),
                    self.trans_a,
                    b.shape(),
                    self.trans_b
                ),
            ));
        }
        let xa = if self.trans_a {
            transpose2(x, a.shape()[0], a.shape()[1])
        } else {
            x.to_vec()
        };
        let yb = if self.trans_b {
            transpose2(y, b.shape()[0], b.shape()[1])
        } else {
            y.to_vec()
        };
        let mut prod = vec![T::from_f64(0.0); m * n];
        matmul_2d(&xa, &yb, m, k, n, &mut prod);
        let alpha = f64::from(self.alpha);
        let beta = f64::from(self.beta);
        let c = match inputs.get(2) {
            Some(c) if self.beta != 0.0 => {
                let cv = typed::<T>(OP, c)?;
                Some(broadcast_to(cv, c.shape(), &[m, n]).map_err(|_| {
                    EngineError::operand(
                        OP,
                        format!("C {:?} does not broadcast to [{m}, {n}]", c.shape()),
                    )
                })?)
            }
            _ => None,
        };
        let out: Vec<T> = match c {
            Some(c) => prod
                .iter()
                .zip(&c)
                .map(|(&p, &c)| T::from_f64(alpha * p.to_f64() + beta * c.to_f64()))
                .collect(),
            None => prod
                .iter()
                .map(|&p| T::from_f64(alpha * p.to_f64()))
                .collect(),
        };
        Tensor::new(vec![m, n], T::wrap(out))
    }
}

fn dims(shape: &[usize], trans: bool) -> (usize, usize) {
    if trans {
        (shape[1], shape[0])
    } else {
        (shape[0], shape[1])
    }
}

fn transpose2<T: Copy>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for j in 0..cols {
        for i in 0..rows {
            out.push(v[i * cols + j]);
        }
    }
    out
}

impl Operator for Gemm {
    fn op_type(&self) -> &str {
        OP
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(OP, inputs.len(), 2, 3)?;
        let dtype = same_dtype(OP, inputs)?;
        if !dtype.is_float() {
            return Err(unsupported_dtype(OP, dtype));
        }
        let (a, b) = (&inputs[0].shape, &inputs[1].shape);
        if a.len() != 2 || b.len() != 2 {
            return Err(EngineError::operand(OP, "A and B must be 2-D"));
        }
        let pick = |s: &[Dim], t: bool| {
            if t {
                (s[1].clone(), s[0].clone())
            } else {
                (s[0].clone(), s[1].clone())
            }
        };
        let (m, k) = pick(a, self.trans_a);
        let (k2, n) = pick(b, self.trans_b);
        if let (Dim::Fixed(x), Dim::Fixed(y)) = (&k, &k2) {
            if x != y {
                return Err(EngineError::operand(
                    OP,
                    format!("inner dimensions differ: {x} vs {y}"),
                ));
            }
        }
        if let Some(c) = inputs.get(2) {
            if c.rank() > 2 {
                return Err(EngineError::operand(OP, "C must have rank <= 2"));
            }
        }
        Ok(vec![TypeShape::new(dtype, vec![m, n])])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(OP, inputs.len(), 2, 3)?;
        let out = match inputs[0].dtype() {
            DType::F32 => self.compute::<f32>(inputs),
            DType::F64 => self.compute::<f64>(inputs),
            DType::F16 => self.compute::<half::f16>(inputs),
            DType::BF16 => self.compute::<half::bf16>(inputs),
            other => Err(unsupported_dtype(OP, other)),
        }?;
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", OP, |ctx| {
        let a = ctx.attributes;
        let flag = |name: &str| -> Result<bool> {
            match a.int_or(name, 0)? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(a.invalid(name, format!("must be 0 or 1, got {v}"))),
            }
        };
        Ok(Box::new(Gemm::new(
            a.float_or("alpha", 1.0)?,
            a.float_or("beta", 1.0)?,
            flag("transA")?,
            flag("transB")?,
        )))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a23() -> Tensor {
        Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap()
    }

    #[test]
    fn plain_with_row_bias() {
        let b = Tensor::from_f32(vec![3, 2], vec![1., 0., 0., 1., 1., 1.]).unwrap();
        let c = Tensor::from_f32(vec![2], vec![10., 20.]).unwrap();
        let y = Gemm::new(1.0, 1.0, false, false)
            .eval(&[&a23(), &b, &c])
            .unwrap()
            .remove(0);
        // A*B = [[4, 5], [10, 11]]
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[14., 25., 20., 31.]);
    }

    #[test]
    fn transposes_alpha_beta_and_column_bias() {
        // A^T: A stored as [3, 2]; B^T: B stored as [2, 3].
        let at = Tensor::from_f32(vec![3, 2], vec![1., 4., 2., 5., 3., 6.]).unwrap();
        let bt = Tensor::from_f32(vec![2, 3], vec![1., 0., 1., 0., 1., 1.]).unwrap();
        let c = Tensor::from_f32(vec![2, 1], vec![1., -1.]).unwrap();
        let y = Gemm::new(2.0, 3.0, true, true)
            .eval(&[&at, &bt, &c])
            .unwrap()
            .remove(0);
        // A*B = [[4, 5], [10, 11]]; 2*AB + 3*C(col) = [[11, 13], [17, 19]]
        assert_eq!(y.as_f32().unwrap(), &[11., 13., 17., 19.]);
        // Without C.
        let y = Gemm::new(0.5, 1.0, true, true)
            .eval(&[&at, &bt])
            .unwrap()
            .remove(0);
        assert_eq!(y.as_f32().unwrap(), &[2., 2.5, 5., 5.5]);
    }

    #[test]
    fn shape_errors() {
        let b = Tensor::from_f32(vec![2, 3], vec![0.; 6]).unwrap();
        assert!(Gemm::new(1.0, 1.0, false, false)
            .eval(&[&a23(), &b])
            .is_err());
        let ok_b = Tensor::from_f32(vec![3, 2], vec![0.; 6]).unwrap();
        let bad_c = Tensor::from_f32(vec![3], vec![0.; 3]).unwrap();
        assert!(Gemm::new(1.0, 1.0, false, false)
            .eval(&[&a23(), &ok_b, &bad_c])
            .is_err());
    }
}
