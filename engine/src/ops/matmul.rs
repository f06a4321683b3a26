//! `MatMul` with numpy semantics: 1-D operands are promoted (and the added axis removed),
//! leading (batch) dimensions broadcast.
//!
//! Why a reference kernel: the i-k-j loop with an `f64` accumulator row is simple, cache-friendly
//! enough, and accurate; blocked and SIMD kernels will be checked against it.

use super::numeric::Accumulate;
use super::{check_arity, same_dtype, typed, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::{broadcast_dims, broadcast_shape, broadcast_strides};
use crate::error::{EngineError, Result};
use crate::shape::numel;
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Multiplies row-major `a` `[m, k]` by `b` `[k, n]` into `out` `[m, n]`.
pub(crate) fn matmul_2d<T: Accumulate>(
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    out: &mut [T],
) {
    let mut acc = vec![T::acc_zero(); n];
    for i in 0..m {
        acc.iter_mut().for_each(|x| *x = T::acc_zero());
        for p in 0..k {
            let aip = a[i * k + p];
            let brow = &b[p * n..(p + 1) * n];
            for (x, &bpj) in acc.iter_mut().zip(brow) {
                *x = T::mul_add(*x, aip, bpj);
            }
        }
        for (o, &x) in out[i * n..(i + 1) * n].iter_mut().zip(&acc) {
            *o = T::finish(x);
        }
    }
}

/// The `MatMul` operator.
#[derive(Debug, Clone, Default)]
pub struct MatMul;

const OP: &str = "MatMul";

/// Promotes 1-D operands: `a` `[k]` -> `[1, k]`, `b` `[k]` -> `[k, 1]`.
fn promote<D: Clone>(a: &[D], b: &[D], one: D) -> Result<(Vec<D>, Vec<D>)> {
    if a.is_empty() || b.is_empty() {
        return Err(EngineError::operand(OP, "operands must have rank >= 1"));
    }
    let a2 = if a.len() == 1 {
        vec![one.clone(), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2 = if b.len() == 1 {
        vec![b[0].clone(), one]
    } else {
        b.to_vec()
    };
    Ok((a2, b2))
}

impl MatMul {
    fn compute<T: Accumulate>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (x, y) = (typed::<T>(OP, a)?, typed::<T>(OP, b)?);
        let (sa, sb) = promote(a.shape(), b.shape(), 1)?;
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(EngineError::operand(
                OP,
                format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()),
            ));
        }
        let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
        let batch = broadcast_shape(ba, bb)?;
        let stride_a = broadcast_strides(ba, &batch)?;
        let stride_b = broadcast_strides(bb, &batch)?;
        let nbatch = numel(&batch)?;
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let total = numel(&out_shape)?;
        let mut out = vec![T::finish(T::acc_zero()); total];
        let mut idx = vec![0usize; batch.len()];
        for bi in 0..nbatch {
            // Decompose bi into a batch index, then into matrix offsets of a and b.
            let mut rem = bi;
            for ax in (0..batch.len()).rev() {
                idx[ax] = rem % batch[ax];
                rem /= batch[ax];
            }
            let oa: usize = idx.iter().zip(&stride_a).map(|(i, s)| i * s).sum();
            let ob: usize = idx.iter().zip(&stride_b).map(|(i, s)| i * s).sum();
            matmul_2d(
                &x[oa * m * k..(oa + 1) * m * k],
                &y[ob * k * n..(ob + 1) * k * n],
                m,
                k,
                n,
                &mut out[bi * m * n..(bi + 1) * m * n],
            );
        }
        // Drop the axes added by 1-D promotion.
        let mut shape = out_shape;
        if b.rank() == 1 {
            shape.pop();
        }
        if a.rank() == 1 {
            let at = shape.len() - usize::from(b.rank() != 1) - 1;
            shape.remove(at);
        }
        Tensor::new(shape, T::wrap(out))
    }
}

