//! Sliding-window operators: `Conv`, `ConvTranspose`, `MaxPool`, `AveragePool`, `LpPool`, `GlobalAveragePool`,
//! `GlobalMaxPool`, for any number of spatial dimensions.
//!
//! Why one module: they share the window geometry — kernel shape, strides, dilations, explicit
//! or `auto_pad` padding, `ceil_mode` — which is where implementations usually disagree, so it
//! is computed once ([`Window`]) and tested. Kernels are direct loops in `f64` (the reference a
//! faster im2col/GEMM or Winograd backend will be checked against).

use super::cast::Cast;
use super::indexing::for_each_index;
use super::{check_arity, unsupported_dtype, OpRegistry, Operator};
use crate::attributes::Attributes;
use crate::error::{EngineError, Result};
use crate::shape::strides;
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

/// `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// Window attributes as given (before the input shape is known).
#[derive(Debug, Clone)]
struct WindowSpec {
    kernel: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    auto_pad: AutoPad,
    ceil_mode: bool,
}

/// Resolved geometry for one input shape.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pad_begin: Vec<usize>,
    pad_end: Vec<usize>,
    out: Vec<usize>,
}

fn usizes(a: &Attributes, name: &str) -> Result<Option<Vec<usize>>> {
    match a.ints(name)? {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|&x| usize::try_from(x).map_err(|_| a.invalid(name, "must be non-negative")))
            .collect::<Result<Vec<_>>>()
            .map(Some),
    }
}

impl WindowSpec {
    fn parse(a: &Attributes) -> Result<WindowSpec> {
        let auto_pad = match a.string("auto_pad")?.unwrap_or("NOTSET") {
            "NOTSET" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => return Err(a.invalid("auto_pad", format!("unknown {other:?}"))),
        };
        Ok(WindowSpec {
            kernel: usizes(a, "kernel_shape")?,
            strides: usizes(a, "strides")?,
            dilations: usizes(a, "dilations")?,
            pads: usizes(a, "pads")?,
            auto_pad,
            ceil_mode: a.int_or("ceil_mode", 0)? != 0,
        })
    }

    fn resolve(&self, op: &str, input: &[usize], kernel: Option<&[usize]>) -> Result<Window> {
        let r = input.len();
        let kernel = kernel
            .map(<[usize]>::to_vec)
            .or_else(|| self.kernel.clone())
            .ok_or_else(|| EngineError::operand(op, "kernel_shape is required"))?;
        let ones = vec![1usize; r];
        let strides = self.strides.clone().unwrap_or_else(|| ones.clone());
        let dilations = self.dilations.clone().unwrap_or(ones);
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * r]);
        if kernel.len() != r || strides.len() != r || dilations.len() != r || pads.len() != 2 * r {
            return Err(EngineError::operand(
                op,
                "window attributes do not match the input rank",
            ));
        }
        if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
            return Err(EngineError::operand(op, "zero kernel, stride or dilation"));
        }
        let mut w = Window {
            kernel,
            strides,
            dilations,
            pad_begin: pads[..r].to_vec(),
            pad_end: pads[r..].to_vec(),
            out: vec![0; r],
        };
        for (i, &len) in input.iter().enumerate() {
            let eff = (w.kernel[i] - 1) * w.dilations[i] + 1;
            let s = w.strides[i];
            match self.auto_pad {
                AutoPad::NotSet => {
                    let span = len + w.pad_begin[i] + w.pad_end[i];
                    if span < eff {
                        return Err(EngineError::operand(op, "window larger than padded input"));
                    }
                    let mut o = if self.ceil_mode {
                        (span - eff).div_ceil(s) + 1
                    } else {
                        (span - eff) / s + 1
                    };
                    // A last window that starts inside the end padding is dropped.
                    if self.ceil_mode && (o - 1) * s >= len + w.pad_begin[i] {
                        o -= 1;
                    }
                    w.out[i] = o;
                }
                AutoPad::Valid => {
                    if len < eff {
                        return Err(EngineError::operand(op, "window larger than input"));
                    }
                    w.out[i] = (len - eff) / s + 1;
                    w.pad_begin[i] = 0;
                    w.pad_end[i] = 0;
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = len.div_ceil(s);
                    let total = ((o - 1) * s + eff).saturating_sub(len);
                    let small = total / 2;
                    let (b, e) = if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    w.pad_begin[i] = b;
                    w.pad_end[i] = e;
                    w.out[i] = o;
                }
            }
        }
        Ok(w)
    }
}

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolKind {
    Max,
    Average,
    Lp(i64),
}

