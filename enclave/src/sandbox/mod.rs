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
//! 2. rlimits: no core dumps, a file-descriptor cap, the policy's optional address-space cap;
//!    every inherited descriptor closed — [`limits`];
//! 3. a landlock ruleset: read-only policy, model files and simulated key root; read-write audit
//!    and socket directories; nothing else; no TCP bind or connect; no abstract Unix sockets or
//!    signals outside the sandbox — [`landlock`];
//! 4. new user, network, IPC and mount namespaces: no network interface at all —
//!    [`namespaces`];
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
//!
//! The engine zygote and its workers ([`crate::worker`]) are a second role ([`Role::EngineWorker`])
//! with more barriers ([`Barrier::ENGINE_WORKER`]: an empty root and a PID namespace) and a
//! tighter allow-list; the broker's status line carries theirs after `; `.

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
    /// Cap on the process's address space in MiB (`RLIMIT_AS`); `None`: no cap.
    pub address_space_mb: Option<u64>,
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
    /// `RLIMIT_CORE` 0, the `RLIMIT_NOFILE` cap and, when set, the `RLIMIT_AS` cap.
    Rlimits,
    /// Every descriptor inherited from the parent (all but stdio) is closed.
    InheritedFds,
    /// Landlock file-system rules (ABI 1).
    LandlockFs,
    /// Landlock TCP bind/connect rules (ABI 4).
    LandlockNet,
    /// Landlock scoping of abstract Unix sockets and signals (ABI 6).
    LandlockScope,
    /// New user, network, IPC and mount namespaces.
    Namespaces,
    /// Engine worker only: a mount namespace whose root is an empty, read-only tmpfs.
    MountNamespace,
    /// Engine worker only: a PID namespace holding nothing but the engine's own processes.
    PidNamespace,
    /// The seccomp-bpf allow-list.
    Seccomp,
}

/// Which process a [`SandboxStatus`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The enclave process itself (the broker: keys, audit log, ledger, gateway connection).
    Broker,
    /// The engine zygote and the workers it forks (models and tensors only).
    EngineWorker,
}

impl Role {
    /// The barriers this role must have for a complete sandbox, in the order they apply.
    pub fn barriers(self) -> &'static [Barrier] {
        match self {
            Role::Broker => &Barrier::ALL,
            Role::EngineWorker => &Barrier::ENGINE_WORKER,
        }
    }
}

impl Barrier {
    /// Every barrier of the broker, in the order [`lock_down`] applies them.
    pub const ALL: [Barrier; 9] = [
        Barrier::NoNewPrivs,
        Barrier::NotDumpable,
        Barrier::Rlimits,
        Barrier::InheritedFds,
        Barrier::LandlockFs,
        Barrier::LandlockNet,
        Barrier::LandlockScope,
        Barrier::Namespaces,
        Barrier::Seccomp,
    ];

    /// Every barrier of the engine zygote and its workers, in the order they apply
    /// (`crate::worker`): namespaces and the empty root before landlock, which forbids mounts.
    pub const ENGINE_WORKER: [Barrier; 11] = [
        Barrier::NoNewPrivs,
        Barrier::NotDumpable,
        Barrier::Rlimits,
        Barrier::InheritedFds,
        Barrier::Namespaces,
        Barrier::MountNamespace,
        Barrier::PidNamespace,
        Barrier::LandlockFs,
        Barrier::LandlockNet,
        Barrier::LandlockScope,
        Barrier::Seccomp,
    ];

