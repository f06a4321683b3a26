//! `Attention` (opsets 23–25): scaled dot-product attention with optional masks, causal and
//! sliding-window masking, a KV cache (`past_key`/`past_value` or `nonpad_kv_seqlen`),
//! grouped-query heads, soft-capping and the `qk_matmul_output` modes.
//!
//! Why a step-by-step port: the operator's semantics are defined by the ONNX reference, and at
//! 16-bit precision one ulp exceeds the suite's tolerance, so each step (scale, matmul, bias,
//! softmax, matmul) rounds to the element type exactly where the reference's numpy program
//! does. Values are carried as `f64` with an explicit rounding function per dtype.

use super::cast::Cast;
use super::{check_arity, is_absent_tensor, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::{broadcast_shape, broadcast_to};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// A dense array of `f64` values (the working representation).
#[derive(Debug, Clone)]
struct Arr {
    shape: Vec<usize>,
    v: Vec<f64>,
}

impl Arr {
    fn of(t: &Tensor) -> Result<Arr> {
        let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
        Ok(Arr {
            shape: t.shape().to_vec(),
            v: c.as_f64().unwrap_or_default().to_vec(),
        })
    }

    fn zeros(shape: &[usize]) -> Arr {
        Arr {
            shape: shape.to_vec(),
            v: vec![0.0; shape.iter().product()],
        }
    }

    fn map(mut self, f: impl Fn(f64) -> f64) -> Arr {
        self.v.iter_mut().for_each(|x| *x = f(*x));
        self
    }

    /// Elementwise `f(self, other)` under numpy broadcasting.
    fn zip(&self, o: &Arr, f: impl Fn(f64, f64) -> f64) -> Result<Arr> {
        let shape = broadcast_shape(&self.shape, &o.shape)?;
        let a = broadcast_to(&self.v, &self.shape, &shape)?;
        let b = broadcast_to(&o.v, &o.shape, &shape)?;
        Ok(Arr {
            v: a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect(),
            shape,
        })
    }

    /// `[B, S, H*D]` -> `[B, H, S, D]`.
    fn split_heads(&self, heads: usize) -> Result<Arr> {
        let (b, s, hd) = (self.shape[0], self.shape[1], self.shape[2]);
        if heads == 0 || hd % heads != 0 {
            return Err(EngineError::operand(
                "Attention",
                "hidden size not divisible by heads",
            ));
        }
        let d = hd / heads;
        let mut v = vec![0.0; self.v.len()];
        for bi in 0..b {
            for si in 0..s {
                for h in 0..heads {
                    for di in 0..d {
                        v[((bi * heads + h) * s + si) * d + di] =
                            self.v[(bi * s + si) * hd + h * d + di];
                    }
                }
            }
        }
        Ok(Arr {
            shape: vec![b, heads, s, d],
            v,
        })
    }

    /// `[B, H, S, D]` -> `[B, S, H*D]`.
    fn merge_heads(&self) -> Arr {
        let (b, h, s, d) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let mut v = vec![0.0; self.v.len()];
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    for di in 0..d {
                        v[(bi * s + si) * h * d + hi * d + di] =
                            self.v[((bi * h + hi) * s + si) * d + di];
                    }
                }
            }
        }
        Arr {
            shape: vec![b, s, h * d],
            v,
        }
    }

    /// Concatenates along axis 2 of 4-D arrays.
    fn concat2(&self, o: &Arr) -> Result<Arr> {
        let (a, b) = (&self.shape, &o.shape);
        if a.len() != 4 || b.len() != 4 || a[0] != b[0] || a[1] != b[1] || a[3] != b[3] {
            return Err(EngineError::operand(
                "Attention",
                "past and new K/V shapes differ",
            ));
        }
        let (n, h, d) = (a[0], a[1], a[3]);
        let s = a[2] + b[2];
        let mut v = Vec::with_capacity(n * h * s * d);
        for i in 0..n * h {
            v.extend_from_slice(&self.v[i * a[2] * d..(i + 1) * a[2] * d]);
            v.extend_from_slice(&o.v[i * b[2] * d..(i + 1) * b[2] * d]);
        }
        Ok(Arr {
            shape: vec![n, h, s, d],
            v,
        })
    }

    /// Repeats each head `reps` times along axis 1 (numpy `repeat`).
    fn repeat_heads(&self, reps: usize) -> Arr {
        let (n, h, s, d) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let block = s * d;
        let mut v = Vec::with_capacity(self.v.len() * reps);
        for i in 0..n * h {
            for _ in 0..reps {
                v.extend_from_slice(&self.v[i * block..(i + 1) * block]);
            }
        }
        Arr {
            shape: vec![n, h * reps, s, d],
            v,
        }
    }
}

