//! Linear quantisation: `QuantizeLinear` and `DequantizeLinear`, per tensor, per axis or
//! blocked, to and from 8/16-bit integers, 4/2-bit integers, `float8` and `float4`; and the
//! integer kernels `MatMulInteger`, `ConvInteger`, `QLinearMatMul`, `QLinearConv`, and
//! `DynamicQuantizeLinear`.
//!
//! Why through `Cast`: the float8/float4 encodings (rounding, saturation, NaN rules) already
//! live in one tested place ([`crate::lowp`]); quantisation computes `x / scale` (rounded to
//! even and clamped for integer targets) and hands the result to `Cast`, so the two can never
//! disagree about a format.

use super::cast::Cast;
use super::{check_arity, unsupported_dtype, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, strides};
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(c.as_f64().unwrap_or_default().to_vec())
}

/// The inclusive integer range of an integer dtype (2/4/8/16/32-bit).
fn int_range(d: DType) -> Option<(f64, f64)> {
    Some(match d {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U32 => (0.0, u32::MAX as f64),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        DType::U2 => (0.0, 3.0),
        DType::I2 => (-2.0, 1.0),
        _ => return None,
    })
}

/// Maps each element of `x_shape` to its scale/zero-point index.
fn param_indices(
    op: &str,
    x_shape: &[usize],
    p_shape: &[usize],
    axis: i64,
    block: usize,
) -> Result<Vec<usize>> {
    let n: usize = x_shape.iter().product();
    let p_len: usize = p_shape.iter().product();
    if p_len == 1 {
        return Ok(vec![0; n]);
    }
    let axis = normalize_axis(op, axis, x_shape.len())?;
    let xs = strides(x_shape);
    let ps = strides(p_shape);
    let per_axis = block == 0 && p_shape.len() == 1;
    if per_axis && p_shape[0] != x_shape[axis] {
        return Err(EngineError::operand(
            op,
            "scale length does not match the axis",
        ));
    }
    if !per_axis
        && (p_shape.len() != x_shape.len()
            || block == 0
            || p_shape[axis] != x_shape[axis].div_ceil(block))
    {
        return Err(EngineError::operand(
            op,
            "scale shape does not match blocked layout",
        ));
    }
    Ok((0..n)
        .map(|o| {
            let coord = |d: usize| (o / xs[d]) % x_shape[d];
            if per_axis {
                coord(axis)
            } else {
                (0..x_shape.len())
                    .map(|d| {
                        let c = coord(d);
                        (if d == axis { c / block } else { c }) * ps[d]
                    })
                    .sum()
            }
        })
        .collect())
}

/// `QuantizeLinear` or `DequantizeLinear`.
#[derive(Debug, Clone)]
pub struct Quant {
    dequantize: bool,
    axis: i64,
    block: usize,
    output_dtype: Option<DType>,
    saturate: bool,
}

impl Quant {
    fn name(&self) -> &'static str {
        if self.dequantize {
            "DequantizeLinear"
        } else {
            "QuantizeLinear"
        }
    }

    fn out_dtype(&self, inputs: &[TypeShape]) -> DType {
        if self.dequantize {
            self.output_dtype.unwrap_or(inputs[1].dtype)
        } else {
            inputs
                .get(2)
                .map(|z| z.dtype)
                .or(self.output_dtype)
                .unwrap_or(DType::U8)
        }
    }
}

