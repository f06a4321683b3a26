//! Differential privacy in the enclave: charge the ledger, then release.
//!
//! INVARIANT: for a model whose releases are charged, the cost of a request is on disk in the
//! ledger (all accounts: global, tenant, model; all or nothing) before the model runs, so no
//! output can exist whose debit could be lost. A refused charge costs nothing; a request id that
//! was charged before is never charged again, and gets the very answer it got the first time
//! (held in memory), never a fresh sample; after a restart such a request is refused.
//!
//! Confident-GNMax pays in two steps, each on disk before what it pays for exists: the check of
//! every row before the model runs (like every other charged mechanism), and the answers of the
//! rows that passed the check, under the request id with `/answer` appended, before any label
//! is released. If that second charge is refused (the budget ran out in between), those rows
//! abstain too: nothing is released unpaid. Heuristic output noise charges nothing, because it
//! guarantees nothing; its receipt says `heuristic`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cloister_engine::{Tensor, TensorData};
use cloister_policy::{ModelEntry, ModelPrivacy, Policy, Tenant};
use cloister_privacy::confident::ConfidentGnMax;
use cloister_privacy::heuristic::{self, HeuristicNoise};
use cloister_privacy::ledger::{model_account, tenant_account, Charge, FileLedger, Ledger, GLOBAL};
use cloister_privacy::mechanism::{vote_histogram, NoisyMax};
use cloister_privacy::regression::EnsembleMean;
use cloister_privacy::{zcdp_to_approx_dp_epsilon, Rho};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::inner::{AccountBudget, BudgetReport, PrivacyReceipt};

/// A model's outputs, by name, in graph order.
pub type NamedOutputs = Vec<(String, Tensor)>;

/// How many released answers are kept for retried request ids.
const RELEASED_CACHE: usize = 4096;

/// A model's release mechanism, built once at start-up from the policy.
enum Mechanism {
    GnMax(NoisyMax),
    Confident(ConfidentGnMax),
    Mean(EnsembleMean),
    Heuristic(HeuristicNoise),
}

impl Mechanism {
    /// What each row costs before the model runs (`None`: nothing is charged).
    fn upfront_cost(&self) -> Option<Rho> {
        match self {
            Mechanism::GnMax(m) => Some(m.cost()),
            Mechanism::Confident(m) => Some(m.check_cost()),
            Mechanism::Mean(m) => Some(m.cost()),
            Mechanism::Heuristic(_) => None,
        }
    }
}

/// The enclave's privacy state.
pub struct PrivacyState {
    ledger: Option<Mutex<FileLedger>>,
    mechanisms: BTreeMap<String, Mechanism>,
    released: Mutex<Released>,
    delta: f64,
}

#[derive(Default)]
struct Released {
    order: VecDeque<String>,
    bodies: HashMap<String, Vec<u8>>,
}

/// A charge that went through.
pub struct Charged {
    cost: Rho,
    remaining: BTreeMap<String, Option<Rho>>,
    request_id: String,
    accounts: Vec<String>,
}

impl Charged {
    /// What was charged.
    pub fn cost(&self) -> Rho {
        self.cost
    }
}

/// The policy name of a model's release mechanism, if it has one.
pub fn mechanism_name(model: &ModelEntry) -> Option<&'static str> {
    match model.privacy {
        ModelPrivacy::GnMax { .. } => Some("gnmax"),
        ModelPrivacy::ConfidentGnMax { .. } => Some("confident-gnmax"),
        ModelPrivacy::EnsembleRegression { .. } => Some("ensemble-regression"),
        ModelPrivacy::DpTrained { .. } => Some("dp-trained"),
        // The label is this constant, not a policy field: no policy can remove it.
        ModelPrivacy::HeuristicOutputNoise { .. } => Some(heuristic::MECHANISM),
        _ => None,
    }
}

