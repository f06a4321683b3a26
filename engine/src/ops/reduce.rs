//! Reductions: `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`, `ReduceL1`,
//! `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceSumSquare`.
//!
//! Why one operator: all share axis handling — `axes` as an attribute (before opset 18, 13 for
//! `ReduceSum`) or as an optional second input, `keepdims`, and `noop_with_empty_axes` — and one
//! strided driver that maps every input element to its output slot. Floats accumulate in `f64`;
//! integers in `i128` (wrapping to the element type at the end, like numpy). Reducing an empty
//! set gives the identity of the reduction (0, 1, -inf for max, +inf for min, log 0 = -inf).

use super::cast::Convert;
use super::{check_arity, dispatch_all, is_absent, is_absent_tensor, typed, unsupported_dtype};
use super::{OpRegistry, Operator};
use crate::broadcast::for_each_offset;
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, numel, strides};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Which reduction a [`Reduce`] node computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl ReduceKind {
    const ALL: [ReduceKind; 10] = [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L1,
        ReduceKind::L2,
        ReduceKind::LogSum,
        ReduceKind::LogSumExp,
        ReduceKind::SumSquare,
    ];

    fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Max => "ReduceMax",
            ReduceKind::Min => "ReduceMin",
            ReduceKind::Prod => "ReduceProd",
            ReduceKind::L1 => "ReduceL1",
            ReduceKind::L2 => "ReduceL2",
            ReduceKind::LogSum => "ReduceLogSum",
            ReduceKind::LogSumExp => "ReduceLogSumExp",
            ReduceKind::SumSquare => "ReduceSumSquare",
        }
    }

    /// The opset from which `axes` is an input rather than an attribute.
    fn axes_input_since(self) -> i64 {
        if self == ReduceKind::Sum {
            13
        } else {
            18
        }
    }

    fn init(self) -> f64 {
        match self {
            ReduceKind::Prod => 1.0,
            ReduceKind::Max | ReduceKind::LogSumExp => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
            _ => 0.0,
        }
    }

    fn step(self, acc: f64, x: f64) -> f64 {
        match self {
            ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => acc + x,
            ReduceKind::Prod => acc * x,
            ReduceKind::Max | ReduceKind::LogSumExp => {
                if acc.is_nan() || x.is_nan() {
                    f64::NAN
                } else {
                    acc.max(x)
                }
            }
            ReduceKind::Min => {
                if acc.is_nan() || x.is_nan() {
                    f64::NAN
                } else {
                    acc.min(x)
                }
            }
            ReduceKind::L1 => acc + x.abs(),
            ReduceKind::L2 | ReduceKind::SumSquare => acc + x * x,
        }
    }
}

/// A reduction node.
#[derive(Debug, Clone)]
pub struct Reduce {
    kind: ReduceKind,
    /// `axes` from the attribute (old opsets); `None` when taken from input 1.
    attr_axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

impl Reduce {
    /// Resolves the reduced axes; `None` means "no reduction" (`noop_with_empty_axes`).
    fn axes(&self, rank: usize, given: Option<&[i64]>) -> Result<Option<Vec<bool>>> {
        let op = self.kind.name();
        let list = given.or(self.attr_axes.as_deref()).unwrap_or(&[]);
        if list.is_empty() {
            if self.noop_with_empty_axes {
                return Ok(None);
            }
            return Ok(Some(vec![true; rank]));
        }
        let mut mask = vec![false; rank];
        for &a in list {
            let a = normalize_axis(op, a, rank)?;
            if std::mem::replace(&mut mask[a], true) {
                return Err(EngineError::operand(op, format!("axis {a} repeated")));
            }
        }
        Ok(Some(mask))
    }

