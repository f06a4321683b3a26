//! Namespaces: the locked-down enclave gets a user, network and IPC namespace of its own.
//!
//! The network namespace has no interface but a down loopback, so even a call that slipped past
//! seccomp and landlock would reach no network: the gateway's Unix socket, bound and accepted by
//! path before this point, stays the enclave's only channel. The user namespace is what lets an
//! unprivileged process create the others; for a process started as root it also drops every
//! capability in the initial namespace (no `CAP_DAC_OVERRIDE`, `CAP_SYS_ADMIN`, ...). Files opened
//! before keep working; files created later still belong to the same user.
//!
//! Not done: mount and PID namespaces. A mount namespace adds little over landlock without a
//! `pivot_root` into an empty tree, and a PID namespace only applies to children, which the
//! enclave cannot create (seccomp). Both belong to the broker/engine split.

use rustix::thread::UnshareFlags;

use super::{Barrier, SandboxError};

/// `unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC)`; the process must be single-threaded.
pub fn enter() -> Result<(), SandboxError> {
    let flags = UnshareFlags::NEWUSER | UnshareFlags::NEWNET | UnshareFlags::NEWIPC;
    #[allow(unsafe_code)]
    // SAFETY: the flags do not include CLONE_FILES or CLONE_FS, so no thread can end up with a
    // different descriptor table or working directory than the others (the caller is
    // single-threaded anyway, which CLONE_NEWUSER requires).
    let result = unsafe { rustix::thread::unshare_unsafe(flags) };
    result.map_err(|e| {
        SandboxError::new(
            Barrier::Namespaces,
            format!("unshare(user, net, ipc): {e} (unprivileged user namespaces may be disabled)"),
        )
    })
}
