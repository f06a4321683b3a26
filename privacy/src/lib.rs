//! cloister-privacy: units and conversions for differential-privacy accounting.
//!
//! The enclave debits a per-tenant privacy budget *durably, before* any output exists. A budget
//! that lives in a ledger on disk must add up exactly and never drift, so this crate keeps the
//! budget in integers: [`Rho`] is a zero-concentrated-DP (zCDP) cost stored as a whole number of
//! nano-rho. Conversions to the (ε, δ) language that people read live in [`zcdp`].
//!
//! - [`rho`]: the integer unit;
//! - [`zcdp`]: ρ → (ε, δ) for people;
//! - [`mechanism`]: the PATE noisy arg-max (GNMax) from OpenDP with its privacy map;
//! - [`gaussian`]: OpenDP's Gaussian mechanism, the building block of the next three;
//! - [`confident`]: confident-GNMax (noisy threshold check, then a Gaussian noisy arg-max);
//! - [`regression`]: the clamped, noisy mean of a regression ensemble;
//! - [`heuristic`]: output noise on one model, labelled `heuristic`, with no guarantee;
//! - [`ledger`]: the durable, all-or-nothing budget ledger.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod confident;
pub mod gaussian;
pub mod heuristic;
pub mod ledger;
pub mod mechanism;
pub mod regression;
pub mod rho;
pub mod zcdp;

pub use rho::Rho;
pub use zcdp::{try_zcdp_to_approx_dp_epsilon, zcdp_to_approx_dp_epsilon};

/// Everything that can go wrong in this crate; each variant names the bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PrivacyError {
    /// A privacy parameter was NaN.
    #[error("{what} is NaN")]
    NotANumber {
        /// Which parameter (for example `"rho"`).
        what: &'static str,
    },
    /// A privacy parameter was negative.
    #[error("{what} is negative ({value})")]
    Negative {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A privacy parameter was infinite or does not fit the integer unit.
    #[error("{what} = {value} is too large (at most {max})")]
    TooLarge {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: f64,
        /// The largest accepted value.
        max: f64,
    },
    /// δ must lie strictly between 0 and 1 (δ = 0 has no finite ε under zCDP).
    #[error("delta = {0} must satisfy 0 < delta (and delta <= 1)")]
    DeltaOutOfRange(f64),
    /// An OpenDP measurement could not be built or run.
    #[error("mechanism: {0}")]
    Mechanism(String),
}
