//! Budget properties of the ledger, by proptest: for any sequence of charges (random tenants,
//! models, costs, repeated request ids) against random caps, and with restarts in between:
//!
//! - no account's spent total ever exceeds its cap;
//! - a duplicate request id is charged once (the second attempt changes nothing on disk);
//! - a charge that would overflow any account is refused and changes nothing, on disk or in
//!   the totals;
//! - a restart reads back exactly the spent totals (and the charged ids);
//! - the spent total of every account equals the sum of the costs of the charges that
//!   returned `Charged` to it (the model of the ledger kept by the test).

use std::collections::{BTreeMap, HashMap, HashSet};

use cloister_privacy::ledger::{model_account, tenant_account, Charge, FileLedger, Ledger, GLOBAL};
use cloister_privacy::Rho;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// Charge `cost` nano-ρ for tenant `t`, model `m`, with request id number `id`.
    Charge { id: u8, t: u8, m: u8, cost: u64 },
    /// Close and reopen the ledger.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => (0u8..40, 0u8..3, 0u8..2, 0u64..400).prop_map(|(id, t, m, cost)| Step::Charge {
            id,
            t,
            m,
            cost
        }),
        1 => Just(Step::Restart),
    ]
}

fn accounts(t: u8, m: u8) -> Vec<String> {
    vec![
        GLOBAL.to_string(),
        tenant_account(&format!("t{t}")),
        model_account(&format!("m{m}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn budget_properties_hold_for_any_sequence(
        global in 0u64..3000,
        tenant_caps in proptest::collection::vec(proptest::option::of(0u64..1500), 3),
        model_cap in proptest::option::of(0u64..2000),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut caps = BTreeMap::from([(GLOBAL.to_string(), Rho::from_nano(global))]);
        for (t, cap) in tenant_caps.iter().enumerate() {
            if let Some(c) = cap {
                caps.insert(tenant_account(&format!("t{t}")), Rho::from_nano(*c));
            }
        }
        if let Some(c) = model_cap {
            caps.insert(model_account("m0"), Rho::from_nano(c));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let (mut ledger, _) = FileLedger::open(&path, caps.clone()).unwrap();
        // The test's own model of what must be on the ledger.
        let mut expected: HashMap<String, u64> = HashMap::new();
        let mut charged_ids: HashSet<u8> = HashSet::new();
        let all_accounts: Vec<String> = (0..3u8)
            .flat_map(|t| (0..2u8).map(move |m| accounts(t, m)))
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for s in &steps {
            match *s {
                Step::Restart => {
                    let before: Vec<Rho> = all_accounts.iter().map(|a| ledger.spent(a)).collect();
                    drop(ledger);
                    let (reopened, _) = FileLedger::open(&path, caps.clone()).unwrap();
                    ledger = reopened;
                    let after: Vec<Rho> = all_accounts.iter().map(|a| ledger.spent(a)).collect();
                    prop_assert_eq!(before, after, "a restart changed the spent totals");
                }
                Step::Charge { id, t, m, cost } => {
                    let acc = accounts(t, m);
                    let bytes_before = std::fs::read(&path).unwrap();
                    let spent_before: Vec<Rho> = acc.iter().map(|a| ledger.spent(a)).collect();
                    let would_fit = acc.iter().all(|a| match caps.get(a) {
                        Some(cap) => expected.get(a).copied().unwrap_or(0) + cost <= cap.as_nano(),
                        None => true,
                    });
                    let outcome = ledger.charge(&format!("req-{id}"), &acc, Rho::from_nano(cost)).unwrap();
                    match outcome {
                        Charge::Duplicate { .. } => {
                            prop_assert!(charged_ids.contains(&id), "duplicate of an id never charged");
                            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes_before);
                        }
                        Charge::Refused { ref account, .. } => {
                            prop_assert!(!charged_ids.contains(&id), "a charged id was not recognised");
                            prop_assert!(!would_fit, "refused a charge that fits");
                            let cap = caps[account].as_nano();
                            prop_assert!(expected.get(account).copied().unwrap_or(0) + cost > cap);
                            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes_before, "a refusal wrote");
                            let spent_after: Vec<Rho> = acc.iter().map(|a| ledger.spent(a)).collect();
                            prop_assert_eq!(spent_before, spent_after, "a refusal charged");
                        }
                        Charge::Charged { ref remaining } => {
                            prop_assert!(!charged_ids.contains(&id), "a request id was charged twice");
                            prop_assert!(would_fit, "charged past a cap");
                            charged_ids.insert(id);
                            for a in &acc {
                                *expected.entry(a.clone()).or_default() += cost;
                                prop_assert_eq!(
                                    remaining[a],
                                    caps.get(a).map(|c| Rho::from_nano(c.as_nano() - expected[a]))
                                );
                            }
                        }
                    }
                }
            }
            for a in &all_accounts {
                let spent = ledger.spent(a).as_nano();
                prop_assert_eq!(spent, expected.get(a).copied().unwrap_or(0), "account {}", a);
                if let Some(cap) = caps.get(a) {
                    prop_assert!(spent <= cap.as_nano(), "{} spent {} over cap {}", a, spent, cap);
                }
            }
        }
        // And a final restart reads back exactly the same totals.
        drop(ledger);
        let (reopened, _) = FileLedger::open(&path, caps.clone()).unwrap();
        for a in &all_accounts {
            prop_assert_eq!(reopened.spent(a).as_nano(), expected.get(a).copied().unwrap_or(0));
        }
    }
}
