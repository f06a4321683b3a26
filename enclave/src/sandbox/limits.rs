//! Process-wide limits applied first at lock-down: no privilege gain through `execve`
//! (`PR_SET_NO_NEW_PRIVS`, also required by landlock and seccomp), not dumpable (no core file,
//! and same-user processes can neither ptrace the enclave nor read `/proc/PID/mem`, where its
//! keys live), no core dumps (`RLIMIT_CORE` 0) and a file-descriptor cap (`RLIMIT_NOFILE`).
//!
//! `RLIMIT_NPROC` is deliberately not used: it counts the threads of every process of the user
//! (and root ignores it), so it cannot stop `fork` without also breaking the runtime's threads.
//! The seccomp allow-list forbids new processes instead (`clone` only with `CLONE_THREAD`).

use rustix::process::{getrlimit, setrlimit, DumpableBehavior, Resource, Rlimit};

use super::{Barrier, SandboxError};

/// `PR_SET_NO_NEW_PRIVS`.
pub fn no_new_privs() -> Result<(), SandboxError> {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| SandboxError::new(Barrier::NoNewPrivs, format!("prctl: {e}")))
}

/// `PR_SET_DUMPABLE 0`.
pub fn not_dumpable() -> Result<(), SandboxError> {
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| SandboxError::new(Barrier::NotDumpable, format!("prctl: {e}")))
}

/// `RLIMIT_CORE` 0; `RLIMIT_NOFILE` at most `max_open_files` (never raised).
pub fn rlimits(max_open_files: u64) -> Result<(), SandboxError> {
    let fail = |what: &str, e: rustix::io::Errno| {
        SandboxError::new(Barrier::Rlimits, format!("setrlimit({what}): {e}"))
    };
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| fail("RLIMIT_CORE", e))?;
    let hard = getrlimit(Resource::Nofile).maximum;
    let cap = hard.map_or(max_open_files, |h| h.min(max_open_files));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(cap),
            maximum: Some(cap),
        },
    )
    .map_err(|e| fail("RLIMIT_NOFILE", e))
}

/// The number of threads of this process, from `/proc/self/task`.
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|entries| entries.count())
}
