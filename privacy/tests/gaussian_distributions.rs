//! Statistical checks of the Gaussian mechanisms over 10,000 draws each, against their theory:
//!
//! - confident-GNMax's noisy check passes with probability `1 − Φ((T − max n) / σ₁)`;
//! - its answer (Gaussian noisy arg-max) picks class i with probability
//!   `∫ φ(z) Π_{j≠i} Φ(z + (n_i − n_j)/σ₂) dz`, integrated numerically here;
//! - the regression ensemble's noisy mean has the clamped mean as its mean and `scale²` as its
//!   variance.
//!
//! Tolerance: 4.5 standard errors of the estimate (a correct mechanism fails one check with
//! probability below 1e-5). A mechanism that ignored σ, added no noise or skipped the clamp
//! fails.

use cloister_privacy::confident::{ConfidentGnMax, Verdict};
use cloister_privacy::regression::EnsembleMean;

const DRAWS: usize = 10_000;

/// Standard normal CDF through erfc (W. J. Cody's rational approximation is overkill here;
/// Numerical Recipes' erfc with fractional error below 1.2e-7 is plenty for a 4.5-SE test).
fn phi_cdf(x: f64) -> f64 {
    let z = -x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z.abs());
    let y = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if z >= 0.0 { y } else { 2.0 - y };
    0.5 * erfc
}

fn phi_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn within(observed: f64, p: f64, what: &str) {
    let se = (p * (1.0 - p) / DRAWS as f64).sqrt();
    assert!(
        (observed - p).abs() <= 4.5 * se + 1e-9,
        "{what}: observed {observed:.4}, theory {p:.4} (±{:.4})",
        4.5 * se
    );
}

#[test]
fn the_noisy_check_passes_as_often_as_theory_says() {
    let votes = [12i64, 8, 5, 0];
    let (t, sigma1) = (14.0, 3.0);
    let m = ConfidentGnMax::new(4, t, sigma1, 1.0).unwrap();
    let passed = (0..DRAWS).filter(|_| m.check(&votes).unwrap()).count();
    let p = 1.0 - phi_cdf((t - 12.0) / sigma1);
    within(passed as f64 / DRAWS as f64, p, "check pass rate");
}

#[test]
fn the_gaussian_noisy_argmax_matches_theory() {
    let votes = [10i64, 8, 5, 0];
    let sigma2 = 4.0;
    let m = ConfidentGnMax::new(4, 0.0, 1.0, sigma2).unwrap();
    let mut counts = [0usize; 4];
    for _ in 0..DRAWS {
        counts[m.answer(&votes).unwrap()] += 1;
    }
    // P(i wins) = ∫ φ(z) Π_{j≠i} Φ(z + (n_i − n_j)/σ) dz, Simpson's rule on [-12, 12].
    let steps = 4000;
    let (a, b) = (-12.0, 12.0);
    let h = (b - a) / steps as f64;
    let mut total = 0.0;
    for (i, &ni) in votes.iter().enumerate() {
        let f = |z: f64| {
            let mut v = phi_pdf(z);
            for (j, &nj) in votes.iter().enumerate() {
                if j != i {
                    v *= phi_cdf(z + (ni - nj) as f64 / sigma2);
                }
            }
            v
        };
        let mut s = f(a) + f(b);
        for k in 1..steps {
            let w = if k % 2 == 1 { 4.0 } else { 2.0 };
            s += w * f(a + k as f64 * h);
        }
        let p = s * h / 3.0;
        total += p;
        within(
            counts[i] as f64 / DRAWS as f64,
            p,
            &format!("class {i} (counts {counts:?})"),
        );
    }
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
}

#[test]
fn confident_release_abstains_or_answers_consistently() {
    // Unanimous votes far above T: always answers, and with σ₂ = 1 the right class.
    let m = ConfidentGnMax::new(3, 10.0, 1.0, 1.0).unwrap();
    for _ in 0..200 {
        assert_eq!(m.release(&[0, 25, 0]).unwrap(), Verdict::Answer(1));
    }
    // A split vote far below T: always abstains.
    for _ in 0..200 {
        assert_eq!(m.release(&[5, 4, 3]).unwrap(), Verdict::Abstain);
    }
}

#[test]
fn the_noisy_ensemble_mean_has_the_clamped_mean_and_the_stated_variance() {
    let scale = 2.5;
    let m = EnsembleMean::with_scale(0.0, 10.0, 5, scale).unwrap();
    // Clamped: [0, 10, 3, 4, 8] → mean 5.0 (unclamped it would be far from 5).
    let teachers = [-50.0, 400.0, 3.0, 4.0, 8.0];
    let truth = m.clamped_mean(&teachers).unwrap();
    assert_eq!(truth, 5.0);
    let xs: Vec<f64> = (0..DRAWS).map(|_| m.release(&teachers).unwrap()).collect();
    let n = DRAWS as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let se_mean = scale / n.sqrt();
    assert!(
        (mean - truth).abs() <= 4.5 * se_mean,
        "mean {mean:.4} vs {truth} (±{:.4})",
        4.5 * se_mean
    );
    // Var of the sample variance of a normal: 2σ⁴/(n−1).
    let se_var = (2.0 * scale.powi(4) / (n - 1.0)).sqrt();
    assert!(
        (var - scale * scale).abs() <= 4.5 * se_var,
        "variance {var:.4} vs {} (±{:.4})",
        scale * scale,
        4.5 * se_var
    );
}
