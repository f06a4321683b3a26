//! Data-movement and shape operators: `Shape`, `Size`, `Squeeze`, `Unsqueeze`, `Expand`,
//! `Gather`, `Slice`, `Split`, `Tile`, `Pad`, `ConstantOfShape`, `Range`, `CastLike`.
//!
//! Why one module and one technique: each of these computes, from shapes and small integer
//! inputs, which source element lands in each output slot. They build that index list once
//! ([`take`]) and copy elements of any dtype through it, so each operator's logic is pure index
//! arithmetic, written and tested once, and no kernel is duplicated per dtype. Inference returns
//! exact shapes when the integer inputs are constants (initializers, `Constant`, or folded at
//! load time) and the right rank with unknown dims otherwise.

use std::sync::Arc;

use super::cast::{Cast, Convert};
use super::{
    check_arity, dispatch_all, dispatch_numeric, is_absent, is_absent_tensor, unsupported_dtype,
    OpRegistry, Operator,
};
use crate::broadcast::{broadcast_dims, broadcast_shape, broadcast_strides, for_each_offset};
use crate::error::{EngineError, Result};
use crate::shape::{dims_from_i64, normalize_axis, numel, strides};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Copies `x`'s elements at `idx` (`None` = `fill`, the dtype's zero unless given) into a
/// tensor of `shape`.
pub(crate) fn take(
    x: &Tensor,
    shape: Vec<usize>,
    idx: &[Option<usize>],
    fill: Option<&Tensor>,
) -> Result<Tensor> {
    fn go<T: Convert>(
        x: &Tensor,
        shape: Vec<usize>,
        idx: &[Option<usize>],
        fill: Option<&Tensor>,
        zero: T,
    ) -> Result<Tensor> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("take", "dtype"))?;
        let fill = match fill.and_then(|f| f.as_slice::<T>()).and_then(|f| f.first()) {
            Some(&f) => f,
            None => zero,
        };
        let out = idx
            .iter()
            .map(|i| match i {
                Some(i) => v.get(*i).copied().unwrap_or(fill),
                None => fill,
            })
            .collect();
        Tensor::from_vec(shape, out)
    }
    dispatch_all!(x.dtype(), T => go::<T>(x, shape, idx, fill, T::from_i128(0)))
}

/// An integer list from an `int64` or `int32` tensor.
pub(crate) fn int_list(op: &str, t: &Tensor) -> Result<Vec<i64>> {
    match t.dtype() {
        DType::I64 => Ok(t.as_i64().unwrap_or_default().to_vec()),
        DType::I32 => Ok(t
            .as_i32()
            .unwrap_or_default()
            .iter()
            .map(|&v| i64::from(v))
            .collect()),
        other => Err(EngineError::operand(
            op,
            format!("expected an int64/int32 tensor, got {other}"),
        )),
    }
}

/// The constant value of an integer input fact, if known.
fn const_ints(op: &str, t: &TypeShape) -> Result<Option<Vec<i64>>> {
    match &t.value {
        Some(v) if !is_absent(t) => Ok(Some(int_list(op, v)?)),
        _ => Ok(None),
    }
}

fn fixed(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// Row-major source offsets of every element of a tensor of `shape` read through strides `s`.
fn offsets(shape: &[usize], s: &[usize]) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(shape.iter().product());
    for_each_offset(shape, s, |o| out.push(Some(o)));
    out
}

// ---------------------------------------------------------------------------------------------

/// `Shape`: the input's dims as `int64`, optionally sliced by `start`/`end`.
#[derive(Debug, Clone)]
pub struct Shape {
    start: i64,
    end: Option<i64>,
}

impl Shape {
    fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = clamp(self.start);
        let e = self.end.map_or(rank, clamp);
        (s, e.max(s))
    }
}

impl Operator for Shape {
    fn op_type(&self) -> &str {
        "Shape"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Shape", inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let (s, e) = self.range(x.rank());
        let dims = &x.shape[s..e];
        let known: Option<Vec<i64>> = dims.iter().map(|d| d.fixed().map(|v| v as i64)).collect();
        Ok(vec![match known {
            Some(v) => TypeShape::of_constant(Arc::new(Tensor::from_i64(vec![v.len()], v)?)),
            None => TypeShape::fixed(DType::I64, &[e - s]),
        }])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Shape", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let (s, e) = self.range(x.rank());
        let v: Vec<i64> = x.shape()[s..e].iter().map(|&d| d as i64).collect();
        Ok(vec![Tensor::from_i64(vec![v.len()], v)?])
    }
}

/// `Size`: the element count as an `int64` scalar.
#[derive(Debug, Clone, Default)]
pub struct Size;