/// `MaxPool`, `AveragePool`, `LpPool` and their `Global*` forms.
#[derive(Debug, Clone)]
pub struct Pool {
    kind: PoolKind,
    global: bool,
    spec: WindowSpec,
    count_include_pad: bool,
    /// `MaxPool` indices in column-major order (`storage_order = 1`).
    column_major: bool,
}

impl Pool {
    fn name(&self) -> &'static str {
        match (self.kind, self.global) {
            (PoolKind::Max, false) => "MaxPool",
            (PoolKind::Max, true) => "GlobalMaxPool",
            (PoolKind::Average, false) => "AveragePool",
            (PoolKind::Average, true) => "GlobalAveragePool",
            (PoolKind::Lp(_), false) => "LpPool",
            (PoolKind::Lp(_), true) => "GlobalLpPool",
        }
    }

    fn window(&self, spatial: &[usize]) -> Result<Window> {
        if self.global {
            let r = spatial.len();
            return Ok(Window {
                kernel: spatial.to_vec(),
                strides: vec![1; r],
                dilations: vec![1; r],
                pad_begin: vec![0; r],
                pad_end: vec![0; r],
                out: vec![1; r],
            });
        }
        self.spec.resolve(self.name(), spatial, None)
    }
}

impl Operator for Pool {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        if !x.dtype.is_numeric() {
            return Err(unsupported_dtype(self.name(), x.dtype));
        }
        if x.rank() < 3 {
            return Err(EngineError::operand(
                self.name(),
                "input must be N x C x spatial",
            ));
        }
        let mut shape = x.shape[..2].to_vec();
        match x.concrete_shape() {
            Some(s) => shape.extend(self.window(&s[2..])?.out.into_iter().map(Dim::Fixed)),
            None if self.global => shape.extend(std::iter::repeat_n(Dim::Fixed(1), x.rank() - 2)),
            None => shape.extend(std::iter::repeat_n(Dim::unknown(), x.rank() - 2)),
        }
        let mut out = vec![TypeShape::new(x.dtype, shape.clone())];
        if self.kind == PoolKind::Max && !self.global {
            out.push(TypeShape::new(DType::I64, shape));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        let shape = x.shape();
        if shape.len() < 3 {
            return Err(EngineError::operand(
                self.name(),
                "input must be N x C x spatial",
            ));
        }
        let spatial = &shape[2..];
        let w = self.window(spatial)?;
        let xv = f64s(x)?;
        let plane: usize = spatial.iter().product();
        let out_plane: usize = w.out.iter().product();
        let planes = shape[0] * shape[1];
        let in_strides = strides(spatial);
        let mut y = Vec::with_capacity(planes * out_plane);
        let mut indices = Vec::with_capacity(planes * out_plane);
        for p in 0..planes {
            let base = p * plane;
            for_each_index(&w.out, |o| {
                let mut best = f64::NEG_INFINITY;
                let mut best_at: Option<usize> = None;
                let (mut sum, mut count, mut padded_count) = (0f64, 0usize, 0usize);
                for_each_index(&w.kernel, |k| {
                    let mut off = 0usize;
                    let mut inside = true;
                    let mut in_padded = true;
                    for i in 0..spatial.len() {
                        let pos = (o[i] * w.strides[i] + k[i] * w.dilations[i]) as i64
                            - w.pad_begin[i] as i64;
                        if pos < 0 || pos >= spatial[i] as i64 {
                            inside = false;
                        }
                        if pos >= (spatial[i] + w.pad_end[i]) as i64 {
                            in_padded = false;
                        }
                        off += pos.max(0) as usize * in_strides[i];
                    }
                    if in_padded {
                        padded_count += 1;
                    }
                    if inside {
                        let v = xv[base + off];
                        match self.kind {
                            PoolKind::Max => {
                                if v > best || best_at.is_none() || v.is_nan() {
                                    best = v;
                                    best_at = Some(off);
                                }
                            }
                            PoolKind::Average => sum += v,
                            PoolKind::Lp(pw) => sum += v.abs().powi(pw as i32),
                        }
                        count += 1;
                    }
                    Ok(())
                })?;
                let v = match self.kind {
                    PoolKind::Max => best,
                    PoolKind::Average => {
                        let d = if self.count_include_pad {
                            padded_count
                        } else {
                            count
                        };
                        sum / d.max(1) as f64
                    }
                    PoolKind::Lp(pw) => sum.powf(1.0 / pw as f64),
                };
                y.push(v);
                let at = best_at.unwrap_or(0);
                let flat = if self.column_major {
                    // Column-major within the plane: reverse the axis order.
                    let mut rem = at;
                    let mut idx = vec![0usize; spatial.len()];
                    for i in 0..spatial.len() {
                        idx[i] = rem / in_strides[i];
                        rem %= in_strides[i];
                    }
                    let mut f = 0usize;
                    let mut m = 1usize;
                    for i in 0..spatial.len() {
                        f += idx[i] * m;
                        m *= spatial[i];
                    }
                    f
                } else {
                    at
                };
                indices.push((base + flat) as i64);
                Ok(())
            })?;
        }
        let mut out_shape = shape[..2].to_vec();
        out_shape.extend_from_slice(&w.out);
        let mut out = vec![back(x.dtype(), out_shape.clone(), y)?];
        if self.kind == PoolKind::Max && !self.global {
            out.push(Tensor::from_i64(out_shape, indices)?);
        }
        Ok(out)
    }
}

