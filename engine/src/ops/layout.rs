//! Layout and generator operators: `DepthToSpace`, `SpaceToDepth`, `CenterCropPad`,
//! `ReverseSequence`, `EyeLike`, `TopK`, `Hardmax`, `Unique`, and `Det`.
//!
//! Why together: each is a fixed permutation or selection of elements computed from shapes and
//! attributes alone (no arithmetic on values beyond comparisons), built as an index list and
//! applied with [`take`].

use super::tensor_ops::{int_list, take};
use super::{check_arity, dispatch_all, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, numel};
use crate::tensor::{Element, Tensor};
use crate::types::{Dim, TypeShape};
use crate::DType;

/// `DepthToSpace` and `SpaceToDepth`, modes DCR and CRD.
#[derive(Debug, Clone)]
pub struct DepthSpace {
    to_space: bool,
    block: usize,
    crd: bool,
}

impl DepthSpace {
    fn name(&self) -> &'static str {
        if self.to_space {
            "DepthToSpace"
        } else {
            "SpaceToDepth"
        }
    }

    fn out_shape(&self, s: &[usize]) -> Result<Vec<usize>> {
        let b = self.block;
        if s.len() != 4 || b == 0 {
            return Err(EngineError::operand(
                self.name(),
                "input must be N x C x H x W",
            ));
        }
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        if self.to_space {
            if c % (b * b) != 0 {
                return Err(EngineError::operand(
                    self.name(),
                    "C not divisible by blocksize^2",
                ));
            }
            Ok(vec![n, c / (b * b), h * b, w * b])
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(EngineError::operand(
                    self.name(),
                    "H/W not divisible by blocksize",
                ));
            }
            Ok(vec![n, c * b * b, h / b, w / b])
        }
    }
}

impl Operator for DepthSpace {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let shape = match x.concrete_shape() {
            Some(s) => self.out_shape(&s)?.into_iter().map(Dim::Fixed).collect(),
            None if x.rank() == 4 => vec![Dim::unknown(); 4],
            None => return Err(EngineError::operand(self.name(), "input must be 4-D")),
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        let out = self.out_shape(x.shape())?;
        let b = self.block;
        let (c, h, w) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let mut idx = Vec::with_capacity(numel(&out)?);
        for n in 0..out[0] {
            for oc in 0..out[1] {
                for oh in 0..out[2] {
                    for ow in 0..out[3] {
                        let (ic, ih, iw) = if self.to_space {
                            let (bh, bw) = (oh % b, ow % b);
                            let cc = if self.crd {
                                oc * b * b + bh * b + bw
                            } else {
                                (bh * b + bw) * out[1] + oc
                            };
                            (cc, oh / b, ow / b)
                        } else {
                            let (k, ic) = if self.crd {
                                (oc % (b * b), oc / (b * b))
                            } else {
                                (oc / c, oc % c)
                            };
                            (ic, oh * b + k / b, ow * b + k % b)
                        };
                        idx.push(Some(((n * c + ic) * h + ih) * w + iw));
                    }
                }
            }
        }
        Ok(vec![take(x, out, &idx, None)?])
    }
}

/// `EyeLike`: a 2-D tensor of the input's shape with ones on diagonal `k`.
#[derive(Debug, Clone)]
pub struct EyeLike {
    dtype: Option<DType>,
    k: i64,
}

