//! Crash safety of the ledger, for real: a child process charges in a loop and reports each
//! charge only after `charge` returned; the parent kills it with SIGKILL at a random moment,
//! 100 times over the same ledger file. After every kill the reopened ledger holds every
//! acknowledged charge, never exceeds its cap, and its totals equal the sum of its lines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cloister_privacy::ledger::{tenant_account, FileLedger, Ledger, GLOBAL};
use cloister_privacy::Rho;

const CHILD_ENV: &str = "CLOISTER_LEDGER_CRASH_CHILD";

fn caps() -> BTreeMap<String, Rho> {
    BTreeMap::from([(GLOBAL.to_string(), Rho::from_nano(1_000_000))])
}

/// The child: charge forever, acknowledging each charge on stdout once it returned.
fn child(path: &str, trial: u64) {
    let (mut ledger, _) = FileLedger::open(path.as_ref(), caps()).unwrap();
    let accounts = vec![GLOBAL.to_string(), tenant_account("t")];
    for i in 0.. {
        let id = format!("{trial}-{i}");
        let outcome = ledger.charge(&id, &accounts, Rho::from_nano(7)).unwrap();
        if let cloister_privacy::ledger::Charge::Charged { .. } = outcome {
            println!("{id}");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_charge() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (path, trial) = spec.split_once('|').unwrap();
        child(path, trial.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut seed: u64 = 0x0DDC0FFEE;
    for trial in 0..100u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait_us = 200 + (seed >> 40) % 20_000;
        let mut c = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_at_random_moments_loses_no_acknowledged_charge",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{trial}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(wait_us));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let out = BufReader::new(c.stdout.take().unwrap());
        acked.extend(
            out.lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with(&format!("{trial}-"))),
        );

        // Reopen (repairing a torn tail if the kill landed mid-write) and check.
        let (ledger, _) = FileLedger::open(&path, caps()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count() as u64;
        assert_eq!(
            ledger.spent(GLOBAL),
            Rho::from_nano(7 * lines),
            "totals = sum of lines"
        );
        assert!(
            ledger.spent(GLOBAL) <= Rho::from_nano(1_000_000),
            "cap exceeded"
        );
        for id in &acked {
            assert!(
                text.contains(&format!("\"request_id\":\"{id}\"")),
                "trial {trial}: acknowledged charge {id} is not on disk"
            );
        }
    }
    assert!(
        acked.len() > 100,
        "the children charged too little to test anything: {}",
        acked.len()
    );
}
