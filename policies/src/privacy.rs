//! Differential-privacy settings of a policy: the global cap and δ (`[privacy]`), each tenant's
//! budget (`budget_rho` in `[[tenants]]`), and each model's release mechanism
//! (`[models.privacy]`).
//!
//! Budgets are zCDP ρ. They are held here as whole nano-ρ (10⁻⁹ ρ), rounded **up** from the
//! decimal written in the file, so that the policy, the ledger and the audit log add up
//! exactly. Budgets never refresh: schema 1 has no refresh window, so a spent budget stays
//! spent (the guarantee is for the lifetime of the ledger).
//!
//! ```toml
//! [privacy]
//! global_budget_rho = 50.0     # cap across all tenants: colluding tenants add up
//! delta = 1e-6                 # δ used to show (ε, δ) to people
//!
//! [[models]]
//! id = "digits-ensemble"
//! # ...
//! [models.privacy]
//! mechanism = "gnmax"          # PATE noisy arg-max over teacher votes
//! votes_output = "votes"       # [N, K] int64: each teacher's class
//! classes = 10
//! rho_per_query = 0.02         # cost of one released label
//! budget_rho = 20.0            # optional cap for this model
//! ```
//!
//! `mechanism = "dp-trained"` declares a model trained with (ε, δ)-DP (`epsilon`, `delta`
//! required): its predictions cost nothing and responses say why.

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::{Location, PolicyError};

/// Nano-ρ per ρ.
pub const NANO_PER_RHO: f64 = 1e9;

/// A privacy amount in whole nano-ρ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NanoRho(pub u64);

impl NanoRho {
    /// As ρ.
    pub fn rho(self) -> f64 {
        self.0 as f64 / NANO_PER_RHO
    }
}

/// A finite positive real that compares by value (NaN is excluded at parse time).
#[derive(Debug, Clone, Copy)]
pub struct Positive(f64);

impl Positive {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Positive {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Positive {}

/// `[privacy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrivacySettings {
    /// Cap across all tenants and models (`None`: no global cap).
    pub global_budget: Option<NanoRho>,
    /// δ at which costs are shown as (ε, δ).
    pub delta: Positive,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings {
            global_budget: None,
            delta: Positive(1e-6),
        }
    }
}

/// How a model's outputs are released.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelPrivacy {
    /// No differential privacy: outputs are returned as computed.
    None,
    /// PATE: the model outputs each teacher's vote; the enclave releases a noisy arg-max.
    GnMax {
        /// Output holding the votes, `[N, K]` int64.
        votes_output: String,
        /// Number of classes.
        classes: usize,
        /// Cost of one released label.
        rho_per_query: NanoRho,
        /// Cap on this model across tenants.
        budget: Option<NanoRho>,
    },
    /// Trained with (ε, δ)-DP, as declared by the owner: predictions cost nothing.
    DpTrained {
        /// Declared ε.
        epsilon: Positive,
        /// Declared δ.
        delta: Positive,
    },
}