/// `Conv(X, W, B?)` with groups, strides, dilations and padding.
#[derive(Debug, Clone)]
pub struct Conv {
    spec: WindowSpec,
    group: usize,
}

impl Conv {
    /// Builds from a node's attributes (also used by the integer convolutions).
    pub(crate) fn from_attributes(a: &Attributes) -> Result<Conv> {
        let g = a.int_or("group", 1)?;
        Ok(Conv {
            spec: WindowSpec::parse(a)?,
            group: usize::try_from(g).map_err(|_| a.invalid("group", "must be positive"))?,
        })
    }

    fn window(&self, x: &[usize], w: &[usize]) -> Result<Window> {
        self.spec.resolve("Conv", &x[2..], Some(&w[2..]))
    }
}

impl Operator for Conv {
    fn op_type(&self) -> &str {
        "Conv"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Conv", inputs.len(), 2, 3)?;
        let (x, w) = (&inputs[0], &inputs[1]);
        if !x.dtype.is_float() || w.dtype != x.dtype {
            return Err(unsupported_dtype("Conv", x.dtype));
        }
        if x.rank() < 3 || w.rank() != x.rank() {
            return Err(EngineError::operand(
                "Conv",
                "X and W must be N x C x spatial",
            ));
        }
        let mut shape = vec![x.shape[0].clone(), w.shape[0].clone()];
        match (x.concrete_shape(), w.concrete_shape()) {
            (Some(xs), Some(ws)) => {
                shape.extend(self.window(&xs, &ws)?.out.into_iter().map(Dim::Fixed))
            }
            _ => shape.extend(std::iter::repeat_n(Dim::unknown(), x.rank() - 2)),
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Conv", inputs.len(), 2, 3)?;
        let (x, wt) = (inputs[0], inputs[1]);
        let (xs, ws) = (x.shape(), wt.shape());
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(EngineError::operand(
                "Conv",
                "X and W must be N x C x spatial",
            ));
        }
        let win = self.window(xs, ws)?;
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let g = self.group;
        if g == 0 || c % g != 0 || m % g != 0 || ws[1] * g != c {
            return Err(EngineError::operand(
                "Conv",
                format!("channels {c} and filters {ws:?} do not fit group {g}"),
            ));
        }
        let (cg, mg) = (c / g, m / g);
        let spatial = &xs[2..];
        let plane: usize = spatial.iter().product();
        let kplane: usize = ws[2..].iter().product();
        let in_strides = strides(spatial);
        let xv = f64s(x)?;
        let wv = f64s(wt)?;
        let bias = inputs.get(2).map(|b| f64s(b)).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != m) {
            return Err(EngineError::operand("Conv", "bias must have M elements"));
        }
        // Precompute, per output position and kernel position, the input offset (or None).
        let mut taps: Vec<Vec<Option<usize>>> = Vec::new();
        for_each_index(&win.out, |o| {
            let mut row = Vec::with_capacity(kplane);
            for_each_index(&win.kernel, |k| {
                let mut off = 0usize;
                let mut inside = true;
                for i in 0..spatial.len() {
                    let pos = (o[i] * win.strides[i] + k[i] * win.dilations[i]) as i64
                        - win.pad_begin[i] as i64;
                    if pos < 0 || pos >= spatial[i] as i64 {
                        inside = false;
                        break;
                    }
                    off += pos as usize * in_strides[i];
                }
                row.push(inside.then_some(off));
                Ok(())
            })?;
            taps.push(row);
            Ok(())
        })?;
        let out_plane = taps.len();
        let mut y = vec![0f64; n * m * out_plane];
        for b in 0..n {
            for f in 0..m {
                let gi = f / mg;
                let init = bias.as_ref().map_or(0.0, |bv| bv[f]);
                for (o, row) in taps.iter().enumerate() {
                    let mut acc = init;
                    for ci in 0..cg {
                        let ch = gi * cg + ci;
                        let xb = (b * c + ch) * plane;
                        let wb = (f * cg + ci) * kplane;
                        for (k, tap) in row.iter().enumerate() {
                            if let Some(off) = tap {
                                acc += xv[xb + off] * wv[wb + k];
                            }
                        }
                    }
                    y[(b * m + f) * out_plane + o] = acc;
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend_from_slice(&win.out);
        Ok(vec![back(x.dtype(), shape, y)?])
    }
}

/// `ConvTranspose(X, W, B?)`: the gradient of `Conv` with respect to its input (each input
/// element scatters `W` into the output), with `output_padding`, `output_shape` and
/// `auto_pad` resolved as the reference does.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    group: usize,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
    auto_pad: AutoPad,
}

/// Resolved `ConvTranspose` geometry: (strides, dilations, pad_begin, output spatial shape).
type Deconv = (Vec<usize>, Vec<usize>, Vec<i64>, Vec<usize>);

impl ConvTranspose {
    fn geometry(&self, x: &[usize], kernel: &[usize]) -> Result<Deconv> {
        let r = x.len();
        let op = "ConvTranspose";
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; r]);
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; r]);
        let opad = self.output_padding.clone().unwrap_or_else(|| vec![0; r]);
        if kernel.contains(&0) || strides.contains(&0) || dil.contains(&0) {
            return Err(EngineError::operand(op, "zero kernel, stride or dilation"));
        }
        if strides.len() != r || dil.len() != r || opad.len() < r || kernel.len() != r {
            return Err(EngineError::operand(
                op,
                "attributes do not match the input rank",
            ));
        }
        let full = |i: usize| -> i64 {
            (strides[i] * (x[i].saturating_sub(1)) + opad[i] + (kernel[i] - 1) * dil[i] + 1) as i64
        };
        let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let (begin, out): (Vec<i64>, Vec<i64>) = match (&self.pads, same) {
            (None, true) => {
                let out: Vec<i64> = match &self.output_shape {
                    Some(o) => o.iter().map(|&v| v as i64).collect(),
                    None => (0..r).map(|i| (x[i] * strides[i]) as i64).collect(),
                };
                let begin = (0..r)
                    .map(|i| {
                        let total = full(i) - out[i];
                        if self.auto_pad == AutoPad::SameUpper {
                            total.div_euclid(2)
                        } else {
                            total - total.div_euclid(2)
                        }
                    })
                    .collect();
                (begin, out)
            }
            (pads, _) => {
                let pads = pads.clone().unwrap_or_else(|| vec![0; 2 * r]);
                if pads.len() != 2 * r {
                    return Err(EngineError::operand(
                        op,
                        "pads length must be twice the rank",
                    ));
                }
                let out = match &self.output_shape {
                    Some(o) => o.iter().map(|&v| v as i64).collect(),
                    None => (0..r)
                        .map(|i| full(i) - (pads[i] + pads[i + r]) as i64)
                        .collect(),
                };
                (pads[..r].iter().map(|&p| p as i64).collect(), out)
            }
        };
        if out.len() != r || out.iter().any(|&o| o < 0) {
            return Err(EngineError::operand(op, "invalid output shape"));
        }
        Ok((
            strides,
            dil,
            begin,
            out.into_iter().map(|o| o as usize).collect(),
        ))
    }
}