impl Operator for Quant {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 2, 3)?;
        let d = self.out_dtype(inputs);
        let ok = if self.dequantize {
            d.is_float()
        } else {
            int_range(d).is_some() || crate::lowp::is_lowp(d)
        };
        if !ok {
            return Err(unsupported_dtype(self.name(), d));
        }
        Ok(vec![TypeShape::new(d, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.name();
        check_arity(op, inputs.len(), 2, 3)?;
        let (x, scale) = (inputs[0], inputs[1]);
        let xv = f64s(x)?;
        let sv = f64s(scale)?;
        let zv = inputs.get(2).map(|z| f64s(z)).transpose()?;
        let idx = param_indices(op, x.shape(), scale.shape(), self.axis, self.block)?;
        let zp = |i: usize| {
            zv.as_ref()
                .map_or(0.0, |z| z.get(i).copied().unwrap_or(0.0))
        };
        let shape = x.shape().to_vec();
        let out_dtype = if self.dequantize {
            self.output_dtype.unwrap_or(scale.dtype())
        } else {
            inputs
                .get(2)
                .map(|z| z.dtype())
                .or(self.output_dtype)
                .unwrap_or(DType::U8)
        };
        // Arithmetic in float32 when the scale is float32, as the reference does.
        let narrow = |v: f64| {
            if scale.dtype() == DType::F32 {
                f64::from(v as f32)
            } else {
                v
            }
        };
        let values: Vec<f64> = if self.dequantize {
            xv.iter()
                .zip(&idx)
                .map(|(&q, &i)| narrow(narrow(q - zp(i)) * sv[i]))
                .collect()
        } else if let Some((lo, hi)) = int_range(out_dtype) {
            xv.iter()
                .zip(&idx)
                .map(|(&v, &i)| (narrow(v / sv[i]).round_ties_even() + zp(i)).clamp(lo, hi))
                .collect()
        } else {
            xv.iter()
                .zip(&idx)
                .map(|(&v, &i)| narrow(v / sv[i]) + zp(i))
                .collect()
        };
        let t = Tensor::from_f64(shape, values)?;
        let mut cast = Cast::new(out_dtype);
        if !self.saturate {
            cast = Cast::with_attributes(
                out_dtype,
                &crate::Attributes::new(op).with("saturate", crate::AttrValue::Int(0)),
            )?;
        }
        cast.eval(&[&t])
    }
}

/// `(x - zero_point)` as an `f64` tensor (zero point broadcast; absent = 0).
fn centred(x: &Tensor, zp: Option<&&Tensor>) -> Result<Tensor> {
    let mut v = f64s(x)?;
    if let Some(z) = zp.filter(|z| !super::is_absent_tensor(z)) {
        let zv = f64s(z)?;
        let zb = if zv.len() == 1 {
            vec![zv[0]; v.len()]
        } else if x.rank() >= 1 && zv.len() == x.shape()[0] && x.rank() > 1 {
            // Per-row (or per-output-channel) zero points along the first axis.
            let inner: usize = x.shape()[1..].iter().product();
            (0..v.len()).map(|i| zv[i / inner]).collect()
        } else {
            crate::broadcast::broadcast_to(&zv, z.shape(), x.shape())?
        };
        v.iter_mut().zip(zb).for_each(|(a, b)| *a -= b);
    }
    Tensor::from_f64(x.shape().to_vec(), v)
}

/// Which integer kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntKind {
    MatMulInteger,
    ConvInteger,
    QLinearMatMul,
    QLinearConv,
}

/// `MatMulInteger`, `ConvInteger` (int32 results) and `QLinearMatMul`, `QLinearConv`
/// (requantised results), computed exactly in `f64` through the float kernels.
#[derive(Debug, Clone)]
pub struct IntegerOp {
    kind: IntKind,
    conv: Option<super::conv::Conv>,
}

impl IntegerOp {
    fn name(&self) -> &'static str {
        match self.kind {
            IntKind::MatMulInteger => "MatMulInteger",
            IntKind::ConvInteger => "ConvInteger",
            IntKind::QLinearMatMul => "QLinearMatMul",
            IntKind::QLinearConv => "QLinearConv",
        }
    }

    fn core(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match &self.conv {
            Some(c) => Ok(c.eval(&[a, b])?.remove(0)),
            None => Ok(super::matmul::MatMul.eval(&[a, b])?.remove(0)),
        }
    }
}

impl Operator for IntegerOp {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let op = self.name();
        let (a, b, out_dtype) = match self.kind {
            IntKind::MatMulInteger | IntKind::ConvInteger => {
                check_arity(op, inputs.len(), 2, 4)?;
                (&inputs[0], &inputs[1], DType::I32)
            }
            IntKind::QLinearMatMul => {
                check_arity(op, inputs.len(), 8, 8)?;
                (&inputs[0], &inputs[3], inputs[7].dtype)
            }
            IntKind::QLinearConv => {
                check_arity(op, inputs.len(), 8, 9)?;
                (&inputs[0], &inputs[3], inputs[7].dtype)
            }
        };
        let f = |t: &TypeShape| TypeShape::new(DType::F64, t.shape.clone());
        let shape = match &self.conv {
            Some(c) => c.infer(&[f(a), f(b)])?.remove(0).shape,
            None => super::matmul::MatMul.infer(&[f(a), f(b)])?.remove(0).shape,
        };
        Ok(vec![TypeShape::new(out_dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = self.name();
        let out = match self.kind {
            IntKind::MatMulInteger | IntKind::ConvInteger => {
                check_arity(op, inputs.len(), 2, 4)?;
                let a = centred(inputs[0], inputs.get(2))?;
                let b = centred(inputs[1], inputs.get(3))?;
                let y = self.core(&a, &b)?;
                Cast::new(DType::I32).eval(&[&y])?.remove(0)
            }
            IntKind::QLinearMatMul | IntKind::QLinearConv => {
                check_arity(op, inputs.len(), 8, 9)?;
                let a = centred(inputs[0], Some(&inputs[2]))?;
                let b = centred(inputs[3], Some(&inputs[5]))?;
                let y = self.core(&a, &b)?;
                let mut y = f64s(&y)?;
                // QLinearConv's optional int32 bias is added to the accumulator per channel.
                if let Some(bias) = inputs.get(8).filter(|t| !super::is_absent_tensor(t)) {
                    let bv = f64s(bias)?;
                    let m = bv.len().max(1);
                    let plane = y.len() / (inputs[0].shape()[0] * m).max(1);
                    for (i, v) in y.iter_mut().enumerate() {
                        *v += bv[(i / plane.max(1)) % m];
                    }
                }
                let (sa, sb, sy) = (f64s(inputs[1])?, f64s(inputs[4])?, f64s(inputs[6])?);
                let zy = f64s(inputs[7])?;
                if sa.is_empty() || sb.is_empty() || sy.is_empty() || zy.is_empty() {
                    return Err(EngineError::operand(
                        op,
                        "scales and zero points must not be empty",
                    ));
                }
                let out_dtype = inputs[7].dtype();
                let (lo, hi) =
                    int_range(out_dtype).ok_or_else(|| unsupported_dtype(op, out_dtype))?;
                // The multiplier a_scale * b_scale / y_scale is computed in the scale's dtype.
                let narrow = |v: f64| {
                    if inputs[1].dtype() == DType::F32 {
                        f64::from(v as f32)
                    } else {
                        v
                    }
                };
                let shape = inputs[0].shape();
                let per_channel = self.conv.is_some() && sb.len() > 1;
                let plane: usize = if per_channel {
                    y.len() / (shape[0] * sb.len()).max(1)
                } else {
                    1
                };
                let out_shape = self
                    .infer(
                        &inputs
                            .iter()
                            .map(|t| TypeShape::fixed(t.dtype(), t.shape()))
                            .collect::<Vec<_>>(),
                    )?
                    .remove(0)
                    .concrete_shape()
                    .unwrap_or_default();
                let v: Vec<f64> = y
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        let ch = if per_channel {
                            (i / plane) % sb.len()
                        } else {
                            0
                        };
                        let m = narrow(narrow(sa[0] * sb[ch]) / sy[0]);
                        (c * m + zy[0]).round_ties_even().clamp(lo, hi)
                    })
                    .collect();
                Cast::new(out_dtype)
                    .eval(&[&Tensor::from_f64(out_shape, v)?])?
                    .remove(0)
            }
        };
        Ok(vec![out])
    }
}