/// What [`PrivacyState::charge`] decided.
pub enum ChargeDecision {
    /// No mechanism: nothing to charge.
    Free,
    /// Charged now; run the model and release.
    Charged(Charged),
    /// Charged before: answer with these bytes, exactly as the first time.
    Repeat(Vec<u8>),
}

fn rho_of(n: cloister_policy::NanoRho) -> Rho {
    Rho::from_nano(n.0)
}

impl PrivacyState {
    /// Builds mechanisms from the policy and opens the ledger (needed when any model charges).
    pub fn start(policy: &Policy, ledger_dir: Option<&Path>) -> Result<PrivacyState> {
        let mut mechanisms = BTreeMap::new();
        let mut caps = BTreeMap::new();
        if let Some(g) = policy.privacy.global_budget {
            caps.insert(GLOBAL.to_string(), rho_of(g));
        }
        for t in &policy.tenants {
            if let Some(b) = t.budget {
                caps.insert(tenant_account(&t.id), rho_of(b));
            }
        }
        for m in &policy.models {
            let started = std::time::Instant::now();
            let built = |what: &str| format!("model \"{}\": build the {what} mechanism", m.id);
            let mech = match &m.privacy {
                ModelPrivacy::GnMax { rho_per_query, .. } => Mechanism::GnMax(
                    NoisyMax::for_cost(rho_of(*rho_per_query))
                        .with_context(|| built("noisy-max"))?,
                ),
                ModelPrivacy::ConfidentGnMax {
                    classes,
                    threshold,
                    sigma1,
                    sigma2,
                    ..
                } => Mechanism::Confident(
                    ConfidentGnMax::new(*classes, threshold.get(), sigma1.get(), sigma2.get())
                        .with_context(|| built("confident-GNMax"))?,
                ),
                ModelPrivacy::EnsembleRegression {
                    teachers,
                    lower,
                    upper,
                    rho_per_query,
                    ..
                } => Mechanism::Mean(
                    EnsembleMean::for_cost(
                        lower.get(),
                        upper.get(),
                        *teachers,
                        rho_of(*rho_per_query),
                    )
                    .with_context(|| built("ensemble-regression"))?,
                ),
                ModelPrivacy::HeuristicOutputNoise { noise_scale, .. } => Mechanism::Heuristic(
                    HeuristicNoise::new(noise_scale.get())
                        .with_context(|| built("heuristic output-noise"))?,
                ),
                _ => continue,
            };
            tracing::info!(
                model = %m.id,
                mechanism = mechanism_name(m).unwrap_or_default(),
                cost_per_row = %mech.upfront_cost().unwrap_or(Rho::ZERO),
                millis = started.elapsed().as_millis() as u64,
                "release mechanism ready (OpenDP, zCDP)"
            );
            if let Some(b) = m.privacy.budget() {
                caps.insert(model_account(&m.id), rho_of(b));
            }
            mechanisms.insert(m.id.clone(), mech);
        }
        let ledger = if !mechanisms.values().any(|m| m.upfront_cost().is_some()) {
            None
        } else {
            let Some(dir) = ledger_dir else {
                bail!(
                    "the policy has models whose releases are charged, so the enclave needs a \
                     privacy ledger: pass --ledger-dir DIR"
                );
            };
            let path = dir.join("ledger.jsonl");
            let (ledger, recovery) = FileLedger::open(&path, caps)
                .with_context(|| format!("open the privacy ledger {}", path.display()))?;
            tracing::info!(path = %path.display(), recovery = ?recovery, "privacy ledger open");
            Some(Mutex::new(ledger))
        };
        Ok(PrivacyState {
            ledger,
            mechanisms,
            released: Mutex::default(),
            delta: policy.privacy.delta.get(),
        })
    }

