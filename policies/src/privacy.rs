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
//!
//! `mechanism = "confident-gnmax"` (Papernot et al. 2018): `votes_output`, `classes`,
//! `threshold` (T), `sigma1` (Gaussian noise of the check `max votes + N(0, σ₁²) ≥ T`, paid by
//! every query), `sigma2` (Gaussian noise on each vote count of the answer, paid only when the
//! check passes; otherwise the query abstains), optional `budget_rho`.
//!
//! `mechanism = "ensemble-regression"`: `predictions_output` (`[N, K]` float: each teacher's
//! prediction), `teachers` (K), `lower` and `upper` (the clamp range), `rho_per_query` (cost of
//! one released value), optional `budget_rho`.
//!
//! `mechanism = "heuristic-output-noise"`: `output` (a float output) and `noise_scale`
//! (Gaussian standard deviation). Not differential privacy: it costs no budget, and every
//! response and audit record labels it `heuristic`; there is no field that changes the label.

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

/// A finite real that compares by value.
#[derive(Debug, Clone, Copy)]
pub struct Finite(f64);

impl Finite {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Finite {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Finite {}

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
    /// Confident-GNMax: a noisy threshold check (always charged), then a Gaussian noisy
    /// arg-max (charged only when released) or an abstention.
    ConfidentGnMax {
        /// Output holding the votes, `[N, K]` int64.
        votes_output: String,
        /// Number of classes.
        classes: usize,
        /// Threshold T on the noisy largest vote count.
        threshold: Finite,
        /// Standard deviation of the check's Gaussian noise.
        sigma1: Positive,
        /// Standard deviation of the answer's Gaussian noise on each count.
        sigma2: Positive,
        /// Cap on this model across tenants.
        budget: Option<NanoRho>,
    },
    /// Regression through an ensemble: clamp each teacher's prediction, average, add Gaussian
    /// noise with sensitivity `(upper − lower) / teachers`.
    EnsembleRegression {
        /// Output holding the predictions, `[N, K]` float.
        predictions_output: String,
        /// K, the number of teachers (disjoint partitions).
        teachers: usize,
        /// Lower end of the clamp range.
        lower: Finite,
        /// Upper end of the clamp range.
        upper: Finite,
        /// Cost of one released value.
        rho_per_query: NanoRho,
        /// Cap on this model across tenants.
        budget: Option<NanoRho>,
    },
    /// Gaussian noise on one model's output: labelled `heuristic`, no guarantee, no charge.
    HeuristicOutputNoise {
        /// The float output that gets noise (the only output released).
        output: String,
        /// Standard deviation of the noise.
        noise_scale: Positive,
    },
}

impl ModelPrivacy {
    /// Whether releases debit a budget.
    pub fn charges(&self) -> bool {
        matches!(
            self,
            ModelPrivacy::GnMax { .. }
                | ModelPrivacy::ConfidentGnMax { .. }
                | ModelPrivacy::EnsembleRegression { .. }
        )
    }

