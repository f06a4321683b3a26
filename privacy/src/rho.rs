//! [`Rho`]: a zCDP privacy cost in exact integer units.
//!
//! # Units
//! One [`Rho`] unit is a *nano-rho*: 10⁻⁹ ρ. The value is a `u64`, so the largest
//! representable cost is `u64::MAX` nano-rho ≈ 1.8 × 10¹⁰ ρ, far beyond any meaningful budget.
//! Integers add exactly and associatively, so a ledger that sums many small debits never drifts
//! the way an `f64` running total would, and two replicas that apply the same debits in a
//! different order agree bit for bit.
//!
//! # Rounding
//! Converting from `f64` rounds **up** (towards a larger cost), so a debit is never smaller than
//! what the mechanism spends. The conversion works on the shortest decimal that round-trips to the
//! given `f64` (what `format!("{}", x)` prints): `0.1` becomes exactly 100 000 000 nano-rho and
//! `1e-10` becomes 1 nano-rho. Rounding the binary value itself instead would charge `0.1` as
//! 100 000 001 nano-rho; the two differ by less than half an ulp of the input, far below one
//! nano-rho, so this choice only makes decimal budgets read the way they were written.
//!
//! NaN, negative numbers, infinities and values above the `u64` range are refused with a
//! [`PrivacyError`]; `-0.0` is zero.

use std::fmt;

use crate::PrivacyError;

/// Nano-rho per rho.
const NANO_PER_RHO: u64 = 1_000_000_000;

/// A zero-concentrated-DP cost ρ, held as a whole number of nano-rho (10⁻⁹ ρ).
///
/// INVARIANT: always a finite, non-negative amount; arithmetic is checked, never wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rho(u64);

impl Rho {
    /// No privacy cost.
    pub const ZERO: Rho = Rho(0);

    /// The largest representable cost.
    pub const MAX: Rho = Rho(u64::MAX);

    /// A cost of exactly `nano` nano-rho.
    pub const fn from_nano(nano: u64) -> Rho {
        Rho(nano)
    }

    /// The cost in nano-rho.
    pub const fn as_nano(self) -> u64 {
        self.0
    }

    /// Converts a real ρ, rounding up to the next nano-rho (see the module docs).
    ///
    /// Refuses NaN, negative, infinite and too-large values.
    pub fn from_f64(rho: f64) -> Result<Rho, PrivacyError> {
        if rho.is_nan() {
            return Err(PrivacyError::NotANumber { what: "rho" });
        }
        if rho < 0.0 {
            return Err(PrivacyError::Negative {
                what: "rho",
                value: rho,
            });
        }
        let too_large = PrivacyError::TooLarge {
            what: "rho",
            value: rho,
            max: Rho::MAX.to_f64(),
        };
        if !rho.is_finite() {
            return Err(too_large);
        }
        // `Display` for f64 prints the shortest round-trip decimal and never uses an exponent.
        let text = format!("{}", rho.abs());
        let (whole, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
        let whole: u64 = whole.parse().map_err(|_| too_large.clone())?;
        let mut nano: u64 = 0;
        let mut digits = frac.bytes();
        for _ in 0..9 {
            let d = digits.next().map_or(0, |b| u64::from(b.wrapping_sub(b'0')));
            nano = nano * 10 + d;
        }
        // Any non-zero digit beyond the ninth rounds the cost up.
        if digits.any(|b| b != b'0') {
            nano += 1;
        }
        whole
            .checked_mul(NANO_PER_RHO)
            .and_then(|w| w.checked_add(nano))
            .map(Rho)
            .ok_or(too_large)
    }

    /// The cost as an `f64` (exact up to 2⁵³ nano-rho ≈ 9 × 10⁶ ρ).
    pub fn to_f64(self) -> f64 {
        let whole = (self.0 / NANO_PER_RHO) as f64;
        let frac = (self.0 % NANO_PER_RHO) as f64 / NANO_PER_RHO as f64;
        whole + frac
    }

    /// `self + other`, or `None` if the sum does not fit.
    pub fn checked_add(self, other: Rho) -> Option<Rho> {
        self.0.checked_add(other.0).map(Rho)
    }

    /// `self - other`, or `None` if `other` is larger (a budget cannot go negative).
    pub fn checked_sub(self, other: Rho) -> Option<Rho> {
        self.0.checked_sub(other.0).map(Rho)
    }
}

impl fmt::Display for Rho {
    /// Exact decimal, e.g. `0.03125`; whole numbers print as `2.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANO_PER_RHO;
        let frac = format!("{:09}", self.0 % NANO_PER_RHO);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.is_empty() { "0" } else { frac };
        write!(f, "{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_inputs_are_exact() {
        assert_eq!(Rho::from_f64(0.1).unwrap().as_nano(), 100_000_000);
        assert_eq!(Rho::from_f64(0.5).unwrap().as_nano(), 500_000_000);
        assert_eq!(Rho::from_f64(1.0 / 32.0).unwrap().as_nano(), 31_250_000);
        assert_eq!(Rho::from_f64(2.0).unwrap().as_nano(), 2_000_000_000);
        assert_eq!(Rho::from_f64(0.0).unwrap(), Rho::ZERO);
        assert_eq!(Rho::from_f64(-0.0).unwrap(), Rho::ZERO);
    }

