//! Arithmetic traits over element types, so kernels are written once for every numeric dtype.
//!
//! Why explicit traits instead of `std::ops`: integer arithmetic in a model must never panic on
//! overflow (debug builds would) or on division by zero, and float products are accumulated in
//! `f64` for the reference kernels. Each impl states those choices once.

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

/// Dot-product accumulation: `f32` accumulates in `f64`, integers wrap in 64 bits.
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
    ($t:ty) => {
        impl Arith for $t {
            fn zero() -> Self {
                0.0
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Option<Self> {
                Some(self / o)
            }
        }
        impl Accumulate for $t {
            type Acc = f64;
            fn acc_zero() -> f64 {
                0.0
            }
            fn mul_add(acc: f64, a: Self, b: Self) -> f64 {
                acc + f64::from(a) * f64::from(b)
            }
            fn finish(acc: f64) -> Self {
                acc as $t
            }
        }
        impl Float for $t {
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
float_impls!(f32);
float_impls!(f64);

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
                acc.wrapping_add(i64::from(a).wrapping_mul(i64::from(b)))
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
int_impls!(i8);
int_impls!(u8);
