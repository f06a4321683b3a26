//! The privacy ledger under concurrent clients and crashes, through the real service (gateway,
//! enclave, sealed requests):
//!
//! - concurrent clients spend a tenant's budget: what is on disk equals the sum of the
//!   receipts the clients received, to the nano-ρ, and the cap is met exactly, never passed;
//! - the enclave is killed with SIGKILL at random moments under concurrent load, over and
//!   over (100 times by default; `CLOISTER_CRASH_TRIALS` for longer runs): for every answer a
//!   client received, its debit is on the ledger on disk; no cap is ever exceeded; the service
//!   restarts and continues to answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister::profile::Profile;
use cloister::sdk::{Client, ClientError};
use cloister_e2e::{heldout_rows, Service};
use cloister_protocol::error::ErrorCode;

/// A service whose development tenant has `budget` ρ (the default policy's 2.0 replaced).
fn with_tenant_budget(budget: &str) -> Service {
    let budget = budget.to_string();
    Service::start_with(move |dir| {
        let path = dir.policy();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("budget_rho = 2.0 "), "default policy changed");
        std::fs::write(
            path,
            text.replacen("budget_rho = 2.0 ", &format!("budget_rho = {budget} "), 1),
        )
        .unwrap();
    })
}

/// Spent nano-ρ per account and cost per request id, read from the ledger file itself.
fn ledger_on_disk(svc: &Service) -> (BTreeMap<String, u64>, HashMap<String, u64>) {
    let text = std::fs::read_to_string(svc.dir.ledger().join("ledger.jsonl")).unwrap();
    let mut spent = BTreeMap::new();
    let mut by_id = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let cost = v["cost_nano"].as_u64().unwrap();
        for a in v["accounts"].as_array().unwrap() {
            *spent.entry(a.as_str().unwrap().to_string()).or_insert(0) += cost;
        }
        let first = by_id.insert(v["request_id"].as_str().unwrap().to_string(), cost);
        assert!(
            first.is_none(),
            "a request id is on the ledger twice: {line}"
        );
    }
    (spent, by_id)
}

/// What the clients received: (request id, cost in nano-ρ) of every answer.
type Received = Arc<Mutex<Vec<(String, u64)>>>;

/// A client thread sending one-row requests to the ensemble until `stop` (or, with
/// `until_exhausted`, until the budget is exhausted).
fn client_thread(
    profile: Profile,
    received: Received,
    stop: Arc<AtomicBool>,
    until_exhausted: bool,
    seed: usize,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::new(profile).unwrap();
        let mut errors = 0;
        let mut i = seed;
        while !stop.load(Ordering::Relaxed) {
            i = (i + 7) % 300;
            match rt.block_on(client.infer("digits-ensemble", heldout_rows(i, 1))) {
                Ok(r) => {
                    let p = r.response.privacy.expect("a receipt");
                    received
                        .lock()
                        .unwrap()
                        .push((r.response.request_id, p.cost_nano_rho));
                }
                Err(ClientError::Enclave { error, .. })
                    if error.code == ErrorCode::BudgetExhausted && until_exhausted =>
                {
                    break
                }
                Err(e) => {
                    if std::env::var_os("CLOISTER_CRASH_VERBOSE").is_some() {
                        eprintln!("client {seed}: {e}");
                    }
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        errors
    })
}

#[test]
fn concurrent_clients_spend_a_budget_exactly_and_never_past_the_cap() {
    // 0.3 ρ at 0.01 per label: exactly 30 labels, raced for by 4 clients.
    let svc = with_tenant_budget("0.3");
    let received: Received = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|s| client_thread(svc.profile.clone(), received.clone(), stop.clone(), true, s))
        .collect();
    for t in threads {
        assert_eq!(
            t.join().unwrap(),
            0,
            "a client saw an error other than exhaustion"
        );
    }
    let received = received.lock().unwrap().clone();
    let (spent, by_id) = ledger_on_disk(&svc);
    let sum: u64 = received.iter().map(|(_, c)| c).sum();
    assert_eq!(received.len(), 30, "exactly the labels the budget buys");
    assert_eq!(spent["tenant/dev"], sum, "disk == sum of receipts");
    assert_eq!(spent["tenant/dev"], 300_000_000, "the cap is met exactly");
    for (id, cost) in &received {
        assert_eq!(by_id.get(id), Some(cost), "receipt {id} not on disk");
    }
    // The budget report through the seal agrees.
    let client = Client::new(svc.profile.clone()).unwrap();
    let report = svc.block_on(client.budget()).unwrap();
    assert_eq!(report.accounts[0].remaining_rho, Some(0.0));
}

#[test]
fn sigkill_under_concurrent_load_never_loses_a_debit() {
    let trials: usize = std::env::var("CLOISTER_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let started = Instant::now();
    // 1.5 ρ: 150 labels, so the cap is usually reached part-way through the kills and both
    // charged and refused requests are cut off at random points.
    let mut svc = with_tenant_budget("1.5");
    let received: Received = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|s| {
            client_thread(
                svc.profile.clone(),
                received.clone(),
                stop.clone(),
                false,
                s * 100,
            )
        })
        .collect();
    let mut seed: u64 = 0x5EED_F00D;
    for trial in 0..trials {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Let the clients re-attest to the new enclave and get answers, then kill it at a
        // random moment: mid-request, mid-charge or idle.
        std::thread::sleep(Duration::from_millis(50 + (seed >> 33) % 350));
        svc.crash_enclave();
        // After every crash the ledger must already cover every answer given so far.
        let (spent, by_id) = ledger_on_disk(&svc);
        for (id, cost) in received.lock().unwrap().iter() {
            assert_eq!(
                by_id.get(id),
                Some(cost),
                "trial {trial}: an answer's debit is not on disk"
            );
        }
        assert!(spent.get("tenant/dev").copied().unwrap_or(0) <= 1_500_000_000);
        assert!(spent.get("model/digits-ensemble").copied().unwrap_or(0) <= 5_000_000_000);
        assert!(spent.get("global").copied().unwrap_or(0) <= 10_000_000_000);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let received = received.lock().unwrap().clone();
    let (spent, by_id) = ledger_on_disk(&svc);
    let sum: u64 = received.iter().map(|(_, c)| c).sum();
    for (id, cost) in &received {
        assert_eq!(by_id.get(id), Some(cost), "answer {id}: debit not on disk");
    }
    // Spent on disk ≥ released (a charge whose answer a kill cut off stays spent).
    assert!(spent["tenant/dev"] >= sum);
    assert!(spent["tenant/dev"] <= 1_500_000_000, "tenant cap exceeded");
    assert!(
        !received.is_empty(),
        "no answer got through between the kills"
    );
    // The service restarted and continues: the budget report reads exactly the disk.
    let client = Client::new(svc.profile.clone()).unwrap();
    let report = svc.block_on(client.budget()).unwrap();
    let tenant = &report.accounts[0];
    assert_eq!(tenant.account, "tenant/dev");
    assert_eq!(
        (tenant.spent_rho * 1e9).round() as u64,
        spent["tenant/dev"],
        "{report:?}"
    );
    match svc.block_on(client.infer("digits-ensemble", heldout_rows(0, 1))) {
        Ok(r) => assert!(r.response.privacy.is_some()),
        Err(ClientError::Enclave { error, .. }) => {
            assert_eq!(error.code, ErrorCode::BudgetExhausted)
        }
        Err(e) => panic!("the service did not continue: {e}"),
    }
    eprintln!(
        "{trials} SIGKILLs, {} answers, {} of 1.5 ρ spent, in {:.1} s",
        received.len(),
        spent["tenant/dev"] as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
}
