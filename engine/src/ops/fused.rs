//! Cloister-domain (`ai.cloister`) operators that the fusion passes produce:
//! `ScaledDotProductAttention`.
//!
//! Why a domain of our own: the fused attention node has no exact ONNX counterpart at the
//! opsets exporters use (ONNX `Attention` arrives at opset 23 with a different input layout), and
//! a fused node must keep the unfused graph's semantics exactly. It is registered through the
//! registry like any custom operator, so a model may also use it directly, and faster backends
//! replace it the same way.
//!
//! `ScaledDotProductAttention(Q, Kt, V[, mask])` with attribute `scale` (float, default 1)
//! computes `Softmax(Q·Kt · scale + mask, axis=-1) · V` with numpy `MatMul` broadcasting over
//! the leading (batch) dims: `Q` is `[..., Sq, D]`, `Kt` the key already transposed
//! `[..., D, Sk]` (what the exported graph multiplies by), `V` `[..., Sk, Dv]`, and `mask`
//! broadcasts with the `[..., Sq, Sk]` scores exactly as the unfused `Add` would. The
//! reference kernel works one query row at a time: a row of
//! `Sk` scores is all it holds, never the `[Sq, Sk]` matrix; it rounds to the element type
//! where the unfused graph's nodes would (after the product, the scaling, the mask and the
//! softmax), so fused and unfused results agree to an ulp.