    /// The model's cap across tenants, if the mechanism has one.
    pub fn budget(&self) -> Option<NanoRho> {
        match self {
            ModelPrivacy::GnMax { budget, .. }
            | ModelPrivacy::ConfidentGnMax { budget, .. }
            | ModelPrivacy::EnsembleRegression { budget, .. } => *budget,
            _ => None,
        }
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
    #[serde(default)]
    pub threshold: Option<Spanned<f64>>,
    #[serde(default)]
    pub sigma1: Option<Spanned<f64>>,
    #[serde(default)]
    pub sigma2: Option<Spanned<f64>>,
    #[serde(default)]
    pub predictions_output: Option<Spanned<String>>,
    #[serde(default)]
    pub teachers: Option<Spanned<u64>>,
    #[serde(default)]
    pub lower: Option<Spanned<f64>>,
    #[serde(default)]
    pub upper: Option<Spanned<f64>>,
    #[serde(default)]
    pub output: Option<Spanned<String>>,
    #[serde(default)]
    pub noise_scale: Option<Spanned<f64>>,
}

impl RawModelPrivacy {
    /// Every optional field: (present, name).
    fn present(&self) -> [(bool, &'static str); 15] {
        [
            (self.votes_output.is_some(), "votes_output"),
            (self.classes.is_some(), "classes"),
            (self.rho_per_query.is_some(), "rho_per_query"),
            (self.budget_rho.is_some(), "budget_rho"),
            (self.epsilon.is_some(), "epsilon"),
            (self.delta.is_some(), "delta"),
            (self.threshold.is_some(), "threshold"),
            (self.sigma1.is_some(), "sigma1"),
            (self.sigma2.is_some(), "sigma2"),
            (self.predictions_output.is_some(), "predictions_output"),
            (self.teachers.is_some(), "teachers"),
            (self.lower.is_some(), "lower"),
            (self.upper.is_some(), "upper"),
            (self.output.is_some(), "output"),
            (self.noise_scale.is_some(), "noise_scale"),
        ]
    }
}

/// The fields each mechanism accepts (besides `mechanism`).
fn allowed(mechanism: &str) -> &'static [&'static str] {
    match mechanism {
        "gnmax" => &["votes_output", "classes", "rho_per_query", "budget_rho"],
        "dp-trained" => &["epsilon", "delta"],
        "confident-gnmax" => &[
            "votes_output",
            "classes",
            "threshold",
            "sigma1",
            "sigma2",
            "budget_rho",
        ],
        "ensemble-regression" => &[
            "predictions_output",
            "teachers",
            "lower",
            "upper",
            "rho_per_query",
            "budget_rho",
        ],
        "heuristic-output-noise" => &["output", "noise_scale"],
        _ => &[],
    }
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

    /// A finite real.
    fn finite(&mut self, v: &Spanned<f64>, field: &str) -> Finite {
        let x = *v.get_ref();
        if !x.is_finite() {
            self.fail(
                &v.span(),
                format!("`{field}` must be a finite number, found {x}"),
                &format!("set `{field}` to a finite number"),
            );
            return Finite(0.0);
        }
        Finite(x)
    }

    /// A non-empty output name.
    fn output_name(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        mech: &str,
        table: &std::ops::Range<usize>,
    ) -> String {
        match v {
            Some(v) if !v.get_ref().is_empty() => v.get_ref().clone(),
            _ => {
                self.missing(table, mech, field);
                String::new()
            }
        }
    }

    fn missing(&mut self, table: &std::ops::Range<usize>, mech: &str, field: &str) {
        self.fail(
            table,
            format!("mechanism \"{mech}\" needs `{field}`"),
            &format!("add `{field} = ...` to [models.privacy]"),
        )
    }

    fn classes(
        &mut self,
        raw: &RawModelPrivacy,
        mech: &str,
        table: &std::ops::Range<usize>,
    ) -> usize {
        match &raw.classes {
            Some(v) if *v.get_ref() >= 2 && *v.get_ref() <= 1_000_000 => *v.get_ref() as usize,
            Some(v) => {
                self.fail(
                    &v.span(),
                    "`classes` must be between 2 and 1000000".into(),
                    "set `classes` to the number of labels the teachers vote for",
                );
                2
            }
            None => {
                self.missing(table, mech, "classes");
                2
            }
        }
    }

    fn required_positive(
        &mut self,
        v: &Option<Spanned<f64>>,
        field: &str,
        mech: &str,
        table: &std::ops::Range<usize>,
    ) -> Positive {
        match v {
            Some(v) => self.positive(v, field),
            None => {
                self.missing(table, mech, field);
                Positive(1.0)
            }
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
        let accepted = allowed(mech);
        if !accepted.is_empty() {
            for (present, field) in raw.present() {
                if present && !accepted.contains(&field) {
                    self.fail(
                        &raw.mechanism.span(),
                        format!("`{field}` does not apply to mechanism \"{mech}\""),
                        &format!("remove `{field}` from this [models.privacy] table"),
                    );
                }
            }
        }
        let budget = raw.budget_rho.as_ref().map(|v| self.rho(v, "budget_rho"));
        match mech {
            "gnmax" => {
                let votes_output = self.output_name(&raw.votes_output, "votes_output", mech, table);
                let classes = self.classes(raw, mech, table);
                let rho_per_query = match &raw.rho_per_query {
                    Some(v) => self.rho(v, "rho_per_query"),
                    None => {
                        self.missing(table, mech, "rho_per_query");
                        NanoRho(1)
                    }
                };
                ModelPrivacy::GnMax {
                    votes_output,
                    classes,
                    rho_per_query,
                    budget,
                }
            }
            "confident-gnmax" => {
                let votes_output = self.output_name(&raw.votes_output, "votes_output", mech, table);
                let classes = self.classes(raw, mech, table);
                let threshold = match &raw.threshold {
                    Some(v) => self.finite(v, "threshold"),
                    None => {
                        self.missing(table, mech, "threshold");
                        Finite(0.0)
                    }
                };
                let sigma1 = self.required_positive(&raw.sigma1, "sigma1", mech, table);
                let sigma2 = self.required_positive(&raw.sigma2, "sigma2", mech, table);
                ModelPrivacy::ConfidentGnMax {
                    votes_output,
                    classes,
                    threshold,
                    sigma1,
                    sigma2,
                    budget,
                }
            }
            "ensemble-regression" => {
                let predictions_output =
                    self.output_name(&raw.predictions_output, "predictions_output", mech, table);
                let teachers = match &raw.teachers {
                    Some(v) if *v.get_ref() >= 1 && *v.get_ref() <= 1_000_000 => {
                        *v.get_ref() as usize
                    }
                    Some(v) => {
                        self.fail(
                            &v.span(),
                            "`teachers` must be between 1 and 1000000".into(),
                            "set `teachers` to K, the number of disjoint partitions",
                        );
                        1
                    }
                    None => {
                        self.missing(table, mech, "teachers");
                        1
                    }
                };
                let bound = |this: &mut Self, v: &Option<Spanned<f64>>, field: &str| match v {
                    Some(v) => this.finite(v, field),
                    None => {
                        this.missing(table, mech, field);
                        Finite(0.0)
                    }
                };
                let lower = bound(self, &raw.lower, "lower");
                let upper = bound(self, &raw.upper, "upper");
                if let (Some(_), Some(u)) = (&raw.lower, &raw.upper) {
                    if lower.get() >= upper.get() {
                        self.fail(
                            &u.span(),
                            format!(
                                "the clamp range needs lower < upper, found [{}, {}]",
                                lower.get(),
                                upper.get()
                            ),
                            "set `lower` and `upper` to the range predictions are clamped to",
                        );
                    }
                }
                let rho_per_query = match &raw.rho_per_query {
                    Some(v) => self.rho(v, "rho_per_query"),
                    None => {
                        self.missing(table, mech, "rho_per_query");
                        NanoRho(1)
                    }
                };
                ModelPrivacy::EnsembleRegression {
                    predictions_output,
                    teachers,
                    lower,
                    upper,
                    rho_per_query,
                    budget,
                }
            }
            "heuristic-output-noise" => {
                let output = self.output_name(&raw.output, "output", mech, table);
                let noise_scale =
                    self.required_positive(&raw.noise_scale, "noise_scale", mech, table);
                ModelPrivacy::HeuristicOutputNoise {
                    output,
                    noise_scale,
                }
            }
            "dp-trained" => {
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
                    "use \"gnmax\" or \"confident-gnmax\" (teacher ensemble), \"ensemble-regression\", \
                     \"dp-trained\" (declared DP training) or \"heuristic-output-noise\" (no guarantee)",
                );
                ModelPrivacy::None
            }
        }
    }
}
