//! Conversion from ρ-zCDP to (ε, δ)-DP, so budgets kept in ρ can be reported as ε at a chosen δ.
//!
//! Uses the optimal conversion of Canonne, Kamath and Steinke, "The Discrete Gaussian for
//! Differential Privacy" (NeurIPS 2020, Proposition 12 / Corollary 13): a ρ-zCDP mechanism is
//! (ε, δ)-DP for
//!
//! ```text
//! ε(ρ, δ) = inf_{α > 1}  ρα + ( ln(1/(αδ)) + (α−1)·ln(1 − 1/α) ) / (α−1)
//! ```
//!
//! Every α > 1 gives a valid ε, so minimising numerically can only err towards a larger (still
//! valid) ε. We substitute α = 1 + eᵗ, which keeps the terms free of cancellation near α = 1,
//! and minimise over t by golden-section search (the objective is unimodal in α). The result is
//! also capped by the classic bound ρ + 2·√(ρ·ln(1/δ)) (valid too, always looser) as a guard
//! against numerical trouble, and nudged up by a few ulps so rounding never understates it.
//!
//! Test vector, shared with OpenDP's `test_zCDP_to_approxDP_nontrivial`:
//! ρ = 1/32, δ = 10⁻³ gives ε = 0.6880024554878086.

use crate::PrivacyError;

/// ε such that a ρ-zCDP mechanism is (ε, δ)-DP, using the optimal conversion (module docs).
///
/// Never panics. Bad inputs give the conservative answer `f64::INFINITY` ("no guarantee"):
/// NaN or negative ρ, NaN or non-positive δ. Use [`try_zcdp_to_approx_dp_epsilon`] to learn why.
/// ρ = 0 gives 0; δ ≥ 1 gives 0 (every mechanism is (0, 1)-DP); ρ = ∞ gives ∞.
pub fn zcdp_to_approx_dp_epsilon(rho: f64, delta: f64) -> f64 {
    try_zcdp_to_approx_dp_epsilon(rho, delta).unwrap_or(f64::INFINITY)
}

