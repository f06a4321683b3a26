//! Confident-GNMax (Papernot et al., "Scalable Private Learning with PATE", ICLR 2018): answer
//! only when the teachers clearly agree, and pay for an answer only when one is released.
//!
//! For one query with vote histogram `n` (K teachers, one vote each):
//!
//! 1. **Check** (always charged): release the bit `max(n) + N(0, σ₁²) ≥ T`. One training record
//!    changes one teacher's vote, which moves `max(n)` by at most 1: sensitivity 1, cost from
//!    OpenDP's Gaussian privacy map at distance 1.
//! 2. **Answer** (charged only when the check passed): release `argmax(n + N(0, σ₂² I))`, the
//!    Gaussian noisy max. One record moves one count down by 1 and another up by 1: L2
//!    sensitivity √2, cost from OpenDP's Gaussian privacy map on the vector at distance √2.
//!    The arg-max is post-processing.
//!
//! If the check fails, the query **abstains**: the ensemble did not agree enough, nothing more
//! is released and only the check is paid. The two steps compose in zCDP: ρ adds. Both noises
//! come from OpenDP's `make_gaussian` (exact discrete Gaussian on a fine grid).

use crate::gaussian::{noisy_scalar, noisy_vector, scalar_cost, vector_cost};
use crate::{PrivacyError, Rho};

/// L2 distance between two vote histograms that differ in one teacher's vote: √2 (the f64
/// constant is 1.41421356237309514…, just above √2, so the map's argument bounds the truth).
pub const ANSWER_SENSITIVITY: f64 = std::f64::consts::SQRT_2;

/// Confident-GNMax with a noisy threshold check and a Gaussian noisy arg-max.
#[derive(Debug, Clone)]
pub struct ConfidentGnMax {
    classes: usize,
    threshold: f64,
    sigma1: f64,
    sigma2: f64,
    check_cost: Rho,
    answer_cost: Rho,
}

/// What one query released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The noisy check passed; this is the noisy arg-max.
    Answer(usize),
    /// The noisy check failed: the ensemble did not agree; no label.
    Abstain,
}

impl ConfidentGnMax {
    /// Threshold `threshold` on the noisy largest vote count (noise σ₁ = `sigma1`), answers
    /// with Gaussian noise σ₂ = `sigma2` on each of `classes` counts.
    pub fn new(
        classes: usize,
        threshold: f64,
        sigma1: f64,
        sigma2: f64,
    ) -> Result<ConfidentGnMax, PrivacyError> {
        if classes < 2 {
            return Err(PrivacyError::Mechanism(
                "confident-GNMax needs at least 2 classes".into(),
            ));
        }
        if !threshold.is_finite() {
            return Err(PrivacyError::Mechanism(format!(
                "threshold must be finite, got {threshold}"
            )));
        }
        Ok(ConfidentGnMax {
            classes,
            threshold,
            sigma1,
            sigma2,
            check_cost: scalar_cost(sigma1, 1.0)?,
            answer_cost: vector_cost(sigma2, classes, ANSWER_SENSITIVITY)?,
        })
    }

    /// Cost of the check, paid by every query.
    pub fn check_cost(&self) -> Rho {
        self.check_cost
    }

    /// Cost of the answer, paid by the queries that pass the check.
    pub fn answer_cost(&self) -> Rho {
        self.answer_cost
    }

    /// The threshold T.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// σ₁ of the check.
    pub fn sigma1(&self) -> f64 {
        self.sigma1
    }

    /// σ₂ of the answer.
    pub fn sigma2(&self) -> f64 {
        self.sigma2
    }

    fn histogram_ok(&self, votes: &[i64]) -> Result<(), PrivacyError> {
        if votes.len() != self.classes {
            return Err(PrivacyError::Mechanism(format!(
                "{} vote counts for {} classes",
                votes.len(),
                self.classes
            )));
        }
        Ok(())
    }

    /// The noisy check: whether `max(votes) + N(0, σ₁²) ≥ T`. Costs [`Self::check_cost`].
    pub fn check(&self, votes: &[i64]) -> Result<bool, PrivacyError> {
        self.histogram_ok(votes)?;
        let max = votes.iter().copied().max().unwrap_or(0) as f64;
        Ok(noisy_scalar(self.sigma1, max)? >= self.threshold)
    }

    /// The Gaussian noisy arg-max. Costs [`Self::answer_cost`].
    pub fn answer(&self, votes: &[i64]) -> Result<usize, PrivacyError> {
        self.histogram_ok(votes)?;
        let counts: Vec<f64> = votes.iter().map(|&v| v as f64).collect();
        let noisy = noisy_vector(self.sigma2, &counts)?;
        let mut best = 0;
        for (i, v) in noisy.iter().enumerate() {
            if *v > noisy[best] {
                best = i;
            }
        }
        Ok(best)
    }

    /// Check, then answer if the check passed. Callers that must charge the answer before it
    /// exists call [`Self::check`] and [`Self::answer`] separately.
    pub fn release(&self, votes: &[i64]) -> Result<Verdict, PrivacyError> {
        Ok(if self.check(votes)? {
            Verdict::Answer(self.answer(votes)?)
        } else {
            Verdict::Abstain
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_the_gaussian_maps_at_the_true_sensitivities() {
        let m = ConfidentGnMax::new(10, 20.0, 10.0, 5.0).unwrap();
        // (1/10)^2/2 = 0.005 and (√2/5)^2/2 = 0.04, plus OpenDP's grid slack (tiny, upwards).
        let (c, a) = (m.check_cost().to_f64(), m.answer_cost().to_f64());
        assert!((0.005..0.005 * 1.001).contains(&c), "{c}");
        assert!((0.04..0.04 * 1.001).contains(&a), "{a}");
        assert!(ConfidentGnMax::new(1, 1.0, 1.0, 1.0).is_err());
        assert!(ConfidentGnMax::new(3, f64::NAN, 1.0, 1.0).is_err());
        assert!(ConfidentGnMax::new(3, 1.0, 0.0, 1.0).is_err());
    }

    #[test]
    fn clear_agreement_answers_and_disagreement_abstains() {
        let m = ConfidentGnMax::new(4, 20.0, 0.5, 0.5).unwrap();
        assert_eq!(m.release(&[0, 25, 0, 0]).unwrap(), Verdict::Answer(1));
        assert_eq!(m.release(&[7, 6, 6, 6]).unwrap(), Verdict::Abstain);
        assert!(m.release(&[1, 2]).is_err());
    }
}
