//! Pointwise unary operators: math (`Abs`, `Neg`, `Sign`, `Exp`, `Log`, `Sqrt`, `Reciprocal`,
//! `Floor`, `Ceil`, `Round`, trigonometric and hyperbolic functions, `Erf`), parameterised
//! activations (`LeakyRelu`, `Elu`, `Selu`, `Celu`, `HardSigmoid`, `HardSwish`, `Softplus`,
//! `Softsign`, `ThresholdedRelu`, `Gelu`, `Mish`, `Swish`, `Shrink`) and the predicates `IsNaN`,
//! `IsInf`.
//!
//! Why one table: shape and dtype rules are identical (output = input, or `bool` for the
//! predicates); only the scalar function differs. Floats compute in `f64` and round once to the
//! element type; `Abs`, `Neg` and `Sign` also accept integers (computed in `i128`, wrapping like
//! numpy, so `Abs(i8::MIN)` is `i8::MIN`).

use super::activation::sigmoid;
use super::cast::Convert;
use super::{check_arity, dispatch_numeric, typed, unsupported_dtype, OpRegistry, Operator};
use crate::error::Result;
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

/// The scalar function a [`Unary`] node applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum UnaryKind {
    Abs,
    Neg,
    Sign,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Erf,
    LeakyRelu,
    Elu,
    Selu,
    Celu,
    HardSigmoid,
    HardSwish,
    Softplus,
    Softsign,
    ThresholdedRelu,
    Gelu,
    GeluTanh,
    Mish,
    Swish,
    IsNaN,
    IsInf,
    Shrink,
}

impl UnaryKind {
    /// The ONNX `op_type`.
    pub fn name(self) -> &'static str {
        use UnaryKind::*;
        match self {
            Abs => "Abs",
            Neg => "Neg",
            Sign => "Sign",
            Exp => "Exp",
            Log => "Log",
            Sqrt => "Sqrt",
            Reciprocal => "Reciprocal",
            Floor => "Floor",
            Ceil => "Ceil",
            Round => "Round",
            Sin => "Sin",
            Cos => "Cos",
            Tan => "Tan",
            Asin => "Asin",
            Acos => "Acos",
            Atan => "Atan",
            Sinh => "Sinh",
            Cosh => "Cosh",
            Asinh => "Asinh",
            Acosh => "Acosh",
            Atanh => "Atanh",
            Erf => "Erf",
            LeakyRelu => "LeakyRelu",
            Elu => "Elu",
            Selu => "Selu",
            Celu => "Celu",
            HardSigmoid => "HardSigmoid",
            HardSwish => "HardSwish",
            Softplus => "Softplus",
            Softsign => "Softsign",
            ThresholdedRelu => "ThresholdedRelu",
            Gelu | GeluTanh => "Gelu",
            Mish => "Mish",
            Swish => "Swish",
            IsNaN => "IsNaN",
            IsInf => "IsInf",
            Shrink => "Shrink",
        }
    }

    fn integer_ok(self) -> bool {
        matches!(self, UnaryKind::Abs | UnaryKind::Neg | UnaryKind::Sign)
    }

    fn predicate(self) -> bool {
        matches!(self, UnaryKind::IsNaN | UnaryKind::IsInf)
    }
}

/// A pointwise unary operator with its attributes.
#[derive(Debug, Clone)]
pub struct Unary {
    kind: UnaryKind,
    alpha: f64,
    beta: f64,
    gamma: f64,
    /// `IsInf`: (detect_negative, detect_positive).
    detect: (bool, bool),
}

/// The error function, to about 1e-15 absolute: its Maclaurin series below |x| = 4 (summed in
/// `f64`; the largest term is ~4e6, so cancellation costs ~1e-10), ±1 beyond (erfc(4) ≈ 1.5e-8).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() >= 4.0 {
        return x.signum();
    }
    if x.abs() >= 2.0 {
        // Continued fraction for erfc is more accurate here than the series.
        return x.signum() * (1.0 - erfc_cf(x.abs()));
    }
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// erfc(x) for x >= 2 by Lentz's continued fraction.
fn erfc_cf(x: f64) -> f64 {
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + 2/(x + ...)))))
    let mut f = x;
    for k in (1..60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl Unary {
    /// An operator with default attributes.
    pub fn new(kind: UnaryKind) -> Unary {
        Unary {
            kind,
            alpha: 0.0,
            beta: 0.0,
            gamma: 0.0,
            detect: (true, true),
        }
    }

    fn float(&self, x: f64) -> f64 {
        use UnaryKind::*;
        let (a, b, g) = (self.alpha, self.beta, self.gamma);
        match self.kind {
            Abs => x.abs(),
            Neg => -x,
            Sign => {
                if x.is_nan() {
                    x
                } else if x == 0.0 {
                    0.0
                } else {
                    x.signum()
                }
            }
            Exp => x.exp(),
            Log => x.ln(),
            Sqrt => x.sqrt(),
            Reciprocal => 1.0 / x,
            Floor => x.floor(),
            Ceil => x.ceil(),
            Round => x.round_ties_even(),
            Sin => x.sin(),
            Cos => x.cos(),
            Tan => x.tan(),
            Asin => x.asin(),
            Acos => x.acos(),
            Atan => x.atan(),
            Sinh => x.sinh(),
            Cosh => x.cosh(),
            Asinh => x.asinh(),
            Acosh => x.acosh(),
            Atanh => x.atanh(),
            Erf => erf(x),
            LeakyRelu => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Elu => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Selu => {
                if x > 0.0 {
                    g * x
                } else {
                    g * (a * x.exp() - a)
                }
            }
            Celu => x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0),
            HardSigmoid => (a * x + b).clamp(0.0, 1.0),
            HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Softplus => softplus(x),
            Softsign => x / (1.0 + x.abs()),
            ThresholdedRelu => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Mish => x * softplus(x).tanh(),
            Swish => x * sigmoid(a * x),
            Shrink => {
                if x < -a {
                    x + b
                } else if x > a {
                    x - b
                } else {
                    0.0
                }
            }
            IsNaN | IsInf => x,
        }
    }

    fn int(&self, x: i128) -> i128 {
        match self.kind {
            UnaryKind::Abs => x.abs(),
            UnaryKind::Neg => -x,
            _ => x.signum(),
        }
    }

    fn apply<T: Convert>(&self, x: &Tensor) -> Result<Tensor> {
        let v = typed::<T>(self.kind.name(), x)?;
        let shape = x.shape().to_vec();
        if self.kind.predicate() {
            let (neg, pos) = self.detect;
            let out: Vec<bool> = v
                .iter()
                .map(|&e| {
                    let f = e.to_f64();
                    match self.kind {
                        UnaryKind::IsNaN => f.is_nan(),
                        _ => f.is_infinite() && ((f > 0.0 && pos) || (f < 0.0 && neg)),
                    }
                })
                .collect();
            return Tensor::from_bool(shape, out);
        }
        let out: Vec<T> = if T::FLOAT {
            v.iter()
                .map(|&e| T::from_f64(self.float(e.to_f64())))
                .collect()
        } else {
            v.iter()
                .map(|&e| T::from_i128(self.int(e.to_i128())))
                .collect()
        };
        Tensor::from_vec(shape, out)
    }

    fn accepts(&self, d: DType) -> bool {
        d.is_float() || (d.is_int() && self.kind.integer_ok())
    }
}

