//! The engine zygote and the workers it forks: the only code that runs a model.
//!
//! The zygote is `cloister-enclave --engine-worker`, started by the broker (see
//! [`super::EnginePool::spawn`]) as the very first thing the enclave does, with one descriptor
//! besides stdio: its control socket (descriptor 3). It reads each model from a sealed memfd the
//! broker sends, parses it, then locks itself down on the broker's command:
//!
//! 1. no new privileges, not dumpable, no core dumps, a descriptor cap and the policy's
//!    address-space cap (`RLIMIT_AS`, inherited by every worker);
//! 2. every descriptor but stdio and the control socket closed;
//! 3. new user, network, IPC and mount namespaces; the root pivoted onto an empty read-only
//!    tmpfs; a new PID namespace;
//! 4. landlock with no rule at all: every file-system access right, TCP bind/connect, abstract
//!    Unix sockets and signals outside the sandbox are refused;
//! 5. `fork`: the child becomes PID 1 of the new PID namespace and serves the broker from then
//!    on; the parent only waits for it (and so dies with it, and it with the broker);
//! 6. seccomp `engine_zygote` (no open, no socket, no exec; fork, wait and SIGKILL only).
//!
//! Then, for each request, the broker sends `Spawn` with one end of a fresh stream socket: the
//! zygote forks a worker, which closes every other descriptor, stacks seccomp `engine_worker`
//! (read, write, memory, exit) and serves exactly one job on that socket before exiting. One
//! process per request means a request can neither see nor influence another's data, and a
//! worker that crashes or is killed at its deadline takes nothing else with it.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use cloister_engine::Model;
use cloister_policy::SandboxMode;

use super::codec::{self, Control, ControlReply, Job, JobReply, MAX_CONTROL};
use super::sys::{self, Exit};
use crate::sandbox::{self, Barrier, SandboxError, SandboxPlan, SandboxStatus};

/// The zygote's control socket, as set up by [`super::sys::pass_as_fd3`].
const CONTROL_FD: i32 = 3;
/// Descriptor cap of the zygote and the workers.
const WORKER_MAX_OPEN_FILES: u64 = 16;
/// How many abnormal worker endings the zygote remembers for the broker's `Reap`.
const REMEMBERED_ENDINGS: usize = 1024;

/// Entry point of `cloister-enclave --engine-worker`. Never returns.
pub fn main() -> ! {
    #[allow(unsafe_code)]
    // SAFETY: descriptor 3 is the control socket the broker passed (dup2 in pre_exec); no other
    // object of this fresh process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    let code = match Zygote::new(control).serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cloister engine zygote: {e}");
            1
        }
    };
    sys::exit_now(code)
}

struct Zygote {
    control: OwnedFd,
    models: BTreeMap<String, Model>,
    locked: bool,
    /// Abnormal endings reaped before the broker asked: pid → how.
    ended: VecDeque<(i32, Exit)>,
}

impl Zygote {
    fn new(control: OwnedFd) -> Zygote {
        Zygote {
            control,
            models: BTreeMap::new(),
            locked: false,
            ended: VecDeque::new(),
        }
    }

    /// One reply, one `SOCK_SEQPACKET` message (plain `write`: the zygote never sends a
    /// descriptor, so `sendmsg` is not on its allow-list).
    fn reply(&self, r: &ControlReply) -> std::io::Result<()> {
        let bytes = r.encode();
        let n = rustix::io::write(&self.control, &bytes)?;
        if n == bytes.len() {
            Ok(())
        } else {
            Err(std::io::ErrorKind::WriteZero.into())
        }
    }

