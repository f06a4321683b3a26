//! Crosses every sandbox barrier for real.
//!
//! Each case runs in a child process: this test binary re-executes itself with
//! `CLOISTER_SANDBOX_CHILD=<case>`, the child applies the same lock-down the enclave applies in
//! production (`sandbox::lock_down`, or only its landlock layer for the `landlock_*` cases, to
//! prove that layer on its own), then makes exactly one forbidden attempt and reports the
//! outcome. The parent asserts precisely how it failed: `EACCES`/`EPERM` from landlock, or death
//! by `SIGSYS` from the seccomp allow-list (whose default action kills the process).
//!
//! The attack code lives only in this test binary: the production `cloister-enclave` has no mode,
//! flag or feature that runs any of it. `harness = false` keeps the child single-threaded, as the
//! enclave is when it locks down (landlock confines only the calling thread).

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cloister_enclave::sandbox::{self, Barrier, SandboxMode, SandboxPlan};

const CHILD: &str = "CLOISTER_SANDBOX_CHILD";
const DIR: &str = "CLOISTER_SANDBOX_DIR";
const PORT: &str = "CLOISTER_SANDBOX_PORT";
const ABSTRACT: &str = "CLOISTER_SANDBOX_ABSTRACT";

/// How a child's attempt must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The attempt succeeded (positive control).
    Allowed,
    /// The call failed with this errno.
    Errno(i32),
    /// The process was killed by seccomp.
    Sigsys,
}

struct Case {
    name: &'static str,
    expect: Expect,
    why: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "allowed_paths_and_threads",
        expect: Expect::Allowed,
        why: "reading the model, writing the audit dir, starting a thread still work",
    },
    Case {
        name: "panic_is_survivable",
        expect: Expect::Allowed,
        why: "a caught panic (RUST_BACKTRACE=1) does not trip seccomp",
    },
    Case {
        name: "open_etc_passwd",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock: no read outside the plan",
    },
    Case {
        name: "read_beside_model",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock: model files are granted one by one, not their directory",
    },
    Case {
        name: "write_outside_audit_dir",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock: no write outside the audit and socket dirs",
    },
    Case {
        name: "write_into_model_dir",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock: read-only paths stay read-only",
    },
    Case {
        name: "list_root",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock: `/` cannot be listed",
    },
    Case {
        name: "socket_inet",
        expect: Expect::Sigsys,
        why: "seccomp: socket() is not allowed",
    },
    Case {
        name: "connect_tcp_loopback",
        expect: Expect::Sigsys,
        why: "seccomp: connect() is not allowed, even on a socket opened before lock-down",
    },
    Case {
        name: "execve_bin_sh",
        expect: Expect::Sigsys,
        why: "seccomp: execve() is not allowed",
    },
    Case {
        name: "fork",
        expect: Expect::Sigsys,
        why: "seccomp: clone() without CLONE_THREAD is not allowed",
    },
    Case {
        name: "ptrace_parent",
        expect: Expect::Sigsys,
        why: "seccomp: ptrace() is not allowed",
    },
    Case {
        name: "mount_tmpfs",
        expect: Expect::Sigsys,
        why: "seccomp: mount() is not allowed",
    },
    Case {
        name: "kill_parent",
        expect: Expect::Sigsys,
        why: "seccomp: kill() is not allowed",
    },
    Case {
        name: "raise_nofile_limit",
        expect: Expect::Sigsys,
        why: "seccomp: rlimits cannot be raised again",
    },
    Case {
        name: "landlock_connect_tcp",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock ABI 4 alone: TCP connect refused",
    },
    Case {
        name: "landlock_bind_tcp",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock ABI 4 alone: TCP bind refused",
    },
    Case {
        name: "landlock_execve",
        expect: Expect::Errno(libc::EACCES),
        why: "landlock alone: /bin/sh is not executable",
    },
    Case {
        name: "landlock_signal_parent",
        expect: Expect::Errno(libc::EPERM),
        why: "landlock ABI 6 alone: no signal outside the sandbox",
    },
    Case {
        name: "landlock_abstract_unix",
        expect: Expect::Errno(libc::EPERM),
        why: "landlock ABI 6 alone: no abstract unix socket outside the sandbox",
    },
    Case {
        name: "namespace_has_no_network",
        expect: Expect::Errno(libc::ENETUNREACH),
        why: "network namespace alone: no route to the host's loopback",
    },
    Case {
        name: "best_effort_reports_missing",
        expect: Expect::Allowed,
        why: "best-effort starts without a barrier and names it",
    },
    Case {
        name: "enforce_names_the_missing_barrier",
        expect: Expect::Allowed,
        why: "enforce refuses to start and names the barrier",
    },
    Case {
        name: "refuses_when_threads_exist",
        expect: Expect::Allowed,
        why: "lock-down refuses a multi-threaded process",
    },
];

fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        child(&case);
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let fixture = Fixture::new();
    let (mut passed, mut failed) = (0, 0);
    for case in CASES {
        if !filter.is_empty() && !filter.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        match fixture.run(case) {
            Ok(()) => {
                println!("test sandbox::{} ... ok", case.name);
                passed += 1;
            }
            Err(e) => {
                println!("test sandbox::{} ... FAILED\n    {e}", case.name);
                failed += 1;
            }
        }
    }
    println!();
    println!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

/// Files and listeners the parent prepares; the children get their paths by environment.
struct Fixture {
    tmp: tempfile::TempDir,
    tcp: std::net::TcpListener,
    _abstract: std::os::unix::net::UnixListener,
    abstract_name: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        for d in ["models", "audit", "run", "outside", "mnt"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::write(root.join("policy.toml"), "schema_version = 1\n").unwrap();
        std::fs::write(root.join("models/model.onnx"), b"model bytes").unwrap();
        std::fs::write(root.join("models/secret.key"), b"not in the plan").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let abstract_name = format!("cloister-sandbox-test-{}", std::process::id());
        let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            abstract_name.as_bytes(),
        )
        .unwrap();
        let abstract_listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        Fixture {
            tmp,
            tcp,
            _abstract: abstract_listener,
            abstract_name,
        }
    }

    fn run(&self, case: &Case) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(CHILD, case.name)
            .env(DIR, self.tmp.path())
            .env(PORT, self.tcp.local_addr().unwrap().port().to_string())
            .env(ABSTRACT, &self.abstract_name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().map_err(|e| e.to_string())?;
        let context = || {
            format!(
                "({}) status {status:?}\nstdout:\n{out}\nstderr:\n{err}",
                case.why
            )
        };
        let result = out.lines().find_map(|l| l.strip_prefix("result "));
        // Every attack case must have locked down first, in enforce mode, with every barrier.
        if !case.name.starts_with("landlock_")
            && !matches!(
                case.name,
                "namespace_has_no_network"
                    | "best_effort_reports_missing"
                    | "enforce_names_the_missing_barrier"
                    | "refuses_when_threads_exist"
            )
        {
            let locked = out.lines().find_map(|l| l.strip_prefix("locked "));
            match locked {
                Some(d) if d.starts_with("enforce: sandbox/v1 ") && !d.contains("=off") => {}
                _ => return Err(format!("did not lock down completely {}", context())),
            }
        }
        match case.expect {
            Expect::Sigsys => {
                if status.signal() != Some(libc::SIGSYS) {
                    return Err(format!("expected death by SIGSYS {}", context()));
                }
                if result.is_some() {
                    return Err(format!(
                        "the attempt returned instead of being killed {}",
                        context()
                    ));
                }
            }
            Expect::Errno(n) => {
                if !status.success() || result != Some(&format!("errno {n}")) {
                    return Err(format!("expected errno {n} {}", context()));
                }
            }
            Expect::Allowed => {
                if !status.success() || result != Some("ok") {
                    return Err(format!("expected success {}", context()));
                }
            }
        }
        Ok(())
    }
}

fn plan(dir: &Path, mode: SandboxMode) -> SandboxPlan {
    SandboxPlan {
        mode,
        read_only: vec![dir.join("policy.toml"), dir.join("models/model.onnx")],
        read_write: vec![dir.join("audit"), dir.join("run")],
        max_open_files: sandbox::DEFAULT_MAX_OPEN_FILES,
        address_space_mb: None,
    }
}

