//! Gaussian noise from OpenDP (`make_gaussian`, zero-concentrated DP), the building block of
//! confident-GNMax ([`crate::confident`]), ensemble regression ([`crate::regression`]) and the
//! heuristic output noise ([`crate::heuristic`]).
//!
//! This module exists so that every Gaussian sample in the enclave comes from OpenDP's exact
//! discrete-Gaussian sampler (on a 2^k grid, through its CSPRNG) and every cost from OpenDP's
//! privacy map evaluated at the true sensitivity, never from a formula of ours. OpenDP's
//! measurements hold non-`Send` closures, so the types here keep the parameters and build the
//! measurement for each release (microseconds).

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{AbsoluteDistance, L2Distance};

use crate::{PrivacyError, Rho};

type ScalarMeasurement = opendp::core::Measurement<
    AtomDomain<f64>,
    AbsoluteDistance<f64>,
    ZeroConcentratedDivergence,
    f64,
>;

type VectorMeasurement = opendp::core::Measurement<
    VectorDomain<AtomDomain<f64>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<f64>,
>;

pub(crate) fn opendp_err(e: opendp::error::Error) -> PrivacyError {
    PrivacyError::Mechanism(e.to_string())
}

fn check_scale(scale: f64) -> Result<(), PrivacyError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(PrivacyError::Mechanism(format!(
            "noise scale must be a positive finite number, got {scale}"
        )))
    }
}

fn scalar(scale: f64) -> Result<ScalarMeasurement, PrivacyError> {
    check_scale(scale)?;
    make_gaussian(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        scale,
        None,
    )
    .map_err(opendp_err)
}

fn vector(scale: f64, len: usize) -> Result<VectorMeasurement, PrivacyError> {
    check_scale(scale)?;
    make_gaussian(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(len),
        L2Distance::<f64>::default(),
        scale,
        None,
    )
    .map_err(opendp_err)
}

/// The zCDP cost, from OpenDP's privacy map, of adding Gaussian noise of standard deviation
/// `scale` to one real value whose sensitivity is `sensitivity`; rounded up to a nano-ρ.
pub fn scalar_cost(scale: f64, sensitivity: f64) -> Result<Rho, PrivacyError> {
    Rho::from_f64(scalar(scale)?.map(&sensitivity).map_err(opendp_err)?)
}

/// The zCDP cost of adding Gaussian noise of standard deviation `scale` to each of `len`
/// values whose L2 sensitivity is `sensitivity`.
pub fn vector_cost(scale: f64, len: usize, sensitivity: f64) -> Result<Rho, PrivacyError> {
    Rho::from_f64(vector(scale, len)?.map(&sensitivity).map_err(opendp_err)?)
}

/// `x` plus Gaussian noise of standard deviation `scale` (OpenDP's sampler).
pub fn noisy_scalar(scale: f64, x: f64) -> Result<f64, PrivacyError> {
    if !x.is_finite() {
        return Err(PrivacyError::Mechanism(format!(
            "cannot add noise to a non-finite value {x}"
        )));
    }
    scalar(scale)?.invoke(&x).map_err(opendp_err)
}

/// `xs` plus independent Gaussian noise of standard deviation `scale` on each value.
pub fn noisy_vector(scale: f64, xs: &[f64]) -> Result<Vec<f64>, PrivacyError> {
    if let Some(bad) = xs.iter().find(|x| !x.is_finite()) {
        return Err(PrivacyError::Mechanism(format!(
            "cannot add noise to a non-finite value {bad}"
        )));
    }
    vector(scale, xs.len())?
        .invoke(&xs.to_vec())
        .map_err(opendp_err)
}

/// The smallest scale (to a relative 1e-12, by bisection on `cost_of`, which must decrease as
/// the scale grows) whose cost is at most `budget`.
pub(crate) fn scale_for_cost(
    budget: Rho,
    cost_of: impl Fn(f64) -> Result<Rho, PrivacyError>,
) -> Result<f64, PrivacyError> {
    if budget == Rho::ZERO {
        return Err(PrivacyError::Mechanism(
            "a zero cost per release needs infinite noise".into(),
        ));
    }
    let (mut lo, mut hi) = (1e-6_f64, 1e9_f64);
    if cost_of(hi)? > budget {
        return Err(PrivacyError::Mechanism(format!(
            "no noise scale reaches a cost of {budget}"
        )));
    }
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if cost_of(mid)? <= budget {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi / lo < 1.0 + 1e-12 {
            break;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_come_from_the_map_and_follow_the_gaussian_law() {
        // zCDP of the Gaussian mechanism: rho = (d / sigma)^2 / 2, up to OpenDP's rounding
        // slack on the 2^k grid (which only ever makes the cost larger).
        let c = scalar_cost(10.0, 1.0).unwrap().to_f64();
        assert!((0.005..0.005 * 1.001).contains(&c), "{c}");
        let v = vector_cost(10.0, 10, std::f64::consts::SQRT_2)
            .unwrap()
            .to_f64();
        assert!((0.01..0.01 * 1.001).contains(&v), "{v}");
        assert!(scalar_cost(0.0, 1.0).is_err());
        assert!(scalar_cost(f64::NAN, 1.0).is_err());
    }

    #[test]
    fn scale_for_cost_is_tight() {
        let target = Rho::from_f64(0.02).unwrap();
        let s = scale_for_cost(target, |s| scalar_cost(s, 3.0)).unwrap();
        let c = scalar_cost(s, 3.0).unwrap();
        assert!(c <= target && c.as_nano() + 10 >= target.as_nano(), "{c}");
        assert!(scale_for_cost(Rho::ZERO, |s| scalar_cost(s, 1.0)).is_err());
    }

    #[test]
    fn noise_is_added_and_non_finite_values_are_refused() {
        let xs = vec![0.0; 64];
        let noisy = noisy_vector(1.0, &xs).unwrap();
        assert_eq!(noisy.len(), 64);
        assert!(noisy.iter().any(|&x| x != 0.0));
        assert!(noisy_scalar(1.0, f64::NAN).is_err());
        assert!(noisy_vector(1.0, &[1.0, f64::INFINITY]).is_err());
    }
}
