//! The enclave's sandbox: what a compromised enclave process can still do.
//!
//! The enclave parses untrusted bytes (sealed requests, tensors, model files) with a large body of
//! code. If any of it is exploited, the damage must stop here: no network, no files beyond the
//! policy's, no new programs or processes, no signals or debugging of other processes.
//!
//! [`lock_down`] applies, once, after start-up and before the async runtime starts a thread or the
//! first request is read, and in this order:
//!
//! 1. `PR_SET_NO_NEW_PRIVS` (no privilege gain through exec) and not-dumpable (no core file,
//!    no ptrace attach or `/proc/PID/mem` by same-user processes) — [`limits`];
//! 2. rlimits: no core dumps, a file-descriptor cap — [`limits`];
//! 3. a landlock ruleset: read-only policy, model files and simulated key root; read-write audit
//!    and socket directories; nothing else; no TCP bind or connect; no abstract Unix sockets or
//!    signals outside the sandbox — [`landlock`];
//! 4. new user, network and IPC namespaces: no network interface at all — [`namespaces`];
//! 5. a seccomp-bpf allow-list (`policies/seccomp/enclave.json`, compiled at build time) whose
//!    default action kills the process, synchronised to every thread — [`seccomp`]. Just before
//!    it, the panic hook is replaced by one that needs no symbolisation, so a caught panic stays
//!    survivable under the allow-list.
//!
//! Landlock before seccomp: the landlock syscalls are not on the allow-list. Landlock (ABI < 8)
//! confines only the calling thread and its future children, so it must run while the process is
//! single-threaded; [`lock_down`] checks that and refuses otherwise.
//!
//! The policy's `[sandbox] mode` decides what a missing barrier means: `enforce` stops start-up
//! with an error naming it, `best-effort` goes on and [`SandboxStatus::describe`] says exactly
//! which barriers are in force.

pub mod landlock;
pub mod limits;
pub mod namespaces;
pub mod seccomp;

use std::fmt;
use std::path::PathBuf;

pub use cloister_policy::SandboxMode;

/// Everything the sandbox needs to know, decided before lock-down.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    /// What a missing barrier means.
    pub mode: SandboxMode,
    /// Files and directories the enclave may read after lock-down (policy, models, sim root).
    pub read_only: Vec<PathBuf>,
    /// Directories the enclave may read and write after lock-down (audit log, socket directory).
    pub read_write: Vec<PathBuf>,
    /// Cap on open file descriptors (soft and hard), never raised above the current hard limit.
    pub max_open_files: u64,
}

/// The default file-descriptor cap: the gateway opens one connection per request in flight.
pub const DEFAULT_MAX_OPEN_FILES: u64 = 4096;

/// A barrier of the sandbox, named in errors and in [`SandboxStatus::describe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// `PR_SET_DUMPABLE 0`.
    NotDumpable,
    /// `RLIMIT_CORE` 0 and the `RLIMIT_NOFILE` cap.
    Rlimits,
    /// Landlock file-system rules (ABI 1).
    LandlockFs,
    /// Landlock TCP bind/connect rules (ABI 4).
    LandlockNet,
    /// Landlock scoping of abstract Unix sockets and signals (ABI 6).
    LandlockScope,
    /// New user, network and IPC namespaces.
    Namespaces,
    /// The seccomp-bpf allow-list.
    Seccomp,
}

impl Barrier {
    /// Every barrier, in the order [`lock_down`] applies them.
    pub const ALL: [Barrier; 8] = [
        Barrier::NoNewPrivs,
        Barrier::NotDumpable,
        Barrier::Rlimits,
        Barrier::LandlockFs,
        Barrier::LandlockNet,
        Barrier::LandlockScope,
        Barrier::Namespaces,
        Barrier::Seccomp,
    ];

