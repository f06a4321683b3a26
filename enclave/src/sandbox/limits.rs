//! Process-wide limits applied first at lock-down: no privilege gain through `execve`
//! (`PR_SET_NO_NEW_PRIVS`, also required by landlock and seccomp), not dumpable (no core file,
//! and same-user processes can neither ptrace the enclave nor read `/proc/PID/mem`, where its
//! keys live), no core dumps (`RLIMIT_CORE` 0), a file-descriptor cap (`RLIMIT_NOFILE`), an
//! address-space cap from the policy (`RLIMIT_AS`), and no inherited descriptors.
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

/// `RLIMIT_CORE` 0; `RLIMIT_NOFILE` at most `max_open_files` (never raised); `RLIMIT_AS` at most
/// `address_space_mb` MiB when given (never raised).
pub fn rlimits(max_open_files: u64, address_space_mb: Option<u64>) -> Result<(), SandboxError> {
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
    .map_err(|e| fail("RLIMIT_NOFILE", e))?;
    if let Some(mb) = address_space_mb {
        let bytes = mb.saturating_mul(1 << 20);
        let hard = getrlimit(Resource::As).maximum;
        let cap = hard.map_or(bytes, |h| h.min(bytes));
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(cap),
                maximum: Some(cap),
            },
        )
        .map_err(|e| fail("RLIMIT_AS", e))?;
    }
    Ok(())
}

/// Closes every descriptor above stdio that lacks `FD_CLOEXEC`, except those in `keep`, and
/// returns how many it closed.
///
/// Why the flag decides: the exec that started this process closed every descriptor that had
/// `FD_CLOEXEC`, and every descriptor this program opens itself has it (std, tokio and the
/// `worker` module all open with `O_CLOEXEC`/`SOCK_CLOEXEC`). So a descriptor without it was
/// inherited from whoever started us (a shell, a supervisor, a leaky parent), and none of those
/// is needed. Must run before landlock and seccomp: it reads `/proc/self/fd` and uses `fcntl`.
pub fn close_inherited_fds(keep: &[i32]) -> Result<(), SandboxError> {
    let fail = |e: std::io::Error| {
        SandboxError::new(Barrier::InheritedFds, format!("list /proc/self/fd: {e}"))
    };
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(fail)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        #[allow(unsafe_code)]
        // SAFETY: F_GETFD reads the descriptor flags only; an fd that closed meanwhile (the
        // directory listing's own) answers EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            #[allow(unsafe_code)]
            // SAFETY: this descriptor was inherited, so no object of this program owns it: no
            // `OwnedFd`/`File` will close it again or use it after this.
            unsafe {
                libc::close(fd)
            };
        }
    }
    Ok(())
}

/// The number of threads of this process, from `/proc/self/task`.
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|entries| entries.count())
}