use super::numeric::Float;
use super::{check_arity, typed, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::{broadcast_dims, broadcast_shape, broadcast_strides};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// The Cloister operator domain.
pub const CLOISTER_DOMAIN: &str = "ai.cloister";

/// The fused attention operator's name in [`CLOISTER_DOMAIN`].
pub const SDPA: &str = "ScaledDotProductAttention";

/// Fused scaled dot-product attention (see the module docs).
#[derive(Debug, Clone)]
pub struct ScaledDotProductAttention {
    scale: f64,
}

impl ScaledDotProductAttention {
    /// The operator with the score multiplier `scale`.
    pub fn new(scale: f64) -> ScaledDotProductAttention {
        ScaledDotProductAttention { scale }
    }
}

/// A mask's `[rows, cols]` tail and leading (batch) dims, rank < 2 promoted as broadcasting
/// would.
fn split_mask<T: Clone>(shape: &[T], one: T) -> (Vec<T>, [T; 2]) {
    match shape.len() {
        0 => (Vec::new(), [one.clone(), one]),
        1 => (Vec::new(), [one, shape[0].clone()]),
        r => (
            shape[..r - 2].to_vec(),
            [shape[r - 2].clone(), shape[r - 1].clone()],
        ),
    }
}

impl Operator for ScaledDotProductAttention {
    fn op_type(&self) -> &str {
        SDPA
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(SDPA, inputs.len(), 3, 4)?;
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        if !matches!(q.dtype, DType::F32 | DType::F64) {
            return Err(unsupported_dtype(SDPA, q.dtype));
        }
        if inputs.iter().any(|t| t.dtype != q.dtype) {
            return Err(EngineError::operand(SDPA, "inputs have different dtypes"));
        }
        if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
            return Err(EngineError::operand(SDPA, "Q, Kt and V need rank >= 2"));
        }
        let last2 = |t: &TypeShape| (t.shape[t.rank() - 2].clone(), t.shape[t.rank() - 1].clone());
        let ((sq, d), (dk, sk), (skv, dv)) = (last2(q), last2(k), last2(v));
        let clash = |a: &Dim, b: &Dim| matches!((a, b), (Dim::Fixed(x), Dim::Fixed(y)) if x != y);
        if clash(&d, &dk) {
            return Err(EngineError::operand(
                SDPA,
                format!(
                    "Q [.., {sq}, {d}], Kt [.., {dk}, {sk}] and V [.., {skv}, {dv}] do not chain"
                ),
            ));
        }
        let batch = |t: &TypeShape| t.shape[..t.rank() - 2].to_vec();
        let mut out = broadcast_dims(&batch(q), &batch(k))?;
        let (mut rows, mut cols) = (vec![sq], vec![sk]);
        if let Some(m) = inputs.get(3) {
            let (mb, [mr, mc]) = split_mask(&m.shape, Dim::Fixed(1));
            rows = broadcast_dims(&rows, &[mr])?;
            cols = broadcast_dims(&cols, &[mc])?;
            out = broadcast_dims(&out, &mb)?;
        }
        if clash(&cols[0], &skv) {
            return Err(EngineError::operand(
                SDPA,
                format!("scores have {} columns but V has {skv} rows", cols[0]),
            ));
        }
        out = broadcast_dims(&out, &batch(v))?;
        out.extend(rows);
        out.push(dv);
        Ok(vec![TypeShape::new(q.dtype, out)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(SDPA, inputs.len(), 3, 4)?;
        match inputs[0].dtype() {
            DType::F32 => self.compute::<f32>(inputs),
            DType::F64 => self.compute::<f64>(inputs),
            other => Err(unsupported_dtype(SDPA, other)),
        }
        .map(|t| vec![t])
    }
}

/// Iterates over every index of `shape` in row-major order, calling `f` with the offsets that
/// index has in each operand (given each operand's broadcast strides).
fn for_each_batch(shape: &[usize], strides: &[Vec<usize>], mut f: impl FnMut(usize, &[usize])) {
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    let mut offs = vec![0usize; strides.len()];
    for linear in 0..total {
        for (o, s) in offs.iter_mut().zip(strides) {
            *o = idx.iter().zip(s).map(|(i, s)| i * s).sum();
        }
        f(linear, &offs);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

impl ScaledDotProductAttention {
    fn compute<T: Float>(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        let mask = inputs.get(3).copied();
        if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
            return Err(EngineError::operand(SDPA, "Q, Kt and V need rank >= 2"));
        }
        let tail = |t: &Tensor| (t.shape()[t.rank() - 2], t.shape()[t.rank() - 1]);
        let batch = |t: &Tensor| t.shape()[..t.rank() - 2].to_vec();
        let ((sq, d), (dk, sk), (skv, dv)) = (tail(q), tail(k), tail(v));
        let (mask_b, [mr, mc]) = match mask {
            Some(m) => split_mask(m.shape(), 1),
            None => (Vec::new(), [1, 1]),
        };
        // The scores [rows, cols] are Q·Kt [sq, sk] broadcast with the mask's tail.
        let rows = broadcast_shape(&[sq], &[mr])?[0];
        let cols = broadcast_shape(&[sk], &[mc])?[0];
        if d != dk || cols != skv {
            return Err(EngineError::operand(
                SDPA,
                format!(
                    "Q {:?}, Kt {:?}, mask {:?} and V {:?} do not chain",
                    q.shape(),
                    k.shape(),
                    mask.map(|m| m.shape().to_vec()),
                    v.shape()
                ),
            ));
        }
        let mut out_b = broadcast_shape(&batch(q), &batch(k))?;
        out_b = broadcast_shape(&out_b, &mask_b)?;
        out_b = broadcast_shape(&out_b, &batch(v))?;
        let strides = [
            broadcast_strides(&batch(q), &out_b)?,
            broadcast_strides(&batch(k), &out_b)?,
            broadcast_strides(&batch(v), &out_b)?,
            broadcast_strides(&mask_b, &out_b)?,
        ];
        let qv = typed::<T>(SDPA, q)?;
        let kv = typed::<T>(SDPA, k)?;
        let vv = typed::<T>(SDPA, v)?;
        let mv = mask.map(|m| typed::<T>(SDPA, m)).transpose()?;
        // Strides of a broadcast (size-1) row or column are 0.
        let (mrs, mcs) = (usize::from(mr != 1) * mc, usize::from(mc != 1));
        let (qrs, kcs) = (usize::from(sq != 1), usize::from(sk != 1));
        let batches: usize = out_b.iter().product();
        let total = batches
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(dv))
            .ok_or_else(|| EngineError::operand(SDPA, "output too large"))?;
        let mut out = vec![T::from_f64(0.0); total];
        let mut product = vec![0f64; sk];
        let mut scores = vec![0f64; cols];
        let mut acc = vec![0f64; dv];
        let round = |x: f64| T::from_f64(x).to_f64();
        for_each_batch(&out_b, &strides, |b, offs| {
            let qo = offs[0] * sq * d;
            let ko = offs[1] * d * sk;
            let vo = offs[2] * skv * dv;
            let mo = offs[3] * mr * mc;
            for i in 0..rows {
                // Q[i, :] · Kt, one row, accumulated in f64 like MatMul's kernel.
                product.iter_mut().for_each(|s| *s = 0.0);
                let qi = i * qrs;
                let qrow = &qv[qo + qi * d..qo + (qi + 1) * d];
                for (p, &qip) in qrow.iter().enumerate() {
                    let qip = qip.to_f64();
                    let krow = &kv[ko + p * sk..ko + (p + 1) * sk];
                    for (s, &kpj) in product.iter_mut().zip(krow) {
                        *s += qip * kpj.to_f64();
                    }
                }
                let mut max = f64::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let mut x = round(round(product[j * kcs]) * self.scale);
                    if let Some(m) = mv {
                        x = round(x + m[mo + i * mrs + j * mcs].to_f64());
                    }
                    *s = x;
                    max = max.max(x);
                }
                let mut sum = 0.0;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                // Probabilities · V, as MatMul would with the rounded softmax.
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (j, s) in scores.iter().enumerate() {
                    let p = round(s / sum);
                    let vrow = &vv[vo + j * dv..vo + (j + 1) * dv];
                    for (a, &x) in acc.iter_mut().zip(vrow) {
                        *a += p * x.to_f64();
                    }
                }
                let o = (b * rows + i) * dv;
                for (dst, &a) in out[o..o + dv].iter_mut().zip(&acc) {
                    *dst = T::from_f64(a);
                }
            }
        });
        let mut shape = out_b;
        shape.extend([rows, dv]);
        Tensor::new(shape, T::wrap(out))
    }
}

/// Registers the `ai.cloister` operators.
pub(crate) fn register(r: &mut OpRegistry) {
    r.register(CLOISTER_DOMAIN, SDPA, |ctx| {
        let scale = f64::from(ctx.attributes.float_or("scale", 1.0)?);
        if !scale.is_finite() {
            return Err(ctx.attributes.invalid("scale", "must be finite"));
        }
        Ok(Box::new(ScaledDotProductAttention::new(scale)))
    });
}