impl Operator for ConvTranspose {
    fn op_type(&self) -> &str {
        "ConvTranspose"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("ConvTranspose", inputs.len(), 2, 3)?;
        let (x, w) = (&inputs[0], &inputs[1]);
        if !x.dtype.is_float() || w.dtype != x.dtype {
            return Err(unsupported_dtype("ConvTranspose", x.dtype));
        }
        if x.rank() < 3 || w.rank() != x.rank() {
            return Err(EngineError::operand(
                "ConvTranspose",
                "X and W must be N x C x spatial",
            ));
        }
        let m = match w.shape[1] {
            Dim::Fixed(v) => Dim::Fixed(v * self.group),
            _ => Dim::unknown(),
        };
        let mut shape = vec![x.shape[0].clone(), m];
        match (x.concrete_shape(), w.concrete_shape()) {
            (Some(xs), Some(ws)) => shape.extend(
                self.geometry(&xs[2..], &ws[2..])?
                    .3
                    .into_iter()
                    .map(Dim::Fixed),
            ),
            _ => shape.extend(std::iter::repeat_n(Dim::unknown(), x.rank() - 2)),
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("ConvTranspose", inputs.len(), 2, 3)?;
        let (x, wt) = (inputs[0], inputs[1]);
        let (xs, ws) = (x.shape(), wt.shape());
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(EngineError::operand(
                "ConvTranspose",
                "X and W must be N x C x spatial",
            ));
        }
        let (strides, dil, begin, out) = self.geometry(&xs[2..], &ws[2..])?;
        let (n, c, g) = (xs[0], xs[1], self.group);
        if g == 0 || c % g != 0 || ws[0] != c {
            return Err(EngineError::operand(
                "ConvTranspose",
                "channels do not fit the group",
            ));
        }
        let mg = ws[1];
        let m = mg * g;
        let cg = c / g;
        let spatial = &xs[2..];
        let kernel = &ws[2..];
        let plane: usize = spatial.iter().product();
        let kplane: usize = kernel.iter().product();
        let oplane: usize = out.iter().product();
        let ostr = strides_of(&out);
        let xv = f64s(x)?;
        let wv = f64s(wt)?;
        let bias = inputs.get(2).map(|b| f64s(b)).transpose()?;
        // Output offset for each (input position, kernel position), or None when outside.
        let mut taps: Vec<Vec<Option<usize>>> = Vec::with_capacity(plane);
        for_each_index(spatial, |p| {
            let mut row = Vec::with_capacity(kplane);
            for_each_index(kernel, |k| {
                let mut off = 0usize;
                let mut inside = true;
                for i in 0..spatial.len() {
                    let pos = (p[i] * strides[i] + k[i] * dil[i]) as i64 - begin[i];
                    if pos < 0 || pos >= out[i] as i64 {
                        inside = false;
                        break;
                    }
                    off += pos as usize * ostr[i];
                }
                row.push(inside.then_some(off));
                Ok(())
            })?;
            taps.push(row);
            Ok(())
        })?;
        let mut y = vec![0f64; n * m * oplane];
        for b in 0..n {
            for ch in 0..c {
                let gi = ch / cg;
                for mo in 0..mg {
                    let f = gi * mg + mo;
                    let wb = (ch * mg + mo) * kplane;
                    let yb = (b * m + f) * oplane;
                    for (p, row) in taps.iter().enumerate() {
                        let xval = xv[(b * c + ch) * plane + p];
                        for (k, tap) in row.iter().enumerate() {
                            if let Some(o) = tap {
                                y[yb + o] += xval * wv[wb + k];
                            }
                        }
                    }
                }
            }
            if let Some(bv) = &bias {
                for f in 0..m {
                    let add = bv.get(f).copied().unwrap_or(0.0);
                    y[(b * m + f) * oplane..(b * m + f + 1) * oplane]
                        .iter_mut()
                        .for_each(|v| *v += add);
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend_from_slice(&out);
        Ok(vec![back(x.dtype(), shape, y)?])
    }
}

fn strides_of(shape: &[usize]) -> Vec<usize> {
    strides(shape)
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "ConvTranspose", |ctx| {
        let a = ctx.attributes;
        let g = a.int_or("group", 1)?;
        let spec = WindowSpec::parse(a)?;
        Ok(Box::new(ConvTranspose {
            group: usize::try_from(g).map_err(|_| a.invalid("group", "must be positive"))?,
            strides: spec.strides,
            dilations: spec.dilations,
            pads: spec.pads,
            output_padding: usizes(a, "output_padding")?,
            output_shape: usizes(a, "output_shape")?,
            auto_pad: spec.auto_pad,
        }))
    });
    r.register("", "Conv", |ctx| {
        Ok(Box::new(Conv::from_attributes(ctx.attributes)?))
    });
    for (name, kind, global) in [
        ("MaxPool", PoolKind::Max, false),
        ("AveragePool", PoolKind::Average, false),
        ("LpPool", PoolKind::Lp(2), false),
        ("GlobalMaxPool", PoolKind::Max, true),
        ("GlobalAveragePool", PoolKind::Average, true),
        ("GlobalLpPool", PoolKind::Lp(2), true),
    ] {
        r.register("", name, move |ctx| {
            let a = ctx.attributes;
            let kind = match kind {
                PoolKind::Lp(_) => PoolKind::Lp(a.int_or("p", 2)?),
                k => k,
            };
            if ctx.opset < 8 && kind == PoolKind::Max && !global && ctx.num_outputs > 1 {
                return Err(EngineError::UnsupportedFeature(
                    "MaxPool indices before opset 8".into(),
                ));
            }
            Ok(Box::new(Pool {
                kind,
                global,
                spec: WindowSpec::parse(a)?,
                count_include_pad: a.int_or("count_include_pad", 0)? != 0,
                column_major: a.int_or("storage_order", 0)? != 0,
            }))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: usize, s: usize, pads: [usize; 2], auto_pad: AutoPad, ceil: bool) -> WindowSpec {
        WindowSpec {
            kernel: Some(vec![k]),
            strides: Some(vec![s]),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad,
            ceil_mode: ceil,
        }
    }

    #[test]
    fn output_sizes_follow_the_spec() {
        // floor((5 + 0 - 3) / 2) + 1 = 2; ceil -> 2; pads 1,1 -> 3.
        let w = spec(3, 2, [0, 0], AutoPad::NotSet, false)
            .resolve("t", &[5], None)
            .unwrap();
        assert_eq!(w.out, vec![2]);
        let w = spec(3, 2, [0, 0], AutoPad::NotSet, true)
            .resolve("t", &[6], None)
            .unwrap();
        assert_eq!(w.out, vec![3]);
        let w = spec(3, 2, [1, 1], AutoPad::NotSet, false)
            .resolve("t", &[5], None)
            .unwrap();
        assert_eq!(w.out, vec![3]);
        // SAME_UPPER: out = ceil(5/2) = 3; total pad = (3-1)*2 + 3 - 5 = 2 -> (1, 1).
        let w = spec(3, 2, [0, 0], AutoPad::SameUpper, false)
            .resolve("t", &[5], None)
            .unwrap();
        assert_eq!((w.out[0], w.pad_begin[0], w.pad_end[0]), (3, 1, 1));
        // SAME_LOWER with an odd total puts the extra pad first.
        let w = spec(2, 1, [0, 0], AutoPad::SameLower, false)
            .resolve("t", &[4], None)
            .unwrap();
        assert_eq!((w.out[0], w.pad_begin[0], w.pad_end[0]), (4, 1, 0));
        assert!(spec(7, 1, [0, 0], AutoPad::Valid, false)
            .resolve("t", &[5], None)
            .is_err());
    }
}
