//! `Cast`: converts between element types.
//!
//! Why spelled out: conversions must be total and panic-free. Floats go through `f64` and are
//! converted with Rust `as` (saturating, NaN -> 0 for integers); integers and bools go through
//! `i128` (wrapping to narrower integers, like numpy; wide enough for every `u64` and `i64`);
//! anything -> bool is `!= 0`.

use super::{check_arity, dispatch_all, OpRegistry, Operator};
use crate::error::Result;
use crate::lowp::{self, Num, RoundMode};
use crate::tensor::{Element, Tensor, TensorData};
use crate::types::TypeShape;
use crate::DType;

/// Conversions into and out of an element type.
pub(crate) trait Convert: Element {
    /// Whether values should be routed through `f64` (floats) rather than `i64`.
    const FLOAT: bool;
    fn to_f64(self) -> f64;
    fn to_i128(self) -> i128;
    fn from_f64(v: f64) -> Self;
    fn from_i128(v: i128) -> Self;
}

macro_rules! convert_num {
    ($t:ty, $float:expr) => {
        impl Convert for $t {
            const FLOAT: bool = $float;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i128(self) -> i128 {
                self as i128
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i128(v: i128) -> Self {
                v as $t
            }
        }
    };
}
convert_num!(f32, true);
convert_num!(f64, true);
convert_num!(i64, false);
convert_num!(i32, false);
convert_num!(i8, false);
convert_num!(u8, false);
convert_num!(i16, false);
convert_num!(u16, false);
convert_num!(u32, false);
convert_num!(u64, false);

macro_rules! convert_half {
    ($t:ty) => {
        impl Convert for $t {
            const FLOAT: bool = true;
            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
            fn to_i128(self) -> i128 {
                <$t>::to_f64(self) as i128
            }
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
            fn from_i128(v: i128) -> Self {
                <$t>::from_f64(v as f64)
            }
        }
    };
}
convert_half!(half::f16);
convert_half!(half::bf16);

impl Convert for bool {
    const FLOAT: bool = false;
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn to_i128(self) -> i128 {
        i128::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i128(v: i128) -> Self {
        v != 0
    }
}

fn convert<S: Convert, D: Convert>(v: &[S]) -> Vec<D> {
    if S::FLOAT {
        v.iter().map(|&x| D::from_f64(x.to_f64())).collect()
    } else {
        v.iter().map(|&x| D::from_i128(x.to_i128())).collect()
    }
}

/// The `Cast` operator.
#[derive(Debug, Clone)]
pub struct Cast {
    to: DType,
    /// Float8 targets: clamp out-of-range values to the largest finite value (default).
    saturate: bool,
    /// E8M0 targets: rounding.
    round_mode: RoundMode,
}

impl Cast {
    /// Casts to `to` (saturating, rounding up for E8M0: the attribute defaults).
    pub fn new(to: DType) -> Cast {
        Cast {
            to,
            saturate: true,
            round_mode: RoundMode::Up,
        }
    }

    /// Builds from a node's `saturate` and `round_mode` attributes.
    pub(crate) fn with_attributes(to: DType, a: &crate::Attributes) -> Result<Cast> {
        let round_mode = match a.string("round_mode")?.unwrap_or("up") {
            "up" => RoundMode::Up,
            "down" => RoundMode::Down,
            "nearest" => RoundMode::Nearest,
            other => return Err(a.invalid("round_mode", format!("unknown mode {other:?}"))),
        };
        Ok(Cast {
            to,
            saturate: a.int_or("saturate", 1)? != 0,
            round_mode,
        })
    }

    /// Casts through [`Num`] when either side is a low-precision dtype.
    fn via_lowp(&self, x: &Tensor) -> Result<Tensor> {
        let shape = x.shape().to_vec();
        let nums: Vec<Num> = match x.data() {
            TensorData::Bits { dtype, codes } => {
                codes.iter().map(|&c| lowp::decode(*dtype, c)).collect()
            }
            _ => dispatch_all!(x.dtype(), S => {
                let v = x.as_slice::<S>().unwrap_or_default();
                v.iter()
                    .map(|&e| if S::FLOAT { Num::F(e.to_f64()) } else { Num::I(e.to_i128()) })
                    .collect()
            }),
        };
        if lowp::is_lowp(self.to) {
            let codes = nums
                .into_iter()
                .map(|n| lowp::encode(self.to, n, self.saturate, self.round_mode))
                .collect();
            return Tensor::new(
                shape,
                TensorData::Bits {
                    dtype: self.to,
                    codes,
                },
            );
        }
        dispatch_all!(self.to, D => {
            let out: Vec<D> = nums
                .into_iter()
                .map(|n| match n {
                    Num::F(f) => D::from_f64(f),
                    Num::I(i) => D::from_i128(i),
                })
                .collect();
            Tensor::from_vec(shape, out)
        })
    }
}

impl Operator for Cast {
    fn op_type(&self) -> &str {
        "Cast"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Cast", inputs.len(), 1, 1)?;
        if (self.to == DType::String) != (inputs[0].dtype == DType::String) {
            return Err(crate::EngineError::UnsupportedFeature(
                "Cast between strings and numbers".into(),
            ));
        }
        Ok(vec![TypeShape::new(self.to, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Cast", inputs.len(), 1, 1)?;
        let x = inputs[0];
        if x.dtype() == self.to {
            return Ok(vec![x.clone()]);
        }
        if lowp::is_lowp(x.dtype()) || lowp::is_lowp(self.to) {
            return Ok(vec![self.via_lowp(x)?]);
        }
        let shape = x.shape().to_vec();
        let out = dispatch_all!(x.dtype(), S => {
            let v = x.as_slice::<S>().unwrap_or_default();
            dispatch_all!(self.to, D => Tensor::from_vec(shape, convert::<S, D>(v))?)
        });
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Cast", |ctx| {
        let code = ctx.attributes.required_int("to")?;
        let code = i32::try_from(code).map_err(|_| {
            ctx.attributes
                .invalid("to", format!("bad type code {code}"))
        })?;
        Ok(Box::new(Cast::with_attributes(
            DType::from_onnx(code)?,
            ctx.attributes,
        )?))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(x: Tensor, to: DType) -> Tensor {
        Cast::new(to).eval(&[&x]).unwrap().remove(0)
    }

    #[test]
    fn float_int_bool_conversions() {
        let x = Tensor::from_f32(vec![5], vec![1.7, -1.7, f32::NAN, 1e20, 0.0]).unwrap();
        assert_eq!(
            cast(x.clone(), DType::I64).as_i64().unwrap(),
            &[1, -1, 0, i64::MAX, 0]
        );
        assert_eq!(
            cast(x.clone(), DType::Bool).as_bool().unwrap(),
            &[true, true, true, true, false]
        );
        let y = cast(x, DType::F64);
        assert_eq!(y.as_f64().unwrap()[0], f64::from(1.7f32));
        let i = Tensor::from_i64(vec![3], vec![300, -1, 1 << 40]).unwrap();
        assert_eq!(cast(i.clone(), DType::I32).as_i32().unwrap(), &[300, -1, 0]);
        assert_eq!(cast(i, DType::F32).as_f32().unwrap()[0], 300.0);
        let b = Tensor::from_bool(vec![2], vec![true, false]).unwrap();
        assert_eq!(cast(b, DType::F32).as_f32().unwrap(), &[1.0, 0.0]);
    }
}