/// Like [`zcdp_to_approx_dp_epsilon`], but says which input is unusable.
pub fn try_zcdp_to_approx_dp_epsilon(rho: f64, delta: f64) -> Result<f64, PrivacyError> {
    if rho.is_nan() {
        return Err(PrivacyError::NotANumber { what: "rho" });
    }
    if rho < 0.0 {
        return Err(PrivacyError::Negative {
            what: "rho",
            value: rho,
        });
    }
    if delta.is_nan() || delta <= 0.0 {
        return Err(PrivacyError::DeltaOutOfRange(delta));
    }
    if delta >= 1.0 || rho == 0.0 {
        return Ok(0.0);
    }
    if rho.is_infinite() {
        return Ok(f64::INFINITY);
    }

    let ln_inv_delta = -delta.ln();
    // ε at α = 1 + eᵗ:
    //   ρ(1 + s) + (ln(1/δ) − ln(1 + s)) / s + ln(s) − ln(1 + s),   s = eᵗ,
    // using ln α = ln_1p(s) and ln(1 − 1/α) = ln s − ln_1p(s).
    let objective = |t: f64| {
        let s = t.exp();
        let ln_alpha = s.ln_1p();
        rho * (1.0 + s) + (ln_inv_delta - ln_alpha) / s + t - ln_alpha
    };

    // The optimum sits near α − 1 ≈ √(ln(1/δ)/ρ); search a generous window around it.
    let guess = (ln_inv_delta / rho).sqrt().max(f64::MIN_POSITIVE).ln();
    let (mut lo, mut hi) = (guess - 40.0, guess + 40.0);
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - inv_phi * (hi - lo);
    let mut b = lo + inv_phi * (hi - lo);
    let (mut fa, mut fb) = (objective(a), objective(b));
    for _ in 0..200 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - inv_phi * (hi - lo);
            fa = objective(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + inv_phi * (hi - lo);
            fb = objective(b);
        }
        if hi - lo <= 1e-15 * (1.0 + lo.abs()) {
            break;
        }
    }
    let best = [fa, fb, objective((lo + hi) / 2.0)]
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);

    let classic = rho + 2.0 * (rho * ln_inv_delta).sqrt();
    let eps = best.min(classic).max(0.0);
    // Guard against rounding in the objective: a few ulps up keeps the bound conservative.
    Ok(eps * (1.0 + 8.0 * f64::EPSILON))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_opendp_vector() {
        // OpenDP: cdp_epsilon(1/32, 1e-3) == 0.6880024554878086
        let eps = zcdp_to_approx_dp_epsilon(1.0 / 32.0, 1e-3);
        assert!((eps - 0.688).abs() < 5e-4, "{eps}");
        assert!((eps - 0.6880024554878086).abs() < 1e-9, "{eps}");
        assert!(eps >= 0.6880024554878086, "must not understate: {eps}");
    }

    #[test]
    fn zero_epsilon_threshold_from_opendp() {
        // OpenDP: at rho = 1/32 the curve reaches ε = 0 at δ = 0.1508457845622862.
        let eps = zcdp_to_approx_dp_epsilon(1.0 / 32.0, 0.1508457845622862);
        assert!(eps.abs() < 1e-6, "{eps}");
        assert!(zcdp_to_approx_dp_epsilon(1.0 / 32.0, 0.1) > 0.0);
    }

    #[test]
    fn brute_force_agrees() {
        for &(rho, delta) in &[
            (0.5, 1e-7),
            (1e-4, 1e-6),
            (2.0, 1e-5),
            (10.0, 1e-9),
            (1e-9, 1e-3),
            (1e-4, 1e-1),
        ] {
            let ours = zcdp_to_approx_dp_epsilon(rho, delta);
            // Scan α on a log grid.
            let mut best = f64::INFINITY;
            let mut k = -20.0f64;
            while k < 25.0 {
                let alpha = 1.0 + k.exp();
                let v = rho * alpha
                    + ((1.0 / (alpha * delta)).ln() + (alpha - 1.0) * (1.0 - 1.0 / alpha).ln())
                        / (alpha - 1.0);
                best = best.min(v);
                k += 1e-4;
            }
            // ε is clamped at 0 (a negative ε means (0, δ)-DP already holds).
            let best = best.max(0.0);
            assert!(
                ours <= best * (1.0 + 1e-9) + 1e-12,
                "rho={rho} delta={delta}: {ours} > {best}"
            );
            assert!(
                ours >= best * (1.0 - 1e-6) - 1e-12,
                "rho={rho} delta={delta}: {ours} << {best}"
            );
            // Always at least as tight as the classic bound.
            assert!(ours <= rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt());
        }
    }

    #[test]
    fn monotone_in_rho_and_delta() {
        let mut last = 0.0;
        for i in 1..50 {
            let e = zcdp_to_approx_dp_epsilon(f64::from(i) * 0.01, 1e-5);
            assert!(e > last);
            last = e;
        }
        assert!(zcdp_to_approx_dp_epsilon(0.1, 1e-9) > zcdp_to_approx_dp_epsilon(0.1, 1e-3));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(zcdp_to_approx_dp_epsilon(0.0, 1e-5), 0.0);
        assert_eq!(zcdp_to_approx_dp_epsilon(0.3, 1.0), 0.0);
        assert_eq!(
            zcdp_to_approx_dp_epsilon(f64::INFINITY, 1e-5),
            f64::INFINITY
        );
        assert_eq!(zcdp_to_approx_dp_epsilon(f64::NAN, 1e-5), f64::INFINITY);
        assert_eq!(zcdp_to_approx_dp_epsilon(-1.0, 1e-5), f64::INFINITY);
        assert_eq!(zcdp_to_approx_dp_epsilon(0.1, 0.0), f64::INFINITY);
        assert_eq!(zcdp_to_approx_dp_epsilon(0.1, f64::NAN), f64::INFINITY);
        assert_eq!(
            try_zcdp_to_approx_dp_epsilon(0.1, -1.0),
            Err(PrivacyError::DeltaOutOfRange(-1.0))
        );
        assert!(zcdp_to_approx_dp_epsilon(1e-300, 1e-300).is_finite());
        assert!(zcdp_to_approx_dp_epsilon(1e12, 1e-12).is_finite());
    }
}
