//! Normalisations: `LayerNormalization`, `RMSNormalization`, `BatchNormalization` (inference
//! and training mode), `InstanceNormalization`, `GroupNormalization`, `LpNormalization`.
//!
//! Why together: each computes statistics over a group of elements (trailing axes, a channel,
//! a group of channels) and rescales by them; one "groups of a flat buffer" helper serves all.
//! Statistics are computed in `f64` with the two-pass (mean, then centred squares) method, and
//! results cast back to the input dtype once.

use super::cast::Cast;
use super::{check_arity, unsupported_dtype, OpRegistry, Operator};
use crate::broadcast::broadcast_to;
use crate::error::{EngineError, Result};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(c.as_f64().unwrap_or_default().to_vec())
}

fn back(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
    Cast::new(dtype)
        .eval(&[&Tensor::from_f64(shape, v)?])
        .map(|mut r| r.remove(0))
}

fn float_input(op: &str, t: &TypeShape) -> Result<()> {
    if !t.dtype.is_float() {
        return Err(unsupported_dtype(op, t.dtype));
    }
    Ok(())
}

/// Which normalisation over trailing axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trailing {
    Layer,
    Rms,
}

/// `LayerNormalization` / `RMSNormalization` over axes `axis..`.
#[derive(Debug, Clone)]
pub struct TrailingNorm {
    kind: Trailing,
    axis: i64,
    epsilon: f64,
    /// Dtype of `Mean`/`InvStdDev` (from `stash_type`).
    stash: DType,
}

impl TrailingNorm {
    fn name(&self) -> &'static str {
        match self.kind {
            Trailing::Layer => "LayerNormalization",
            Trailing::Rms => "RMSNormalization",
        }
    }
}

impl Operator for TrailingNorm {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let max = if self.kind == Trailing::Layer { 3 } else { 2 };
        check_arity(self.name(), inputs.len(), 2, max)?;
        let x = &inputs[0];
        float_input(self.name(), x)?;
        let axis = normalize_axis(self.name(), self.axis, x.rank())?;
        let mut out = vec![TypeShape::new(x.dtype, x.shape.clone())];
        if self.kind == Trailing::Layer {
            let mut s = x.shape[..axis].to_vec();
            s.extend(std::iter::repeat_n(Dim::Fixed(1), x.rank() - axis));
            out.push(TypeShape::new(self.stash, s.clone()));
            out.push(TypeShape::new(self.stash, s));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.name();
        check_arity(op, inputs.len(), 2, 3)?;
        let x = inputs[0];
        let axis = normalize_axis(op, self.axis, x.rank())?;
        let shape = x.shape();
        let inner: usize = shape[axis..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let xv = f64s(x)?;
        let param = |t: &Tensor| -> Result<Vec<f64>> {
            broadcast_to(&f64s(t)?, t.shape(), &shape[axis..])
                .map_err(|_| EngineError::operand(op, "scale/bias do not broadcast"))
        };
        let scale = param(inputs[1])?;
        let bias = inputs.get(2).map(|b| param(b)).transpose()?;
        let mut y = vec![0f64; xv.len()];
        let (mut means, mut invs) = (Vec::with_capacity(outer), Vec::with_capacity(outer));
        for o in 0..outer {
            let row = &xv[o * inner..(o + 1) * inner];
            let n = inner as f64;
            let mean = if self.kind == Trailing::Layer {
                row.iter().sum::<f64>() / n
            } else {
                0.0
            };
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv = 1.0 / (var + self.epsilon).sqrt();
            for (k, v) in row.iter().enumerate() {
                let b = bias.as_ref().map_or(0.0, |b| b[k]);
                y[o * inner + k] = (v - mean) * inv * scale[k] + b;
            }
            means.push(mean);
            invs.push(inv);
        }
        let mut out = vec![back(x.dtype(), shape.to_vec(), y)?];
        if self.kind == Trailing::Layer {
            let mut s = shape[..axis].to_vec();
            s.extend(std::iter::repeat_n(1, shape.len() - axis));
            out.push(back(self.stash, s.clone(), means)?);
            out.push(back(self.stash, s, invs)?);
        }
        Ok(out)
    }
}

/// `BatchNormalization`: per-channel (axis 1) affine normalisation with given statistics, or
/// (training mode) batch statistics plus updated running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    epsilon: f64,
    momentum: f64,
    training: bool,
}