    /// The stable name used in messages and in [`SandboxStatus::describe`].
    pub fn name(self) -> &'static str {
        match self {
            Barrier::NoNewPrivs => "no_new_privs",
            Barrier::NotDumpable => "not_dumpable",
            Barrier::Rlimits => "rlimits",
            Barrier::InheritedFds => "inherited_fds",
            Barrier::LandlockFs => "landlock_fs",
            Barrier::LandlockNet => "landlock_net",
            Barrier::LandlockScope => "landlock_scope",
            Barrier::Namespaces => "namespaces",
            Barrier::MountNamespace => "mount_ns",
            Barrier::PidNamespace => "pid_ns",
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
    /// Which process this describes.
    pub role: Role,
    /// The address-space cap in MiB, if any (`RLIMIT_AS`).
    pub address_space_mb: Option<u64>,
    /// The engine worker's own status line ([`Role::EngineWorker`]'s `describe`), as its zygote
    /// reported it when it locked down; part of the broker's line.
    pub worker: Option<String>,
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
            role: Role::Broker,
            address_space_mb: None,
            worker: None,
            locked: false,
            in_force: Vec::new(),
        }
    }

    /// The status of an engine process about to lock down (nothing in force yet).
    pub(crate) fn engine(mode: SandboxMode, address_space_mb: u64) -> SandboxStatus {
        SandboxStatus {
            mode,
            landlock_abi: 0,
            seccomp_filter_sha256: seccomp::engine_filter_sha256(),
            role: Role::EngineWorker,
            address_space_mb: Some(address_space_mb),
            worker: None,
            locked: true,
            in_force: Vec::new(),
        }
    }

    /// Whether `barrier` is in force.
    pub fn has(&self, barrier: Barrier) -> bool {
        self.in_force.contains(&barrier)
    }

    /// Whether every barrier of this process's role is in force.
    pub fn is_complete(&self) -> bool {
        self.role.barriers().iter().all(|b| self.has(*b))
    }

    /// Whether the seccomp allow-list is installed.
    pub fn seccomp(&self) -> bool {
        self.has(Barrier::Seccomp)
    }

    /// The barriers that are not in force.
    pub fn missing(&self) -> Vec<Barrier> {
        self.role
            .barriers()
            .iter()
            .copied()
            .filter(|b| !self.has(*b))
            .collect()
    }

    /// One stable line for logs and for binding into attestation evidence:
    /// `enforce: sandbox/v1 no_new_privs=on not_dumpable=on rlimits=on inherited_fds=on
    /// landlock_abi=7 landlock_fs=on landlock_net=on landlock_scope=on namespaces=on seccomp=on
    /// seccomp_filter=<64 hex>; worker/v1 no_new_privs=on … mount_ns=on pid_ns=on … seccomp=on
    /// seccomp_filter=<64 hex> address_space_mb=N`.
    ///
    /// The broker's line starts with the mode (`enforce` or `best-effort`; an `enforce` status
    /// exists only when every barrier of both processes is in force), or is exactly `none` before
    /// lock-down; after `; ` comes the engine worker's line (its own barriers and filter), once
    /// the worker has locked down. Keys keep this order; values are `on`/`off`, integers or
    /// lowercase hex.
    pub fn describe(&self) -> String {
        if !self.locked {
            return "none".to_string();
        }
        let mut s = match self.role {
            Role::Broker => format!("{}: sandbox/v1", self.mode.as_str()),
            Role::EngineWorker => "worker/v1".to_string(),
        };
        for &b in self.role.barriers() {
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
        if let Some(mb) = self.address_space_mb {
            s.push_str(&format!(" address_space_mb={mb}"));
        }
        if let Some(worker) = &self.worker {
            s.push_str("; ");
            s.push_str(worker);
        }
        s
    }

    pub(crate) fn record(
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
    status.address_space_mb = plan.address_space_mb;
    status.record(
        Barrier::Rlimits,
        limits::rlimits(plan.max_open_files, plan.address_space_mb),
    )?;
    // Descriptors opened by this program carry FD_CLOEXEC (std opens everything so); the ones
    // without it were inherited across the exec that started us, and none of them is needed.
    status.record(Barrier::InheritedFds, limits::close_inherited_fds(&[]))?;
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
pub(crate) fn quiet_panics() {
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
                "enforce: sandbox/v1 no_new_privs=on not_dumpable=on rlimits=on inherited_fds=on \
                 landlock_abi=7 landlock_fs=on landlock_net=on landlock_scope=on namespaces=on \
                 seccomp=on seccomp_filter={}",
                "ab".repeat(32)
            )
        );
        // With the engine worker's line, as the broker binds it.
        let mut w = SandboxStatus::engine(SandboxMode::Enforce, 4096);
        w.landlock_abi = 7;
        w.seccomp_filter_sha256 = [0xcd; 32];
        w.in_force = Barrier::ENGINE_WORKER.to_vec();
        assert!(w.is_complete());
        assert_eq!(
            w.describe(),
            format!(
                "worker/v1 no_new_privs=on not_dumpable=on rlimits=on inherited_fds=on \
                 namespaces=on mount_ns=on pid_ns=on landlock_abi=7 landlock_fs=on \
                 landlock_net=on landlock_scope=on seccomp=on seccomp_filter={} \
                 address_space_mb=4096",
                "cd".repeat(32)
            )
        );
        s.worker = Some(w.describe());
        assert!(s.describe().contains("seccomp_filter=abab"));
        assert!(s.describe().contains("; worker/v1 no_new_privs=on "));
        s.worker = None;
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
        // The engine worker: no file system, no network, no processes, no signals at all.
        let worker = seccomp::engine_allowed_syscalls("engine_worker");
        assert!(worker.len() > 10, "{worker:?}");
        for forbidden in [
            "open",
            "openat",
            "openat2",
            "socket",
            "connect",
            "bind",
            "sendmsg",
            "recvmsg",
            "execve",
            "execveat",
            "clone",
            "clone3",
            "fork",
            "vfork",
            "ptrace",
            "mount",
            "kill",
            "process_vm_readv",
            "process_vm_writev",
            "seccomp",
            "prctl",
            "unshare",
            "setns",
            "statx",
            "newfstatat",
            "dup3",
            "close_range",
            "wait4",
        ] {
            assert!(
                !worker.iter().any(|n| n == forbidden),
                "{forbidden} is allowed in the engine worker"
            );
        }
        let zygote = seccomp::engine_allowed_syscalls("engine_zygote");
        for forbidden in [
            "open", "openat", "socket", "connect", "execve", "ptrace", "mount",
        ] {
            assert!(
                !zygote.iter().any(|n| n == forbidden),
                "{forbidden} is allowed in the engine zygote"
            );
        }
        if cfg!(target_arch = "x86_64") {
            assert_ne!(seccomp::filter_sha256(), [0; 32]);
        }
    }
}
