//! The release mechanisms, built from OpenDP measurements so that every cost comes from a
//! privacy map with a proof, never from a formula of ours.
//!
//! [`NoisyMax`] is the GNMax-style private prediction of PATE with OpenDP's `make_noisy_max`
//! under zero-concentrated DP: K teachers, trained on disjoint partitions of the owner's data,
//! each vote for one class; the vote histogram is the input, and one training record can change
//! only its own teacher's vote — moving one count down by one and another up by one, an
//! L∞ distance of 1 on a non-monotonic histogram. The privacy map evaluated at that distance is
//! the cost of one released label, rounded up to a whole nano-rho.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_noisy_max;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::LInfDistance;

use crate::{PrivacyError, Rho};

type NoisyMaxMeasurement = opendp::core::Measurement<
    VectorDomain<AtomDomain<i64>>,
    LInfDistance<i64>,
    ZeroConcentratedDivergence,
    usize,
>;

/// Report-noisy-max over a vote histogram, with zCDP accounting.
///
/// OpenDP measurements hold non-`Send` closures, so this type keeps the parameters and builds
/// the measurement for each release (microseconds); it can then be shared across threads.
#[derive(Clone)]
pub struct NoisyMax {
    scale: f64,
    cost: Rho,
}

impl std::fmt::Debug for NoisyMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoisyMax")
            .field("scale", &self.scale)
            .field("cost", &self.cost)
            .finish()
    }
}

fn opendp_err(e: opendp::error::Error) -> PrivacyError {
    PrivacyError::Mechanism(e.to_string())
}

fn measurement(scale: f64) -> Result<NoisyMaxMeasurement, PrivacyError> {
    make_noisy_max(
        VectorDomain::new(AtomDomain::<i64>::default()),
        LInfDistance::default(),
        ZeroConcentratedDivergence,
        scale,
        false,
    )
    .map_err(opendp_err)
}

impl NoisyMax {
    /// A mechanism adding noise of scale `scale` to each vote count.
    pub fn with_scale(scale: f64) -> Result<NoisyMax, PrivacyError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(PrivacyError::Mechanism(format!(
                "noise scale must be a positive finite number, got {scale}"
            )));
        }
        // One record changes one teacher's vote: L∞ distance 1 on the histogram.
        let rho = measurement(scale)?.map(&1).map_err(opendp_err)?;
        let cost = Rho::from_f64(rho)?;
        Ok(NoisyMax { scale, cost })
    }

    /// The mechanism with the smallest noise whose per-release cost is at most `budget`.
    ///
    /// The scale is found by bisection on OpenDP's own privacy map, so the cost is whatever
    /// the map says for the chosen scale, never an estimate.
    pub fn for_cost(budget: Rho) -> Result<NoisyMax, PrivacyError> {
        if budget == Rho::ZERO {
            return Err(PrivacyError::Mechanism(
                "a zero cost per release needs infinite noise".into(),
            ));
        }
        let (mut lo, mut hi) = (1e-6_f64, 1e9_f64);
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if NoisyMax::with_scale(mid)?.cost <= budget {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi / lo < 1.0 + 1e-12 {
                break;
            }
        }
        let m = NoisyMax::with_scale(hi)?;
        if m.cost > budget {
            return Err(PrivacyError::Mechanism(format!(
                "no noise scale reaches a cost of {budget}"
            )));
        }
        Ok(m)
    }

    /// Noise scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Cost of one release, rounded up.
    pub fn cost(&self) -> Rho {
        self.cost
    }

    /// Releases the index of the (noisily) largest vote count.
    pub fn release(&self, votes: &[i64]) -> Result<usize, PrivacyError> {
        if votes.is_empty() {
            return Err(PrivacyError::Mechanism(
                "no candidates to choose from".into(),
            ));
        }
        measurement(self.scale)?
            .invoke(&votes.to_vec())
            .map_err(opendp_err)
    }
}

/// Counts votes: `labels[i]` is teacher i's class, in `0..classes`.
pub fn vote_histogram(labels: &[i64], classes: usize) -> Result<Vec<i64>, PrivacyError> {
    let mut counts = vec![0i64; classes];
    for &l in labels {
        let slot = usize::try_from(l)
            .ok()
            .and_then(|i| counts.get_mut(i))
            .ok_or_else(|| {
                PrivacyError::Mechanism(format!("teacher vote {l} is not a class in 0..{classes}"))
            })?;
        *slot += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_comes_from_the_privacy_map_and_shrinks_with_noise() {
        let a = NoisyMax::with_scale(1.0).unwrap();
        let b = NoisyMax::with_scale(10.0).unwrap();
        assert!(a.cost() > b.cost());
        // zCDP of the exponential mechanism: rho = (range/scale)^2 / 8 with range = 2 for a
        // non-monotonic L∞ distance of 1, i.e. 0.5 at scale 1 (OpenDP's map, checked here).
        assert_eq!(a.cost(), Rho::from_f64(0.5).unwrap());
        assert!(NoisyMax::with_scale(0.0).is_err());
        assert!(NoisyMax::with_scale(f64::NAN).is_err());
    }

    #[test]
    fn for_cost_meets_the_budget_tightly() {
        let target = Rho::from_f64(0.01).unwrap();
        let m = NoisyMax::for_cost(target).unwrap();
        assert!(m.cost() <= target);
        assert!(m.cost().as_nano() >= target.as_nano() - 10, "{m:?}");
    }

    #[test]
    fn a_clear_winner_wins_with_little_noise_and_votes_are_checked() {
        let m = NoisyMax::with_scale(0.01).unwrap();
        assert_eq!(m.release(&[0, 0, 250, 0]).unwrap(), 2);
        assert_eq!(vote_histogram(&[2, 2, 0], 3).unwrap(), vec![1, 0, 2]);
        assert!(vote_histogram(&[3], 3).is_err());
        assert!(vote_histogram(&[-1], 3).is_err());
        assert!(m.release(&[]).is_err());
    }
}