    /// The stable name used in messages and in [`SandboxStatus::describe`].
    pub fn name(self) -> &'static str {
        match self {
            Barrier::NoNewPrivs => "no_new_privs",
            Barrier::NotDumpable => "not_dumpable",
            Barrier::Rlimits => "rlimits",
            Barrier::LandlockFs => "landlock_fs",
            Barrier::LandlockNet => "landlock_net",
            Barrier::LandlockScope => "landlock_scope",
            Barrier::Namespaces => "namespaces",
            Barrier::Seccomp => "seccomp",
        }
    }
}

impl fmt::Display for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A barrier the kernel could not provide (or that failed to apply).
#[derive(Debug, thiserror::Error)]
#[error(
    "sandbox barrier `{barrier}` is not available: {reason}; fix: run on a kernel that provides \
     it, or set `[sandbox] mode = \"best-effort\"` in the policy to start without it"
)]
pub struct SandboxError {
    /// Which barrier.
    pub barrier: Barrier,
    /// Why.
    pub reason: String,
}

impl SandboxError {
    pub(crate) fn new(barrier: Barrier, reason: impl Into<String>) -> SandboxError {
        SandboxError {
            barrier,
            reason: reason.into(),
        }
    }
}

/// Which barriers are in force. Built only by [`lock_down`] (or [`SandboxStatus::unconfined`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    /// The policy's mode.
    pub mode: SandboxMode,
    /// The landlock ABI version the kernel reports (0: no landlock).
    pub landlock_abi: u32,
    /// SHA-256 of the embedded seccomp BPF programs (what the allow-list compiled to).
    pub seccomp_filter_sha256: [u8; 32],
    locked: bool,
    in_force: Vec<Barrier>,
}

impl SandboxStatus {
    /// The status of a process that has not locked down.
    pub fn unconfined(mode: SandboxMode) -> SandboxStatus {
        SandboxStatus {
            mode,
            landlock_abi: 0,
            seccomp_filter_sha256: seccomp::filter_sha256(),
            locked: false,
            in_force: Vec::new(),
        }
    }

    /// Whether `barrier` is in force.
    pub fn has(&self, barrier: Barrier) -> bool {
        self.in_force.contains(&barrier)
    }

    /// Whether every barrier is in force.
    pub fn is_complete(&self) -> bool {
        Barrier::ALL.iter().all(|b| self.has(*b))
    }

    /// Whether the seccomp allow-list is installed.
    pub fn seccomp(&self) -> bool {
        self.has(Barrier::Seccomp)
    }

    /// The barriers that are not in force.
    pub fn missing(&self) -> Vec<Barrier> {
        Barrier::ALL
            .iter()
            .copied()
            .filter(|b| !self.has(*b))
            .collect()
    }

    /// One stable line for logs and for binding into attestation evidence:
    /// `enforce: sandbox/v1 no_new_privs=on not_dumpable=on rlimits=on landlock_abi=7
    /// landlock_fs=on landlock_net=on landlock_scope=on namespaces=on seccomp=on
    /// seccomp_filter=<64 hex>`.
    ///
    /// It starts with the mode (`enforce` or `best-effort`; an `enforce` status exists only when
    /// every barrier is in force), or is exactly `none` before lock-down. Keys keep this order;
    /// values are `on`/`off`, integers or lowercase hex.
    pub fn describe(&self) -> String {
        if !self.locked {
            return "none".to_string();
        }
        let mut s = format!("{}: sandbox/v1", self.mode.as_str());
        for b in Barrier::ALL {
            if b == Barrier::LandlockFs {
                s.push_str(&format!(" landlock_abi={}", self.landlock_abi));
            }
            let on = if self.has(b) { "on" } else { "off" };
            s.push_str(&format!(" {}={on}", b.name()));
        }
        s.push_str(&format!(
            " seccomp_filter={}",
            hex::encode(self.seccomp_filter_sha256)
        ));
        s
    }

