//! Losses: `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss`.
//!
//! Why spelled out to the reference: the two differ in how "no weights, `ignore_index`" is
//! averaged (NLL with `ignore_index == -1` and no weights averages over every element,
//! including ignored ones; SCE never does), and models trained elsewhere depend on such
//! details. Computation is in `f64`, cast back to the input's dtype once.

use super::cast::Cast;
use super::{check_arity, unsupported_dtype, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// How per-element losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Per-element losses, shaped like the target.
    None,
    /// Their sum.
    Sum,
    /// Their (weighted) mean.
    Mean,
}

/// A loss node.
#[derive(Debug, Clone)]
pub struct Loss {
    softmax: bool,
    reduction: Reduction,
    ignore_index: Option<i64>,
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(c.as_f64().unwrap_or_default().to_vec())
}

impl Loss {
    fn name(&self) -> &'static str {
        if self.softmax {
            "SoftmaxCrossEntropyLoss"
        } else {
            "NegativeLogLikelihoodLoss"
        }
    }

    fn compute(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.name();
        let (x, t) = (inputs[0], inputs[1]);
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(EngineError::operand(op, "input must have rank >= 2"));
        }
        let (n, c) = (shape[0], shape[1]);
        let d: usize = shape[2..].iter().product();
        if t.shape().iter().product::<usize>() != n * d || t.rank() + 1 != x.rank() {
            return Err(EngineError::operand(
                op,
                "target shape does not match input",
            ));
        }
        let mut xv = to_f64(x)?;
        let mut log_prob = None;
        if self.softmax {
            for i in 0..n {
                for k in 0..d {
                    let at = |j: usize| (i * c + j) * d + k;
                    let max = (0..c).map(|j| xv[at(j)]).fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = (0..c).map(|j| (xv[at(j)] - max).exp()).sum();
                    for j in 0..c {
                        xv[at(j)] = (xv[at(j)] - max) - sum.ln();
                    }
                }
            }
            log_prob = Some(xv.clone());
        }
        let target = super::tensor_ops::int_list(op, t)?;
        let weight = inputs.get(2).map(|w| to_f64(w)).transpose()?;
        if weight.as_ref().is_some_and(|w| w.len() != c) {
            return Err(EngineError::operand(
                op,
                "weight must have one entry per class",
            ));
        }
        let ii = self.ignore_index;
        let gather_weight: Option<Vec<f64>> = match &weight {
            Some(w) => Some(
                target
                    .iter()
                    .map(|&k| {
                        if Some(k) == ii {
                            0.0
                        } else {
                            w[k.clamp(0, c as i64 - 1) as usize]
                        }
                    })
                    .collect(),
            ),
            None if self.softmax && ii.is_none() => None,
            None if !self.softmax && ii == Some(-1) => None,
            None => Some(
                target
                    .iter()
                    .map(|&k| if Some(k) == ii { 0.0 } else { 1.0 })
                    .collect(),
            ),
        };
        let mut loss = vec![0f64; n * d];
        for i in 0..n {
            for k in 0..d {
                let tk = target[i * d + k];
                if Some(tk) == ii {
                    continue;
                }
                if tk < 0 || tk >= c as i64 {
                    return Err(EngineError::operand(
                        op,
                        format!("target {tk} out of range for {c} classes"),
                    ));
                }
                loss[i * d + k] = -xv[(i * c + tk as usize) * d + k];
            }
        }
        if let Some(g) = &gather_weight {
            for (l, w) in loss.iter_mut().zip(g) {
                *l *= w;
            }
        }
        let (out_shape, out) = match self.reduction {
            Reduction::None => (t.shape().to_vec(), loss),
            Reduction::Sum => (vec![], vec![loss.iter().sum()]),
            Reduction::Mean => {
                let total: f64 = loss.iter().sum();
                let denom = match &gather_weight {
                    Some(g) => g.iter().sum(),
                    None => loss.len() as f64,
                };
                (vec![], vec![total / denom])
            }
        };
        let back = |shape: Vec<usize>, v: Vec<f64>| -> Result<Tensor> {
            Cast::new(x.dtype())
                .eval(&[&Tensor::from_f64(shape, v)?])
                .map(|mut r| r.remove(0))
        };
        let mut outs = vec![back(out_shape, out)?];
        if let Some(lp) = log_prob {
            outs.push(back(shape.to_vec(), lp)?);
        }
        Ok(outs)
    }
}

impl Operator for Loss {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.name();
        check_arity(op, inputs.len(), 2, 3)?;
        let x = &inputs[0];
        if !x.dtype.is_float() {
            return Err(unsupported_dtype(op, x.dtype));
        }
        if x.rank() < 2 || inputs[1].rank() + 1 != x.rank() {
            return Err(EngineError::operand(op, "input/target ranks do not match"));
        }
        let loss_shape: Vec<Dim> = match self.reduction {
            Reduction::None => inputs[1].shape.clone(),
            _ => vec![],
        };
        let mut out = vec![TypeShape::new(x.dtype, loss_shape)];
        if self.softmax {
            out.push(TypeShape::new(x.dtype, x.shape.clone()));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 2, 3)?;
        self.compute(inputs)
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for softmax in [false, true] {
        let name = if softmax {
            "SoftmaxCrossEntropyLoss"
        } else {
            "NegativeLogLikelihoodLoss"
        };
        r.register("", name, move |ctx| {
            let a = ctx.attributes;
            let reduction = match a.string("reduction")?.unwrap_or("mean") {
                "none" => Reduction::None,
                "sum" => Reduction::Sum,
                "mean" => Reduction::Mean,
                other => return Err(a.invalid("reduction", format!("unknown {other:?}"))),
            };
            Ok(Box::new(Loss {
                softmax,
                reduction,
                ignore_index: a.int("ignore_index")?,
            }))
        });
    }
}