    fn reduce<T: Convert>(&self, x: &Tensor, mask: &[bool]) -> Result<Tensor> {
        let op = self.kind.name();
        let v = typed::<T>(op, x)?;
        let shape = x.shape();
        let full: Vec<usize> = shape
            .iter()
            .zip(mask)
            .map(|(&d, &m)| if m { 1 } else { d })
            .collect();
        let n_out = numel(&full)?;
        let ostr = strides(&full);
        let s: Vec<usize> = ostr
            .iter()
            .zip(mask)
            .map(|(&st, &m)| if m { 0 } else { st })
            .collect();
        let count: usize = shape
            .iter()
            .zip(mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let kind = self.kind;
        let exact_int = !T::FLOAT
            && matches!(
                kind,
                ReduceKind::Sum
                    | ReduceKind::Prod
                    | ReduceKind::Max
                    | ReduceKind::Min
                    | ReduceKind::L1
                    | ReduceKind::SumSquare
            );
        let out: Vec<T> = if exact_int {
            let init: i128 = match kind {
                ReduceKind::Prod => 1,
                ReduceKind::Max => i128::MIN,
                ReduceKind::Min => i128::MAX,
                _ => 0,
            };
            let mut acc = vec![init; n_out];
            let mut k = 0usize;
            for_each_offset(shape, &s, |o| {
                let e = v[k].to_i128();
                k += 1;
                let a = &mut acc[o];
                *a = match kind {
                    ReduceKind::Sum => a.wrapping_add(e),
                    ReduceKind::Prod => a.wrapping_mul(e),
                    ReduceKind::Max => (*a).max(e),
                    ReduceKind::Min => (*a).min(e),
                    ReduceKind::L1 => a.wrapping_add(e.abs()),
                    _ => a.wrapping_add(e.wrapping_mul(e)),
                };
            });
            acc.into_iter()
                .map(|a| match a {
                    // Empty max/min: the type's lowest/highest value (false/true for bool).
                    i128::MIN if T::DTYPE == DType::Bool => T::from_i128(0),
                    i128::MAX if T::DTYPE == DType::Bool => T::from_i128(1),
                    i128::MIN => T::from_f64(f64::NEG_INFINITY),
                    i128::MAX => T::from_f64(f64::INFINITY),
                    a => T::from_i128(a),
                })
                .collect()
        } else {
            let mut acc = vec![kind.init(); n_out];
            let mut k = 0usize;
            for_each_offset(shape, &s, |o| {
                acc[o] = kind.step(acc[o], v[k].to_f64());
                k += 1;
            });
            if kind == ReduceKind::LogSumExp {
                // Second pass: sum of exp(x - max), for stability.
                let max = acc;
                let mut sum = vec![0f64; n_out];
                let mut k = 0usize;
                for_each_offset(shape, &s, |o| {
                    sum[o] += (v[k].to_f64() - max[o]).exp();
                    k += 1;
                });
                acc = max
                    .iter()
                    .zip(&sum)
                    .map(|(&m, &s)| if m.is_finite() { m + s.ln() } else { m })
                    .collect();
            }
            acc.into_iter()
                .map(|a| {
                    T::from_f64(match kind {
                        ReduceKind::Mean => a / count as f64,
                        ReduceKind::L2 => a.sqrt(),
                        ReduceKind::LogSum => a.ln(),
                        _ => a,
                    })
                })
                .collect()
        };
        let out_shape: Vec<usize> = if self.keepdims {
            full
        } else {
            shape
                .iter()
                .zip(mask)
                .filter(|(_, &m)| !m)
                .map(|(&d, _)| d)
                .collect()
        };
        Tensor::from_vec(out_shape, out)
    }

    fn accepts(&self, d: DType) -> bool {
        match self.kind {
            ReduceKind::Max | ReduceKind::Min => d != DType::String,
            _ => d.is_numeric(),
        }
    }
}

fn axes_input(op: &str, t: &Tensor) -> Result<Vec<i64>> {
    if is_absent_tensor(t) {
        return Ok(Vec::new());
    }
    t.as_i64()
        .map(<[i64]>::to_vec)
        .ok_or_else(|| EngineError::operand(op, "axes must be int64"))
}

impl Operator for Reduce {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.kind.name();
        let max_inputs = if self.attr_axes.is_some() { 1 } else { 2 };
        check_arity(op, inputs.len(), 1, max_inputs)?;
        let x = &inputs[0];
        if !self.accepts(x.dtype) {
            return Err(unsupported_dtype(op, x.dtype));
        }
        let rank = x.rank();
        let given = match inputs.get(1) {
            None => None,
            Some(a) if is_absent(a) => None,
            Some(a) => match &a.value {
                Some(v) => Some(axes_input(op, v)?),
                None => {
                    // Axes known only at run time: the rank is still known.
                    let shape = if self.keepdims {
                        vec![Dim::unknown(); rank]
                    } else {
                        match a.shape.first() {
                            Some(Dim::Fixed(k)) if *k > 0 => {
                                vec![Dim::unknown(); rank.saturating_sub(*k)]
                            }
                            _ => {
                                return Err(EngineError::UnsupportedFeature(format!(
                                    "{op} with keepdims=0 and axes of unknown length"
                                )))
                            }
                        }
                    };
                    return Ok(vec![TypeShape::new(x.dtype, shape)]);
                }
            },
        };
        let shape = match self.axes(rank, given.as_deref())? {
            None => x.shape.clone(),
            Some(mask) => x
                .shape
                .iter()
                .zip(&mask)
                .filter_map(|(d, &m)| match (m, self.keepdims) {
                    (false, _) => Some(d.clone()),
                    (true, true) => Some(Dim::Fixed(1)),
                    (true, false) => None,
                })
                .collect(),
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.kind.name();
        check_arity(op, inputs.len(), 1, 2)?;
        let x = inputs[0];
        let given = inputs.get(1).map(|t| axes_input(op, t)).transpose()?;
        let Some(mask) = self.axes(x.rank(), given.as_deref())? else {
            return Ok(vec![x.clone()]);
        };
        let out = dispatch_all!(x.dtype(), T => self.reduce::<T>(x, &mask)?);
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for kind in ReduceKind::ALL {
        r.register("", kind.name(), move |ctx| {
            let a = ctx.attributes;
            let attr_axes = if ctx.opset < kind.axes_input_since() {
                Some(a.ints("axes")?.map(<[i64]>::to_vec).unwrap_or_default())
            } else {
                None
            };
            Ok(Box::new(Reduce {
                kind,
                attr_axes,
                keepdims: a.int_or("keepdims", 1)? != 0,
                noop_with_empty_axes: a.int_or("noop_with_empty_axes", 0)? != 0,
            }))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: ReduceKind, axes: &[i64], keepdims: bool) -> Reduce {
        Reduce {
            kind,
            attr_axes: Some(axes.to_vec()),
            keepdims,
            noop_with_empty_axes: false,
        }
    }

    #[test]
    fn axes_keepdims_and_empty_sets() {
        let x = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let y = op(ReduceKind::Sum, &[1], false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.as_f32().unwrap(), &[6., 15.]);
        let y = op(ReduceKind::Max, &[0], true)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[1, 3]);
        assert_eq!(y.as_f32().unwrap(), &[4., 5., 6.]);
        let y = op(ReduceKind::Mean, &[], false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.as_f32().unwrap(), &[3.5]);
        let e = Tensor::from_f32(vec![2, 0], vec![]).unwrap();
        let y = op(ReduceKind::Prod, &[1], false)
            .eval(&[&e])
            .unwrap()
            .remove(0);
        assert_eq!(y.as_f32().unwrap(), &[1., 1.]);
        let y = op(ReduceKind::Min, &[1], false)
            .eval(&[&e])
            .unwrap()
            .remove(0);
        assert_eq!(y.as_f32().unwrap(), &[f32::INFINITY, f32::INFINITY]);
        let i = Tensor::from_i64(vec![3], vec![i64::MAX, 1, -5]).unwrap();
        let y = op(ReduceKind::Max, &[0], false)
            .eval(&[&i])
            .unwrap()
            .remove(0);
        assert_eq!(y.as_i64().unwrap(), &[i64::MAX]);
    }
}
