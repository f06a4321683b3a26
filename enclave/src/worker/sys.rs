//! System-call wrappers for the broker/engine split: the control socket, descriptor passing,
//! sealed model memfds, fork, wait, kill and poll. Each `unsafe` block states why it is sound.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal killed it (`SIGSYS`: seccomp; `SIGKILL`: the deadline; `SIGABRT`: an abort).
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => {
                let name = match *s {
                    libc::SIGSYS => "SIGSYS, a system call outside its seccomp allow-list",
                    libc::SIGKILL => "SIGKILL",
                    libc::SIGABRT => "SIGABRT, an abort (e.g. out of memory under its cap)",
                    libc::SIGSEGV => "SIGSEGV",
                    _ => "a signal",
                };
                write!(f, "signal {s}: {name}")
            }
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` pair (message boundaries kept, close-on-exec).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A sealed, close-on-exec memfd holding `bytes` (no write, grow or shrink after this).
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name.replace('\0', "_"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    let fd = cvt(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, bytes)?;
    // The reader shares this file description: start it at the beginning.
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an integer argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// Sends one message on a `SOCK_SEQPACKET` socket, with `fd` attached (`SCM_RIGHTS`) if given.
pub fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one descriptor, u64-aligned as cmsghdr requires.
    let mut space = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let len = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        assert!(len <= std::mem::size_of_val(&space));
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = len;
        // SAFETY: msg_control points at `len` writable, aligned bytes, enough for one header
        // and one descriptor, so CMSG_FIRSTHDR is non-null and CMSG_DATA is in bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers (`iov` → `data`, `space`) for the whole call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return if n as usize == data.len() {
                Ok(())
            } else {
                Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message from a `SOCK_SEQPACKET` socket into `buf`, with the descriptor attached
/// to it, if any (close-on-exec). `Ok((0, None))` is end of stream. A message or control data
/// larger than the buffers is an error, never silently cut.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    let n = loop {
        // SAFETY: `msg` points at live, writable buffers (`iov` → `buf`, `space`).
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut received = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of `space`; CMSG_FIRSTHDR/NXTHDR stay
    // within it, and each SCM_RIGHTS payload holds whole descriptors that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    received.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message larger than its buffer",
        ));
    }
    if received.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more than one descriptor attached",
        ));
    }
    Ok((n, received.pop()))
}

/// `fork()`: `Ok(None)` in the child, `Ok(Some(pid))` in the parent. The caller must be
/// single-threaded (the engine zygote is).
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the engine processes are single-threaded, so the child is a complete copy and may
    // run arbitrary code (no lock can be held by a thread that does not exist in the child).
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { None } else { Some(pid) })
}

fn decode_status(status: libc::c_int) -> Exit {
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// Waits for child `pid` to end (`WNOHANG`: `Ok(None)` if it is still running).
pub fn wait_pid(pid: libc::pid_t, hang: bool) -> io::Result<Option<Exit>> {
    let mut status = 0;
    let flags = if hang { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `status` is a valid int the kernel writes; no rusage pointer.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, std::ptr::null_mut()) };
        if rc == 0 {
            return Ok(None);
        }
        if rc > 0 {
            return Ok(Some(decode_status(status)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps any ended child without blocking: `Some((pid, how))`, or `None`.
pub fn reap_any() -> Option<(libc::pid_t, Exit)> {
    let mut status = 0;
    // SAFETY: `status` is a valid int the kernel writes; no rusage pointer.
    let rc = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
    (rc > 0).then(|| (rc, decode_status(status)))
}

/// `kill(pid, SIGKILL)`.
pub fn kill_pid(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: kill takes no pointers.
    cvt(unsafe { libc::kill(pid, libc::SIGKILL) }).map(|_| ())
}

/// Waits until `fd` is readable (or closed) for at most `timeout`; `Ok(false)` on timeout.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: `p` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Closes every descriptor from `first` up (`close_range`).
pub fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes no pointers; the caller owns no object for these descriptors
    // any more (a forked worker leaves the zygote's objects unused until it exits).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes this process receive `SIGKILL` when its parent ends.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer argument.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// Ends this process now, without running destructors or flushing anything (a forked worker
/// must not run the zygote's exit path).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Prepares `cmd` to start the engine zygote: `channel` becomes its descriptor 3 (the only one
/// it inherits besides stdio), and it dies with the thread that started it.
pub fn pass_as_fd3(cmd: &mut std::process::Command, channel: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl, prctl); `channel` stays open in the parent
    // until after spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if channel == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(channel, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