    #[test]
    fn rounds_up_below_one_nano() {
        assert_eq!(Rho::from_f64(1e-10).unwrap().as_nano(), 1);
        assert_eq!(Rho::from_f64(1e-300).unwrap().as_nano(), 1);
        assert_eq!(Rho::from_f64(f64::MIN_POSITIVE).unwrap().as_nano(), 1);
        assert_eq!(Rho::from_f64(0.1234567891).unwrap().as_nano(), 123_456_790);
        assert_eq!(
            Rho::from_f64(1.0000000001).unwrap().as_nano(),
            1_000_000_001
        );
    }

    #[test]
    fn never_rounds_down() {
        // The nano-rho value must cover the f64 up to the decimal representation's precision.
        for x in [
            0.3,
            1.0 / 3.0,
            2.0 / 3.0,
            0.7,
            1e-9 * 3.5,
            12_345.678_912_345,
        ] {
            let r = Rho::from_f64(x).unwrap();
            assert!(r.to_f64() >= x - 1e-15 * x, "{x} -> {r}");
            assert!(r.to_f64() - x < 1.0001e-9, "{x} -> {r}");
        }
    }

    #[test]
    fn refuses_bad_inputs() {
        assert_eq!(
            Rho::from_f64(f64::NAN),
            Err(PrivacyError::NotANumber { what: "rho" })
        );
        assert!(matches!(
            Rho::from_f64(-1e-12),
            Err(PrivacyError::Negative { .. })
        ));
        assert!(matches!(
            Rho::from_f64(f64::NEG_INFINITY),
            Err(PrivacyError::Negative { .. })
        ));
        assert!(matches!(
            Rho::from_f64(f64::INFINITY),
            Err(PrivacyError::TooLarge { .. })
        ));
        assert!(matches!(
            Rho::from_f64(1e11),
            Err(PrivacyError::TooLarge { .. })
        ));
        assert!(matches!(
            Rho::from_f64(1e300),
            Err(PrivacyError::TooLarge { .. })
        ));
        // Just below the limit still fits.
        assert!(Rho::from_f64(18_446_744_073.0).is_ok());
    }

    #[test]
    fn checked_arithmetic() {
        let a = Rho::from_f64(0.1).unwrap();
        let b = Rho::from_f64(0.2).unwrap();
        assert_eq!(a.checked_add(b), Some(Rho::from_f64(0.3).unwrap()));
        assert_eq!(Rho::MAX.checked_add(Rho::from_nano(1)), None);
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(b.checked_sub(a), Some(a));
    }

    #[test]
    fn display_and_to_f64() {
        assert_eq!(Rho::from_nano(31_250_000).to_string(), "0.03125");
        assert_eq!(Rho::from_nano(2_000_000_000).to_string(), "2.0");
        assert_eq!(Rho::from_nano(1).to_string(), "0.000000001");
        assert_eq!(Rho::from_nano(31_250_000).to_f64(), 0.03125);
    }
}