impl Operator for MatMul {
    fn op_type(&self) -> &str {
        OP
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(OP, inputs.len(), 2, 2)?;
        let dtype = same_dtype(OP, inputs)?;
        if matches!(dtype, DType::Bool) {
            return Err(unsupported_dtype(OP, dtype));
        }
        let (a, b) = (&inputs[0].shape, &inputs[1].shape);
        let (sa, sb) = promote(a, b, Dim::Fixed(1))?;
        let (m, k) = (&sa[sa.len() - 2], &sa[sa.len() - 1]);
        let (k2, n) = (&sb[sb.len() - 2], &sb[sb.len() - 1]);
        if let (Dim::Fixed(x), Dim::Fixed(y)) = (k, k2) {
            if x != y {
                return Err(EngineError::operand(
                    OP,
                    format!("inner dimensions differ: {x} vs {y}"),
                ));
            }
        }
        let mut shape = broadcast_dims(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
        if a.len() != 1 {
            shape.push(m.clone());
        }
        if b.len() != 1 {
            shape.push(n.clone());
        }
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(OP, inputs.len(), 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        let out = super::dispatch_numeric!(a.dtype(), T => Self::compute::<T>(a, b),
            other => Err(unsupported_dtype(OP, other)))?;
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", OP, |_| Ok(Box::new(MatMul)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(a: Tensor, b: Tensor) -> Result<Tensor> {
        Ok(MatMul.eval(&[&a, &b])?.remove(0))
    }

    #[test]
    fn two_by_two() {
        let a = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Tensor::from_f32(vec![3, 2], vec![7., 8., 9., 10., 11., 12.]).unwrap();
        let c = mm(a, b).unwrap();
        assert_eq!(c.shape(), &[2, 2]);
        assert_eq!(c.as_f32().unwrap(), &[58., 64., 139., 154.]);
    }

    #[test]
    fn vector_promotion() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]).unwrap();
        let b = Tensor::from_i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]).unwrap();
        let c = mm(a.clone(), b.clone()).unwrap();
        assert_eq!(c.shape(), &[3]);
        assert_eq!(c.as_i64().unwrap(), &[9, 12, 15]);
        let v = Tensor::from_i64(vec![3], vec![1, 0, -1]).unwrap();
        let c = mm(b, v).unwrap();
        assert_eq!(c.shape(), &[2]);
        assert_eq!(c.as_i64().unwrap(), &[-2, -2]);
        let d = mm(a.clone(), a).unwrap();
        assert_eq!(d.shape(), &[] as &[usize]);
        assert_eq!(d.as_i64().unwrap(), &[5]);
    }

    #[test]
    fn batched_with_broadcast() {
        // a: [2, 1, 2], b: [2, 1] broadcast over the batch.
        let a = Tensor::from_f64(vec![2, 1, 2], vec![1., 2., 3., 4.]).unwrap();
        let b = Tensor::from_f64(vec![2, 1], vec![10., 1.]).unwrap();
        let c = mm(a.clone(), b).unwrap();
        assert_eq!(c.shape(), &[2, 1, 1]);
        assert_eq!(c.as_f64().unwrap(), &[12., 34.]);
        // b: [3, 2, 1] against a's batch 2 -> cannot broadcast.
        let b3 = Tensor::from_f64(vec![3, 2, 1], vec![0.; 6]).unwrap();
        assert!(mm(a.clone(), b3).is_err());
        // [1, 2, 2] x [2, 2, 1]
        let a1 = Tensor::from_f64(vec![1, 2, 2], vec![1., 0., 0., 1.]).unwrap();
        let b2 = Tensor::from_f64(vec![2, 2, 1], vec![1., 2., 3., 4.]).unwrap();
        let c = mm(a1, b2).unwrap();
        assert_eq!(c.shape(), &[2, 2, 1]);
        assert_eq!(c.as_f64().unwrap(), &[1., 2., 3., 4.]);
    }

    #[test]
    fn inner_dimension_mismatch_is_an_error() {
        let a = Tensor::from_f32(vec![2, 3], vec![0.; 6]).unwrap();
        let b = Tensor::from_f32(vec![2, 3], vec![0.; 6]).unwrap();
        assert!(matches!(mm(a, b), Err(EngineError::InvalidOperand { .. })));
        let ts = |s: &[usize]| TypeShape::fixed(DType::F32, s);
        assert!(MatMul.infer(&[ts(&[2, 3]), ts(&[2, 3])]).is_err());
        let sym = TypeShape::new(DType::F32, vec![Dim::Symbolic("N".into()), Dim::Fixed(3)]);
        let out = MatMul.infer(&[sym, ts(&[3, 5])]).unwrap().remove(0);
        assert_eq!(out.shape, vec![Dim::Symbolic("N".into()), Dim::Fixed(5)]);
    }
}