impl Operator for EyeLike {
    fn op_type(&self) -> &str {
        "EyeLike"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("EyeLike", inputs.len(), 1, 1)?;
        if inputs[0].rank() != 2 {
            return Err(EngineError::operand("EyeLike", "input must be 2-D"));
        }
        let d = self.dtype.unwrap_or(inputs[0].dtype);
        Ok(vec![TypeShape::new(d, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("EyeLike", inputs.len(), 1, 1)?;
        let s = inputs[0].shape();
        if s.len() != 2 {
            return Err(EngineError::operand("EyeLike", "input must be 2-D"));
        }
        let v: Vec<i64> = (0..s[0] * s[1])
            .map(|o| i64::from((o % s[1]) as i64 - (o / s[1]) as i64 == self.k))
            .collect();
        let t = Tensor::from_i64(s.to_vec(), v)?;
        let d = self.dtype.unwrap_or(inputs[0].dtype());
        super::cast::Cast::new(d).eval(&[&t])
    }
}

/// `TopK(X, K)`: the `K` largest (or smallest) along `axis`, values and `int64` indices;
/// ties go to the lower index.
#[derive(Debug, Clone)]
pub struct TopK {
    axis: i64,
    largest: bool,
}

fn order<T: Element>(v: &[T], largest: bool, a: usize, b: usize) -> std::cmp::Ordering {
    let (x, y) = (v[a], v[b]);
    let ord = if largest {
        y.partial_cmp(&x)
    } else {
        x.partial_cmp(&y)
    };
    ord.unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
}

impl TopK {
    fn select<T: Element>(&self, x: &Tensor, k: usize, axis: usize) -> Result<Vec<Tensor>> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("TopK", "dtype"))?;
        let s = x.shape();
        let n = s[axis];
        if k > n {
            return Err(EngineError::operand(
                "TopK",
                format!("k {k} > axis size {n}"),
            ));
        }
        let outer: usize = s[..axis].iter().product();
        let inner: usize = s[axis + 1..].iter().product();
        let mut idx = Vec::with_capacity(outer * k * inner);
        let mut pos = vec![0i64; outer * k * inner];
        for o in 0..outer {
            for i in 0..inner {
                let mut cand: Vec<usize> = (0..n).map(|j| (o * n + j) * inner + i).collect();
                cand.sort_by(|&a, &b| order(v, self.largest, a, b));
                for (r, &c) in cand.iter().take(k).enumerate() {
                    pos[(o * k + r) * inner + i] = ((c / inner) % n) as i64;
                }
            }
        }
        for o in 0..outer {
            for r in 0..k {
                for i in 0..inner {
                    let j = pos[(o * k + r) * inner + i] as usize;
                    idx.push(Some((o * n + j) * inner + i));
                }
            }
        }
        let mut shape = s.to_vec();
        shape[axis] = k;
        Ok(vec![
            take(x, shape.clone(), &idx, None)?,
            Tensor::from_i64(shape, pos)?,
        ])
    }
}

impl Operator for TopK {
    fn op_type(&self) -> &str {
        "TopK"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("TopK", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let axis = normalize_axis("TopK", self.axis, x.rank())?;
        let mut shape = x.shape.clone();
        shape[axis] = match &inputs[1].value {
            Some(k) => {
                Dim::Fixed(int_list("TopK", k)?.first().copied().unwrap_or(0).max(0) as usize)
            }
            None => Dim::unknown(),
        };
        Ok(vec![
            TypeShape::new(x.dtype, shape.clone()),
            TypeShape::new(DType::I64, shape),
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("TopK", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let axis = normalize_axis("TopK", self.axis, x.rank())?;
        let k = int_list("TopK", inputs[1])?;
        let k = usize::try_from(
            *k.first()
                .ok_or_else(|| EngineError::operand("TopK", "K is empty"))?,
        )
        .map_err(|_| EngineError::operand("TopK", "K is negative"))?;
        dispatch_all!(x.dtype(), T => self.select::<T>(x, k, axis))
    }
}

/// `Hardmax`: 1 at the first maximum along `axis` (opset < 13: of the flattened trailing
/// block), 0 elsewhere.
#[derive(Debug, Clone)]
pub struct Hardmax {
    axis: i64,
    legacy: bool,
}

impl Hardmax {
    fn run<T: Element>(&self, x: &Tensor) -> Result<Tensor> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("Hardmax", "dtype"))?;
        let s = x.shape();
        let axis = normalize_axis("Hardmax", self.axis, s.len())?;
        let outer: usize = s[..axis].iter().product();
        let (n, inner) = if self.legacy {
            (s[axis..].iter().product(), 1)
        } else {
            (s[axis], s[axis + 1..].iter().product())
        };
        let mut out = vec![0i64; v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                if n == 0 {
                    continue;
                }
                let mut best = 0usize;
                for j in 1..n {
                    if v[at(j)] > v[at(best)] {
                        best = j;
                    }
                }
                out[at(best)] = 1;
            }
        }
        let t = Tensor::from_i64(s.to_vec(), out)?;
        super::cast::Cast::new(x.dtype())
            .eval(&[&t])
            .map(|mut r| r.remove(0))
    }
}

impl Operator for Hardmax {
    fn op_type(&self) -> &str {
        "Hardmax"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Hardmax", inputs.len(), 1, 1)?;
        normalize_axis("Hardmax", self.axis, inputs[0].rank())?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Hardmax", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let out = dispatch_all!(x.dtype(), T => self.run::<T>(x)?);
        Ok(vec![out])
    }
}

/// `CenterCropPad(input, shape)`: crops or zero-pads the given axes around the centre.
#[derive(Debug, Clone)]
pub struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

impl Operator for CenterCropPad {
    fn op_type(&self) -> &str {
        "CenterCropPad"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("CenterCropPad", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let mut shape = x.shape.clone();
        let axes = self.axes(x.rank())?;
        let sizes = match &inputs[1].value {
            Some(v) => Some(int_list("CenterCropPad", v)?),
            None => None,
        };
        for (k, &a) in axes.iter().enumerate() {
            shape[a] = match &sizes {
                Some(s) => Dim::Fixed(s.get(k).copied().unwrap_or(0).max(0) as usize),
                None => Dim::unknown(),
            };
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("CenterCropPad", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let sizes = int_list("CenterCropPad", inputs[1])?;
        let axes = self.axes(x.rank())?;
        if sizes.len() != axes.len() {
            return Err(EngineError::operand(
                "CenterCropPad",
                "shape length != number of axes",
            ));
        }
        let mut out = x.shape().to_vec();
        // Per axis: offset such that out index o reads input index o + shift (if in range).
        let mut shift = vec![0i64; x.rank()];
        for (&a, &s) in axes.iter().zip(&sizes) {
            let s = usize::try_from(s)
                .map_err(|_| EngineError::operand("CenterCropPad", "negative size"))?;
            let dim = x.shape()[a];
            out[a] = s;
            shift[a] = if s <= dim {
                ((dim - s) / 2) as i64
            } else {
                -(((s - dim) / 2) as i64)
            };
        }
        let st = crate::shape::strides(x.shape());
        let mut idx = Vec::with_capacity(numel(&out)?);
        super::indexing::for_each_index(&out, |p| {
            let mut off = Some(0usize);
            for (a, &q) in p.iter().enumerate() {
                let src = q as i64 + shift[a];
                if src < 0 || src >= x.shape()[a] as i64 {
                    off = None;
                    break;
                }
                off = off.map(|o| o + src as usize * st[a]);
            }
            idx.push(off);
            Ok(())
        })?;
        Ok(vec![take(x, out, &idx, None)?])
    }
}

impl CenterCropPad {
    fn axes(&self, rank: usize) -> Result<Vec<usize>> {
        match &self.axes {
            None => Ok((0..rank).collect()),
            Some(a) => a
                .iter()
                .map(|&x| normalize_axis("CenterCropPad", x, rank))
                .collect(),
        }
    }
}

/// `ReverseSequence(input, sequence_lens)`: reverses the first `len[b]` steps of each batch
/// entry along the time axis.
#[derive(Debug, Clone)]
pub struct ReverseSequence {
    batch_axis: i64,
    time_axis: i64,
}

impl Operator for ReverseSequence {
    fn op_type(&self) -> &str {
        "ReverseSequence"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("ReverseSequence", inputs.len(), 2, 2)?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("ReverseSequence", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let lens = int_list("ReverseSequence", inputs[1])?;
        let (ba, ta) = (
            normalize_axis("ReverseSequence", self.batch_axis, x.rank())?,
            normalize_axis("ReverseSequence", self.time_axis, x.rank())?,
        );
        if lens.len() != x.shape()[ba] {
            return Err(EngineError::operand(
                "ReverseSequence",
                "one length per batch entry",
            ));
        }
        let st = crate::shape::strides(x.shape());
        let t = x.shape()[ta] as i64;
        let mut idx = Vec::with_capacity(x.len());
        super::indexing::for_each_index(x.shape(), |p| {
            let l = lens[p[ba]].clamp(0, t) as usize;
            let mut q = p.to_vec();
            if q[ta] < l {
                q[ta] = l - 1 - q[ta];
            }
            idx.push(Some(q.iter().zip(&st).map(|(a, b)| a * b).sum()));
            Ok(())
        })?;
        Ok(vec![take(x, x.shape().to_vec(), &idx, None)?])
    }
}

/// `Unique`: distinct elements (or slices along `axis`), sorted or in order of first
/// occurrence, with first indices, inverse indices and counts.
#[derive(Debug, Clone)]
pub struct Unique {
    axis: Option<i64>,
    sorted: bool,
}

impl Operator for Unique {
    fn op_type(&self) -> &str {
        "Unique"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Unique", inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let y = match self.axis {
            None => vec![Dim::unknown()],
            Some(a) => {
                let a = normalize_axis("Unique", a, x.rank())?;
                let mut s = x.shape.clone();
                s[a] = Dim::unknown();
                s
            }
        };
        let one = |d| TypeShape::new(d, vec![Dim::unknown()]);
        Ok(vec![
            TypeShape::new(x.dtype, y),
            one(DType::I64),
            one(DType::I64),
            one(DType::I64),
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Unique", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let v = {
            let c = super::cast::Cast::new(DType::F64).eval(&[x])?.remove(0);
            c.as_f64().unwrap_or_default().to_vec()
        };
        let (shape, axis) = match self.axis {
            None => (vec![x.len()], 0),
            Some(a) => (x.shape().to_vec(), normalize_axis("Unique", a, x.rank())?),
        };
        let n = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let slice_idx = |k: usize| -> Vec<usize> {
            (0..outer)
                .flat_map(|o| (0..inner).map(move |i| (o * n + k) * inner + i))
                .collect()
        };
        let slices: Vec<Vec<f64>> = (0..n)
            .map(|k| slice_idx(k).iter().map(|&i| v[i]).collect())
            .collect();
        let cmp = |a: &Vec<f64>, b: &Vec<f64>| {
            a.iter()
                .zip(b)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        // Distinct slices in first-occurrence order.
        let mut firsts: Vec<usize> = Vec::new();
        let mut inverse = vec![0usize; n];
        for k in 0..n {
            match firsts
                .iter()
                .position(|&f| cmp(&slices[f], &slices[k]).is_eq())
            {
                Some(u) => inverse[k] = u,
                None => {
                    inverse[k] = firsts.len();
                    firsts.push(k);
                }
            }
        }
        let mut order: Vec<usize> = (0..firsts.len()).collect();
        if self.sorted {
            order.sort_by(|&a, &b| cmp(&slices[firsts[a]], &slices[firsts[b]]));
        }
        let mut rank = vec![0usize; order.len()];
        for (r, &u) in order.iter().enumerate() {
            rank[u] = r;
        }
        let indices: Vec<i64> = order.iter().map(|&u| firsts[u] as i64).collect();
        let inv: Vec<i64> = inverse.iter().map(|&u| rank[u] as i64).collect();
        let mut counts = vec![0i64; order.len()];
        for &u in &inverse {
            counts[rank[u]] += 1;
        }
        let flat = x.clone().reshaped(shape.clone())?;
        let mut idx = Vec::new();
        for o in 0..outer {
            for &k in &indices {
                idx.extend((0..inner).map(|i| Some((o * n + k as usize) * inner + i)));
            }
        }
        let mut y_shape = shape;
        y_shape[axis] = indices.len();
        let m = indices.len();
        Ok(vec![
            take(&flat, y_shape, &idx, None)?,
            Tensor::from_i64(vec![m], indices)?,
            Tensor::from_i64(vec![n], inv)?,
            Tensor::from_i64(vec![m], counts)?,
        ])
    }
}

/// `Det`: determinants of the trailing square matrices (LU with partial pivoting in `f64`).
#[derive(Debug, Clone, Default)]
pub struct Det;

impl Operator for Det {
    fn op_type(&self) -> &str {
        "Det"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Det", inputs.len(), 1, 1)?;
        let x = &inputs[0];
        if !x.dtype.is_float() || x.rank() < 2 {
            return Err(EngineError::operand(
                "Det",
                "input must be float [..., M, M]",
            ));
        }
        Ok(vec![TypeShape::new(
            x.dtype,
            x.shape[..x.rank() - 2].to_vec(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Det", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let s = x.shape();
        if s.len() < 2 || s[s.len() - 1] != s[s.len() - 2] {
            return Err(EngineError::operand("Det", "input must be [..., M, M]"));
        }
        let m = s[s.len() - 1];
        let v = {
            let c = super::cast::Cast::new(DType::F64).eval(&[x])?.remove(0);
            c.as_f64().unwrap_or_default().to_vec()
        };
        let batch = v.len() / (m * m).max(1);
        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let mut a = v[b * m * m..(b + 1) * m * m].to_vec();
            let mut det = 1.0;
            for col in 0..m {
                let p = (col..m)
                    .max_by(|&i, &j| a[i * m + col].abs().total_cmp(&a[j * m + col].abs()))
                    .unwrap_or(col);
                if a[p * m + col] == 0.0 {
                    det = 0.0;
                    break;
                }
                if p != col {
                    for k in 0..m {
                        a.swap(p * m + k, col * m + k);
                    }
                    det = -det;
                }
                let piv = a[col * m + col];
                det *= piv;
                for r in col + 1..m {
                    let f = a[r * m + col] / piv;
                    for k in col..m {
                        a[r * m + k] -= f * a[col * m + k];
                    }
                }
            }
            out.push(det);
        }
        let t = Tensor::from_f64(s[..s.len() - 2].to_vec(), out)?;
        super::cast::Cast::new(x.dtype()).eval(&[&t])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Unique", |ctx| {
        let a = ctx.attributes;
        Ok(Box::new(Unique {
            axis: a.int("axis")?,
            sorted: a.int_or("sorted", 1)? != 0,
        }))
    });
    r.register("", "Det", |_| Ok(Box::new(Det)));
    r.register("", "CenterCropPad", |ctx| {
        Ok(Box::new(CenterCropPad {
            axes: ctx.attributes.ints("axes")?.map(<[i64]>::to_vec),
        }))
    });
    r.register("", "ReverseSequence", |ctx| {
        let a = ctx.attributes;
        Ok(Box::new(ReverseSequence {
            batch_axis: a.int_or("batch_axis", 1)?,
            time_axis: a.int_or("time_axis", 0)?,
        }))
    });
    for to_space in [true, false] {
        r.register(
            "",
            if to_space {
                "DepthToSpace"
            } else {
                "SpaceToDepth"
            },
            move |ctx| {
                let a = ctx.attributes;
                let b = a.required_int("blocksize")?;
                let crd = match a.string("mode")?.unwrap_or("DCR") {
                    "DCR" => false,
                    "CRD" => true,
                    other => return Err(a.invalid("mode", format!("unsupported mode {other:?}"))),
                };
                Ok(Box::new(DepthSpace {
                    to_space,
                    block: usize::try_from(b).map_err(|_| a.invalid("blocksize", "must be > 0"))?,
                    crd,
                }))
            },
        );
    }
    r.register("", "EyeLike", |ctx| {
        let a = ctx.attributes;
        let dtype = match a.int("dtype")? {
            Some(c) => Some(DType::from_onnx(i32::try_from(c).unwrap_or(0))?),
            None => None,
        };
        Ok(Box::new(EyeLike {
            dtype,
            k: a.int_or("k", 0)?,
        }))
    });
    r.register("", "TopK", |ctx| {
        let a = ctx.attributes;
        if ctx.opset < 10 {
            return Err(EngineError::UnsupportedFeature(
                "TopK before opset 10 (k attribute)".into(),
            ));
        }
        // `sorted = 0` leaves the order implementation-defined; sorted output satisfies it.
        Ok(Box::new(TopK {
            axis: a.int_or("axis", -1)?,
            largest: a.int_or("largest", 1)? != 0,
        }))
    });
    r.register("", "Hardmax", |ctx| {
        let legacy = ctx.opset < 13;
        Ok(Box::new(Hardmax {
            axis: ctx.attributes.int_or("axis", if legacy { 1 } else { -1 })?,
            legacy,
        }))
    });
}
