//! Group commit for concurrent writers: many request threads each need "my record is on disk"
//! before they release a response, and one `fsync` per record caps the log at a few hundred
//! records per second on ordinary disks. [`SharedLog::commit`] queues the record; the first
//! waiting thread becomes the leader, writes every queued record with one write and one
//! `fsync` ([`AuditLog::append_batch_hashes`]), and hands each waiter its index and hash.
//! While the leader syncs, new arrivals queue up for the next batch, so the batch size adapts to
//! the load with no timer and no added latency when the log is idle.
//!
//! The durability promise is unchanged: `commit` returns `Ok` only after the record is synced.
//!
//! [`SharedLog::commit_signed`] also hands each waiter a checkpoint of the log *as the batch left
//! it* — covering the waiter's own record — signed once per batch with the enclave key and not
//! written to `checkpoints.log`. The enclave puts it in the response, so a client holds a signed
//! root that includes its record and can later demand an inclusion proof against it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::checkpoint::Checkpoint;
use crate::log::AuditLog;
use crate::record::AuditRecord;
use crate::AuditError;

type Outcome = Result<Committed, String>;

/// Where a committed record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its index.
    pub index: u64,
    /// Its chain hash.
    pub hash: [u8; 32],
    /// A signed checkpoint of the log right after the batch that held it (so covering it);
    /// `None` when the log has no signer.
    pub head: Option<Checkpoint>,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    pending: Vec<(u64, AuditRecord)>,
    results: HashMap<u64, Outcome>,
    leader: bool,
    maintenance_failure: Option<String>,
}

/// An [`AuditLog`] shared by threads, with group commit.
pub struct SharedLog {
    queue: Mutex<Queue>,
    done: Condvar,
    log: Mutex<AuditLog>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog").finish_non_exhaustive()
    }
}

impl SharedLog {
    /// Wraps an opened log.
    pub fn new(log: AuditLog) -> SharedLog {
        SharedLog {
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
            log: Mutex::new(log),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `record` durably (possibly in one batch with other threads' records) and
    /// returns its index and chain hash.
    pub fn commit(&self, record: AuditRecord) -> Result<(u64, [u8; 32]), AuditError> {
        self.commit_signed(record).map(|c| (c.index, c.hash))
    }

    /// [`SharedLog::commit`], plus a signed checkpoint covering the record (see the module
    /// docs).
    pub fn commit_signed(&self, record: AuditRecord) -> Result<Committed, AuditError> {
        let mut q = self.queue();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, record));
        loop {
            if let Some(result) = q.results.remove(&ticket) {
                return result.map_err(AuditError::GroupCommit);
            }
            if !q.leader {
                q.leader = true;
                let batch = std::mem::take(&mut q.pending);
                drop(q);
                let (tickets, records): (Vec<u64>, Vec<AuditRecord>) = batch.into_iter().unzip();
                let (written, failure) = self.with_log(|log| {
                    let first = log.next_index();
                    let written = log
                        .append_batch_hashes(&records)
                        .map(|h| (first, h, log.sign_head()));
                    let failure = log.checkpoint_failure().or(log.rotation_failure());
                    (written, failure.map(str::to_string))
                });
                q = self.queue();
                q.maintenance_failure = failure;
                match written {
                    Ok((first, hashes, head)) => {
                        for (i, (t, hash)) in tickets.into_iter().zip(hashes).enumerate() {
                            q.results.insert(
                                t,
                                Ok(Committed {
                                    index: first + i as u64,
                                    hash,
                                    head: head.clone(),
                                }),
                            );
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for t in tickets {
                            q.results.insert(t, Err(msg.clone()));
                        }
                    }
                }
                q.leader = false;
                self.done.notify_all();
                continue;
            }
            q = self.done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The last failure to write a periodic checkpoint or to start a new segment, if it has
    /// not since succeeded (the records themselves are durable; both are retried on the next
    /// commit).
    pub fn maintenance_failure(&self) -> Option<String> {
        self.queue().maintenance_failure.clone()
    }

    /// Runs `f` on the log alone (e.g. [`AuditLog::checkpoint`] at shutdown).
    pub fn with_log<T>(&self, f: impl FnOnce(&mut AuditLog) -> T) -> T {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome as RecordOutcome;
    use std::sync::Arc;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            time_unix_ms: i,
            request_id: format!("r{i}"),
            tenant: None,
            model: None,
            model_sha256: None,
            policy_sha256: String::new(),
            outcome: RecordOutcome::Ok,
            input_digest: None,
            output_digest: None,
            privacy: None,
            latency_us: 0,
            homomorphic: None,
        }
    }

    #[test]
    fn concurrent_commits_get_distinct_indices_and_the_right_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = Arc::new(SharedLog::new(AuditLog::open(tmp.path()).unwrap()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| shared.commit(record(t * 100 + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut got: Vec<(u64, [u8; 32])> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        got.sort();
        let indices: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(indices, (0..200).collect::<Vec<_>>());
        let log = crate::read_log(tmp.path()).unwrap();
        for (e, (i, h)) in log.entries.iter().zip(&got) {
            assert_eq!((e.entry.index, e.entry.hash), (*i, *h));
        }
    }

    #[test]
    fn each_commit_gets_a_signed_head_that_covers_its_record() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let public = key.verifying_key().to_bytes();
        let log = AuditLog::open_with_signer(tmp.path(), Default::default(), key).unwrap();
        let shared = Arc::new(SharedLog::new(log));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| shared.commit_signed(record(t * 100 + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let got: Vec<Committed> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let log = crate::read_log(tmp.path()).unwrap();
        let leaves = log.leaves();
        for c in got {
            let head = c.head.expect("signed head");
            assert!(head.tree_size > c.index);
            head.verify_with(&[public]).unwrap();
            assert_eq!(
                head.root,
                crate::merkle::root(&leaves[..head.tree_size as usize])
            );
            let proof = crate::merkle::inclusion_proof(&leaves, c.index, head.tree_size).unwrap();
            crate::merkle::verify_inclusion(
                &leaves[c.index as usize],
                c.index,
                head.tree_size,
                &proof,
                &head.root,
            )
            .unwrap();
        }
    }
}
