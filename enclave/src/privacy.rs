//! Differential privacy in the enclave: charge the ledger, then release.
//!
//! INVARIANT: for a model whose releases are charged, the cost of a request is on disk in the
//! ledger (all accounts: global, tenant, model; all or nothing) before the model runs, so no
//! output can exist whose debit could be lost. A refused charge costs nothing; a request id that
//! was charged before is never charged again, and gets the very answer it got the first time
//! (held in memory), never a fresh sample; after a restart such a request is refused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cloister_engine::{Tensor, TensorData};
use cloister_policy::{ModelEntry, ModelPrivacy, Policy, Tenant};
use cloister_privacy::ledger::{model_account, tenant_account, Charge, FileLedger, Ledger, GLOBAL};
use cloister_privacy::mechanism::{vote_histogram, NoisyMax};
use cloister_privacy::{zcdp_to_approx_dp_epsilon, Rho};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::inner::{AccountBudget, BudgetReport, PrivacyReceipt};

/// A model's outputs, by name, in graph order.
pub type NamedOutputs = Vec<(String, Tensor)>;

/// How many released answers are kept for retried request ids.
const RELEASED_CACHE: usize = 4096;

/// The enclave's privacy state.
pub struct PrivacyState {
    ledger: Option<Mutex<FileLedger>>,
    mechanisms: BTreeMap<String, NoisyMax>,
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
        ModelPrivacy::DpTrained { .. } => Some("dp-trained"),
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
            if let ModelPrivacy::GnMax {
                rho_per_query,
                budget,
                ..
            } = &m.privacy
            {
                let started = std::time::Instant::now();
                let mech = NoisyMax::for_cost(rho_of(*rho_per_query)).with_context(|| {
                    format!("model \"{}\": build the noisy-max mechanism", m.id)
                })?;
                tracing::info!(
                    model = %m.id,
                    scale = mech.scale(),
                    cost = %mech.cost(),
                    millis = started.elapsed().as_millis() as u64,
                    "noisy arg-max mechanism ready (OpenDP, zCDP)"
                );
                mechanisms.insert(m.id.clone(), mech);
                if let Some(b) = budget {
                    caps.insert(model_account(&m.id), rho_of(*b));
                }
            }
        }
        let ledger = if mechanisms.is_empty() {
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
        let (Some(mech), Some(ledger)) = (self.mechanisms.get(&model.id), &self.ledger) else {
            return Ok(ChargeDecision::Free);
        };
        let cost = u64::try_from(rows)
            .ok()
            .and_then(|n| mech.cost().as_nano().checked_mul(n))
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
            Charge::Charged { remaining } => {
                Ok(ChargeDecision::Charged(Charged { cost, remaining }))
            }
            Charge::Refused {
                account,
                cost,
                remaining,
            } => Err(ApiError::new(
                ErrorCode::BudgetExhausted,
                format!(
                    "privacy budget exhausted: this request costs {cost} ρ ({rows} label(s)) but \
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
        match &model.privacy {
            ModelPrivacy::GnMax {
                votes_output,
                classes,
                ..
            } => {
                let internal = |m: String| ApiError::new(ErrorCode::InferenceFailed, m);
                let mech = self
                    .mechanisms
                    .get(&model.id)
                    .ok_or_else(|| internal("no mechanism for this model".into()))?;
                let charged = charged.ok_or_else(|| internal("release without a charge".into()))?;
                let votes = outputs
                    .iter()
                    .find(|(n, _)| n == votes_output)
                    .map(|(_, t)| t)
                    .ok_or_else(|| {
                        internal(format!("the model has no output \"{votes_output}\""))
                    })?;
                let (rows, teachers) = match votes.shape() {
                    [n, k] => (*n, *k),
                    other => {
                        return Err(internal(format!("votes have shape {other:?}, not [N, K]")))
                    }
                };
                let TensorData::I64(v) = votes.data() else {
                    return Err(internal("votes are not int64".into()));
                };
                let mut labels = Vec::with_capacity(rows);
                for r in 0..rows {
                    let hist = vote_histogram(&v[r * teachers..(r + 1) * teachers], *classes)
                        .map_err(|e| internal(e.to_string()))?;
                    let label = mech.release(&hist).map_err(|e| internal(e.to_string()))?;
                    labels.push(label as i64);
                }
                let label =
                    Tensor::from_i64(vec![rows], labels).map_err(|e| internal(e.to_string()))?;
                let cost = charged.cost;
                let receipt = PrivacyReceipt {
                    mechanism: "gnmax".into(),
                    guarantee: format!(
                        "PATE noisy arg-max (OpenDP make_noisy_max, zero-concentrated DP) over {teachers} \
                         teachers trained on disjoint partitions: each released label is \
                         {}-zCDP with respect to any one training record; this response cost {cost} ρ",
                        mech.cost()
                    ),
                    cost_rho: cost.to_f64(),
                    cost_nano_rho: cost.as_nano(),
                    cost_epsilon: zcdp_to_approx_dp_epsilon(cost.to_f64(), self.delta),
                    delta: self.delta,
                    remaining_rho: charged
                        .remaining
                        .iter()
                        .map(|(a, r)| (a.clone(), r.map(Rho::to_f64)))
                        .collect(),
                };
                Ok((vec![("label".to_string(), label)], Some(receipt)))
            }
            ModelPrivacy::DpTrained { epsilon, delta } => Ok((
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
                }),
            )),
            _ => Ok((outputs, None)),
        }
    }

    /// The tenant's budgets: its own account, each charged model it may use, and the global one.
    pub fn budget_report(&self, tenant: &Tenant) -> BudgetReport {
        let mut accounts = vec![tenant_account(&tenant.id)];
        for m in &tenant.models {
            if self.mechanisms.contains_key(m) {
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
