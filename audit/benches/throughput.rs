//! Audit log throughput: records per second with an `fsync` per append, and with group commit
//! (one write + one `fsync` per batch), checkpoints signed every 1000 records as the enclave
//! does. Run: `cargo bench -p cloister-audit --bench throughput` (set `AUDIT_BENCH_DIR` to
//! measure a particular file system; the default is a temporary directory under the current
//! one, because `/tmp` is often a RAM-backed tmpfs where `fsync` costs nothing).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use cloister_audit::{AuditLog, AuditRecord, CheckpointPolicy, Outcome, SharedLog};
use ed25519_dalek::SigningKey;

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        time_unix_ms: 1_700_000_000_000 + i,
        request_id: format!("0190c5a4-7d2e-7c61-9a3b-{i:012x}"),
        tenant: Some("acme-research".into()),
        model: Some("digits".into()),
        model_sha256: Some("cd".repeat(32)),
        policy_sha256: "ab".repeat(32),
        outcome: if i % 10 == 9 {
            Outcome::Refused {
                code: "rate_limited".into(),
            }
        } else {
            Outcome::Ok
        },
        input_digest: Some("11".repeat(32)),
        output_digest: Some("22".repeat(32)),
        privacy: None,
        latency_us: 1234,
        homomorphic: None,
    }
}

fn open() -> (tempfile::TempDir, AuditLog) {
    let base = std::env::var_os("AUDIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let tmp = tempfile::tempdir_in(base).expect("bench directory");
    let log = AuditLog::open_with_signer(
        tmp.path(),
        CheckpointPolicy {
            log_id: "bench".into(),
            every_records: 1000,
            every: Duration::from_secs(60),
        },
        SigningKey::from_bytes(&[5u8; 32]),
    )
    .expect("open");
    (tmp, log)
}

/// `threads` writers, each committing its share one record at a time through group commit
/// (as concurrent enclave requests do).
fn run_concurrent(threads: u64, total: u64) -> f64 {
    let (_tmp, log) = open();
    let shared = Arc::new(SharedLog::new(log));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in 0..total / threads {
                    shared.commit(record(t * 1_000_000 + i)).expect("commit");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    shared.with_log(|log| log.checkpoint()).expect("checkpoint");
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

fn run(batch: usize, total: u64) -> f64 {
    let (_tmp, mut log) = open();
    let records: Vec<AuditRecord> = (0..total).map(record).collect();
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        if batch == 1 {
            log.append(chunk[0].clone()).expect("append");
        } else {
            log.append_batch(chunk).expect("append batch");
        }
    }
    log.checkpoint().expect("checkpoint");
    let secs = started.elapsed().as_secs_f64();
    total as f64 / secs
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 10 } else { 1 };
    println!("audit log throughput (fsync per commit, checkpoint every 1000 records)");
    for (batch, total) in [
        (1usize, 5_000u64),
        (16, 50_000),
        (64, 200_000),
        (256, 400_000),
    ] {
        let total = total / scale;
        let rate = run(batch, total);
        println!(
            "  {:>4} record(s) per fsync: {:>10.0} records/s  ({} records)",
            batch, rate, total
        );
    }
    println!("group commit (SharedLog), concurrent writers committing one record each:");
    for (threads, total) in [
        (1u64, 3_000u64),
        (16, 20_000),
        (64, 100_000),
        (256, 200_000),
    ] {
        let total = total / scale;
        let rate = run_concurrent(threads, total);
        println!(
            "  {:>4} writer thread(s):    {:>10.0} records/s  ({} records)",
            threads, rate, total
        );
    }
}
