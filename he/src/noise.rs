//! The noise and precision model: why every encrypted value decrypts (or bootstraps) exactly.
//!
//! All variances are on the unit torus (a ciphertext value `v` means `v / 2^64`). Only two
//! kinds of ciphertexts exist at evaluation time, and TFHE-rs's own formulas give their noise:
//!
//! * **client inputs**: fresh encryptions under the *big* LWE key (the GLWE key of
//!   [`crate::PARAMETERS`] read as an LWE key of dimension k·N = 2048), with the parameter
//!   set's GLWE noise, TUniform(2^17): variance `(2^35 + 1) / 6 / 2^128`, σ ≈ 2^16.2 of 2^64;
//! * **bootstrap outputs**: variance from
//!   `pbs_variance_132_bits_security_tuniform_fft_mul` (TFHE-rs's noise formula for the
//!   parameter set's PBS), σ ≈ 2^49.2 of 2^64.
//!
//! A linear combination `Σ w_i c_i + constant` has variance `Σ w_i² var(c_i)` (independent
//! noises; constants add none). Two checks then cover every ciphertext:
//!
//! * **before a bootstrap**: variance ≤ `max_noise_level² · var_pbs` = 25 · var_pbs, the
//!   input noise the parameter set was optimised for ("2-norm = 5" in TFHE-rs's parameter
//!   file, p-fail 2^-129.6 for 16 boxes over half the torus). Keyswitch and modulus switch are
//!   TFHE-rs's own and unchanged.
//! * **before decryption**: `Z · σ < Δ / 2`, with `Z` = [`Z_2M128`] (a Gaussian tail of
//!   2^-128), so rounding to the nearest multiple of `Δ` is exact except with probability
//!   below 2^-128.
//!
//! [`crate::program::Program::validate`] runs both checks for every neuron of every layer
//! when a program is loaded and refuses programs that fail them.

use tfhe::core_crypto::commons::math::random::DynamicDistribution;
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::pbs_variance_132_bits_security_tuniform_fft_mul;

use crate::PARAMETERS;

/// Gaussian tail bound: P(|X| > Z·σ) < 2^-128 for Z = 13.1 (erfc(13.1/√2) ≈ 2^-128.4).
pub const Z_2M128: f64 = 13.1;

/// Mantissa bits of the f64 FFT TFHE-rs uses for the blind rotation.
const FFT_MANTISSA_BITS: f64 = 53.0;

/// Variance of a TUniform(2^b) sample, in integer units: values -2^b..=2^b, the two ends
/// with half the probability of the others.
fn tuniform_variance(bound_log2: u32) -> f64 {
    (2f64.powi(2 * bound_log2 as i32 + 1) + 1.0) / 6.0
}

/// Torus variance of a fresh encryption under the big LWE key (what the client sends).
pub fn fresh_variance() -> f64 {
    match PARAMETERS.glwe_noise_distribution {
        DynamicDistribution::TUniform(t) => tuniform_variance(t.bound_log2()) / 2f64.powi(128),
        DynamicDistribution::Gaussian(g) => g.std * g.std,
    }
}

/// Torus variance of a programmable-bootstrap output under [`PARAMETERS`].
pub fn pbs_variance() -> f64 {
    pbs_variance_132_bits_security_tuniform_fft_mul(
        PARAMETERS.lwe_dimension,
        PARAMETERS.glwe_dimension,
        PARAMETERS.polynomial_size,
        PARAMETERS.pbs_base_log,
        PARAMETERS.pbs_level,
        FFT_MANTISSA_BITS,
        2f64.powi(64),
    )
    .0
}

/// Largest torus variance a bootstrap input may have: (max noise level)² · var_pbs.
pub fn pbs_input_budget() -> f64 {
    let nu = PARAMETERS.max_noise_level.get() as f64;
    nu * nu * pbs_variance()
}

/// Largest torus variance a decrypted value encoded with step `2^-bits` may have.
pub fn decrypt_budget(bits: u32) -> f64 {
    let half_step = 2f64.powi(-(bits as i32) - 1);
    (half_step / Z_2M128).powi(2)
}