    /// Charges `rows` releases of `model` to the tenant, the model and the global account,
    /// durably, before anything is computed.
    pub fn charge(
        &self,
        request_id: &str,
        tenant: &Tenant,
        model: &ModelEntry,
        rows: usize,
    ) -> Result<ChargeDecision, ApiError> {
        let (Some(per_row), Some(ledger)) = (
            self.mechanisms
                .get(&model.id)
                .and_then(Mechanism::upfront_cost),
            &self.ledger,
        ) else {
            return Ok(ChargeDecision::Free);
        };
        let cost = u64::try_from(rows)
            .ok()
            .and_then(|n| per_row.as_nano().checked_mul(n))
            .map(Rho::from_nano)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidInput, "too many rows to account"))?;
        let accounts = vec![
            GLOBAL.to_string(),
            tenant_account(&tenant.id),
            model_account(&model.id),
        ];
        let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = ledger.charge(request_id, &accounts, cost).map_err(|e| {
            tracing::error!(error = %e, "PRIVACY LEDGER FAILED: nothing released");
            ApiError::new(
                ErrorCode::Internal,
                "the privacy ledger could not be written; nothing was released",
            )
        })?;
        match outcome {
            Charge::Charged { remaining } => Ok(ChargeDecision::Charged(Charged {
                cost,
                remaining,
                request_id: request_id.to_string(),
                accounts,
            })),
            Charge::Refused {
                account,
                cost,
                remaining,
            } => Err(ApiError::new(
                ErrorCode::BudgetExhausted,
                format!(
                    "privacy budget exhausted: this request costs {cost} ρ ({rows} row(s)) but \
                     account {account} has {remaining} ρ left; nothing was charged"
                ),
            )),
            Charge::Duplicate { .. } => {
                let released = self.released.lock().unwrap_or_else(|p| p.into_inner());
                match released.bodies.get(request_id) {
                    Some(body) => Ok(ChargeDecision::Repeat(body.clone())),
                    None => Err(ApiError::new(
                        ErrorCode::DuplicateRequest,
                        "this request id was already charged and answered; its answer is no \
                         longer held, and a second sample would leak privacy: use a new request id",
                    )),
                }
            }
        }
    }

    /// Remembers the response released for a charged request id.
    pub fn remember(&self, request_id: &str, body: &[u8]) {
        let mut r = self.released.lock().unwrap_or_else(|p| p.into_inner());
        if r.bodies
            .insert(request_id.to_string(), body.to_vec())
            .is_none()
        {
            r.order.push_back(request_id.to_string());
        }
        while r.order.len() > RELEASED_CACHE {
            if let Some(old) = r.order.pop_front() {
                r.bodies.remove(&old);
            }
        }
    }

    /// Applies the model's release mechanism to its outputs.
    pub fn release(
        &self,
        model: &ModelEntry,
        outputs: NamedOutputs,
        charged: Option<&Charged>,
    ) -> Result<(NamedOutputs, Option<PrivacyReceipt>), ApiError> {
        let mechanism = || {
            self.mechanisms
                .get(&model.id)
                .ok_or_else(|| internal("no mechanism for this model".into()))
        };
        let paid = || charged.ok_or_else(|| internal("release without a charge".into()));
        match (&model.privacy, mechanism()) {
            (
                ModelPrivacy::GnMax {
                    votes_output,
                    classes,
                    ..
                },
                Ok(Mechanism::GnMax(mech)),
            ) => {
                let charged = paid()?;
                let (rows, teachers, v) = votes(&outputs, votes_output)?;
                let mut labels = Vec::with_capacity(rows);
                for r in 0..rows {
                    let hist = vote_histogram(&v[r * teachers..(r + 1) * teachers], *classes)
                        .map_err(|e| internal(e.to_string()))?;
                    let label = mech.release(&hist).map_err(|e| internal(e.to_string()))?;
                    labels.push(label as i64);
                }
                let label =
                    Tensor::from_i64(vec![rows], labels).map_err(|e| internal(e.to_string()))?;
                let guarantee = format!(
                    "PATE noisy arg-max (OpenDP make_noisy_max, zero-concentrated DP) over \
                     {teachers} teachers trained on disjoint partitions: each released label is \
                     {}-zCDP with respect to any one training record; this response cost {} ρ",
                    mech.cost(),
                    charged.cost
                );
                let receipt = self.receipt("gnmax", guarantee, charged.cost, &charged.remaining);
                Ok((vec![("label".to_string(), label)], Some(receipt)))
            }
            (
                ModelPrivacy::ConfidentGnMax {
                    votes_output,
                    classes,
                    ..
                },
                Ok(Mechanism::Confident(mech)),
            ) => {
                let charged = paid()?;
                let (rows, teachers, v) = votes(&outputs, votes_output)?;
                let mut hists = Vec::with_capacity(rows);
                let mut passed = Vec::new();
                for r in 0..rows {
                    let hist = vote_histogram(&v[r * teachers..(r + 1) * teachers], *classes)
                        .map_err(|e| internal(e.to_string()))?;
                    // Paid for before the model ran (the charge this release holds).
                    if mech.check(&hist).map_err(|e| internal(e.to_string()))? {
                        passed.push(r);
                    }
                    hists.push(hist);
                }
                // The answers of the rows that passed are charged, durably, before they exist.
                let mut cost = charged.cost;
                let mut remaining = charged.remaining.clone();
                let mut answered = Vec::new();
                let mut short = None;
                if !passed.is_empty() {
                    let answer_cost = u64::try_from(passed.len())
                        .ok()
                        .and_then(|n| mech.answer_cost().as_nano().checked_mul(n))
                        .map(Rho::from_nano)
                        .ok_or_else(|| internal("too many rows to account".into()))?;
                    let ledger = self
                        .ledger
                        .as_ref()
                        .ok_or_else(|| internal("no ledger".into()))?;
                    let outcome = ledger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .charge(
                            &format!("{}/answer", charged.request_id),
                            &charged.accounts,
                            answer_cost,
                        )
                        .map_err(|e| {
                            tracing::error!(error = %e, "PRIVACY LEDGER FAILED: nothing released");
                            ApiError::new(
                                ErrorCode::Internal,
                                "the privacy ledger could not be written; nothing was released",
                            )
                        })?;
                    match outcome {
                        Charge::Charged { remaining: after } => {
                            cost = cost.checked_add(answer_cost).unwrap_or(Rho::MAX);
                            remaining = after;
                            answered = passed;
                        }
                        Charge::Refused { account, .. } => short = Some(account),
                        // Cannot happen (the check's charge was fresh); release nothing more.
                        Charge::Duplicate { .. } => short = Some("(duplicate)".into()),
                    }
                }
                let mut labels = vec![-1i64; rows];
                let mut abstained = Vec::new();
                for (r, hist) in hists.iter().enumerate() {
                    if answered.binary_search(&r).is_ok() {
                        labels[r] = mech.answer(hist).map_err(|e| internal(e.to_string()))? as i64;
                    } else {
                        abstained.push(r as u64);
                    }
                }
                let label =
                    Tensor::from_i64(vec![rows], labels).map_err(|e| internal(e.to_string()))?;
                let mut guarantee = format!(
                    "confident-GNMax (Papernot et al. 2018; OpenDP make_gaussian, zero-concentrated \
                     DP) over {teachers} teachers trained on disjoint partitions: each row's \
                     noisy agreement check (threshold {}, sigma1 {}) is {}-zCDP and is always \
                     charged; each released label (Gaussian noisy arg-max, sigma2 {}) adds {} ρ; \
                     a row whose check fails abstains (label -1: the teachers did not agree) and \
                     costs only the check; this response cost {cost} ρ with respect to any one \
                     training record",
                    mech.threshold(),
                    mech.sigma1(),
                    mech.check_cost(),
                    mech.sigma2(),
                    mech.answer_cost(),
                );
                if let Some(account) = short {
                    guarantee.push_str(&format!(
                        "; account {account} could not pay for the answers, so the rows that \
                         passed the check abstained as well"
                    ));
                }
                let mut receipt = self.receipt("confident-gnmax", guarantee, cost, &remaining);
                receipt.abstained_rows = abstained;
                Ok((vec![("label".to_string(), label)], Some(receipt)))
            }
            (
                ModelPrivacy::EnsembleRegression {
                    predictions_output, ..
                },
                Ok(Mechanism::Mean(mech)),
            ) => {
                let charged = paid()?;
                let (rows, k, p) = floats(&outputs, predictions_output)?;
                if k != mech.teachers() {
                    return Err(internal(format!(
                        "the model has {k} teachers but the policy's sensitivity assumes {}",
                        mech.teachers()
                    )));
                }
                let mut released = Vec::with_capacity(rows);
                for r in 0..rows {
                    released.push(
                        mech.release(&p[r * k..(r + 1) * k])
                            .map_err(|e| internal(e.to_string()))?,
                    );
                }
                let prediction =
                    Tensor::from_f64(vec![rows], released).map_err(|e| internal(e.to_string()))?;
                let (lower, upper) = mech.range();
                let guarantee = format!(
                    "ensemble regression (OpenDP make_gaussian, zero-concentrated DP): each of \
                     {k} teachers trained on disjoint partitions is clamped to [{lower}, {upper}], \
                     the mean gets Gaussian noise (sigma {:.4}) for a sensitivity of {}: each \
                     released value is {}-zCDP with respect to any one training record; this \
                     response cost {} ρ",
                    mech.scale(),
                    (upper - lower) / k as f64,
                    mech.cost(),
                    charged.cost
                );
                let receipt = self.receipt(
                    "ensemble-regression",
                    guarantee,
                    charged.cost,
                    &charged.remaining,
                );
                Ok((vec![("prediction".to_string(), prediction)], Some(receipt)))
            }
            (ModelPrivacy::HeuristicOutputNoise { output, .. }, Ok(Mechanism::Heuristic(h))) => {
                let t = outputs
                    .iter()
                    .find(|(n, _)| n == output)
                    .map(|(_, t)| t)
                    .ok_or_else(|| internal(format!("the model has no output \"{output}\"")))?;
                let shape = t.shape().to_vec();
                let noisy = match t.data() {
                    TensorData::F32(v) => {
                        let xs: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
                        let n = h.apply(&xs).map_err(|e| internal(e.to_string()))?;
                        Tensor::from_f32(shape, n.into_iter().map(|x| x as f32).collect())
                    }
                    TensorData::F64(v) => {
                        Tensor::from_f64(shape, h.apply(v).map_err(|e| internal(e.to_string()))?)
                    }
                    _ => return Err(internal(format!("output \"{output}\" is not float"))),
                }
                .map_err(|e| internal(e.to_string()))?;
                let mut receipt = self.receipt(
                    heuristic::MECHANISM,
                    heuristic::GUARANTEE.to_string(),
                    Rho::ZERO,
                    &BTreeMap::new(),
                );
                receipt.label = Some(heuristic::LABEL.to_string());
                Ok((vec![(output.clone(), noisy)], Some(receipt)))
            }
            (ModelPrivacy::DpTrained { epsilon, delta }, _) => Ok((
                outputs,
                Some(PrivacyReceipt {
                    mechanism: "dp-trained".into(),
                    guarantee: format!(
                        "the model's owner declares it was trained with ({}, {})-differential \
                         privacy; predictions are post-processing and cost nothing",
                        epsilon.get(),
                        delta.get()
                    ),
                    cost_rho: 0.0,
                    cost_nano_rho: 0,
                    cost_epsilon: 0.0,
                    delta: delta.get(),
                    remaining_rho: BTreeMap::new(),
                    label: None,
                    abstained_rows: Vec::new(),
                }),
            )),
            (ModelPrivacy::None, _) => Ok((outputs, None)),
            _ => Err(internal(
                "the model's mechanism does not match the policy".into(),
            )),
        }
    }

    fn receipt(
        &self,
        mechanism: &str,
        guarantee: String,
        cost: Rho,
        remaining: &BTreeMap<String, Option<Rho>>,
    ) -> PrivacyReceipt {
        PrivacyReceipt {
            mechanism: mechanism.into(),
            guarantee,
            cost_rho: cost.to_f64(),
            cost_nano_rho: cost.as_nano(),
            cost_epsilon: if cost == Rho::ZERO {
                0.0
            } else {
                zcdp_to_approx_dp_epsilon(cost.to_f64(), self.delta)
            },
            delta: self.delta,
            remaining_rho: remaining
                .iter()
                .map(|(a, r)| (a.clone(), r.map(Rho::to_f64)))
                .collect(),
            label: None,
            abstained_rows: Vec::new(),
        }
    }

    /// The tenant's budgets: its own account, each charged model it may use, and the global one.
    pub fn budget_report(&self, tenant: &Tenant) -> BudgetReport {
        let mut accounts = vec![tenant_account(&tenant.id)];
        for m in &tenant.models {
            if self
                .mechanisms
                .get(m)
                .is_some_and(|x| x.upfront_cost().is_some())
            {
                accounts.push(model_account(m));
            }
        }
        accounts.push(GLOBAL.to_string());
        let ledger = self
            .ledger
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        let accounts = accounts
            .into_iter()
            .map(|a| {
                let (spent, cap, remaining) = match &ledger {
                    Some(l) => (l.spent(&a), l.cap(&a), l.remaining(&a)),
                    None => (Rho::ZERO, None, None),
                };
                AccountBudget {
                    spent_epsilon: if spent == Rho::ZERO {
                        0.0
                    } else {
                        zcdp_to_approx_dp_epsilon(spent.to_f64(), self.delta)
                    },
                    account: a,
                    spent_rho: spent.to_f64(),
                    cap_rho: cap.map(Rho::to_f64),
                    remaining_rho: remaining.map(Rho::to_f64),
                }
            })
            .collect();
        BudgetReport {
            tenant: tenant.id.clone(),
            accounts,
            delta: self.delta,
            refresh: "never: budgets do not refresh, so the guarantee covers every answer ever \
                      released from this ledger"
                .into(),
        }
    }
}

