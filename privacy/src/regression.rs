//! Regression through a teacher ensemble: clamp, average, add Gaussian noise.
//!
//! K teachers trained on disjoint partitions each predict a real value. Each prediction is
//! clamped to the policy's range `[lower, upper]`, the K clamped values are averaged, and
//! Gaussian noise from OpenDP's `make_gaussian` is added to the mean. One training record
//! influences one teacher, whose clamped prediction can move by at most `upper − lower`, so the
//! mean moves by at most `(upper − lower) / K`: that is the sensitivity at which OpenDP's privacy
//! map gives the cost of one released value. Clamping is what makes the sensitivity finite; a
//! single model's output has no such bound.

use crate::gaussian::{noisy_scalar, scalar_cost, scale_for_cost};
use crate::{PrivacyError, Rho};

/// The clamped, noisy ensemble mean.
#[derive(Debug, Clone)]
pub struct EnsembleMean {
    lower: f64,
    upper: f64,
    teachers: usize,
    scale: f64,
    cost: Rho,
}

impl EnsembleMean {
    /// The sensitivity of the clamped mean of `teachers` values in `[lower, upper]`.
    pub fn sensitivity(lower: f64, upper: f64, teachers: usize) -> Result<f64, PrivacyError> {
        if !(lower.is_finite() && upper.is_finite() && lower < upper) {
            return Err(PrivacyError::Mechanism(format!(
                "the clamp range [{lower}, {upper}] must be finite with lower < upper"
            )));
        }
        if teachers == 0 {
            return Err(PrivacyError::Mechanism("an ensemble needs teachers".into()));
        }
        Ok((upper - lower) / teachers as f64)
    }

    /// Noise of standard deviation `scale`.
    pub fn with_scale(
        lower: f64,
        upper: f64,
        teachers: usize,
        scale: f64,
    ) -> Result<EnsembleMean, PrivacyError> {
        let sens = Self::sensitivity(lower, upper, teachers)?;
        Ok(EnsembleMean {
            lower,
            upper,
            teachers,
            scale,
            cost: scalar_cost(scale, sens)?,
        })
    }

    /// The least noise whose cost per released value is at most `budget` (bisection on
    /// OpenDP's privacy map).
    pub fn for_cost(
        lower: f64,
        upper: f64,
        teachers: usize,
        budget: Rho,
    ) -> Result<EnsembleMean, PrivacyError> {
        let sens = Self::sensitivity(lower, upper, teachers)?;
        let scale = scale_for_cost(budget, |s| scalar_cost(s, sens))?;
        Self::with_scale(lower, upper, teachers, scale)
    }

    /// Noise standard deviation.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Cost of one released value, rounded up.
    pub fn cost(&self) -> Rho {
        self.cost
    }

    /// Number of teachers the sensitivity assumes.
    pub fn teachers(&self) -> usize {
        self.teachers
    }

    /// The clamp range.
    pub fn range(&self) -> (f64, f64) {
        (self.lower, self.upper)
    }

    /// The clamped mean before noise (never released; for tests and the local utility curve).
    pub fn clamped_mean(&self, predictions: &[f64]) -> Result<f64, PrivacyError> {
        if predictions.len() != self.teachers {
            return Err(PrivacyError::Mechanism(format!(
                "{} teacher predictions, but the policy's sensitivity assumes {}",
                predictions.len(),
                self.teachers
            )));
        }
        // NaN clamps to the lower end: a broken teacher still moves the mean by at most
        // the sensitivity.
        let sum: f64 = predictions
            .iter()
            .map(|&p| {
                if p.is_nan() {
                    self.lower
                } else {
                    p.clamp(self.lower, self.upper)
                }
            })
            .sum();
        Ok(sum / self.teachers as f64)
    }

    /// Releases the noisy clamped mean of one row's teacher predictions.
    pub fn release(&self, predictions: &[f64]) -> Result<f64, PrivacyError> {
        noisy_scalar(self.scale, self.clamped_mean(predictions)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitivity_and_cost() {
        let m = EnsembleMean::with_scale(0.0, 100.0, 20, 10.0).unwrap();
        // d = 100/20 = 5; rho = (5/10)^2/2 = 0.125 (+ OpenDP's grid slack, upwards).
        let c = m.cost().to_f64();
        assert!((0.125..0.125 * 1.001).contains(&c), "{c}");
        let t = EnsembleMean::for_cost(0.0, 100.0, 20, Rho::from_f64(0.125).unwrap()).unwrap();
        assert!(t.cost() <= Rho::from_f64(0.125).unwrap());
        assert!((t.scale() - 10.0).abs() < 0.02, "{}", t.scale());
        assert!(EnsembleMean::with_scale(1.0, 1.0, 3, 1.0).is_err());
        assert!(EnsembleMean::with_scale(0.0, 1.0, 0, 1.0).is_err());
    }

    #[test]
    fn clamps_before_averaging() {
        let m = EnsembleMean::with_scale(0.0, 10.0, 4, 1.0).unwrap();
        assert_eq!(m.clamped_mean(&[-100.0, 5.0, 1e9, f64::NAN]).unwrap(), 3.75);
        assert!(m.clamped_mean(&[1.0]).is_err());
        let x = m.release(&[5.0; 4]).unwrap();
        assert!((x - 5.0).abs() < 8.0, "{x}");
    }
}
