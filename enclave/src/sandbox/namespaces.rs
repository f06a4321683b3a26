//! Namespaces: the locked-down enclave gets a user, network, IPC and mount namespace of its own;
//! the engine worker additionally gets an empty root and a PID namespace.
//!
//! The network namespace has no interface but a down loopback, so even a call that slipped past
//! seccomp and landlock would reach no network: the gateway's Unix socket, bound and accepted by
//! path before this point, stays the enclave's only channel. The user namespace is what lets an
//! unprivileged process create the others; for a process started as root it also drops every
//! capability in the initial namespace (no `CAP_DAC_OVERRIDE`, `CAP_SYS_ADMIN`, ...). Files opened
//! before keep working; files created later still belong to the same user. The broker's mount
//! namespace is a private copy of the mount table (landlock, not the mount table, decides what it
//! may open: it needs its audit and ledger directories), so mount events cross in neither
//! direction.
//!
//! The engine worker ([`enter_engine`], [`empty_root`]) needs no file at all: its mount namespace
//! is pivoted onto an empty, read-only tmpfs, so the host's file tree is not even named in it, and
//! its PID namespace ([`enter_pid`]) holds only the engine's own processes, so the broker, the
//! gateway and every other process have no PID it could signal or trace. The broker has no PID
//! namespace: it cannot create processes after lock-down (seccomp), and a PID namespace only
//! applies to children.

use std::ffi::CString;

use rustix::thread::UnshareFlags;

use super::{Barrier, SandboxError};

fn unshare(flags: UnshareFlags, what: &str, barrier: Barrier) -> Result<(), SandboxError> {
    #[allow(unsafe_code)]
    // SAFETY: the flags do not include CLONE_FILES or CLONE_FS, so no thread can end up with a
    // different descriptor table or working directory than the others (the caller is
    // single-threaded anyway, which CLONE_NEWUSER requires).
    let result = unsafe { rustix::thread::unshare_unsafe(flags) };
    result.map_err(|e| {
        SandboxError::new(
            barrier,
            format!("unshare({what}): {e} (unprivileged user namespaces may be disabled)"),
        )
    })
}

/// The broker: `unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWNS)`; the process
/// must be single-threaded.
pub fn enter() -> Result<(), SandboxError> {
    unshare(
        UnshareFlags::NEWUSER | UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWNS,
        "user, net, ipc, mount",
        Barrier::Namespaces,
    )
}

/// The engine zygote: the same four namespaces as the broker (nested inside nothing of the
/// broker's: the zygote was started before the broker locked down).
pub fn enter_engine() -> Result<(), SandboxError> {
    enter()
}

/// The engine zygote: `unshare(CLONE_NEWPID)`; its next child is PID 1 of the new namespace.
pub fn enter_pid() -> Result<(), SandboxError> {
    unshare(UnshareFlags::NEWPID, "pid", Barrier::PidNamespace)
}

/// Where the empty root is mounted before `pivot_root` moves it to `/` (in this process's own
/// mount namespace only: the host's `/tmp` is untouched).
const STAGING: &str = "/tmp";

fn sys(what: &str, rc: libc::c_int) -> Result<(), SandboxError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(SandboxError::new(
            Barrier::MountNamespace,
            format!("{what}: {}", std::io::Error::last_os_error()),
        ))
    }
}

/// After [`enter_engine`]: makes the root of this mount namespace an empty, read-only tmpfs and
/// detaches the host's tree (`pivot_root`), so no path names any host file any more.
pub fn empty_root() -> Result<(), SandboxError> {
    let c = |s: &str| CString::new(s).expect("no NUL in constant paths");
    let (root, staging, dot, tmpfs) = (c("/"), c(STAGING), c("."), c("tmpfs"));
    let options = c("size=4k,mode=0555");
    #[allow(unsafe_code)]
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where the
    // call allows it; these calls change only this process's private mount namespace.
    unsafe {
        sys(
            "make / private",
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
        )?;
        sys(
            "mount an empty tmpfs",
            libc::mount(
                tmpfs.as_ptr(),
                staging.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                options.as_ptr().cast(),
            ),
        )?;
        sys("chdir into it", libc::chdir(staging.as_ptr()))?;
        sys(
            "pivot_root",
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int,
        )?;
        sys(
            "detach the host's tree",
            libc::umount2(dot.as_ptr(), libc::MNT_DETACH),
        )?;
        sys("chdir /", libc::chdir(root.as_ptr()))?;
        sys(
            "remount / read-only",
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
        )?;
    }
    Ok(())
}