/// The named `[N, K]` output of an ensemble (`what` names it in errors): the tensor, N and K.
fn matrix_output<'a>(
    outputs: &'a NamedOutputs,
    name: &str,
    what: &str,
) -> Result<(&'a Tensor, usize, usize), ApiError> {
    let t = outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| internal(format!("the model has no output \"{name}\"")))?;
    let [rows, k] = *t.shape() else {
        return Err(internal(format!(
            "{what} have shape {:?}, not [N, K]",
            t.shape()
        )));
    };
    Ok((t, rows, k))
}

/// An ensemble output the enclave cannot use: the model, not the request, is at fault.
fn internal(message: String) -> ApiError {
    ApiError::new(ErrorCode::InferenceFailed, message)
}

/// The `[N, K]` int64 votes output.
fn votes<'a>(outputs: &'a NamedOutputs, name: &str) -> Result<(usize, usize, &'a [i64]), ApiError> {
    let (t, rows, k) = matrix_output(outputs, name, "votes")?;
    let TensorData::I64(v) = t.data() else {
        return Err(internal("votes are not int64".into()));
    };
    Ok((rows, k, v))
}

/// The `[N, K]` float predictions output, as f64.
fn floats(outputs: &NamedOutputs, name: &str) -> Result<(usize, usize, Vec<f64>), ApiError> {
    let (t, rows, k) = matrix_output(outputs, name, "predictions")?;
    let v = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        _ => return Err(internal("predictions are not float".into())),
    };
    Ok((rows, k, v))
}
