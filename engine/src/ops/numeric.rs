//! Arithmetic traits over element types, so kernels are written once for every numeric dtype.
//!
//! Why explicit traits instead of `std::ops`: integer arithmetic in a model must never panic on
//! overflow (debug builds would) or on division by zero, and float products are accumulated in
//! `f64` for the reference kernels. Each impl states those choices once. 16-bit floats compute
//! in `f32`/`f64` and round once per operation, as numpy does for `float16`.

use half::{bf16, f16};

use crate::tensor::Element;

/// Elementwise arithmetic with ONNX semantics: integers wrap, integer division truncates and
/// reports division by zero (and `MIN / -1`) as `None`.
pub(crate) trait Arith: Element {
    fn zero() -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Option<Self>;
}

/// Dot-product accumulation: floats accumulate in `f64`, integers wrap in 64 bits.
pub(crate) trait Accumulate: Element {
    type Acc: Copy;
    fn acc_zero() -> Self::Acc;
    fn mul_add(acc: Self::Acc, a: Self, b: Self) -> Self::Acc;
    fn finish(acc: Self::Acc) -> Self;
}

/// Floating-point element types, computed through `f64` in reference kernels.
pub(crate) trait Float: Element {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

macro_rules! float_impls {
    ($t:ty, $to:expr, $from:expr) => {
        impl Arith for $t {
            fn zero() -> Self {
                $from(0.0)
            }
            fn add(self, o: Self) -> Self {
                $from($to(self) + $to(o))
            }
            fn sub(self, o: Self) -> Self {
                $from($to(self) - $to(o))
            }
            fn mul(self, o: Self) -> Self {
                $from($to(self) * $to(o))
            }
            fn div(self, o: Self) -> Option<Self> {
                Some($from($to(self) / $to(o)))
            }
        }
        impl Accumulate for $t {
            type Acc = f64;
            fn acc_zero() -> f64 {
                0.0
            }
            fn mul_add(acc: f64, a: Self, b: Self) -> f64 {
                acc + $to(a) * $to(b)
            }
            fn finish(acc: f64) -> Self {
                $from(acc)
            }
        }
        impl Float for $t {
            fn to_f64(self) -> f64 {
                $to(self)
            }
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
        }
    };
}
float_impls!(f32, f64::from, |v: f64| v as f32);
float_impls!(f64, |v: f64| v, |v: f64| v);
float_impls!(f16, f16::to_f64, f16::from_f64);
float_impls!(bf16, bf16::to_f64, bf16::from_f64);

macro_rules! int_impls {
    ($t:ty) => {
        impl Arith for $t {
            fn zero() -> Self {
                0
            }
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Option<Self> {
                self.checked_div(o)
            }
        }
        impl Accumulate for $t {
            type Acc = i64;
            fn acc_zero() -> i64 {
                0
            }
            fn mul_add(acc: i64, a: Self, b: Self) -> i64 {
                acc.wrapping_add((a as i64).wrapping_mul(b as i64))
            }
            fn finish(acc: i64) -> Self {
                // Wrapping narrowing, as numpy does for integer matmul overflow.
                acc as $t
            }
        }
    };
}
int_impls!(i64);
int_impls!(i32);
int_impls!(i16);
int_impls!(i8);
int_impls!(u8);
int_impls!(u16);
int_impls!(u32);
int_impls!(u64);
