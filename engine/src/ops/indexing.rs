//! Index-driven operators: `GatherElements`, `GatherND`, `ScatterElements` (and the legacy
//! `Scatter`), `ScatterND`, `OneHot`, `Compress`, `Trilu`, and the running reductions `CumSum`
//! and `CumProd`.
//!
//! Why together: each walks an index tensor (or an axis) and moves or combines elements at the
//! positions it names. Indices are validated (negative ones wrap once, like numpy) before any
//! element is touched, so an out-of-range index is a typed error, never a panic.

use super::cast::Convert;
use super::tensor_ops::{int_list, take};
use super::{check_arity, dispatch_all, typed, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, numel, strides};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Resolves a possibly negative index against `n`.
fn wrap_index(op: &str, k: i64, n: usize) -> Result<usize> {
    let k2 = if k < 0 { k + n as i64 } else { k };
    if k2 < 0 || k2 >= n as i64 {
        return Err(EngineError::operand(
            op,
            format!("index {k} out of range for size {n}"),
        ));
    }
    Ok(k2 as usize)
}

/// Visits every multi-index of `shape` in row-major order.
pub(crate) fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(&[usize]) -> Result<()>,
) -> Result<()> {
    let total = numel(shape)?;
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..total {
        f(&pos)?;
        for a in (0..shape.len()).rev() {
            pos[a] += 1;
            if pos[a] < shape[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    Ok(())
}

fn offset(pos: &[usize], s: &[usize]) -> usize {
    pos.iter().zip(s).map(|(p, s)| p * s).sum()
}

// ---------------------------------------------------------------------------------------------

/// `GatherElements(data, indices)`: `out[p] = data[p with p[axis] = indices[p]]`.
#[derive(Debug, Clone)]
pub struct GatherElements {
    axis: i64,
}

impl Operator for GatherElements {
    fn op_type(&self) -> &str {
        "GatherElements"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("GatherElements", inputs.len(), 2, 2)?;
        normalize_axis("GatherElements", self.axis, inputs[0].rank())?;
        if inputs[0].rank() != inputs[1].rank() {
            return Err(EngineError::operand("GatherElements", "ranks differ"));
        }
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[1].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("GatherElements", inputs.len(), 2, 2)?;
        let (x, it) = (inputs[0], inputs[1]);
        let axis = normalize_axis("GatherElements", self.axis, x.rank())?;
        if x.rank() != it.rank() {
            return Err(EngineError::operand("GatherElements", "ranks differ"));
        }
        let ind = int_list("GatherElements", it)?;
        let s = strides(x.shape());
        let mut idx = Vec::with_capacity(ind.len());
        let mut k = 0usize;
        for_each_index(it.shape(), |p| {
            let mut q = p.to_vec();
            for (a, &d) in q.iter().enumerate() {
                if a != axis && d >= x.shape()[a] {
                    return Err(EngineError::operand(
                        "GatherElements",
                        "indices shape too large",
                    ));
                }
            }
            q[axis] = wrap_index("GatherElements", ind[k], x.shape()[axis])?;
            k += 1;
            idx.push(Some(offset(&q, &s)));
            Ok(())
        })?;
        Ok(vec![take(x, it.shape().to_vec(), &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// How a scatter combines an update with the existing element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScatterReduction {
    /// Overwrite.
    None,
    /// Add.
    Add,
    /// Multiply.
    Mul,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

impl ScatterReduction {
    fn parse(a: &crate::Attributes) -> Result<ScatterReduction> {
        Ok(match a.string("reduction")?.unwrap_or("none") {
            "none" => ScatterReduction::None,
            "add" => ScatterReduction::Add,
            "mul" => ScatterReduction::Mul,
            "max" => ScatterReduction::Max,
            "min" => ScatterReduction::Min,
            other => return Err(a.invalid("reduction", format!("unknown {other:?}"))),
        })
    }

    fn apply<T: Convert>(self, old: T, new: T) -> T {
        if self == ScatterReduction::None {
            return new;
        }
        if T::FLOAT {
            let (a, b) = (old.to_f64(), new.to_f64());
            T::from_f64(match self {
                ScatterReduction::Add => a + b,
                ScatterReduction::Mul => a * b,
                ScatterReduction::Max => a.max(b),
                _ => a.min(b),
            })
        } else {
            let (a, b) = (old.to_i128(), new.to_i128());
            T::from_i128(match self {
                ScatterReduction::Add => a.wrapping_add(b),
                ScatterReduction::Mul => a.wrapping_mul(b),
                ScatterReduction::Max => a.max(b),
                _ => a.min(b),
            })
        }
    }
}

/// `ScatterElements(data, indices, updates)`.
#[derive(Debug, Clone)]
pub struct ScatterElements {
    axis: i64,
    reduction: ScatterReduction,
    name: &'static str,
}

fn scatter_elements<T: Convert>(
    op: &ScatterElements,
    x: &Tensor,
    ind: &[i64],
    ishape: &[usize],
    u: &Tensor,
    axis: usize,
) -> Result<Tensor> {
    let mut out = typed::<T>(op.name, x)?.to_vec();
    let upd = typed::<T>(op.name, u)?;
    if u.shape() != ishape {
        return Err(EngineError::operand(
            op.name,
            "updates and indices shapes differ",
        ));
    }
    let s = strides(x.shape());
    let mut k = 0usize;
    for_each_index(ishape, |p| {
        let mut q = p.to_vec();
        for (a, &d) in q.iter().enumerate() {
            if a != axis && d >= x.shape()[a] {
                return Err(EngineError::operand(op.name, "indices shape too large"));
            }
        }
        q[axis] = wrap_index(op.name, ind[k], x.shape()[axis])?;
        let o = offset(&q, &s);
        out[o] = op.reduction.apply(out[o], upd[k]);
        k += 1;
        Ok(())
    })?;
    Tensor::from_vec(x.shape().to_vec(), out)
}

impl Operator for ScatterElements {
    fn op_type(&self) -> &str {
        self.name
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name, inputs.len(), 3, 3)?;
        normalize_axis(self.name, self.axis, inputs[0].rank())?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name, inputs.len(), 3, 3)?;
        let (x, it, u) = (inputs[0], inputs[1], inputs[2]);
        let axis = normalize_axis(self.name, self.axis, x.rank())?;
        if it.rank() != x.rank() {
            return Err(EngineError::operand(self.name, "ranks differ"));
        }
        let ind = int_list(self.name, it)?;
        let out = dispatch_all!(x.dtype(), T =>
            scatter_elements::<T>(self, x, &ind, it.shape(), u, axis)?);
        Ok(vec![out])
    }
}

/// `ScatterND(data, indices, updates)`: writes slices addressed by index tuples.
#[derive(Debug, Clone)]
pub struct ScatterNd {
    reduction: ScatterReduction,
}

fn scatter_nd<T: Convert>(
    red: ScatterReduction,
    x: &Tensor,
    it: &Tensor,
    u: &Tensor,
) -> Result<Tensor> {
    let op = "ScatterND";
    let mut out = typed::<T>(op, x)?.to_vec();
    let upd = typed::<T>(op, u)?;
    let ind = int_list(op, it)?;
    let k = *it
        .shape()
        .last()
        .ok_or_else(|| EngineError::operand(op, "indices must have rank >= 1"))?;
    if k > x.rank() {
        return Err(EngineError::operand(
            op,
            "index tuples longer than data rank",
        ));
    }
    let s = strides(x.shape());
    let block: usize = x.shape()[k..].iter().product();
    let tuples = ind.len().checked_div(k).unwrap_or(0);
    if upd.len() != tuples * block {
        return Err(EngineError::operand(op, "updates shape does not match"));
    }
    for t in 0..tuples {
        let mut base = 0usize;
        for j in 0..k {
            base += wrap_index(op, ind[t * k + j], x.shape()[j])? * s[j];
        }
        for b in 0..block {
            out[base + b] = red.apply(out[base + b], upd[t * block + b]);
        }
    }
    Tensor::from_vec(x.shape().to_vec(), out)
}

impl Operator for ScatterNd {
    fn op_type(&self) -> &str {
        "ScatterND"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("ScatterND", inputs.len(), 3, 3)?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("ScatterND", inputs.len(), 3, 3)?;
        let (x, it, u) = (inputs[0], inputs[1], inputs[2]);
        let out = dispatch_all!(x.dtype(), T => scatter_nd::<T>(self.reduction, x, it, u)?);
        Ok(vec![out])
    }
}

/// `GatherND(data, indices)` with `batch_dims`.
#[derive(Debug, Clone)]
pub struct GatherNd {
    batch_dims: usize,
}

impl GatherNd {
    fn out_dims(&self, x: &[Dim], i: &[Dim]) -> Result<Vec<Dim>> {
        let b = self.batch_dims;
        let k = i.last().and_then(Dim::fixed).ok_or_else(|| {
            EngineError::UnsupportedFeature("GatherND with unknown tuple length".into())
        })?;
        if i.len() < b + 1 || x.len() < b + k {
            return Err(EngineError::operand("GatherND", "ranks too small"));
        }
        let mut d = i[..i.len() - 1].to_vec();
        d.extend(x[b + k..].iter().cloned());
        Ok(d)
    }
}

impl Operator for GatherNd {
    fn op_type(&self) -> &str {
        "GatherND"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("GatherND", inputs.len(), 2, 2)?;
        let d = self.out_dims(&inputs[0].shape, &inputs[1].shape)?;
        Ok(vec![TypeShape::new(inputs[0].dtype, d)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("GatherND", inputs.len(), 2, 2)?;
        let (x, it) = (inputs[0], inputs[1]);
        let fixed = |s: &[usize]| s.iter().map(|&d| Dim::Fixed(d)).collect::<Vec<_>>();
        let shape: Vec<usize> = self
            .out_dims(&fixed(x.shape()), &fixed(it.shape()))?
            .iter()
            .map(|d| d.fixed().unwrap_or(0))
            .collect();
        let ind = int_list("GatherND", it)?;
        let b = self.batch_dims;
        if it.shape()[..b] != x.shape()[..b] {
            return Err(EngineError::operand("GatherND", "batch dimensions differ"));
        }
        let k = it.shape()[it.rank() - 1];
        let s = strides(x.shape());
        let block: usize = x.shape()[b + k..].iter().product();
        let batch: usize = x.shape()[..b].iter().product();
        let per_batch_tuples: usize = it.shape()[b..it.rank() - 1].iter().product();
        let mut idx = Vec::with_capacity(numel(&shape)?);
        for bi in 0..batch {
            // Batch offset in data: the batch multi-index times data strides.
            let mut rem = bi;
            let mut base = 0usize;
            for a in (0..b).rev() {
                base += (rem % x.shape()[a]) * s[a];
                rem /= x.shape()[a];
            }
            for t in 0..per_batch_tuples {
                let tuple = &ind[(bi * per_batch_tuples + t) * k..][..k];
                let mut o = base;
                for (j, &v) in tuple.iter().enumerate() {
                    o += wrap_index("GatherND", v, x.shape()[b + j])? * s[b + j];
                }
                idx.extend((0..block).map(|e| Some(o + e)));
            }
        }
        Ok(vec![take(x, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `OneHot(indices, depth, values)`: `values[1]` at each index along `axis`, `values[0]`
/// elsewhere; out-of-range indices give an all-off row.
#[derive(Debug, Clone)]
pub struct OneHot {
    axis: i64,
}

fn scalar_f64(op: &str, t: &Tensor) -> Result<f64> {
    if t.len() != 1 {
        return Err(EngineError::operand(op, "expected one element"));
    }
    let v = super::cast::Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(v.as_f64().and_then(|v| v.first().copied()).unwrap_or(0.0))
}

impl Operator for OneHot {
    fn op_type(&self) -> &str {
        "OneHot"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("OneHot", inputs.len(), 3, 3)?;
        let r = inputs[0].rank() + 1;
        let axis = normalize_axis("OneHot", self.axis, r)?;
        let depth = match &inputs[1].value {
            Some(d) => Dim::Fixed(scalar_f64("OneHot", d)?.max(0.0) as usize),
            None => Dim::unknown(),
        };
        let mut shape = inputs[0].shape.clone();
        shape.insert(axis, depth);
        Ok(vec![TypeShape::new(inputs[2].dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("OneHot", inputs.len(), 3, 3)?;
        let (it, d, vals) = (inputs[0], inputs[1], inputs[2]);
        if vals.len() != 2 {
            return Err(EngineError::operand("OneHot", "values must hold [off, on]"));
        }
        let depth = scalar_f64("OneHot", d)?;
        if !(depth >= 1.0 && depth <= (1u64 << 31) as f64) {
            return Err(EngineError::operand("OneHot", "depth out of range"));
        }
        let depth = depth as usize;
        let ind = super::cast::Cast::new(DType::I64).eval(&[it])?.remove(0);
        let ind = ind.as_i64().unwrap_or_default();
        let r = it.rank() + 1;
        let axis = normalize_axis("OneHot", self.axis, r)?;
        let mut shape = it.shape().to_vec();
        shape.insert(axis, depth);
        let outer: usize = it.shape()[..axis].iter().product();
        let inner: usize = it.shape()[axis..].iter().product();
        let mut idx = vec![Some(0usize); numel(&shape)?];
        for o in 0..outer {
            for i in 0..inner {
                let v = ind[o * inner + i];
                let v = if v < 0 { v + depth as i64 } else { v };
                if (0..depth as i64).contains(&v) {
                    idx[(o * depth + v as usize) * inner + i] = Some(1);
                }
            }
        }
        let flat = vals.clone().reshaped(vec![2])?;
        Ok(vec![take(&flat, shape, &idx, None)?])
    }
}

/// `Compress(input, condition)`: keeps slices (along `axis`, or of the flattened input) where
/// `condition` is true.
#[derive(Debug, Clone)]
pub struct Compress {
    axis: Option<i64>,
}

impl Operator for Compress {
    fn op_type(&self) -> &str {
        "Compress"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Compress", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let shape = match self.axis {
            None => vec![Dim::unknown()],
            Some(a) => {
                let a = normalize_axis("Compress", a, x.rank())?;
                let mut s = x.shape.clone();
                s[a] = Dim::unknown();
                s
            }
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Compress", inputs.len(), 2, 2)?;
        let (x, c) = (inputs[0], inputs[1]);
        let cond = typed::<bool>("Compress", c)?;
        let (shape, axis, x) = match self.axis {
            None => (vec![x.len()], 0, x.clone().reshaped(vec![x.len()])?),
            Some(a) => (
                x.shape().to_vec(),
                normalize_axis("Compress", a, x.rank())?,
                x.clone(),
            ),
        };
        if cond.len() > shape[axis] {
            return Err(EngineError::operand(
                "Compress",
                "condition longer than the axis",
            ));
        }
        let keep: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let n = shape[axis];
        let mut idx = Vec::new();
        for o in 0..outer {
            for &k in &keep {
                idx.extend((0..inner).map(|i| Some((o * n + k) * inner + i)));
            }
        }
        let mut out_shape = shape;
        out_shape[axis] = keep.len();
        Ok(vec![take(&x, out_shape, &idx, None)?])
    }
}

/// `Trilu(input, k?)`: keeps the upper (or lower) triangle of the last two axes.
#[derive(Debug, Clone)]
pub struct Trilu {
    upper: bool,
}

impl Operator for Trilu {
    fn op_type(&self) -> &str {
        "Trilu"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Trilu", inputs.len(), 1, 2)?;
        if inputs[0].rank() < 2 {
            return Err(EngineError::operand("Trilu", "input must have rank >= 2"));
        }
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Trilu", inputs.len(), 1, 2)?;
        let x = inputs[0];
        let k = match inputs.get(1) {
            Some(t) => *int_list("Trilu", t)?
                .first()
                .ok_or_else(|| EngineError::operand("Trilu", "k must be a scalar"))?,
            None => 0,
        };
        let r = x.rank();
        if r < 2 {
            return Err(EngineError::operand("Trilu", "input must have rank >= 2"));
        }
        let (rows, cols) = (x.shape()[r - 2] as i64, x.shape()[r - 1] as i64);
        let idx: Vec<Option<usize>> = (0..x.len())
            .map(|o| {
                let j = (o as i64) % cols;
                let i = ((o as i64) / cols) % rows.max(1);
                let keep = if self.upper { j - i >= k } else { j - i <= k };
                keep.then_some(o)
            })
            .collect();
        Ok(vec![take(x, x.shape().to_vec(), &idx, None)?])
    }
}

/// `CumSum` / `CumProd` along an axis (a scalar input), with `exclusive` and `reverse`.
#[derive(Debug, Clone)]
pub struct Cumulative {
    product: bool,
    exclusive: bool,
    reverse: bool,
}

impl Cumulative {
    fn name(&self) -> &'static str {
        if self.product {
            "CumProd"
        } else {
            "CumSum"
        }
    }

    fn run<T: Convert>(&self, x: &Tensor, axis: usize) -> Result<Tensor> {
        let v = typed::<T>(self.name(), x)?;
        let n = x.shape()[axis];
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis + 1..].iter().product();
        let mut out = v.to_vec();
        let step = |acc: T, e: T| -> T {
            if T::FLOAT {
                let (a, b) = (acc.to_f64(), e.to_f64());
                T::from_f64(if self.product { a * b } else { a + b })
            } else {
                let (a, b) = (acc.to_i128(), e.to_i128());
                T::from_i128(if self.product {
                    a.wrapping_mul(b)
                } else {
                    a.wrapping_add(b)
                })
            }
        };
        let identity = T::from_i128(i128::from(self.product));
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = identity;
                for t in 0..n {
                    let k = if self.reverse { n - 1 - t } else { t };
                    let at = (o * n + k) * inner + i;
                    let e = v[at];
                    if self.exclusive {
                        out[at] = acc;
                        acc = step(acc, e);
                    } else {
                        acc = step(acc, e);
                        out[at] = acc;
                    }
                }
            }
        }
        Tensor::from_vec(x.shape().to_vec(), out)
    }
}

impl Operator for Cumulative {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 2, 2)?;
        if !inputs[0].dtype.is_numeric() {
            return Err(super::unsupported_dtype(self.name(), inputs[0].dtype));
        }
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 2, 2)?;
        let x = inputs[0];
        let a = *int_list(self.name(), inputs[1])?
            .first()
            .ok_or_else(|| EngineError::operand(self.name(), "axis must be a scalar"))?;
        let axis = normalize_axis(self.name(), a, x.rank())?;
        let out = dispatch_all!(x.dtype(), T => self.run::<T>(x, axis)?);
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "GatherElements", |ctx| {
        Ok(Box::new(GatherElements {
            axis: ctx.attributes.int_or("axis", 0)?,
        }))
    });
    for (name, legacy) in [("ScatterElements", false), ("Scatter", true)] {
        r.register("", name, move |ctx| {
            Ok(Box::new(ScatterElements {
                axis: ctx.attributes.int_or("axis", 0)?,
                reduction: if legacy {
                    ScatterReduction::None
                } else {
                    ScatterReduction::parse(ctx.attributes)?
                },
                name: if legacy { "Scatter" } else { "ScatterElements" },
            }))
        });
    }
    r.register("", "ScatterND", |ctx| {
        Ok(Box::new(ScatterNd {
            reduction: ScatterReduction::parse(ctx.attributes)?,
        }))
    });
    r.register("", "GatherND", |ctx| {
        let b = ctx.attributes.int_or("batch_dims", 0)?;
        Ok(Box::new(GatherNd {
            batch_dims: usize::try_from(b)
                .map_err(|_| ctx.attributes.invalid("batch_dims", "must be >= 0"))?,
        }))
    });
    r.register("", "OneHot", |ctx| {
        Ok(Box::new(OneHot {
            axis: ctx.attributes.int_or("axis", -1)?,
        }))
    });
    r.register("", "Compress", |ctx| {
        Ok(Box::new(Compress {
            axis: ctx.attributes.int("axis")?,
        }))
    });
    r.register("", "Trilu", |ctx| {
        Ok(Box::new(Trilu {
            upper: ctx.attributes.int_or("upper", 1)? != 0,
        }))
    });
    for product in [false, true] {
        r.register("", if product { "CumProd" } else { "CumSum" }, move |ctx| {
            let a = ctx.attributes;
            Ok(Box::new(Cumulative {
                product,
                exclusive: a.int_or("exclusive", 0)? != 0,
                reverse: a.int_or("reverse", 0)? != 0,
            }))
        });
    }
}