fn report<T>(r: std::io::Result<T>) {
    match r {
        Ok(_) => println!("result ok"),
        Err(e) => println!("result errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// The result of a raw libc call that returns -1 and sets errno on failure.
fn check(rc: libc::c_long) -> std::io::Result<()> {
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn full_lock_down(dir: &Path) {
    let status = sandbox::lock_down(&plan(dir, SandboxMode::Enforce)).expect("lock down");
    println!("locked {}", status.describe());
}

fn landlock_only(dir: &Path) {
    sandbox::limits::no_new_privs().expect("no_new_privs");
    let outcome = sandbox::landlock::restrict(&plan(dir, SandboxMode::Enforce)).expect("landlock");
    for (barrier, result) in outcome.results {
        result.unwrap_or_else(|e| panic!("{barrier}: {e}"));
    }
}

fn child(case: &str) {
    let dir = PathBuf::from(std::env::var(DIR).expect("dir"));
    let port: u16 = std::env::var(PORT).expect("port").parse().unwrap();
    let parent = std::os::unix::process::parent_id() as libc::pid_t;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match case {
        "allowed_paths_and_threads" => {
            full_lock_down(&dir);
            let r = (|| {
                // File::open + read, not fs::read: std's read_to_end calls statx, which the
                // allow-list refuses (landlock does not mediate stat, so it would reveal paths).
                let mut buf = [0u8; 64];
                let n = std::fs::File::open(dir.join("models/model.onnx"))?.read(&mut buf)?;
                assert_eq!(&buf[..n], b"model bytes");
                let n = std::fs::File::open(dir.join("policy.toml"))?.read(&mut buf)?;
                assert!(buf[..n].starts_with(b"schema_version"));
                std::io::Write::write_all(
                    &mut std::fs::File::create(dir.join("audit/record"))?,
                    b"appended",
                )?;
                std::fs::remove_file(dir.join("audit/record"))?;
                // A new thread: clone3 answers ENOSYS, glibc falls back to clone(CLONE_THREAD).
                let t = std::thread::spawn(|| std::collections::HashMap::<u8, u8>::new().len());
                assert_eq!(t.join().unwrap(), 0);
                std::io::Result::Ok(())
            })();
            report(r);
        }
        "panic_is_survivable" => {
            // With RUST_BACKTRACE=1 the default panic hook would symbolise a backtrace, which
            // needs system calls the allow-list refuses; a caught panic must not kill the enclave
            // (a panicking request becomes an `internal` error and the service keeps serving).
            std::env::set_var("RUST_BACKTRACE", "1");
            full_lock_down(&dir);
            let caught = std::panic::catch_unwind(|| panic!("a request handler bug"));
            assert!(caught.is_err());
            println!("result ok");
        }
        "open_etc_passwd" => {
            full_lock_down(&dir);
            report(std::fs::File::open("/etc/passwd"));
        }
        "read_beside_model" => {
            full_lock_down(&dir);
            report(std::fs::read(dir.join("models/secret.key")));
        }
        "write_outside_audit_dir" => {
            full_lock_down(&dir);
            report(std::fs::write(dir.join("outside/stolen"), b"x"));
        }
        "write_into_model_dir" => {
            full_lock_down(&dir);
            report(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join("models/model.onnx")),
            );
        }
        "list_root" => {
            full_lock_down(&dir);
            report(std::fs::read_dir("/"));
        }
        "socket_inet" => {
            full_lock_down(&dir);
            // SAFETY: socket() takes no pointers.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            report(check(fd.into()));
        }
        "connect_tcp_loopback" => {
            // SAFETY: socket() takes no pointers.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            assert!(fd >= 0);
            full_lock_down(&dir);
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a valid sockaddr_in that outlives the call; its size is passed.
            let rc = unsafe {
                libc::connect(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            report(check(rc.into()));
        }
        "execve_bin_sh" => {
            full_lock_down(&dir);
            execve_sh();
        }
        "fork" => {
            full_lock_down(&dir);
            // SAFETY: the child of a successful fork only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) };
            }
            report(check(pid.into()));
        }
        "ptrace_parent" => {
            full_lock_down(&dir);
            // SAFETY: PTRACE_ATTACH takes no pointers (addr and data are ignored).
            let rc = unsafe {
                libc::ptrace(
                    libc::PTRACE_ATTACH,
                    parent,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            };
            report(check(rc));
        }
        "mount_tmpfs" => {
            full_lock_down(&dir);
            let src = CString::new("none").unwrap();
            let target = CString::new(dir.join("mnt").to_str().unwrap()).unwrap();
            let fstype = CString::new("tmpfs").unwrap();
            // SAFETY: every pointer is a valid NUL-terminated string (or null data) that outlives
            // the call.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            report(check(rc.into()));
        }
        "kill_parent" => {
            full_lock_down(&dir);
            // SAFETY: kill takes no pointers; signal 0 only checks permission.
            let rc = unsafe { libc::kill(parent, 0) };
            report(check(rc.into()));
        }
        "raise_nofile_limit" => {
            full_lock_down(&dir);
            let r = setrlimit_nofile(1 << 20);
            report(r);
        }
        "landlock_connect_tcp" => {
            landlock_only(&dir);
            report(std::net::TcpStream::connect(loopback));
        }
        "landlock_bind_tcp" => {
            landlock_only(&dir);
            report(std::net::TcpListener::bind("127.0.0.1:0"));
        }
        "landlock_execve" => {
            landlock_only(&dir);
            report(Command::new("/bin/sh").arg("-c").arg("exit 0").status());
        }
        "landlock_signal_parent" => {
            landlock_only(&dir);
            // SAFETY: kill takes no pointers; signal 0 only checks permission.
            let rc = unsafe { libc::kill(parent, 0) };
            report(check(rc.into()));
        }
        "landlock_abstract_unix" => {
            landlock_only(&dir);
            use std::os::linux::net::SocketAddrExt;
            let name = std::env::var(ABSTRACT).unwrap();
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            report(std::os::unix::net::UnixStream::connect_addr(&addr));
        }
        "namespace_has_no_network" => {
            // The network namespace alone: the parent's loopback listener is unreachable.
            sandbox::namespaces::enter().expect("namespaces");
            report(std::net::TcpStream::connect(loopback));
        }
        "best_effort_reports_missing" => {
            // A read-only path that does not exist makes the landlock ruleset fail: best-effort
            // starts anyway, with landlock off and everything else on, and says so.
            let mut p = plan(&dir, SandboxMode::BestEffort);
            p.read_only.push(dir.join("missing"));
            let status = sandbox::lock_down(&p).expect("best-effort never fails");
            let d = status.describe();
            assert!(d.starts_with("best-effort: sandbox/v1 "), "{d}");
            for on in [
                "no_new_privs=on",
                "rlimits=on",
                "seccomp=on",
                "landlock_abi=",
            ] {
                assert!(d.contains(on), "{d}");
            }
            for off in ["landlock_fs=off", "landlock_net=off", "landlock_scope=off"] {
                assert!(d.contains(off), "{d}");
            }
            assert!(!status.is_complete());
            assert_eq!(
                status.missing(),
                vec![
                    Barrier::LandlockFs,
                    Barrier::LandlockNet,
                    Barrier::LandlockScope
                ]
            );
            // Landlock is really off: /etc/passwd opens.
            report(std::fs::File::open("/etc/passwd"));
        }
        "enforce_names_the_missing_barrier" => {
            let mut p = plan(&dir, SandboxMode::Enforce);
            p.read_only.push(dir.join("missing"));
            let e = sandbox::lock_down(&p).expect_err("enforce must refuse");
            assert_eq!(e.barrier, Barrier::LandlockFs);
            let msg = e.to_string();
            assert!(
                msg.contains("`landlock_fs`") && msg.contains("missing"),
                "{msg}"
            );
            assert!(msg.contains("best-effort"), "{msg}");
            println!("result ok");
        }
        "refuses_when_threads_exist" => {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || rx.recv());
            let e = sandbox::lock_down(&plan(&dir, SandboxMode::Enforce))
                .expect_err("two threads: must refuse");
            assert!(e.reason.contains("2 threads"), "{e}");
            drop(tx);
            let _ = t.join();
            // Nothing was applied.
            report(std::fs::File::open("/etc/passwd"));
        }
        other => panic!("unknown case {other}"),
    }
}

fn execve_sh() {
    let sh = CString::new("/bin/sh").unwrap();
    let arg = CString::new("-c").unwrap();
    let cmd = CString::new("exit 0").unwrap();
    let argv = [sh.as_ptr(), arg.as_ptr(), cmd.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: argv and envp are null-terminated arrays of valid C strings that outlive the call.
    let rc = unsafe { libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    report(check(rc.into()));
}

fn setrlimit_nofile(n: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    check(rc.into())
}