    fn record(
        &mut self,
        barrier: Barrier,
        result: Result<(), SandboxError>,
    ) -> Result<(), SandboxError> {
        match result {
            Ok(()) => {
                self.in_force.push(barrier);
                Ok(())
            }
            Err(e) if self.mode == SandboxMode::Enforce => Err(e),
            Err(e) => {
                tracing::warn!(barrier = %barrier, reason = %e.reason, "sandbox barrier NOT in force (best-effort mode)");
                Ok(())
            }
        }
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Applies every barrier, in order, to this process; see the module docs.
///
/// Must be called while the process has exactly one thread (before any runtime starts): landlock
/// confines only the calling thread. In `enforce` mode the first barrier that cannot be applied is
/// returned as an error (the caller must then exit: some barriers may already be in force); in
/// `best-effort` mode the result says which barriers are in force.
pub fn lock_down(plan: &SandboxPlan) -> Result<SandboxStatus, SandboxError> {
    let threads = limits::thread_count();
    if threads != Some(1) {
        // A programming error in either mode: the other threads would escape landlock.
        return Err(SandboxError::new(
            Barrier::LandlockFs,
            format!(
                "lock-down must run before any other thread starts, but the process has {} \
                 threads",
                threads.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string())
            ),
        ));
    }
    let mut status = SandboxStatus::unconfined(plan.mode);
    status.locked = true;
    status.record(Barrier::NoNewPrivs, limits::no_new_privs())?;
    status.record(Barrier::NotDumpable, limits::not_dumpable())?;
    status.record(Barrier::Rlimits, limits::rlimits(plan.max_open_files))?;
    let ll = landlock::restrict(plan)?;
    status.landlock_abi = ll.abi;
    for (barrier, result) in ll.results {
        status.record(barrier, result)?;
    }
    status.record(Barrier::Namespaces, namespaces::enter())?;
    quiet_panics();
    status.record(Barrier::Seccomp, seccomp::install())?;
    Ok(status)
}

/// Replaces the panic hook with one that prints only the message and location. The default hook
/// symbolises a backtrace when `RUST_BACKTRACE` is set, which calls `getcwd` and `readlink` and
/// opens the executable: the allow-list refuses those, so a panic the runtime would catch (a
/// request becomes an `internal` error) would instead kill the enclave.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let thread = std::thread::current();
        eprintln!(
            "thread '{}' panicked at {location}: {message} (no backtrace: the sandbox forbids \
             symbolising one)",
            thread.name().unwrap_or("<unnamed>")
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_is_one_stable_line() {
        let mut s = SandboxStatus::unconfined(SandboxMode::Enforce);
        assert_eq!(s.describe(), "none");
        s.locked = true;
        s.landlock_abi = 7;
        s.seccomp_filter_sha256 = [0xab; 32];
        s.in_force = Barrier::ALL.to_vec();
        assert!(s.is_complete());
        assert_eq!(
            s.describe(),
            format!(
                "enforce: sandbox/v1 no_new_privs=on not_dumpable=on rlimits=on landlock_abi=7 \
                 landlock_fs=on landlock_net=on landlock_scope=on namespaces=on seccomp=on \
                 seccomp_filter={}",
                "ab".repeat(32)
            )
        );
        s.mode = SandboxMode::BestEffort;
        s.in_force.retain(|b| *b != Barrier::LandlockNet);
        let d = s.describe();
        assert!(d.starts_with("best-effort: sandbox/v1 "), "{d}");
        assert!(d.contains(" landlock_net=off "), "{d}");
        assert!(!d.contains('\n'));
        assert_eq!(s.missing(), vec![Barrier::LandlockNet]);
    }

    #[test]
    fn the_allow_list_is_embedded_and_names_no_dangerous_call() {
        let names = seccomp::allowed_syscalls();
        assert!(names.len() > 30, "{names:?}");
        for forbidden in [
            "socket",
            "connect",
            "bind",
            "execve",
            "execveat",
            "fork",
            "vfork",
            "ptrace",
            "mount",
            "kill",
            "setrlimit",
            "prlimit64",
            "seccomp",
            "unshare",
            "setns",
            "statx",
            "newfstatat",
        ] {
            assert!(
                !names.iter().any(|n| n == forbidden),
                "{forbidden} is allowed"
            );
        }
        if cfg!(target_arch = "x86_64") {
            assert_ne!(seccomp::filter_sha256(), [0; 32]);
        }
    }
}