impl Operator for Size {
    fn op_type(&self) -> &str {
        "Size"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Size", inputs.len(), 1, 1)?;
        Ok(vec![match inputs[0].concrete_shape() {
            Some(s) => TypeShape::of_constant(Arc::new(Tensor::scalar(numel(&s)? as i64))),
            None => TypeShape::fixed(DType::I64, &[]),
        }])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Size", inputs.len(), 1, 1)?;
        Ok(vec![Tensor::scalar(inputs[0].len() as i64)])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Squeeze` / `Unsqueeze`: remove or insert size-1 axes (a reshape; data is shared order).
#[derive(Debug, Clone)]
pub struct Squeeze {
    unsqueeze: bool,
    /// From the attribute (old opsets); `None` when axes are input 1.
    attr_axes: Option<Vec<i64>>,
}

impl Squeeze {
    fn name(&self) -> &'static str {
        if self.unsqueeze {
            "Unsqueeze"
        } else {
            "Squeeze"
        }
    }

    /// Output dims from input dims and the axes (if known).
    fn out_dims(&self, dims: &[Dim], axes: Option<&[i64]>) -> Result<Vec<Dim>> {
        let op = self.name();
        if self.unsqueeze {
            let axes = axes.ok_or_else(|| EngineError::operand(op, "axes are required"))?;
            let rank = dims.len() + axes.len();
            let mut mask = vec![false; rank];
            for &a in axes {
                let a = normalize_axis(op, a, rank)?;
                if std::mem::replace(&mut mask[a], true) {
                    return Err(EngineError::operand(op, format!("axis {a} repeated")));
                }
            }
            let mut it = dims.iter();
            return Ok(mask
                .iter()
                .map(|&m| {
                    if m {
                        Dim::Fixed(1)
                    } else {
                        it.next().cloned().unwrap_or(Dim::Fixed(1))
                    }
                })
                .collect());
        }
        match axes {
            Some(axes) if !axes.is_empty() => {
                let mut mask = vec![false; dims.len()];
                for &a in axes {
                    let a = normalize_axis(op, a, dims.len())?;
                    if dims[a].fixed().is_some_and(|d| d != 1) {
                        return Err(EngineError::operand(
                            op,
                            format!("axis {a} has size {} (not 1)", dims[a]),
                        ));
                    }
                    mask[a] = true;
                }
                Ok(dims
                    .iter()
                    .zip(&mask)
                    .filter(|(_, &m)| !m)
                    .map(|(d, _)| d.clone())
                    .collect())
            }
            _ => {
                if dims.iter().any(|d| d.fixed().is_none()) {
                    return Err(EngineError::UnsupportedFeature(
                        "Squeeze without axes on a shape with unknown dims".into(),
                    ));
                }
                Ok(dims
                    .iter()
                    .filter(|d| **d != Dim::Fixed(1))
                    .cloned()
                    .collect())
            }
        }
    }
}

impl Operator for Squeeze {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 2)?;
        let x = &inputs[0];
        let axes = match (&self.attr_axes, inputs.get(1)) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(t)) => match const_ints(self.name(), t)? {
                Some(v) => Some(v),
                None => {
                    let k = t.shape.first().and_then(Dim::fixed).ok_or_else(|| {
                        EngineError::UnsupportedFeature(format!(
                            "{} with axes of unknown length",
                            self.name()
                        ))
                    })?;
                    let rank = if self.unsqueeze {
                        x.rank() + k
                    } else {
                        x.rank().saturating_sub(k)
                    };
                    return Ok(vec![TypeShape::new(x.dtype, vec![Dim::unknown(); rank])]);
                }
            },
            (None, None) => None,
        };
        let dims = self.out_dims(&x.shape, axes.as_deref())?;
        Ok(vec![TypeShape::new(x.dtype, dims)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 2)?;
        let x = inputs[0];
        let axes = match (&self.attr_axes, inputs.get(1)) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(t)) => Some(int_list(self.name(), t)?),
            (None, None) => None,
        };
        let dims = self.out_dims(&fixed(x.shape()), axes.as_deref())?;
        let shape: Vec<usize> = dims.iter().map(|d| d.fixed().unwrap_or(1)).collect();
        Ok(vec![x.clone().reshaped(shape)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Expand`: broadcasts the input to a shape (numpy rules, either side may stretch).
#[derive(Debug, Clone, Default)]
pub struct Expand;

impl Operator for Expand {
    fn op_type(&self) -> &str {
        "Expand"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Expand", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let shape = match const_ints("Expand", &inputs[1])? {
            Some(s) => broadcast_dims(&x.shape, &fixed(&dims_from_i64(&s)?))?,
            None => {
                let k = inputs[1]
                    .shape
                    .first()
                    .and_then(Dim::fixed)
                    .ok_or_else(|| {
                        EngineError::UnsupportedFeature(
                            "Expand to a shape of unknown length".into(),
                        )
                    })?;
                vec![Dim::unknown(); k.max(x.rank())]
            }
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Expand", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let target = dims_from_i64(&int_list("Expand", inputs[1])?)?;
        let shape = broadcast_shape(x.shape(), &target)?;
        let s = broadcast_strides(x.shape(), &shape)?;
        let idx = offsets(&shape, &s);
        Ok(vec![take(x, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Gather`: picks slices along `axis` by (possibly negative) indices.
#[derive(Debug, Clone)]
pub struct Gather {
    axis: i64,
}

impl Operator for Gather {
    fn op_type(&self) -> &str {
        "Gather"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Gather", inputs.len(), 2, 2)?;
        let (x, i) = (&inputs[0], &inputs[1]);
        if !matches!(i.dtype, DType::I64 | DType::I32) {
            return Err(unsupported_dtype("Gather", i.dtype));
        }
        let axis = normalize_axis("Gather", self.axis, x.rank())?;
        let mut shape = x.shape[..axis].to_vec();
        shape.extend(i.shape.iter().cloned());
        shape.extend(x.shape[axis + 1..].iter().cloned());
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Gather", inputs.len(), 2, 2)?;
        let (x, it) = (inputs[0], inputs[1]);
        let axis = normalize_axis("Gather", self.axis, x.rank())?;
        let indices = int_list("Gather", it)?;
        let n = x.shape()[axis];
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis + 1..].iter().product();
        let mut resolved = Vec::with_capacity(indices.len());
        for &k in &indices {
            let k2 = if k < 0 { k + n as i64 } else { k };
            if k2 < 0 || k2 >= n as i64 {
                return Err(EngineError::operand(
                    "Gather",
                    format!("index {k} out of range for axis of size {n}"),
                ));
            }
            resolved.push(k2 as usize);
        }
        let mut idx = Vec::with_capacity(outer * resolved.len() * inner);
        for o in 0..outer {
            for &k in &resolved {
                for i in 0..inner {
                    idx.push(Some((o * n + k) * inner + i));
                }
            }
        }
        let mut shape = x.shape()[..axis].to_vec();
        shape.extend_from_slice(it.shape());
        shape.extend_from_slice(&x.shape()[axis + 1..]);
        Ok(vec![take(x, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Slice`: strided sub-ranges along some axes (starts/ends/axes/steps as inputs, or as
/// attributes before opset 10).
#[derive(Debug, Clone)]
pub struct Slice {
    /// `(starts, ends, axes)` from attributes (opset < 10).
    attrs: Option<SliceAttrs>,
}

/// `(starts, ends, axes)` attributes of an opset < 10 `Slice`.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// Per-axis `(start, step, count)` for a concrete shape.
fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>> {
    let op = "Slice";
    let rank = shape.len();
    if starts.len() != ends.len() {
        return Err(EngineError::operand(op, "starts and ends differ in length"));
    }
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if axes.len() != starts.len() || steps.is_some_and(|s| s.len() != starts.len()) {
        return Err(EngineError::operand(
            op,
            "axes/steps length differs from starts",
        ));
    }
    let mut plan: Vec<(i64, i64, usize)> = shape.iter().map(|&d| (0, 1, d)).collect();
    let mut seen = vec![false; rank];
    for (k, &a) in axes.iter().enumerate() {
        let a = normalize_axis(op, a, rank)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(EngineError::operand(op, format!("axis {a} repeated")));
        }
        let dim = shape[a] as i64;
        let step = steps.map_or(1, |s| s[k]);
        if step == 0 {
            return Err(EngineError::operand(op, "step 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (fix(starts[k]), fix(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, dim), e.clamp(0, dim))
        } else {
            // max/min rather than clamp: an empty axis makes the upper bound -1.
            (s.min(dim - 1).max(0), e.min(dim - 1).max(-1))
        };
        let span = if step > 0 { e - s } else { s - e };
        let count = if span <= 0 || dim == 0 {
            0
        } else {
            let st = step.unsigned_abs() as i64;
            ((span + st - 1) / st) as usize
        };
        plan[a] = (s, step, count);
    }
    Ok(plan)
}

impl Slice {
    fn params(&self, inputs: &[Option<Vec<i64>>]) -> Result<SliceParams> {
        Ok(match &self.attrs {
            Some((s, e, a)) => (
                Some(s.clone()),
                Some(e.clone()),
                a.clone().map(Some),
                Some(None),
            ),
            None => {
                let get = |k: usize| inputs.get(k).cloned();
                (get(1).flatten(), get(2).flatten(), get(3), get(4))
            }
        })
    }
}

/// (starts, ends, axes, steps): outer `None` = not yet known; inner `None` = not given.
type SliceParams = (
    Option<Vec<i64>>,
    Option<Vec<i64>>,
    Option<Option<Vec<i64>>>,
    Option<Option<Vec<i64>>>,
);

impl Operator for Slice {
    fn op_type(&self) -> &str {
        "Slice"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let (min, max) = if self.attrs.is_some() { (1, 1) } else { (3, 5) };
        check_arity("Slice", inputs.len(), min, max)?;
        let x = &inputs[0];
        let mut known: Vec<Option<Vec<i64>>> = vec![None];
        let mut all_known = true;
        for t in &inputs[1..] {
            if is_absent(t) {
                known.push(None);
                continue;
            }
            let v = const_ints("Slice", t)?;
            all_known &= v.is_some();
            known.push(v);
        }
        let unknown = vec![TypeShape::new(x.dtype, vec![Dim::unknown(); x.rank()])];
        if !all_known && self.attrs.is_none() {
            return Ok(unknown);
        }
        let (Some(s), Some(e), a, st) = self.params(&known)? else {
            return Ok(unknown);
        };
        let a = a.flatten();
        let st = st.flatten();
        // Exact when the input shape is known; otherwise keep untouched axes.
        match x.concrete_shape() {
            Some(shape) => {
                let plan = slice_plan(&shape, &s, &e, a.as_deref(), st.as_deref())?;
                let dims: Vec<usize> = plan.iter().map(|p| p.2).collect();
                Ok(vec![TypeShape::fixed(x.dtype, &dims)])
            }
            None => {
                let default_axes: Vec<i64> = (0..s.len() as i64).collect();
                let axes = a.unwrap_or(default_axes);
                let mut dims = x.shape.clone();
                for &ax in &axes {
                    let ax = normalize_axis("Slice", ax, x.rank())?;
                    dims[ax] = Dim::unknown();
                }
                Ok(vec![TypeShape::new(x.dtype, dims)])
            }
        }
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs[0];
        let mut vals: Vec<Option<Vec<i64>>> = vec![None];
        for t in &inputs[1..] {
            vals.push(if is_absent_tensor(t) {
                None
            } else {
                Some(int_list("Slice", t)?)
            });
        }
        let (Some(s), Some(e), a, st) = self.params(&vals)? else {
            return Err(EngineError::operand(
                "Slice",
                "starts and ends are required",
            ));
        };
        let plan = slice_plan(
            x.shape(),
            &s,
            &e,
            a.flatten().as_deref(),
            st.flatten().as_deref(),
        )?;
        let shape: Vec<usize> = plan.iter().map(|p| p.2).collect();
        let src = strides(x.shape());
        let total = numel(&shape)?;
        let mut idx = Vec::with_capacity(total);
        if total > 0 {
            let mut pos = vec![0usize; shape.len()];
            for _ in 0..total {
                let mut off = 0i64;
                for (ax, &p) in pos.iter().enumerate() {
                    let (start, step, _) = plan[ax];
                    off += (start + step * p as i64) * src[ax] as i64;
                }
                idx.push(Some(off as usize));
                for ax in (0..shape.len()).rev() {
                    pos[ax] += 1;
                    if pos[ax] < shape[ax] {
                        break;
                    }
                    pos[ax] = 0;
                }
            }
        }
        Ok(vec![take(x, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Split`: cuts the input along `axis` into parts (sizes given, or equal).
#[derive(Debug, Clone)]
pub struct Split {
    axis: i64,
    /// Sizes from the attribute (opset < 13).
    attr_split: Option<Vec<i64>>,
    /// Number of outputs (the node's count, or `num_outputs`).
    outputs: usize,
    /// Opset >= 18 `num_outputs`: uneven splits put the remainder in a smaller last part.
    num_outputs_attr: bool,
}

impl Split {
    fn sizes(&self, dim: usize, given: Option<&[i64]>) -> Result<Vec<usize>> {
        let op = "Split";
        if let Some(s) = given
            .or(self.attr_split.as_deref())
            .filter(|s| !s.is_empty())
        {
            let sizes = dims_from_i64(s).map_err(|_| EngineError::operand(op, "negative split"))?;
            if sizes.iter().sum::<usize>() != dim || sizes.len() != self.outputs {
                return Err(EngineError::operand(
                    op,
                    format!(
                        "split {s:?} does not cover axis of size {dim} in {} parts",
                        self.outputs
                    ),
                ));
            }
            return Ok(sizes);
        }
        let n = self.outputs.max(1);
        if self.num_outputs_attr {
            let chunk = dim.div_ceil(n);
            let mut left = dim;
            return Ok((0..n)
                .map(|_| {
                    let c = chunk.min(left);
                    left -= c;
                    c
                })
                .collect());
        }
        if dim % n != 0 {
            return Err(EngineError::operand(
                op,
                format!("axis of size {dim} does not split evenly into {n}"),
            ));
        }
        Ok(vec![dim / n; n])
    }
}

impl Operator for Split {
    fn op_type(&self) -> &str {
        "Split"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Split", inputs.len(), 1, 2)?;
        let x = &inputs[0];
        let axis = normalize_axis("Split", self.axis, x.rank())?;
        let given = match inputs.get(1) {
            Some(t) => match const_ints("Split", t)? {
                Some(v) => Some(v),
                None if is_absent(t) => None,
                None => {
                    let mut shape = x.shape.clone();
                    shape[axis] = Dim::unknown();
                    return Ok(vec![TypeShape::new(x.dtype, shape); self.outputs]);
                }
            },
            None => None,
        };
        match x.shape[axis].fixed() {
            Some(d) => Ok(self
                .sizes(d, given.as_deref())?
                .into_iter()
                .map(|s| {
                    let mut shape = x.shape.clone();
                    shape[axis] = Dim::Fixed(s);
                    TypeShape::new(x.dtype, shape)
                })
                .collect()),
            None => {
                let mut shape = x.shape.clone();
                shape[axis] = Dim::unknown();
                Ok(vec![TypeShape::new(x.dtype, shape); self.outputs])
            }
        }
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Split", inputs.len(), 1, 2)?;
        let x = inputs[0];
        let axis = normalize_axis("Split", self.axis, x.rank())?;
        let given = match inputs.get(1) {
            Some(t) if !is_absent_tensor(t) => Some(int_list("Split", t)?),
            _ => None,
        };
        let dim = x.shape()[axis];
        let sizes = self.sizes(dim, given.as_deref())?;
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(sizes.len());
        let mut begin = 0usize;
        for s in sizes {
            let mut idx = Vec::with_capacity(outer * s * inner);
            for o in 0..outer {
                for k in begin..begin + s {
                    for i in 0..inner {
                        idx.push(Some((o * dim + k) * inner + i));
                    }
                }
            }
            let mut shape = x.shape().to_vec();
            shape[axis] = s;
            out.push(take(x, shape, &idx, None)?);
            begin += s;
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

/// `Tile`: repeats the input `repeats[i]` times along each axis.
#[derive(Debug, Clone, Default)]
pub struct Tile;

impl Operator for Tile {
    fn op_type(&self) -> &str {
        "Tile"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Tile", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let shape = match const_ints("Tile", &inputs[1])? {
            Some(r) if r.len() == x.rank() => x
                .shape
                .iter()
                .zip(&r)
                .map(|(d, &k)| match d {
                    Dim::Fixed(n) => Dim::Fixed(n * k.max(0) as usize),
                    _ => Dim::unknown(),
                })
                .collect(),
            Some(_) => return Err(EngineError::operand("Tile", "repeats length != rank")),
            None => vec![Dim::unknown(); x.rank()],
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Tile", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let reps = dims_from_i64(&int_list("Tile", inputs[1])?)?;
        if reps.len() != x.rank() {
            return Err(EngineError::operand("Tile", "repeats length != rank"));
        }
        let shape: Vec<usize> = x.shape().iter().zip(&reps).map(|(d, r)| d * r).collect();
        let total = numel(&shape)?;
        let src = strides(x.shape());
        let mut idx = Vec::with_capacity(total);
        let mut pos = vec![0usize; shape.len()];
        for _ in 0..total {
            let off: usize = pos
                .iter()
                .enumerate()
                .map(|(a, &p)| (p % x.shape()[a]) * src[a])
                .sum();
            idx.push(Some(off));
            for a in (0..shape.len()).rev() {
                pos[a] += 1;
                if pos[a] < shape[a] {
                    break;
                }
                pos[a] = 0;
            }
        }
        Ok(vec![take(x, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// How `Pad` fills the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// A constant value.
    Constant,
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
    /// Wrap around.
    Wrap,
}

/// `Pad`: pads (or, with negative pads, crops) each axis.
#[derive(Debug, Clone)]
pub struct Pad {
    mode: PadMode,
    /// `(pads, value)` from attributes (opset < 11).
    attrs: Option<(Vec<i64>, f32)>,
}

impl Pad {
    /// Per-axis (begin, end) pads for a rank, from `pads` and optional `axes`.
    fn per_axis(rank: usize, pads: &[i64], axes: Option<&[i64]>) -> Result<Vec<(i64, i64)>> {
        let default_axes: Vec<i64> = (0..rank as i64).collect();
        let axes = axes.unwrap_or(&default_axes);
        if pads.len() != 2 * axes.len() {
            return Err(EngineError::operand(
                "Pad",
                format!("pads has {} values for {} axes", pads.len(), axes.len()),
            ));
        }
        let mut out = vec![(0i64, 0i64); rank];
        for (k, &a) in axes.iter().enumerate() {
            let a = normalize_axis("Pad", a, rank)?;
            out[a] = (pads[k], pads[k + axes.len()]);
        }
        Ok(out)
    }
}

impl Operator for Pad {
    fn op_type(&self) -> &str {
        "Pad"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let max = if self.attrs.is_some() { 1 } else { 4 };
        check_arity("Pad", inputs.len(), 1, max)?;
        let x = &inputs[0];
        let pads = match &self.attrs {
            Some((p, _)) => Some(p.clone()),
            None => inputs
                .get(1)
                .map(|t| const_ints("Pad", t))
                .transpose()?
                .flatten(),
        };
        let axes = match inputs.get(3) {
            Some(t) if !is_absent(t) => const_ints("Pad", t)?.map(Some),
            _ => Some(None),
        };
        let shape = match (pads, axes) {
            (Some(p), Some(a)) => Pad::per_axis(x.rank(), &p, a.as_deref())?
                .iter()
                .zip(&x.shape)
                .map(|(&(b, e), d)| match d {
                    Dim::Fixed(n) => {
                        let v = *n as i64 + b + e;
                        if v < 0 {
                            Err(EngineError::operand("Pad", "negative output size"))
                        } else {
                            Ok(Dim::Fixed(v as usize))
                        }
                    }
                    _ => Ok(if b == 0 && e == 0 {
                        d.clone()
                    } else {
                        Dim::unknown()
                    }),
                })
                .collect::<Result<_>>()?,
            _ => vec![Dim::unknown(); x.rank()],
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs[0];
        let (pads, fill, axes) = match &self.attrs {
            Some((p, v)) => {
                let fill = Cast::new(x.dtype()).eval(&[&Tensor::scalar(*v)])?.remove(0);
                (p.clone(), Some(fill), None)
            }
            None => {
                let pads = int_list(
                    "Pad",
                    inputs
                        .get(1)
                        .ok_or_else(|| EngineError::operand("Pad", "pads input is required"))?,
                )?;
                let fill = inputs
                    .get(2)
                    .filter(|t| !is_absent_tensor(t))
                    .map(|t| (*t).clone());
                let axes = match inputs.get(3) {
                    Some(t) if !is_absent_tensor(t) => Some(int_list("Pad", t)?),
                    _ => None,
                };
                (pads, fill, axes)
            }
        };
        let per = Pad::per_axis(x.rank(), &pads, axes.as_deref())?;
        let in_shape = x.shape();
        let mut shape = Vec::with_capacity(per.len());
        for (&(b, e), &d) in per.iter().zip(in_shape) {
            let v = d as i64 + b + e;
            if v < 0 {
                return Err(EngineError::operand("Pad", "negative output size"));
            }
            shape.push(v as usize);
        }
        if self.mode != PadMode::Constant && in_shape.contains(&0) && numel(&shape)? > 0 {
            return Err(EngineError::operand(
                "Pad",
                "cannot reflect/edge/wrap an empty axis",
            ));
        }
        let src = strides(in_shape);
        let total = numel(&shape)?;
        let mut idx = Vec::with_capacity(total);
        let mut pos = vec![0usize; shape.len()];
        for _ in 0..total {
            let mut off = Some(0usize);
            for (a, &p) in pos.iter().enumerate() {
                let n = in_shape[a] as i64;
                let mut s = p as i64 - per[a].0;
                if s < 0 || s >= n {
                    s = match self.mode {
                        PadMode::Constant => {
                            off = None;
                            break;
                        }
                        PadMode::Edge => s.clamp(0, n - 1),
                        PadMode::Wrap => s.rem_euclid(n),
                        PadMode::Reflect => {
                            if n == 1 {
                                0
                            } else {
                                let period = 2 * (n - 1);
                                let m = s.rem_euclid(period);
                                if m < n {
                                    m
                                } else {
                                    period - m
                                }
                            }
                        }
                    };
                }
                off = off.map(|o| o + s as usize * src[a]);
            }
            idx.push(off);
            for a in (0..shape.len()).rev() {
                pos[a] += 1;
                if pos[a] < shape[a] {
                    break;
                }
                pos[a] = 0;
            }
        }
        Ok(vec![take(x, shape, &idx, fill.as_ref())?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `ConstantOfShape`: a tensor of the given shape filled with `value` (default float 0).
#[derive(Debug, Clone)]
pub struct ConstantOfShape {
    value: Arc<Tensor>,
}

impl Operator for ConstantOfShape {
    fn op_type(&self) -> &str {
        "ConstantOfShape"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("ConstantOfShape", inputs.len(), 1, 1)?;
        let shape = match const_ints("ConstantOfShape", &inputs[0])? {
            Some(s) => fixed(&dims_from_i64(&s)?),
            None => {
                let k = inputs[0]
                    .shape
                    .first()
                    .and_then(Dim::fixed)
                    .ok_or_else(|| {
                        EngineError::UnsupportedFeature(
                            "ConstantOfShape with a shape of unknown length".into(),
                        )
                    })?;
                vec![Dim::unknown(); k]
            }
        };
        Ok(vec![TypeShape::new(self.value.dtype(), shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("ConstantOfShape", inputs.len(), 1, 1)?;
        let shape = dims_from_i64(&int_list("ConstantOfShape", inputs[0])?)?;
        let idx = vec![Some(0usize); numel(&shape)?];
        Ok(vec![take(&self.value, shape, &idx, None)?])
    }
}

// ---------------------------------------------------------------------------------------------

/// `Range(start, limit, delta)`: `start + i * delta` for `i` in `0..ceil((limit-start)/delta)`.
#[derive(Debug, Clone, Default)]
pub struct Range;

/// The scalar inputs of `Range` as `T`.
fn range_args<T: Convert>(s: &Tensor, l: &Tensor, d: &Tensor) -> Result<(T, T, T)> {
    let one = |t: &Tensor| -> Result<T> {
        t.as_slice::<T>()
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
            .ok_or_else(|| EngineError::operand("Range", "inputs must be scalars of one dtype"))
    };
    Ok((one(s)?, one(l)?, one(d)?))
}

/// The number of elements `Range` produces, checked against the tensor size limit before
/// anything is allocated (and computable at load time from constant inputs).
fn range_len<T: Convert>(s: &Tensor, l: &Tensor, d: &Tensor) -> Result<usize> {
    let (s, l, d) = range_args::<T>(s, l, d)?;
    let n = if T::FLOAT {
        let (s, l, d) = (s.to_f64(), l.to_f64(), d.to_f64());
        let n = ((l - s) / d).ceil();
        if !n.is_finite() && n > 0.0 {
            return Err(EngineError::operand("Range", "infinite range"));
        }
        n.max(0.0) as usize
    } else {
        let (s, l, d) = (s.to_i128(), l.to_i128(), d.to_i128());
        if d == 0 {
            return Err(EngineError::operand("Range", "delta is 0"));
        }
        let span = l - s;
        let n = if (span > 0) != (d > 0) || span == 0 {
            0
        } else {
            (span.abs() + d.abs() - 1) / d.abs()
        };
        usize::try_from(n).map_err(|_| EngineError::operand("Range", "too long"))?
    };
    numel(&[n])?;
    Ok(n)
}

fn range<T: Convert>(s: &Tensor, l: &Tensor, d: &Tensor) -> Result<Tensor> {
    let n = range_len::<T>(s, l, d)?;
    let (s, _, d) = range_args::<T>(s, l, d)?;
    if T::FLOAT {
        let (s, d) = (s.to_f64(), d.to_f64());
        let v = (0..n).map(|i| T::from_f64(s + i as f64 * d)).collect();
        Tensor::from_vec(vec![n], v)
    } else {
        let (s, d) = (s.to_i128(), d.to_i128());
        let v = (0..n).map(|i| T::from_i128(s + i as i128 * d)).collect();
        Tensor::from_vec(vec![n], v)
    }
}

impl Operator for Range {
    fn op_type(&self) -> &str {
        "Range"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Range", inputs.len(), 3, 3)?;
        let dtype = super::same_dtype("Range", inputs)?;
        if !dtype.is_numeric() {
            return Err(unsupported_dtype("Range", dtype));
        }
        // With constant inputs the length is known (and checked) without evaluating.
        let len = match (&inputs[0].value, &inputs[1].value, &inputs[2].value) {
            (Some(s), Some(l), Some(d)) => {
                Dim::Fixed(dispatch_numeric!(dtype, T => range_len::<T>(s, l, d)?,
                other => return Err(unsupported_dtype("Range", other))))
            }
            _ => Dim::unknown(),
        };
        Ok(vec![TypeShape::new(dtype, vec![len])])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Range", inputs.len(), 3, 3)?;
        let (s, l, d) = (inputs[0], inputs[1], inputs[2]);
        let out = dispatch_numeric!(s.dtype(), T => range::<T>(s, l, d)?,
            other => return Err(unsupported_dtype("Range", other)));
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------------

/// `CastLike(x, like)`: `Cast` to `like`'s dtype (with `Cast`'s `saturate`/`round_mode`).
#[derive(Debug, Clone)]
pub struct CastLike {
    attributes: crate::Attributes,
}

impl Operator for CastLike {
    fn op_type(&self) -> &str {
        "CastLike"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("CastLike", inputs.len(), 2, 2)?;
        Ok(vec![TypeShape::new(
            inputs[1].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("CastLike", inputs.len(), 2, 2)?;
        Cast::with_attributes(inputs[1].dtype(), &self.attributes)?.eval(&inputs[..1])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Shape", |ctx| {
        let a = ctx.attributes;
        Ok(Box::new(Shape {
            start: a.int_or("start", 0)?,
            end: a.int("end")?,
        }))
    });
    r.register("", "Size", |_| Ok(Box::new(Size)));
    for unsqueeze in [false, true] {
        r.register(
            "",
            if unsqueeze { "Unsqueeze" } else { "Squeeze" },
            move |ctx| {
                let attr_axes = if ctx.opset < 13 {
                    Some(
                        ctx.attributes
                            .ints("axes")?
                            .map(<[i64]>::to_vec)
                            .unwrap_or_default(),
                    )
                } else {
                    None
                };
                Ok(Box::new(Squeeze {
                    unsqueeze,
                    attr_axes,
                }))
            },
        );
    }
    r.register("", "Expand", |_| Ok(Box::new(Expand)));
    r.register("", "Gather", |ctx| {
        Ok(Box::new(Gather {
            axis: ctx.attributes.int_or("axis", 0)?,
        }))
    });
    r.register("", "Slice", |ctx| {
        let attrs = if ctx.opset < 10 {
            let a = ctx.attributes;
            let get = |n: &str| -> Result<Vec<i64>> {
                a.ints(n)?
                    .map(<[i64]>::to_vec)
                    .ok_or_else(|| a.invalid(n, "required attribute is missing"))
            };
            Some((
                get("starts")?,
                get("ends")?,
                a.ints("axes")?.map(<[i64]>::to_vec),
            ))
        } else {
            None
        };
        Ok(Box::new(Slice { attrs }))
    });
    r.register("", "Split", |ctx| {
        let a = ctx.attributes;
        let attr_split = if ctx.opset < 13 {
            a.ints("split")?.map(<[i64]>::to_vec)
        } else {
            None
        };
        let num = a.int("num_outputs")?;
        Ok(Box::new(Split {
            axis: a.int_or("axis", 0)?,
            attr_split,
            outputs: num.map_or(ctx.num_outputs, |n| n.max(0) as usize),
            num_outputs_attr: num.is_some(),
        }))
    });
    r.register("", "Tile", |_| Ok(Box::new(Tile)));
    r.register("", "Pad", |ctx| {
        let a = ctx.attributes;
        let mode = match a.string("mode")?.unwrap_or("constant") {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => return Err(a.invalid("mode", format!("unknown pad mode {other:?}"))),
        };
        let attrs = if ctx.opset < 11 {
            let pads = a
                .ints("pads")?
                .map(<[i64]>::to_vec)
                .ok_or_else(|| a.invalid("pads", "required attribute is missing"))?;
            Some((pads, a.float_or("value", 0.0)?))
        } else {
            None
        };
        Ok(Box::new(Pad { mode, attrs }))
    });
    r.register("", "ConstantOfShape", |ctx| {
        let value = match ctx.attributes.tensor("value")? {
            Some(t) if t.len() == 1 => Arc::new(t.as_ref().clone().reshaped(vec![])?),
            Some(_) => return Err(ctx.attributes.invalid("value", "must hold one element")),
            None => Arc::new(Tensor::scalar(0f32)),
        };
        Ok(Box::new(ConstantOfShape { value }))
    });
    r.register("", "Range", |_| Ok(Box::new(Range)));
    r.register("", "CastLike", |ctx| {
        Ok(Box::new(CastLike {
            attributes: ctx.attributes.clone(),
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_clamps_like_numpy() {
        // x[1:100], x[-1:-4:-1], x[5:0] on a length-4 axis.
        let p = slice_plan(&[4], &[1], &[100], None, None).unwrap();
        assert_eq!(p, vec![(1, 1, 3)]);
        let p = slice_plan(&[4], &[-1], &[-4], None, Some(&[-1])).unwrap();
        assert_eq!(p, vec![(3, -1, 3)]);
        let p = slice_plan(&[4], &[5], &[0], None, None).unwrap();
        assert_eq!(p[0].2, 0);
        let p = slice_plan(&[4], &[i64::MAX], &[i64::MIN], None, Some(&[-1])).unwrap();
        assert_eq!(p, vec![(3, -1, 4)]);
        // An empty axis with a negative step is empty, not a panic.
        let p = slice_plan(&[0], &[-1], &[-10], None, Some(&[-1])).unwrap();
        assert_eq!(p[0].2, 0);
    }

    #[test]
    fn pad_modes() {
        let x = Tensor::from_i64(vec![3], vec![1, 2, 3]).unwrap();
        let pads = Tensor::from_i64(vec![2], vec![2, 2]).unwrap();
        let run = |mode| {
            Pad { mode, attrs: None }
                .eval(&[&x, &pads])
                .unwrap()
                .remove(0)
                .as_i64()
                .unwrap()
                .to_vec()
        };
        assert_eq!(run(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(run(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(run(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(run(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
    }
}