/// Batched `a @ b` over 4-D arrays `[N, H, M, K] x [N, H, K, P]`.
fn matmul(a: &Arr, b: &Arr, round: &dyn Fn(f64) -> f64) -> Result<Arr> {
    let (n, h, m, k) = (a.shape[0], a.shape[1], a.shape[2], a.shape[3]);
    if b.shape[0] != n || b.shape[1] != h || b.shape[2] != k {
        return Err(EngineError::operand(
            "Attention",
            "matmul shapes do not match",
        ));
    }
    let p = b.shape[3];
    let mut v = vec![0.0; n * h * m * p];
    for i in 0..n * h {
        for r in 0..m {
            for c in 0..p {
                let mut acc = 0.0;
                for j in 0..k {
                    acc += a.v[(i * m + r) * k + j] * b.v[(i * k + j) * p + c];
                }
                v[(i * m + r) * p + c] = round(acc);
            }
        }
    }
    Ok(Arr {
        shape: vec![n, h, m, p],
        v,
    })
}

/// Rounding to a float dtype.
fn rounder(d: DType) -> Box<dyn Fn(f64) -> f64> {
    match d {
        DType::F32 => Box::new(|x| f64::from(x as f32)),
        DType::F16 => Box::new(|x| half::f16::from_f64(x).to_f64()),
        DType::BF16 => Box::new(|x| half::bf16::from_f64(x).to_f64()),
        _ => Box::new(|x| x),
    }
}

/// The `Attention` operator.
#[derive(Debug, Clone)]
pub struct Attention {
    scale: Option<f32>,
    is_causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    softmax_precision: Option<DType>,
    softcap: Option<f32>,
    qk_mode: i64,
    left_window: i64,
    right_window: i64,
}

impl Attention {
    fn present(inputs: &[&Tensor], i: usize) -> Option<usize> {
        inputs.get(i).filter(|t| !is_absent_tensor(t)).map(|_| i)
    }

    fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = "Attention";
        let dt = inputs[0].dtype();
        let rt = rounder(dt);
        let mut q = Arr::of(inputs[0])?;
        let mut k = Arr::of(inputs[1])?;
        let mut v = Arr::of(inputs[2])?;
        let mask_t = Attention::present(inputs, 3).map(|i| inputs[i]);
        let past_k = Attention::present(inputs, 4)
            .map(|i| Arr::of(inputs[i]))
            .transpose()?;
        let past_v = Attention::present(inputs, 5)
            .map(|i| Arr::of(inputs[i]))
            .transpose()?;
        let nonpad: Option<Vec<i64>> = Attention::present(inputs, 6)
            .map(|i| super::tensor_ops::int_list(op, inputs[i]))
            .transpose()?;
        if past_k.is_some() != past_v.is_some() {
            return Err(EngineError::operand(
                op,
                "past_key and past_value go together",
            ));
        }
        let rank3 = q.shape.len() == 3;
        if rank3 {
            let (qh, kh) = self.q_heads.zip(self.kv_heads).ok_or_else(|| {
                EngineError::operand(op, "3-D inputs need q_num_heads and kv_num_heads")
            })?;
            q = q.split_heads(qh)?;
            k = k.split_heads(kh)?;
            v = v.split_heads(kh)?;
        }
        if q.shape.len() != 4 || k.shape.len() != 4 || v.shape.len() != 4 {
            return Err(EngineError::operand(op, "Q, K, V must be 3-D or 4-D"));
        }
        let batch = q.shape[0];
        let scale = match self.scale {
            Some(s) => f64::from(s),
            None => 1.0 / (q.shape[3] as f64).sqrt(),
        };
        let scale = rt(scale.sqrt());
        if let Some(p) = &past_k {
            k = p.concat2(&k)?;
        }
        if let Some(p) = &past_v {
            v = p.concat2(&v)?;
        }
        let (present_k, present_v) = (k.clone(), v.clone());
        let (qs, kvs) = (q.shape[2], k.shape[2]);
        let neg = f64::NEG_INFINITY;
        let mut bias = Arr::zeros(&[qs, kvs]);
        // The mask, padded on its last axis to the total KV length.
        let mask: Option<(Arr, bool)> = match mask_t {
            None => None,
            Some(t) => {
                let is_bool = t.dtype() == DType::Bool;
                let mut m = Arr::of(t)?;
                let last = *m.shape.last().unwrap_or(&0);
                if last < kvs {
                    let rows = m.v.len() / last.max(1);
                    let fill = if is_bool { 0.0 } else { neg };
                    let mut v2 = Vec::with_capacity(rows * kvs);
                    for r in 0..rows {
                        v2.extend_from_slice(&m.v[r * last..(r + 1) * last]);
                        v2.extend(std::iter::repeat_n(fill, kvs - last));
                    }
                    if let Some(l) = m.shape.last_mut() {
                        *l = kvs;
                    }
                    m.v = v2;
                }
                Some((m, is_bool))
            }
        };
        let window = self.left_window >= 0 || self.right_window >= 0;
        // Per-batch offsets (external cache) or one offset (internal cache / none).
        let offsets: Vec<i64> = match (&past_k, &nonpad) {
            (None, Some(np)) => np.iter().map(|&n| n - qs as i64).collect(),
            (Some(p), _) => vec![p.shape[2] as i64],
            _ => vec![0],
        };
        let per_batch = past_k.is_none() && nonpad.is_some();
        let allowed_bias = |allowed: &dyn Fn(i64, usize, usize) -> bool| -> Arr {
            let nb = if per_batch { offsets.len() } else { 1 };
            let mut a = Arr::zeros(&[nb, qs, kvs]);
            for (b, &off) in offsets.iter().enumerate().take(nb) {
                for i in 0..qs {
                    for j in 0..kvs {
                        if !allowed(off, i, j) {
                            a.v[(b * qs + i) * kvs + j] = neg;
                        }
                    }
                }
            }
            if per_batch {
                a.shape = vec![nb, 1, qs, kvs];
            } else {
                a.shape = vec![qs, kvs];
            }
            a
        };
        if self.is_causal {
            let base = match &mask {
                None => Arr::zeros(&[qs, kvs]),
                Some((m, true)) => m.clone().map(|x| if x != 0.0 { 0.0 } else { neg }),
                Some((m, false)) => m.clone(),
            };
            let base = if window {
                Arr::zeros(&[qs, kvs]).zip(&base, |a, b| rt(a + b))?
            } else {
                base
            };
            let causal = allowed_bias(&|off, i, j| (j as i64) <= i as i64 + off);
            bias = base.zip(&causal, |a, b| rt(a + b))?;
        } else if let Some((m, is_bool)) = &mask {
            let m = if *is_bool {
                m.clone().map(|x| if x != 0.0 { 0.0 } else { neg })
            } else {
                m.clone()
            };
            bias = bias.zip(&m, |a, b| rt(a + b))?;
        }
        if window {
            let (lw, rw) = (self.left_window, self.right_window);
            bias = Arr::zeros(&[qs, kvs]).zip(&bias, |a, b| rt(a + b))?;
            let win = allowed_bias(&|off, i, j| {
                let diff = i as i64 + off - j as i64;
                (lw < 0 || diff <= lw) && (rw < 0 || -diff <= rw)
            });
            bias = bias.zip(&win, |a, b| rt(a + b))?;
        }
        if let Some(np) = &nonpad {
            if np.len() != batch {
                return Err(EngineError::operand(
                    op,
                    "nonpad_kv_seqlen must have one entry per batch",
                ));
            }
            let mut pad = Arr::zeros(&[batch, 1, 1, kvs]);
            for (b, &n) in np.iter().enumerate() {
                for j in 0..kvs {
                    if (j as i64) >= n {
                        pad.v[b * kvs + j] = neg;
                    }
                }
            }
            bias = bias.zip(&pad, |a, b| rt(a + b))?;
        }
        let qh = q.shape[1];
        let kh = k.shape[1];
        if qh != kh {
            if kh == 0 || qh % kh != 0 || v.shape[1] != kh {
                return Err(EngineError::operand(
                    op,
                    "query heads must be a multiple of KV heads",
                ));
            }
            k = k.repeat_heads(qh / kh);
            v = v.repeat_heads(qh / kh);
        }
        // K^T, both operands scaled by sqrt(scale) and rounded.
        let (n, h, s, d) = (k.shape[0], k.shape[1], k.shape[2], k.shape[3]);
        let mut kt = Arr::zeros(&[n, h, d, s]);
        for i in 0..n * h {
            for a in 0..s {
                for b in 0..d {
                    kt.v[(i * d + b) * s + a] = rt(k.v[(i * s + a) * d + b] * scale);
                }
            }
        }
        let qs_arr = q.map(|x| rt(x * scale));
        let mut qk = matmul(&qs_arr, &kt, &rt)?;
        if let Some(c) = self.softcap.filter(|&c| c > 0.0) {
            let c = f64::from(c);
            qk = qk.map(|x| rt(rt(rt(x / c).tanh()) * c));
        }
        let with_bias = qk.zip(&bias, |a, b| rt(a + b))?;
        let mut qk_out = match self.qk_mode {
            2 => with_bias.clone(),
            _ => qk.clone(),
        };
        let sp = self.softmax_precision.unwrap_or(dt);
        let rs = rounder(sp);
        let x = with_bias.map(&rs);
        // Softmax over the last axis, as the reference's numpy program computes it.
        let rows = x.v.len() / kvs.max(1);
        let mut sm = x.clone();
        for r in 0..rows {
            let row = &x.v[r * kvs..(r + 1) * kvs];
            let max = row.iter().copied().fold(neg, f64::max);
            let safe = if max == neg { 0.0 } else { max };
            let e: Vec<f64> = row.iter().map(|&v| rs(rs(v - safe).exp())).collect();
            let mut sum = 0.0;
            for &t in &e {
                sum = if sp == DType::BF16 {
                    rs(sum + t)
                } else {
                    sum + t
                };
            }
            let sum = rs(sum);
            let sum = if sum == 0.0 { 1.0 } else { sum };
            for (j, t) in e.iter().enumerate() {
                sm.v[r * kvs + j] = rs(t / sum);
            }
        }
        // Rows whose bias is all -inf attend to nothing: zero probabilities.
        let bias_full = broadcast_to(&bias.v, &bias.shape, &sm.shape)?;
        for r in 0..rows {
            let masked = bias_full[r * kvs..(r + 1) * kvs]
                .iter()
                .fold(neg, |a, &b| a.max(b))
                == neg;
            if masked {
                sm.v[r * kvs..(r + 1) * kvs]
                    .iter_mut()
                    .for_each(|x| *x = 0.0);
            }
        }
        if self.qk_mode == 3 {
            qk_out = sm.clone();
        }
        let qk_out = qk_out.map(&rt);
        let probs = sm.map(&rt);
        let mut y = matmul(&probs, &v, &rt)?;
        if rank3 {
            y = y.merge_heads();
        }
        let back = |a: Arr| -> Result<Tensor> {
            Cast::new(dt)
                .eval(&[&Tensor::from_f64(a.shape, a.v)?])
                .map(|mut r| r.remove(0))
        };
        Ok(vec![
            back(y)?,
            back(present_k)?,
            back(present_v)?,
            back(qk_out)?,
        ])
    }
}