impl Operator for BatchNorm {
    fn op_type(&self) -> &str {
        "BatchNormalization"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("BatchNormalization", inputs.len(), 5, 5)?;
        let x = &inputs[0];
        float_input("BatchNormalization", x)?;
        if x.rank() < 2 {
            return Err(EngineError::operand(
                "BatchNormalization",
                "X must have rank >= 2",
            ));
        }
        let mut out = vec![TypeShape::new(x.dtype, x.shape.clone())];
        if self.training {
            out.push(TypeShape::new(inputs[3].dtype, inputs[3].shape.clone()));
            out.push(TypeShape::new(inputs[4].dtype, inputs[4].shape.clone()));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("BatchNormalization", inputs.len(), 5, 5)?;
        let x = inputs[0];
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(EngineError::operand(
                "BatchNormalization",
                "X must have rank >= 2",
            ));
        }
        let (n, c) = (shape[0], shape[1]);
        let inner: usize = shape[2..].iter().product();
        let xv = f64s(x)?;
        let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| f64s(inputs[i]));
        let (scale, bias, mut mean, mut var) = (scale?, bias?, mean?, var?);
        if [&scale, &bias, &mean, &var].iter().any(|v| v.len() != c) {
            return Err(EngineError::operand(
                "BatchNormalization",
                "parameters must have C elements",
            ));
        }
        let (run_mean, run_var) = (mean.clone(), var.clone());
        if self.training {
            let count = (n * inner) as f64;
            for ch in 0..c {
                let vals = (0..n).flat_map(|b| {
                    let start = (b * c + ch) * inner;
                    xv[start..start + inner].iter().copied()
                });
                let m = vals.clone().sum::<f64>() / count;
                let v = vals.map(|e| (e - m) * (e - m)).sum::<f64>() / count;
                mean[ch] = m;
                var[ch] = v;
            }
        }
        let mut y = vec![0f64; xv.len()];
        for b in 0..n {
            for ch in 0..c {
                let inv = 1.0 / (var[ch] + self.epsilon).sqrt();
                let start = (b * c + ch) * inner;
                for k in start..start + inner {
                    y[k] = (xv[k] - mean[ch]) * inv * scale[ch] + bias[ch];
                }
            }
        }
        let mut out = vec![back(x.dtype(), shape.to_vec(), y)?];
        if self.training {
            let mo = self.momentum;
            let rm: Vec<f64> = run_mean
                .iter()
                .zip(&mean)
                .map(|(r, m)| r * mo + m * (1.0 - mo))
                .collect();
            let rv: Vec<f64> = run_var
                .iter()
                .zip(&var)
                .map(|(r, v)| r * mo + v * (1.0 - mo))
                .collect();
            out.push(back(inputs[3].dtype(), inputs[3].shape().to_vec(), rm)?);
            out.push(back(inputs[4].dtype(), inputs[4].shape().to_vec(), rv)?);
        }
        Ok(out)
    }
}

/// `InstanceNormalization` (groups = channels) and `GroupNormalization`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// `None` for instance normalisation (one group per channel).
    groups: Option<usize>,
    epsilon: f64,
}

impl GroupNorm {
    fn name(&self) -> &'static str {
        if self.groups.is_some() {
            "GroupNormalization"
        } else {
            "InstanceNormalization"
        }
    }
}

impl Operator for GroupNorm {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 3, 3)?;
        float_input(self.name(), &inputs[0])?;
        if inputs[0].rank() < 2 {
            return Err(EngineError::operand(self.name(), "X must have rank >= 2"));
        }
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.name();
        check_arity(op, inputs.len(), 3, 3)?;
        let x = inputs[0];
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(EngineError::operand(op, "X must have rank >= 2"));
        }
        let (n, c) = (shape[0], shape[1]);
        let g = self.groups.unwrap_or(c);
        if g == 0 || c % g != 0 {
            return Err(EngineError::operand(
                op,
                "channels do not divide into groups",
            ));
        }
        let inner: usize = shape[2..].iter().product();
        let per_group = c / g * inner;
        let xv = f64s(x)?;
        let (scale, bias) = (f64s(inputs[1])?, f64s(inputs[2])?);
        // Per-channel parameters, or (GroupNormalization before opset 21) per group.
        let per_channel = scale.len() == c && bias.len() == c;
        if !per_channel && (scale.len() != g || bias.len() != g) {
            return Err(EngineError::operand(op, "scale/bias size mismatch"));
        }
        let mut y = vec![0f64; xv.len()];
        for b in 0..n {
            for gi in 0..g {
                let start = (b * g + gi) * per_group;
                let block = &xv[start..start + per_group];
                let m = block.iter().sum::<f64>() / per_group as f64;
                let v = block.iter().map(|e| (e - m) * (e - m)).sum::<f64>() / per_group as f64;
                let inv = 1.0 / (v + self.epsilon).sqrt();
                for (k, e) in block.iter().enumerate() {
                    let p = if per_channel {
                        gi * (c / g) + k / inner
                    } else {
                        gi
                    };
                    y[start + k] = (e - m) * inv * scale[p] + bias[p];
                }
            }
        }
        Ok(vec![back(x.dtype(), shape.to_vec(), y)?])
    }
}

/// `LpNormalization`: divides by the L1 or L2 norm along `axis`.
#[derive(Debug, Clone)]
pub struct LpNorm {
    axis: i64,
    p: i64,
}

