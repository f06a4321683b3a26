//! Test builds only (feature `attack-hooks`, refused in release builds by `lib.rs`): the sandbox
//! crossings a test makes a real, locked-down engine worker attempt, to prove each barrier.
//!
//! Each attempt either returns (`ok`, `errno N`, or for `probe_fds` the list of open
//! descriptors), which the worker sends back as its reply, or gets the worker killed by the
//! kernel (`SIGSYS` from seccomp), which the broker reports as [`super::EngineFailure::Crashed`].
//! The production binary never sends an attack job: only [`super::EnginePool::attack`] does,
//! which exists only with this feature, and the gateway cannot reach it.

#![allow(unsafe_code)]

use std::ffi::CString;

fn errno_or_ok(rc: i64) -> String {
    if rc == -1 {
        format!(
            "errno {}",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        )
    } else {
        "ok".to_string()
    }
}

fn io_result<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// Attempts crossing `name` with `arg` (a path, a port or a pid).
pub fn attempt(name: &str, arg: &str) -> String {
    let pid: libc::pid_t = arg.parse().unwrap_or(1);
    match name {
        // Positive control: the worker's own channel and memory still work.
        "allowed" => {
            let v: Vec<u64> = (0..1_000_000).collect();
            format!("ok {}", v.iter().sum::<u64>())
        }
        "open_etc_passwd" => io_result(std::fs::File::open("/etc/passwd")),
        "open_path" => io_result(std::fs::File::open(arg)),
        "read_broker_mem" => io_result(std::fs::File::open(format!("/proc/{pid}/mem"))),
        "socket_inet" => {
            // SAFETY: socket() takes no pointers.
            errno_or_ok(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }.into())
        }
        "connect_loopback" => {
            let port: u16 = arg.parse().unwrap_or(1);
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a valid sockaddr_in that outlives the call (descriptor 3 is the
            // worker's own channel: connect on it is the attempt).
            errno_or_ok(
                unsafe {
                    libc::connect(
                        3,
                        (&sin as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
                .into(),
            )
        }
        "execve_bin_sh" => {
            let sh = CString::new("/bin/sh").expect("no NUL");
            let argv = [sh.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: argv and envp are null-terminated arrays of valid C strings.
            errno_or_ok(unsafe { libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr()) }.into())
        }
        "fork" => {
            // SAFETY: the child of a successful fork only calls _exit.
            let rc = unsafe { libc::fork() };
            if rc == 0 {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) }
            }
            errno_or_ok(rc.into())
        }
        "ptrace_broker" => {
            // SAFETY: PTRACE_ATTACH takes no pointers.
            errno_or_ok(unsafe {
                libc::ptrace(
                    libc::PTRACE_ATTACH,
                    pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            })
        }
        "process_vm_readv_broker" => {
            let mut buf = [0u8; 32];
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let remote = libc::iovec {
                iov_base: 0x1000 as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // SAFETY: `local` points at our own 32-byte buffer; the remote address is only read
            // by the kernel, in the other process, if the call is allowed at all.
            errno_or_ok(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as i64)
        }
        "mount_tmpfs" => {
            let (src, target, fstype) = (
                CString::new("none").expect("no NUL"),
                CString::new("/").expect("no NUL"),
                CString::new("tmpfs").expect("no NUL"),
            );
            // SAFETY: valid NUL-terminated strings that outlive the call; null data.
            errno_or_ok(
                unsafe {
                    libc::mount(
                        src.as_ptr(),
                        target.as_ptr(),
                        fstype.as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                }
                .into(),
            )
        }
        "kill_broker" => {
            // SAFETY: kill takes no pointers.
            errno_or_ok(unsafe { libc::kill(pid, libc::SIGKILL) }.into())
        }
        "exec_memory" => {
            // SAFETY: an anonymous private mapping request; the result is not used.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                errno_or_ok(-1)
            } else {
                "ok".to_string()
            }
        }
        "probe_fds" => {
            // Which descriptors are open at all (for reading or for writing): a zero-length
            // read or write answers EBADF only for a descriptor that is not open that way.
            let mut open = Vec::new();
            for fd in 0..1024 {
                let mut b = [0u8; 1];
                // SAFETY: zero-length read into a valid buffer and zero-length write of it.
                let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 0) };
                let r_ebadf =
                    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
                // SAFETY: as above.
                let w = unsafe { libc::write(fd, b.as_ptr().cast(), 0) };
                let w_ebadf =
                    w == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
                if !(r_ebadf && w_ebadf) {
                    open.push(fd.to_string());
                }
            }
            format!("open {}", open.join(","))
        }
        "allocate_mb" => {
            // Allocates and touches `arg` MiB: past RLIMIT_AS the allocation fails and Rust
            // aborts (SIGABRT).
            let mb: usize = arg.parse().unwrap_or(1);
            let mut v = vec![0u8; mb << 20];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            std::hint::black_box(&v);
            "ok".to_string()
        }
        // Replies the broker must refuse as malformed: written straight to the channel
        // (descriptor 3), then the worker exits.
        "garbage_reply" => raw_reply(&[0xEE, 1, 2, 3]),
        "huge_frame" => {
            let mut f = channel();
            let _ = std::io::Write::write_all(&mut *f, &(1u64 << 40).to_le_bytes());
            super::sys::exit_now(0)
        }
        "wrong_outputs" => {
            let t = cloister_engine::Tensor::from_f32(vec![1], vec![0.0]).expect("tensor");
            raw_reply(&super::codec::JobReply::Outputs(vec![("stolen".into(), t)]).encode())
        }
        "spin" => loop {
            std::hint::spin_loop();
        },
        "abort" => std::process::abort(),
        other => format!("unknown attack {other}"),
    }
}

fn channel() -> std::mem::ManuallyDrop<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: descriptor 3 is the worker's channel; ManuallyDrop never closes it, and the
    // worker exits right after using it.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(3) })
}

fn raw_reply(payload: &[u8]) -> String {
    let mut f = channel();
    let _ = super::codec::write_frame(&mut *f, payload);
    super::sys::exit_now(0)
}
