//! Statistical check of the released arg-max: over 10,000 draws the empirical distribution
//! matches the exponential mechanism that OpenDP's zCDP noisy max implements (Gumbel noise of
//! the given scale, so P(i) = exp(x_i / s) / Σ_j exp(x_j / s)), within 4.5 standard errors per
//! class. A mechanism that ignored the noise scale, or added no noise, fails this.

use cloister_privacy::mechanism::NoisyMax;

#[test]
fn empirical_argmax_distribution_matches_theory() {
    let votes = [10i64, 8, 5, 0];
    let scale = 3.0;
    let m = NoisyMax::with_scale(scale).unwrap();
    let draws = 10_000;
    let mut counts = [0usize; 4];
    for _ in 0..draws {
        counts[m.release(&votes).unwrap()] += 1;
    }
    let weights: Vec<f64> = votes.iter().map(|&v| (v as f64 / scale).exp()).collect();
    let total: f64 = weights.iter().sum();
    for (i, w) in weights.iter().enumerate() {
        let p = w / total;
        let observed = counts[i] as f64 / draws as f64;
        let se = (p * (1.0 - p) / draws as f64).sqrt();
        assert!(
            (observed - p).abs() <= 4.5 * se + 1e-9,
            "class {i}: observed {observed:.4}, theory {p:.4} (±{:.4}); counts {counts:?}",
            4.5 * se
        );
    }
}
