//! `Resize`: nearest, (bi)linear and cubic interpolation with every coordinate transformation
//! mode, `antialias`, `exclude_outside`, `keep_aspect_ratio_policy`, `axes` and
//! `tf_crop_and_resize` regions.
//!
//! Why separable and step-for-step: interpolation is separable, so the N-D operator is a
//! sequence of 1-D resamplings, one per resized axis; each output coordinate maps back to a
//! source coordinate, picks `n` neighbours (clamped at the edges) and weights them. The
//! coordinate and neighbour rules follow the ONNX reference exactly (ties and edges are where
//! implementations differ); arithmetic is in `f64`, and results are rounded and saturated to
//! the input dtype at the end.

use super::cast::Cast;
use super::tensor_ops::int_list;
use super::{check_arity, is_absent, is_absent_tensor, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Interpolation family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

/// How a nearest-neighbour tie is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Source-coordinate mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// The `Resize` operator.
#[derive(Debug, Clone)]
pub struct Resize {
    mode: Mode,
    nearest: Nearest,
    coord: Coord,
    cubic_a: f64,
    antialias: bool,
    exclude_outside: bool,
    extrapolation: f64,
    /// `None` = stretch; `Some(true)` = not_larger; `Some(false)` = not_smaller.
    keep_aspect: Option<bool>,
    axes: Option<Vec<i64>>,
}

impl Resize {
    fn coeffs(&self, ratio: f64, scale: f64) -> Vec<f64> {
        match (self.mode, self.antialias) {
            (Mode::Nearest, _) => {
                if ratio.fract() == 0.0 {
                    return vec![0.0, 1.0];
                }
                let b = |c: bool| f64::from(u8::from(c));
                match self.nearest {
                    Nearest::RoundPreferFloor => vec![b(ratio <= 0.5), b(ratio > 0.5)],
                    Nearest::RoundPreferCeil => vec![b(ratio < 0.5), b(ratio >= 0.5)],
                    Nearest::Floor => vec![1.0, 0.0],
                    Nearest::Ceil => vec![0.0, 1.0],
                }
            }
            (Mode::Linear, false) => vec![1.0 - ratio, ratio],
            (Mode::Linear, true) => {
                let scale = scale.min(1.0);
                let start = (-1.0 / scale).floor() as i64 + 1;
                let footprint = 2 - 2 * start;
                let c: Vec<f64> = (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                    .collect();
                let s: f64 = c.iter().sum();
                c.into_iter().map(|x| x / s).collect()
            }
            (Mode::Cubic, false) => {
                let a = self.cubic_a;
                let r = ratio;
                vec![
                    ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                    ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                    ((a + 2.0) * (1.0 - r) - (a + 3.0)) * (1.0 - r) * (1.0 - r) + 1.0,
                    ((a * ((1.0 - r) + 1.0) - 5.0 * a) * ((1.0 - r) + 1.0) + 8.0 * a)
                        * ((1.0 - r) + 1.0)
                        - 4.0 * a,
                ]
            }
            (Mode::Cubic, true) => {
                let a = self.cubic_a;
                let scale = scale.min(1.0);
                let k = |x: f64| {
                    let x = x.abs();
                    let (x2, x3) = (x * x, x * x * x);
                    if x <= 1.0 {
                        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                    } else if x < 2.0 {
                        a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / scale).floor() as i64 + 1;
                let end = 2 - start;
                let c: Vec<f64> = (start..end)
                    .map(|i| k(scale * (i as f64 - ratio)))
                    .collect();
                let s: f64 = c.iter().sum();
                c.into_iter().map(|x| x / s).collect()
            }
        }
    }

    /// Resamples `data` (shape `shape`) along `axis` to `out` positions.
    #[allow(clippy::too_many_arguments)]
    fn along_axis(
        &self,
        data: &[f64],
        shape: &[usize],
        axis: usize,
        scale: f64,
        out: usize,
        roi: Option<(f64, f64)>,
    ) -> Result<Vec<f64>> {
        let input = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut result = vec![0f64; outer * out * inner];
        if out == 0 || input == 0 {
            return Ok(result);
        }
        let width = scale * input as f64;
        for y in 0..out {
            let yf = y as f64;
            let mut extrapolated = false;
            let x = match self.coord {
                Coord::AlignCorners => {
                    if width == 1.0 {
                        0.0
                    } else {
                        yf * (input as f64 - 1.0) / (width - 1.0)
                    }
                }
                Coord::Asymmetric => yf / scale,
                Coord::TfCropAndResize => {
                    let (r0, r1) = roi.ok_or_else(|| {
                        EngineError::operand("Resize", "tf_crop_and_resize needs roi")
                    })?;
                    let span = input as f64 - 1.0;
                    let x = if width == 1.0 {
                        (r1 - r0) * span / 2.0
                    } else {
                        yf * (r1 - r0) * span / (width - 1.0)
                    } + r0 * span;
                    extrapolated = x < 0.0 || x > span;
                    x
                }
                Coord::PytorchHalfPixel => {
                    if width == 1.0 {
                        -0.5
                    } else {
                        (yf + 0.5) / scale - 0.5
                    }
                }
                Coord::HalfPixel => (yf + 0.5) / scale - 0.5,
                Coord::HalfPixelSymmetric => {
                    let adjustment = out as f64 / width;
                    let center = input as f64 / 2.0;
                    center * (1.0 - adjustment) + (yf + 0.5) / scale - 0.5
                }
            };
            let ratio = if x.fract() == 0.0 { 1.0 } else { x - x.floor() };
            let mut c = self.coeffs(ratio, scale);
            let n = c.len() as i64;
            let pad = (n + 1) / 2;
            let xp = x + pad as f64;
            let p = xp.floor();
            let frac = xp - p;
            let off = if n % 2 == 0 {
                if frac == 0.0 {
                    -(n / 2)
                } else {
                    -(n / 2) + 1
                }
            } else {
                let base = -((n - 1) / 2);
                if frac <= 0.5 {
                    base
                } else {
                    base + 1
                }
            };
            let start = p as i64 + off - pad;
            let idx: Vec<i64> = (0..n).map(|k| start + k).collect();
            if self.exclude_outside {
                for (ci, &i) in c.iter_mut().zip(&idx) {
                    if i < 0 || i >= input as i64 {
                        *ci = 0.0;
                    }
                }
                let s: f64 = c.iter().sum();
                let s = if s == 0.0 { 1.0 } else { s };
                c.iter_mut().for_each(|v| *v /= s);
            }
            for o in 0..outer {
                for i in 0..inner {
                    let v = if extrapolated {
                        self.extrapolation
                    } else {
                        c.iter()
                            .zip(&idx)
                            .map(|(w, &j)| {
                                let j = j.clamp(0, input as i64 - 1) as usize;
                                w * data[(o * input + j) * inner + i]
                            })
                            .sum()
                    };
                    result[(o * out + y) * inner + i] = v;
                }
            }
        }
        Ok(result)
    }

    /// Per-axis (scale, output size) for a concrete input shape.
    fn plan(
        &self,
        shape: &[usize],
        scales: Option<&[f64]>,
        sizes: Option<&[i64]>,
    ) -> Result<(Vec<usize>, Vec<f64>, Vec<usize>)> {
        let r = shape.len();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&x| normalize_axis("Resize", x, r))
                .collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        let mut scale = vec![1.0; r];
        let mut out = shape.to_vec();
        match (sizes, scales) {
            (Some(s), _) => {
                if s.len() != axes.len() {
                    return Err(EngineError::operand(
                        "Resize",
                        "sizes length != number of axes",
                    ));
                }
                for (&a, &v) in axes.iter().zip(s) {
                    let v = usize::try_from(v)
                        .map_err(|_| EngineError::operand("Resize", "negative size"))?;
                    out[a] = v;
                    scale[a] = v as f64 / shape[a] as f64;
                }
                if let Some(not_larger) = self.keep_aspect {
                    let pick = axes.iter().map(|&a| scale[a]);
                    let s = if not_larger {
                        pick.fold(f64::INFINITY, f64::min)
                    } else {
                        pick.fold(f64::NEG_INFINITY, f64::max)
                    };
                    for &a in &axes {
                        scale[a] = s;
                        out[a] = (s * shape[a] as f64 + 0.5) as usize;
                    }
                }
            }
            (None, Some(sc)) => {
                if sc.len() != axes.len() {
                    return Err(EngineError::operand(
                        "Resize",
                        "scales length != number of axes",
                    ));
                }
                for (&a, &v) in axes.iter().zip(sc) {
                    if v.is_nan() || v <= 0.0 || v.is_infinite() {
                        return Err(EngineError::operand("Resize", "scales must be positive"));
                    }
                    scale[a] = v;
                    out[a] = (v * shape[a] as f64) as usize;
                }
            }
            (None, None) => return Err(EngineError::operand("Resize", "need scales or sizes")),
        }
        crate::shape::numel(&out)?;
        Ok((axes, scale, out))
    }
}

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(c.as_f64().unwrap_or_default().to_vec())
}

impl Operator for Resize {
    fn op_type(&self) -> &str {
        "Resize"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Resize", inputs.len(), 1, 4)?;
        let x = &inputs[0];
        let konst = |i: usize| {
            inputs
                .get(i)
                .filter(|t| !is_absent(t))
                .and_then(|t| t.value.clone())
        };
        let shape = match (x.concrete_shape(), konst(2), konst(3)) {
            (Some(s), sc, sz) if sc.is_some() || sz.is_some() => {
                let scales = sc.map(|t| f64s(&t)).transpose()?;
                let sizes = sz.map(|t| int_list("Resize", &t)).transpose()?;
                let (_, _, out) = self.plan(&s, scales.as_deref(), sizes.as_deref())?;
                out.into_iter().map(Dim::Fixed).collect()
            }
            _ => vec![Dim::unknown(); x.rank()],
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Resize", inputs.len(), 1, 4)?;
        let x = inputs[0];
        let present = |i: usize| {
            inputs
                .get(i)
                .filter(|t| !is_absent_tensor(t) && !t.is_empty())
        };
        let roi = present(1).map(|t| f64s(t)).transpose()?;
        let scales = present(2).map(|t| f64s(t)).transpose()?;
        let sizes = present(3).map(|t| int_list("Resize", t)).transpose()?;
        let shape = x.shape().to_vec();
        let (axes, scale, out) = self.plan(&shape, scales.as_deref(), sizes.as_deref())?;
        // The region of interest, per axis (starts then ends, over `axes` if given).
        let roi_of = |k: usize| -> Option<(f64, f64)> {
            let roi = roi.as_ref()?;
            let n = roi.len() / 2;
            Some((*roi.get(k)?, *roi.get(k + n)?))
        };
        let mut data = f64s(x)?;
        let mut cur = shape.clone();
        for (k, &a) in axes.iter().enumerate() {
            let rk = roi_of(if self.axes.is_some() { k } else { a });
            let trivial_roi =
                rk.is_none_or(|(s, e)| (s - 0.0).abs() < 1e-9 && (e - 1.0).abs() < 1e-9);
            if (scale[a] - 1.0).abs() <= 1e-9 && out[a] == cur[a] && trivial_roi {
                continue;
            }
            data = self.along_axis(&data, &cur, a, scale[a], out[a], rk)?;
            cur[a] = out[a];
        }
        // Round integers to even; the cast saturates (float-to-integer `as` conversions do).
        let d = x.dtype();
        if d.is_int() {
            data.iter_mut().for_each(|v| *v = v.round_ties_even());
        }
        Cast::new(d).eval(&[&Tensor::from_f64(cur, data)?])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Resize", |ctx| {
        let a = ctx.attributes;
        if ctx.opset < 11 {
            return Err(EngineError::UnsupportedFeature(
                "Resize before opset 11 (scales-only form)".into(),
            ));
        }
        let mode = match a.string("mode")?.unwrap_or("nearest") {
            "nearest" => Mode::Nearest,
            "linear" => Mode::Linear,
            "cubic" => Mode::Cubic,
            other => return Err(a.invalid("mode", format!("unknown {other:?}"))),
        };
        let nearest = match a.string("nearest_mode")?.unwrap_or("round_prefer_floor") {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            other => return Err(a.invalid("nearest_mode", format!("unknown {other:?}"))),
        };
        let coord = match a
            .string("coordinate_transformation_mode")?
            .unwrap_or("half_pixel")
        {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_crop_and_resize" => Coord::TfCropAndResize,
            other => {
                return Err(a.invalid(
                    "coordinate_transformation_mode",
                    format!("unknown {other:?}"),
                ))
            }
        };
        let keep_aspect = match a.string("keep_aspect_ratio_policy")?.unwrap_or("stretch") {
            "stretch" => None,
            "not_larger" => Some(true),
            "not_smaller" => Some(false),
            other => {
                return Err(a.invalid("keep_aspect_ratio_policy", format!("unknown {other:?}")))
            }
        };
        let antialias = a.int_or("antialias", 0)? != 0;
        if antialias && mode == Mode::Nearest {
            return Err(a.invalid("antialias", "not defined for nearest mode"));
        }
        Ok(Box::new(Resize {
            mode,
            nearest,
            coord,
            cubic_a: f64::from(a.float_or("cubic_coeff_a", -0.75)?),
            antialias,
            exclude_outside: a.int_or("exclude_outside", 0)? != 0,
            extrapolation: f64::from(a.float_or("extrapolation_value", 0.0)?),
            keep_aspect,
            axes: a.ints("axes")?.map(<[i64]>::to_vec),
        }))
    });
}