impl Operator for Unary {
    fn op_type(&self) -> &str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.kind.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        if !self.accepts(x.dtype) {
            return Err(unsupported_dtype(self.kind.name(), x.dtype));
        }
        let dtype = if self.kind.predicate() {
            DType::Bool
        } else {
            x.dtype
        };
        Ok(vec![TypeShape::new(dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.kind.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        if !self.accepts(x.dtype()) {
            return Err(unsupported_dtype(self.kind.name(), x.dtype()));
        }
        let out = dispatch_numeric!(x.dtype(), T => self.apply::<T>(x)?,
            other => return Err(unsupported_dtype(self.kind.name(), other)));
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    use UnaryKind::*;
    for kind in [
        Abs, Neg, Sign, Exp, Log, Sqrt, Reciprocal, Floor, Ceil, Round, Sin, Cos, Tan, Asin, Acos,
        Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Erf, HardSwish, Softplus, Softsign, Mish, IsNaN,
    ] {
        r.register("", kind.name(), move |_| Ok(Box::new(Unary::new(kind))));
    }
    // (kind, default alpha, default beta, default gamma)
    let with_params: [(UnaryKind, f32, f32, f32); 7] = [
        (LeakyRelu, 0.01, 0.0, 0.0),
        (Elu, 1.0, 0.0, 0.0),
        (Selu, 1.673_263_2, 0.0, 1.050_701),
        (Celu, 1.0, 0.0, 0.0),
        (HardSigmoid, 0.2, 0.5, 0.0),
        (ThresholdedRelu, 1.0, 0.0, 0.0),
        (Swish, 1.0, 0.0, 0.0),
    ];
    for (kind, alpha, beta, gamma) in with_params {
        r.register("", kind.name(), move |ctx| {
            let a = ctx.attributes;
            let mut op = Unary::new(kind);
            op.alpha = f64::from(a.float_or("alpha", alpha)?);
            op.beta = f64::from(a.float_or("beta", beta)?);
            op.gamma = f64::from(a.float_or("gamma", gamma)?);
            Ok(Box::new(op))
        });
    }
    r.register("", "Shrink", |ctx| {
        let a = ctx.attributes;
        let mut op = Unary::new(Shrink);
        op.alpha = f64::from(a.float_or("lambd", 0.5)?);
        op.beta = f64::from(a.float_or("bias", 0.0)?);
        Ok(Box::new(op))
    });
    r.register("", "IsInf", |ctx| {
        let a = ctx.attributes;
        let mut op = Unary::new(IsInf);
        op.detect = (
            a.int_or("detect_negative", 1)? != 0,
            a.int_or("detect_positive", 1)? != 0,
        );
        Ok(Box::new(op))
    });
    r.register("", "Gelu", |ctx| {
        let kind = match ctx.attributes.string("approximate")?.unwrap_or("none") {
            "none" => Gelu,
            "tanh" => GeluTanh,
            other => {
                return Err(ctx.attributes.invalid(
                    "approximate",
                    format!("must be none or tanh, not {other:?}"),
                ))
            }
        };
        Ok(Box::new(Unary::new(kind)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.5, -0.966_105_146_475_310_7),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 1e-12,
                "erf({x}) = {} not {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn integer_abs_wraps_and_round_is_half_even() {
        let x = Tensor::from_vec(vec![3], vec![i8::MIN, -3i8, 4]).unwrap();
        let y = Unary::new(UnaryKind::Abs).eval(&[&x]).unwrap().remove(0);
        assert_eq!(y.as_slice::<i8>().unwrap(), &[i8::MIN, 3, 4]);
        let x = Tensor::from_f32(vec![4], vec![0.5, 1.5, 2.5, -0.5]).unwrap();
        let y = Unary::new(UnaryKind::Round).eval(&[&x]).unwrap().remove(0);
        assert_eq!(y.as_f32().unwrap(), &[0.0, 2.0, 2.0, -0.0]);
    }
}
