//! The privacy-budget ledger: durable, all-or-nothing, charged before anything is released.
//!
//! A charge names a request id, a cost and the accounts it debits (for example `global`,
//! `tenant/dev`, `model/digits-ensemble`): either every account has room and all are debited
//! in one appended, fsynced line, or nothing is written and the charge is refused naming the
//! account that is short. A request id already on the ledger is never charged again.
//!
//! On disk (`ledger.jsonl`): one JSON object per line,
//! `{"request_id":"…","cost_nano":N,"accounts":["…",…]}`, appended and synced with
//! `File::sync_data` before [`Ledger::charge`] returns. Totals are recomputed from the lines at
//! open, so the spent total on disk is, by construction, the sum of every charge that returned.
//! A crash can leave at most a torn last line (no newline, or unparsable): it was never
//! acknowledged, so [`FileLedger::open`] truncates it and says so. Damage anywhere else is
//! refused, because guessing could refill a budget.
//!
//! The [`Ledger`] trait is what a shared (PostgreSQL) ledger for several enclave replicas will
//! implement later.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Rho;

/// The account shared by every tenant and model: the global cap.
pub const GLOBAL: &str = "global";

/// The account of a tenant.
pub fn tenant_account(id: &str) -> String {
    format!("tenant/{id}")
}

/// The account of a model.
pub fn model_account(id: &str) -> String {
    format!("model/{id}")
}

/// The result of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Debited and on disk; what remains in each account afterwards (`None`: uncapped).
    Charged {
        /// Remaining budget per account.
        remaining: BTreeMap<String, Option<Rho>>,
    },
    /// This request id was charged before; nothing was debited now.
    Duplicate {
        /// The cost recorded the first time.
        cost: Rho,
    },
    /// An account lacks room; nothing was debited.
    Refused {
        /// The account that is short.
        account: String,
        /// What the charge needed.
        cost: Rho,
        /// What the account has left.
        remaining: Rho,
    },
}

/// Why the ledger failed (as opposed to refusing a charge).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading or writing the ledger file failed; the charge did not happen.
    #[error("ledger {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line before the last is damaged: refuse to guess.
    #[error("ledger {path} line {line}: {reason}; restore the ledger from a backup")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A total would exceed the representable range.
    #[error("ledger total overflow in account {0}")]
    Overflow(String),
}

/// A budget ledger.
pub trait Ledger: Send {
    /// Charges `cost` to every account in `accounts`, all or nothing, durably.
    fn charge(
        &mut self,
        request_id: &str,
        accounts: &[String],
        cost: Rho,
    ) -> Result<Charge, LedgerError>;
    /// Total spent by an account.
    fn spent(&self, account: &str) -> Rho;
    /// The account's cap, if any.
    fn cap(&self, account: &str) -> Option<Rho>;
    /// What remains under the cap (`None`: uncapped).
    fn remaining(&self, account: &str) -> Option<Rho> {
        self.cap(account)
            .map(|c| c.checked_sub(self.spent(account)).unwrap_or(Rho::ZERO))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    request_id: String,
    cost_nano: u64,
    accounts: Vec<String>,
}

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Every line intact.
    Clean,
    /// A torn last line of this many bytes (an unacknowledged charge) was removed.
    TruncatedTornTail(u64),
}

/// The single-machine ledger: an append-only, fsynced file.
#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    file: File,
    caps: BTreeMap<String, Rho>,
    spent: HashMap<String, Rho>,
    charged: HashMap<String, Rho>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileLedger {
    /// Opens (or creates) the ledger at `path` with per-account caps.
    pub fn open(
        path: &Path,
        caps: BTreeMap<String, Rho>,
    ) -> Result<(FileLedger, Recovery), LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(path))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let mut spent: HashMap<String, Rho> = HashMap::new();
        let mut charged = HashMap::new();
        let mut pos = 0usize;
        let mut line_no = 0usize;
        let mut recovery = Recovery::Clean;
        while pos < bytes.len() {
            line_no += 1;
            let end = bytes[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let parsed = end.ok_or_else(|| "no newline".to_string()).and_then(|e| {
                serde_json::from_slice::<Line>(&bytes[pos..e]).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(line) => {
                    let cost = Rho::from_nano(line.cost_nano);
                    for a in &line.accounts {
                        let total = spent.entry(a.clone()).or_default();
                        *total = total
                            .checked_add(cost)
                            .ok_or_else(|| LedgerError::Overflow(a.clone()))?;
                    }
                    charged.insert(line.request_id, cost);
                    pos = end.unwrap_or(bytes.len()) + 1;
                }
                Err(reason) => {
                    let is_last = end.is_none_or(|e| e + 1 >= bytes.len());
                    if !is_last {
                        return Err(LedgerError::Corrupt {
                            path: path.to_path_buf(),
                            line: line_no,
                            reason,
                        });
                    }
                    let torn = (bytes.len() - pos) as u64;
                    file.set_len(pos as u64).map_err(io(path))?;
                    file.sync_all().map_err(io(path))?;
                    file.seek(SeekFrom::End(0)).map_err(io(path))?;
                    recovery = Recovery::TruncatedTornTail(torn);
                    break;
                }
            }
        }
        Ok((
            FileLedger {
                path: path.to_path_buf(),
                file,
                caps,
                spent,
                charged,
            },
            recovery,
        ))
    }
}