impl Operator for LpNorm {
    fn op_type(&self) -> &str {
        "LpNormalization"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("LpNormalization", inputs.len(), 1, 1)?;
        float_input("LpNormalization", &inputs[0])?;
        normalize_axis("LpNormalization", self.axis, inputs[0].rank())?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("LpNormalization", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let axis = normalize_axis("LpNormalization", self.axis, x.rank())?;
        let shape = x.shape();
        let n = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut v = f64s(x)?;
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * n + k) * inner + i;
                let norm = if self.p == 1 {
                    (0..n).map(|k| v[at(k)].abs()).sum::<f64>()
                } else {
                    (0..n).map(|k| v[at(k)] * v[at(k)]).sum::<f64>().sqrt()
                };
                for k in 0..n {
                    v[at(k)] = if norm == 0.0 { 0.0 } else { v[at(k)] / norm };
                }
            }
        }
        Ok(vec![back(x.dtype(), shape.to_vec(), v)?])
    }
}

/// `LRN`: local response normalisation across channels.
#[derive(Debug, Clone)]
pub struct Lrn {
    alpha: f64,
    beta: f64,
    bias: f64,
    size: usize,
}

impl Operator for Lrn {
    fn op_type(&self) -> &str {
        "LRN"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("LRN", inputs.len(), 1, 1)?;
        float_input("LRN", &inputs[0])?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("LRN", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let s = x.shape();
        if s.len() < 3 {
            return Err(EngineError::operand("LRN", "input must be N x C x spatial"));
        }
        let (n, c) = (s[0], s[1]);
        let inner: usize = s[2..].iter().product();
        let v = f64s(x)?;
        let before = (self.size - 1) / 2;
        let after = self.size.div_ceil(2).max(1) - 1;
        let mut y = vec![0f64; v.len()];
        for b in 0..n {
            for ch in 0..c {
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                for i in 0..inner {
                    let sq: f64 = (lo..=hi).map(|k| v[(b * c + k) * inner + i].powi(2)).sum();
                    let at = (b * c + ch) * inner + i;
                    y[at] =
                        v[at] / (self.bias + self.alpha / self.size as f64 * sq).powf(self.beta);
                }
            }
        }
        Ok(vec![back(x.dtype(), s.to_vec(), y)?])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "LRN", |ctx| {
        let a = ctx.attributes;
        let size = a.required_int("size")?;
        Ok(Box::new(Lrn {
            alpha: f64::from(a.float_or("alpha", 1e-4)?),
            beta: f64::from(a.float_or("beta", 0.75)?),
            bias: f64::from(a.float_or("bias", 1.0)?),
            size: usize::try_from(size)
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| a.invalid("size", "must be positive"))?,
        }))
    });
    for (name, kind) in [
        ("LayerNormalization", Trailing::Layer),
        ("RMSNormalization", Trailing::Rms),
    ] {
        r.register("", name, move |ctx| {
            let a = ctx.attributes;
            let stash = match a.int_or("stash_type", 1)? {
                1 => DType::F32,
                other => DType::from_onnx(i32::try_from(other).unwrap_or(0))?,
            };
            Ok(Box::new(TrailingNorm {
                kind,
                axis: a.int_or("axis", -1)?,
                epsilon: f64::from(a.float_or("epsilon", 1e-5)?),
                stash,
            }))
        });
    }
    r.register("", "BatchNormalization", |ctx| {
        let a = ctx.attributes;
        if ctx.opset < 9 {
            return Err(EngineError::UnsupportedFeature(
                "BatchNormalization before opset 9 (spatial attribute)".into(),
            ));
        }
        Ok(Box::new(BatchNorm {
            epsilon: f64::from(a.float_or("epsilon", 1e-5)?),
            momentum: f64::from(a.float_or("momentum", 0.9)?),
            training: a.int_or("training_mode", 0)? != 0 || ctx.num_outputs > 1,
        }))
    });
    r.register("", "InstanceNormalization", |ctx| {
        Ok(Box::new(GroupNorm {
            groups: None,
            epsilon: f64::from(ctx.attributes.float_or("epsilon", 1e-5)?),
        }))
    });
    r.register("", "GroupNormalization", |ctx| {
        let a = ctx.attributes;
        let g = a.required_int("num_groups")?;
        Ok(Box::new(GroupNorm {
            groups: Some(usize::try_from(g).map_err(|_| a.invalid("num_groups", "must be > 0"))?),
            epsilon: f64::from(a.float_or("epsilon", 1e-5)?),
        }))
    });
    r.register("", "LpNormalization", |ctx| {
        let a = ctx.attributes;
        let p = a.int_or("p", 2)?;
        if p != 1 && p != 2 {
            return Err(a.invalid("p", "must be 1 or 2"));
        }
        Ok(Box::new(LpNorm {
            axis: a.int_or("axis", -1)?,
            p,
        }))
    });
}
