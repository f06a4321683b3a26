//! Heuristic output noise on a single model: Gaussian noise added to its outputs, with **no**
//! privacy guarantee.
//!
//! A single model's sensitivity to one training record is unbounded, so no amount of noise on
//! its outputs proves anything about the training data. Cloister offers this only because an
//! owner may want it as a speed bump, and it is built so that nobody can mistake it for a
//! guarantee: the label and the guarantee text are constants here, not policy fields, so no
//! policy can change them; it costs no budget (there is nothing to account); and the words used
//! to describe it never claim differential privacy (a test checks the text). The noise itself
//! still comes from OpenDP's Gaussian sampler; its privacy map is deliberately not consulted.

use crate::gaussian::noisy_vector;
use crate::PrivacyError;

/// The label every response, audit record and policy summary carries for this mode.
pub const LABEL: &str = "heuristic";

/// The mechanism's name in policies, receipts and audit records; it starts with [`LABEL`].
pub const MECHANISM: &str = "heuristic-output-noise";

/// What a person can rely on: nothing formal. Never mentions differential privacy as a claim.
pub const GUARANTEE: &str = "heuristic: Gaussian noise was added to one model's outputs. This \
     gives NO formal privacy guarantee for the training data (one model's sensitivity to a \
     training record is unbounded), so it costs no privacy budget and bounds nothing";

/// Gaussian output noise of a fixed standard deviation.
#[derive(Debug, Clone)]
pub struct HeuristicNoise {
    scale: f64,
}

impl HeuristicNoise {
    /// Noise of standard deviation `scale`.
    pub fn new(scale: f64) -> Result<HeuristicNoise, PrivacyError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(PrivacyError::Mechanism(format!(
                "noise scale must be a positive finite number, got {scale}"
            )));
        }
        Ok(HeuristicNoise { scale })
    }

    /// Standard deviation.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `values` with noise added to each.
    pub fn apply(&self, values: &[f64]) -> Result<Vec<f64>, PrivacyError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        noisy_vector(self.scale, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_never_claim_differential_privacy() {
        assert!(MECHANISM.starts_with(LABEL));
        assert!(GUARANTEE.starts_with(LABEL));
        let lower = GUARANTEE.to_lowercase();
        for claim in ["differential", "differentially", "zcdp", "(ε", "epsilon"] {
            assert!(!lower.contains(claim), "{claim} in {GUARANTEE}");
        }
    }

    #[test]
    fn adds_noise() {
        let h = HeuristicNoise::new(0.5).unwrap();
        let out = h.apply(&[1.0; 32]).unwrap();
        assert!(out.iter().any(|&x| x != 1.0));
        assert!(h.apply(&[]).unwrap().is_empty());
        assert!(HeuristicNoise::new(-1.0).is_err());
    }
}