impl Ledger for FileLedger {
    fn charge(
        &mut self,
        request_id: &str,
        accounts: &[String],
        cost: Rho,
    ) -> Result<Charge, LedgerError> {
        if let Some(&first) = self.charged.get(request_id) {
            return Ok(Charge::Duplicate { cost: first });
        }
        // All or nothing: check every account before writing anything.
        let mut after = BTreeMap::new();
        for a in accounts {
            let total = self
                .spent(a)
                .checked_add(cost)
                .ok_or_else(|| LedgerError::Overflow(a.clone()))?;
            if let Some(cap) = self.cap(a) {
                if total > cap {
                    return Ok(Charge::Refused {
                        account: a.clone(),
                        cost,
                        remaining: self.remaining(a).unwrap_or(Rho::ZERO),
                    });
                }
            }
            after.insert(a.clone(), total);
        }
        let line = Line {
            request_id: request_id.to_string(),
            cost_nano: cost.as_nano(),
            accounts: accounts.to_vec(),
        };
        let mut text = serde_json::to_vec(&line).expect("ledger line serialises");
        text.push(b'\n');
        // INVARIANT: the charge is on disk (written and synced) before it is acknowledged.
        self.file.write_all(&text).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.charged.insert(request_id.to_string(), cost);
        let mut remaining = BTreeMap::new();
        for (a, total) in after {
            self.spent.insert(a.clone(), total);
            let left = self
                .cap(&a)
                .map(|c| c.checked_sub(total).unwrap_or(Rho::ZERO));
            remaining.insert(a, left);
        }
        Ok(Charge::Charged { remaining })
    }

    fn spent(&self, account: &str) -> Rho {
        self.spent.get(account).copied().unwrap_or(Rho::ZERO)
    }

    fn cap(&self, account: &str) -> Option<Rho> {
        self.caps.get(account).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> BTreeMap<String, Rho> {
        BTreeMap::from([
            (GLOBAL.to_string(), Rho::from_nano(100)),
            (tenant_account("a"), Rho::from_nano(60)),
            (tenant_account("b"), Rho::from_nano(60)),
        ])
    }

    fn accounts(t: &str) -> Vec<String> {
        vec![GLOBAL.into(), tenant_account(t), model_account("m")]
    }

    #[test]
    fn all_or_nothing_caps_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let (mut l, r) = FileLedger::open(&path, caps()).unwrap();
        assert_eq!(r, Recovery::Clean);
        let c = Rho::from_nano(25);
        assert!(matches!(
            l.charge("r1", &accounts("a"), c).unwrap(),
            Charge::Charged { .. }
        ));
        assert!(matches!(
            l.charge("r2", &accounts("a"), c).unwrap(),
            Charge::Charged { .. }
        ));
        // Tenant a has 10 left: refused, nothing written.
        match l.charge("r3", &accounts("a"), c).unwrap() {
            Charge::Refused {
                account, remaining, ..
            } => {
                assert_eq!(account, tenant_account("a"));
                assert_eq!(remaining, Rho::from_nano(10));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.spent(GLOBAL), Rho::from_nano(50));
        // Duplicate request id: charged once.
        assert_eq!(
            l.charge("r1", &accounts("a"), c).unwrap(),
            Charge::Duplicate { cost: c }
        );
        // Colluding tenants add up under the global cap: b can spend 50 more, not 60.
        assert!(matches!(
            l.charge("r4", &accounts("b"), c).unwrap(),
            Charge::Charged { .. }
        ));
        assert!(matches!(
            l.charge("r5", &accounts("b"), c).unwrap(),
            Charge::Charged { .. }
        ));
        match l.charge("r6", &accounts("b"), Rho::from_nano(1)).unwrap() {
            Charge::Refused { account, .. } => assert_eq!(account, GLOBAL),
            other => panic!("{other:?}"),
        }
        drop(l);
        // A restart reads back exactly the spent totals and the charged ids.
        let (l, _) = FileLedger::open(&path, caps()).unwrap();
        assert_eq!(l.spent(GLOBAL), Rho::from_nano(100));
        assert_eq!(l.spent(&tenant_account("a")), Rho::from_nano(50));
        assert_eq!(l.spent(&model_account("m")), Rho::from_nano(100));
        assert_eq!(l.remaining(&tenant_account("b")), Some(Rho::from_nano(10)));
        assert_eq!(l.remaining(&model_account("m")), None);
    }

    #[test]
    fn torn_tail_is_truncated_but_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let (mut l, _) = FileLedger::open(&path, caps()).unwrap();
        l.charge("r1", &accounts("a"), Rho::from_nano(5)).unwrap();
        l.charge("r2", &accounts("a"), Rho::from_nano(5)).unwrap();
        drop(l);
        let good = std::fs::read(&path).unwrap();
        // Torn: half of a third line.
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"request_id\":\"r3\",\"cost");
        std::fs::write(&path, &torn).unwrap();
        let (l, r) = FileLedger::open(&path, caps()).unwrap();
        assert_eq!(r, Recovery::TruncatedTornTail(24));
        assert_eq!(l.spent(GLOBAL), Rho::from_nano(10));
        drop(l);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        // Damage in the first line: refused.
        let mut bad = good.clone();
        bad[3] = b'#';
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            FileLedger::open(&path, caps()),
            Err(LedgerError::Corrupt { line: 1, .. })
        ));
    }
}