    fn serve(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; MAX_CONTROL];
        loop {
            let (n, fd) = sys::recv_with_fd(self.control.as_fd(), &mut buf)
                .map_err(|e| format!("control socket: {e}"))?;
            if n == 0 {
                return Ok(()); // the broker is gone
            }
            let reply = match Control::decode(&buf[..n]) {
                Ok(c) => self.handle(c, fd),
                Err(e) => ControlReply::Failed(format!("bad control message: {e}")),
            };
            self.reply(&reply)
                .map_err(|e| format!("control socket: {e}"))?;
            self.reap();
        }
    }

    /// Collects ended workers, remembering the abnormal endings for `Reap`.
    fn reap(&mut self) {
        while let Some((pid, how)) = sys::reap_any() {
            if how != Exit::Code(0) {
                if self.ended.len() == REMEMBERED_ENDINGS {
                    self.ended.pop_front();
                }
                self.ended.push_back((pid, how));
            }
        }
    }

    fn ended(how: Exit) -> ControlReply {
        match how {
            Exit::Code(c) => ControlReply::Ended {
                signaled: false,
                value: c,
            },
            Exit::Signal(s) => ControlReply::Ended {
                signaled: true,
                value: s,
            },
        }
    }

    fn handle(&mut self, c: Control, fd: Option<OwnedFd>) -> ControlReply {
        match c {
            Control::Load { id } => match (self.locked, fd) {
                (false, Some(fd)) => match load(fd) {
                    Ok(m) => {
                        self.models.insert(id, m);
                        ControlReply::Ok
                    }
                    Err(e) => ControlReply::Failed(format!("model \"{id}\": {e}")),
                },
                _ => ControlReply::Failed("load needs a memfd, before lock-down".into()),
            },
            Control::LockDown {
                best_effort,
                address_space_mb,
            } => {
                if self.locked {
                    return ControlReply::Failed("already locked down".into());
                }
                let mode = if best_effort {
                    SandboxMode::BestEffort
                } else {
                    SandboxMode::Enforce
                };
                match self.lock_down(mode, address_space_mb) {
                    Ok(status) => {
                        self.locked = true;
                        ControlReply::LockedDown(status.describe())
                    }
                    Err(e) => ControlReply::Failed(format!("worker: {e}")),
                }
            }
            Control::Spawn => match (self.locked, fd) {
                (true, Some(channel)) => match sys::fork() {
                    Ok(None) => worker(channel, &self.models),
                    Ok(Some(pid)) => {
                        drop(channel);
                        ControlReply::Spawned { pid }
                    }
                    Err(e) => ControlReply::Failed(format!("fork: {e}")),
                },
                _ => ControlReply::Failed("spawn needs a channel, after lock-down".into()),
            },
            Control::Kill { pid } => {
                let _ = sys::kill_pid(pid);
                self.ending_of(pid)
            }
            Control::Reap { pid } => self.ending_of(pid),
        }
    }

    fn ending_of(&mut self, pid: i32) -> ControlReply {
        if let Some(i) = self.ended.iter().position(|(p, _)| *p == pid) {
            let (_, how) = self.ended.remove(i).expect("index from position");
            return Zygote::ended(how);
        }
        match sys::wait_pid(pid, true) {
            Ok(Some(how)) => Zygote::ended(how),
            // Already reaped with exit code 0 (only abnormal endings are remembered).
            Ok(None) | Err(_) => Zygote::ended(Exit::Code(0)),
        }
    }

    /// Steps 1–6 of the module docs. Returns (in the PID-namespace init that goes on serving)
    /// the status, or the first missing barrier in `enforce` mode.
    fn lock_down(
        &mut self,
        mode: SandboxMode,
        address_space_mb: u64,
    ) -> Result<SandboxStatus, SandboxError> {
        if sandbox::limits::thread_count() != Some(1) {
            return Err(SandboxError::new(
                Barrier::LandlockFs,
                "the engine zygote must be single-threaded to lock down",
            ));
        }
        let mut status = SandboxStatus::engine(mode, address_space_mb);
        status.record(Barrier::NoNewPrivs, sandbox::limits::no_new_privs())?;
        status.record(Barrier::NotDumpable, sandbox::limits::not_dumpable())?;
        status.record(
            Barrier::Rlimits,
            sandbox::limits::rlimits(WORKER_MAX_OPEN_FILES, Some(address_space_mb)),
        )?;
        status.record(
            Barrier::InheritedFds,
            sandbox::limits::close_inherited_fds(&[self.control.as_raw_fd()]),
        )?;
        let ns = sandbox::namespaces::enter_engine();
        let ns_ok = ns.is_ok();
        status.record(Barrier::Namespaces, ns)?;
        let root = if ns_ok {
            sandbox::namespaces::empty_root()
        } else {
            Err(SandboxError::new(
                Barrier::MountNamespace,
                "needs the user and mount namespaces",
            ))
        };
        status.record(Barrier::MountNamespace, root)?;
        let pid_ns = if ns_ok {
            sandbox::namespaces::enter_pid()
        } else {
            Err(SandboxError::new(
                Barrier::PidNamespace,
                "needs the user namespace",
            ))
        };
        status.record(Barrier::PidNamespace, pid_ns)?;
        let plan = SandboxPlan {
            mode,
            read_only: Vec::new(),
            read_write: Vec::new(),
            max_open_files: WORKER_MAX_OPEN_FILES,
            address_space_mb: Some(address_space_mb),
        };
        let ll = sandbox::landlock::restrict(&plan)?;
        status.landlock_abi = ll.abi;
        for (barrier, result) in ll.results {
            status.record(barrier, result)?;
        }
        sandbox::quiet_panics();
        // Step 5: the child is PID 1 of the new namespace and goes on as the zygote.
        match sys::fork() {
            Ok(None) => {
                let _ = sys::die_with_parent();
            }
            Ok(Some(child)) => {
                // The outer process: closes the control socket (the broker must see the inner
                // zygote's end as the end of the channel), waits, then ends as its child did.
                let _ = sys::close_from(CONTROL_FD);
                let _ = sandbox::seccomp::install_engine_zygote();
                let code = match sys::wait_pid(child, true) {
                    Ok(Some(Exit::Code(c))) => c,
                    _ => 1,
                };
                sys::exit_now(code);
            }
            Err(e) => {
                return Err(SandboxError::new(
                    Barrier::PidNamespace,
                    format!("fork the namespace's first process: {e}"),
                ))
            }
        }
        status.record(Barrier::Seccomp, sandbox::seccomp::install_engine_zygote())?;
        Ok(status)
    }
}