impl Operator for Attention {
    fn op_type(&self) -> &str {
        "Attention"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Attention", inputs.len(), 3, 7)?;
        let q = &inputs[0];
        if !q.dtype.is_float() {
            return Err(unsupported_dtype("Attention", q.dtype));
        }
        if !(3..=4).contains(&q.rank()) {
            return Err(EngineError::operand("Attention", "Q must be 3-D or 4-D"));
        }
        let y = TypeShape::new(q.dtype, vec![Dim::unknown(); q.rank()]);
        let four = TypeShape::new(q.dtype, vec![Dim::unknown(); 4]);
        Ok(vec![y, four.clone(), four.clone(), four])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Attention", inputs.len(), 3, 7)?;
        self.run(inputs)
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Attention", |ctx| {
        let a = ctx.attributes;
        let heads = |name: &str| -> Result<Option<usize>> {
            a.int(name)?
                .map(|h| usize::try_from(h).map_err(|_| a.invalid(name, "must be positive")))
                .transpose()
        };
        let softmax_precision = match a.int("softmax_precision")? {
            Some(c) => Some(DType::from_onnx(i32::try_from(c).unwrap_or(0))?),
            None => None,
        };
        Ok(Box::new(Attention {
            scale: match a.get("scale") {
                Some(_) => Some(a.float_or("scale", 1.0)?),
                None => None,
            },
            is_causal: a.int_or("is_causal", 0)? != 0,
            q_heads: heads("q_num_heads")?,
            kv_heads: heads("kv_num_heads")?,
            softmax_precision,
            softcap: match a.get("softcap") {
                Some(_) => Some(a.float_or("softcap", 0.0)?),
                None => None,
            },
            qk_mode: a.int_or("qk_matmul_output_mode", 0)?,
            left_window: a.int_or("left_window_size", -1)?,
            right_window: a.int_or("right_window_size", -1)?,
        }))
    });
}