impl ModelPrivacy {
    /// Whether releases debit a budget.
    pub fn charges(&self) -> bool {
        matches!(self, ModelPrivacy::GnMax { .. })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrivacy {
    #[serde(default)]
    pub global_budget_rho: Option<Spanned<f64>>,
    #[serde(default)]
    pub delta: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelPrivacy {
    pub mechanism: Spanned<String>,
    #[serde(default)]
    pub votes_output: Option<Spanned<String>>,
    #[serde(default)]
    pub classes: Option<Spanned<u64>>,
    #[serde(default)]
    pub rho_per_query: Option<Spanned<f64>>,
    #[serde(default)]
    pub budget_rho: Option<Spanned<f64>>,
    #[serde(default)]
    pub epsilon: Option<Spanned<f64>>,
    #[serde(default)]
    pub delta: Option<Spanned<f64>>,
}

/// Validation helpers; `at` converts a span to a location.
pub(crate) struct Check<'a> {
    pub at: &'a dyn Fn(&std::ops::Range<usize>) -> Location,
    pub errors: &'a mut Vec<PolicyError>,
}

impl Check<'_> {
    fn fail(&mut self, span: &std::ops::Range<usize>, message: String, hint: &str) {
        self.errors.push(PolicyError::InvalidPrivacy {
            at: (self.at)(span),
            message,
            hint: hint.to_string(),
        });
    }

    /// A positive finite real.
    pub fn positive(&mut self, v: &Spanned<f64>, field: &str) -> Positive {
        let x = *v.get_ref();
        if !(x.is_finite() && x > 0.0) {
            self.fail(
                &v.span(),
                format!("`{field}` must be a positive finite number, found {x}"),
                &format!("set `{field}` to a number greater than 0"),
            );
            return Positive(1.0);
        }
        Positive(x)
    }

    /// A ρ amount, rounded up to whole nano-ρ.
    pub fn rho(&mut self, v: &Spanned<f64>, field: &str) -> NanoRho {
        let x = self.positive(v, field).get();
        let nano = (x * NANO_PER_RHO).ceil();
        if nano > u64::MAX as f64 / 2.0 {
            self.fail(
                &v.span(),
                format!("`{field}` = {x} is too large"),
                &format!("set `{field}` below 1e9"),
            );
            return NanoRho(1);
        }
        NanoRho(nano.max(1.0) as u64)
    }

    /// A δ in (0, 1).
    pub fn delta(&mut self, v: &Spanned<f64>) -> Positive {
        let d = self.positive(v, "delta");
        if d.get() >= 1.0 {
            self.fail(
                &v.span(),
                format!("`delta` must be below 1, found {}", d.get()),
                "use a small δ such as 1e-6 (at most 1/number of records)",
            );
        }
        d
    }

    pub fn settings(&mut self, raw: Option<&RawPrivacy>) -> PrivacySettings {
        let Some(raw) = raw else {
            return PrivacySettings::default();
        };
        PrivacySettings {
            global_budget: raw
                .global_budget_rho
                .as_ref()
                .map(|v| self.rho(v, "global_budget_rho")),
            delta: raw
                .delta
                .as_ref()
                .map_or(PrivacySettings::default().delta, |v| self.delta(v)),
        }
    }

    pub fn model(
        &mut self,
        raw: Option<&RawModelPrivacy>,
        table: &std::ops::Range<usize>,
    ) -> ModelPrivacy {
        let Some(raw) = raw else {
            return ModelPrivacy::None;
        };
        let mech = raw.mechanism.get_ref().as_str();
        let unexpected = |this: &mut Self, present: bool, field: &str| {
            if present {
                this.fail(
                    &raw.mechanism.span(),
                    format!("`{field}` does not apply to mechanism \"{mech}\""),
                    &format!("remove `{field}` from this [models.privacy] table"),
                );
            }
        };
        match mech {
            "gnmax" => {
                unexpected(self, raw.epsilon.is_some(), "epsilon");
                unexpected(self, raw.delta.is_some(), "delta");
                let missing = |this: &mut Self, field: &str| {
                    this.fail(
                        table,
                        format!("mechanism \"gnmax\" needs `{field}`"),
                        &format!("add `{field} = ...` to [models.privacy]"),
                    )
                };
                let votes_output = match &raw.votes_output {
                    Some(v) if !v.get_ref().is_empty() => v.get_ref().clone(),
                    _ => {
                        missing(self, "votes_output");
                        String::new()
                    }
                };
                let classes = match &raw.classes {
                    Some(v) if *v.get_ref() >= 2 => *v.get_ref() as usize,
                    Some(v) => {
                        self.fail(
                            &v.span(),
                            "`classes` must be at least 2".into(),
                            "set `classes` to the number of labels the teachers vote for",
                        );
                        2
                    }
                    None => {
                        missing(self, "classes");
                        2
                    }
                };
                let rho_per_query = match &raw.rho_per_query {
                    Some(v) => self.rho(v, "rho_per_query"),
                    None => {
                        missing(self, "rho_per_query");
                        NanoRho(1)
                    }
                };
                let budget = raw.budget_rho.as_ref().map(|v| self.rho(v, "budget_rho"));
                ModelPrivacy::GnMax {
                    votes_output,
                    classes,
                    rho_per_query,
                    budget,
                }
            }
            "dp-trained" => {
                for (present, field) in [
                    (raw.votes_output.is_some(), "votes_output"),
                    (raw.classes.is_some(), "classes"),
                    (raw.rho_per_query.is_some(), "rho_per_query"),
                    (raw.budget_rho.is_some(), "budget_rho"),
                ] {
                    unexpected(self, present, field);
                }
                let epsilon = match &raw.epsilon {
                    Some(v) => self.positive(v, "epsilon"),
                    None => {
                        self.fail(
                            table,
                            "mechanism \"dp-trained\" needs the declared `epsilon`".into(),
                            "add `epsilon = ...` (the ε the model was trained with)",
                        );
                        Positive(1.0)
                    }
                };
                let delta = match &raw.delta {
                    Some(v) => self.delta(v),
                    None => {
                        self.fail(
                            table,
                            "mechanism \"dp-trained\" needs the declared `delta`".into(),
                            "add `delta = ...` (the δ the model was trained with)",
                        );
                        Positive(1e-6)
                    }
                };
                ModelPrivacy::DpTrained { epsilon, delta }
            }
            other => {
                self.fail(
                    &raw.mechanism.span(),
                    format!("unknown privacy mechanism \"{other}\""),
                    "use \"gnmax\" (teacher ensemble) or \"dp-trained\" (declared DP training)",
                );
                ModelPrivacy::None
            }
        }
    }
}