/// Reads a model from its sealed memfd and parses it, with the engine's default of one thread:
/// the zygote must stay single-threaded (user namespaces and landlock require it, and a thread
/// pool would not survive the fork into a worker, whose allow-list has no `clone` anyway).
fn load(fd: OwnedFd) -> Result<Model, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read memfd: {e}"))?;
    Model::from_bytes(&bytes).map_err(|e| format!("parse: {e}"))
}

/// A forked worker: closes everything but stdio and `channel`, stacks its own filter, serves one
/// job and exits. Never returns.
fn worker(channel: OwnedFd, models: &BTreeMap<String, Model>) -> ! {
    // Move the channel to descriptor 3 (the zygote's control socket, closed by this), then
    // close everything above it: the worker holds stdio and its channel, nothing else.
    let channel = match dup_to_3(channel) {
        Ok(c) => c,
        Err(_) => sys::exit_now(120),
    };
    if sys::close_from(4).is_err() || sandbox::seccomp::install_engine_worker().is_err() {
        sys::exit_now(121);
    }
    let mut file = std::fs::File::from(channel);
    let job = match codec::read_frame(&mut file, codec::MAX_JOB) {
        Ok(bytes) => Job::decode(&bytes),
        Err(_) => sys::exit_now(122),
    };
    let reply = match job {
        Ok(Job::Run { model, inputs }) => match models.get(&model) {
            Some(m) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.run(inputs))) {
                    Ok(Ok(outputs)) => JobReply::Outputs(outputs),
                    Ok(Err(e)) => JobReply::Failed(e.to_string()),
                    Err(_) => JobReply::Failed("the engine panicked".into()),
                }
            }
            None => JobReply::Failed(format!("no model \"{model}\" in the worker")),
        },
        #[cfg(feature = "attack-hooks")]
        Ok(Job::Attack { name, arg }) => JobReply::Attacked(super::attack::attempt(&name, &arg)),
        Err(e) => JobReply::Failed(format!("bad job: {e}")),
    };
    let code = match codec::write_frame(&mut file, &reply.encode()) {
        Ok(()) => 0,
        Err(_) => 123,
    };
    sys::exit_now(code)
}

/// Makes `fd` descriptor 3 (closing what was there: the zygote's control socket).
fn dup_to_3(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() == CONTROL_FD {
        return Ok(fd);
    }
    #[allow(unsafe_code)]
    // SAFETY: dup3 onto 3 atomically replaces the control socket, which this forked worker
    // never uses again (its OwnedFd lives on in the zygote's state, which the worker abandons:
    // it ends with _exit, running no destructor); the old `fd` is closed by its drop below.
    let rc = unsafe { libc::dup3(fd.as_raw_fd(), CONTROL_FD, libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(fd);
    #[allow(unsafe_code)]
    // SAFETY: dup3 succeeded, so descriptor 3 is open and now owned only by this OwnedFd.
    Ok(unsafe { OwnedFd::from_raw_fd(CONTROL_FD) })
}