/// `DynamicQuantizeLinear(x)`: uint8 quantisation with scale and zero point computed from the
/// data's range (which always includes 0), in `float32` like the reference.
#[derive(Debug, Clone, Default)]
pub struct DynamicQuantize;

impl Operator for DynamicQuantize {
    fn op_type(&self) -> &str {
        "DynamicQuantizeLinear"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("DynamicQuantizeLinear", inputs.len(), 1, 1)?;
        if inputs[0].dtype != DType::F32 {
            return Err(unsupported_dtype("DynamicQuantizeLinear", inputs[0].dtype));
        }
        Ok(vec![
            TypeShape::new(DType::U8, inputs[0].shape.clone()),
            TypeShape::fixed(DType::F32, &[]),
            TypeShape::fixed(DType::U8, &[]),
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("DynamicQuantizeLinear", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let v = x
            .as_f32()
            .ok_or_else(|| unsupported_dtype("DynamicQuantizeLinear", x.dtype()))?;
        let maxx = v.iter().copied().fold(0f32, f32::max);
        let minx = v.iter().copied().fold(0f32, f32::min);
        let range = if maxx == minx { 1.0 } else { maxx - minx };
        let scale = range / 255.0f32;
        let zp = (0.0f32 - minx / scale).clamp(0.0, 255.0).round_ties_even();
        let y: Vec<u8> = v
            .iter()
            .map(|&e| ((e / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
            .collect();
        Ok(vec![
            Tensor::from_vec(x.shape().to_vec(), y)?,
            Tensor::scalar(scale),
            Tensor::scalar(zp as u8),
        ])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "DynamicQuantizeLinear", |_| {
        Ok(Box::new(DynamicQuantize))
    });
    for kind in [
        IntKind::MatMulInteger,
        IntKind::ConvInteger,
        IntKind::QLinearMatMul,
        IntKind::QLinearConv,
    ] {
        let probe = IntegerOp { kind, conv: None };
        r.register("", probe.name(), move |ctx| {
            let conv = match kind {
                IntKind::ConvInteger | IntKind::QLinearConv => {
                    Some(super::conv::Conv::from_attributes(ctx.attributes)?)
                }
                _ => None,
            };
            Ok(Box::new(IntegerOp { kind, conv }))
        });
    }
    for dequantize in [false, true] {
        let name = if dequantize {
            "DequantizeLinear"
        } else {
            "QuantizeLinear"
        };
        r.register("", name, move |ctx| {
            let a = ctx.attributes;
            let output_dtype = match a.int("output_dtype")? {
                Some(0) | None => None,
                Some(c) => Some(DType::from_onnx(i32::try_from(c).unwrap_or(0))?),
            };
            let block = a.int_or("block_size", 0)?;
            Ok(Box::new(Quant {
                dequantize,
                axis: a.int_or("axis", 1)?,
                block: usize::try_from(block)
                    .map_err(|_| a.invalid("block_size", "must be >= 0"))?,
                output_dtype,
                saturate: a.int_or("saturate", 1)? != 0,
            }))
        });
    }
}
