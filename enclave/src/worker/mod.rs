//! Privilege separation: the engine runs in its own sandboxed processes, never in the broker.
//!
//! The broker (the enclave process: HPKE and Ed25519 keys, policy, privacy ledger, audit writer,
//! gateway connection) parses and checks each request, then hands the checked input tensors to a
//! fresh engine worker and reads the outputs back. The workers come from the engine zygote
//! ([`zygote`]): `cloister-enclave --engine-worker`, which holds the parsed models, and forks
//! one worker per request. Both are confined more tightly than the broker (no file system at
//! all, no network, no new programs; see `policies/seccomp/engine-worker.json`).
//!
//! INVARIANT: no engine process ever holds a key, the ledger or the audit writer. The zygote is
//! started by [`EnginePool::spawn`], which `main` calls before `Enclave::start` creates any key
//! or opens the ledger or the audit log; it is a fresh program image (`execve` of the enclave
//! binary), so it does not even share the broker's memory as it was at that moment; it inherits
//! exactly stdio and its control socket (every other descriptor of the broker is
//! close-on-exec, and the zygote closes anything else it finds); and afterwards it receives only
//! model bytes (sealed memfds) and worker channels. A compromised worker therefore has no copy
//! of a key in memory, no descriptor to one, no path to open one, no process it can trace or read
//! (`/proc/PID/mem` needs `open`; `process_vm_readv` and `ptrace` are not on its allow-list; its
//! PID namespace holds no broker), and no audit or ledger descriptor to forge a record with.
//!
//! The broker enforces the policy's resource limits on the engine: a deadline per request (the
//! zygote SIGKILLs a worker past it, the request fails with `timeout` and the next request gets
//! a fresh worker), the address-space cap of every worker (`RLIMIT_AS`), and the number of
//! requests running at once. A worker that crashes or answers malformed bytes fails only its own
//! request, with a typed error that the handler audits.

pub mod codec;
mod sys;
pub mod zygote;

#[cfg(feature = "attack-hooks")]
pub mod attack;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloister_engine::Tensor;
use cloister_protocol::error::{ApiError, ErrorCode};

use codec::{Control, ControlReply, FrameReadError, Job, JobReply, MAX_CONTROL, MAX_JOB};
pub use sys::Exit;

/// The command-line flag that makes `cloister-enclave` the engine zygote.
pub const ZYGOTE_FLAG: &str = "--engine-worker";

/// Why the engine could not answer a request. Each is that request's error; the service goes on.
#[derive(Debug, thiserror::Error)]
pub enum EngineFailure {
    /// The engine refused or failed on this model and input (a typed engine error).
    #[error("the model failed: {0}")]
    Model(String),
    /// The worker ran past the policy's execution time and was killed.
    #[error("the model ran longer than the policy's limit of {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// The worker died before answering.
    #[error("the engine worker died before answering ({0})")]
    Crashed(Exit),
    /// The worker answered bytes that do not decode, or outputs the model does not have.
    #[error("the engine worker's reply is malformed: {0}")]
    Malformed(String),
    /// As many requests as the policy allows are running.
    #[error("{max} requests are already running, the policy's max_concurrent_requests")]
    Busy {
        /// The policy's cap.
        max: usize,
    },
    /// The engine zygote is gone or misbehaves; no worker can be started.
    #[error("the engine is unavailable: {0}")]
    Unavailable(String),
}

impl EngineFailure {
    /// The typed error the client gets (sealed) and the audit log records.
    pub fn to_api_error(&self) -> ApiError {
        let code = match self {
            EngineFailure::Model(_) | EngineFailure::Crashed(_) => ErrorCode::InferenceFailed,
            EngineFailure::Timeout(_) => ErrorCode::Timeout,
            EngineFailure::Busy { .. } => ErrorCode::RateLimited,
            EngineFailure::Malformed(_) | EngineFailure::Unavailable(_) => ErrorCode::Internal,
        };
        ApiError::new(code, self.to_string())
    }
}

/// One forked worker and the broker's end of its channel.
struct Worker {
    pid: i32,
    channel: UnixStream,
}

/// The broker's handle on the engine: the zygote's control socket, a spare worker, the limits.
pub struct EnginePool {
    control: Mutex<Option<OwnedFd>>,
    spare: Mutex<Option<Worker>>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    timeout: Duration,
    outputs: BTreeMap<String, Vec<String>>,
    status: Option<String>,
    _zygote: Option<std::process::Child>,
}

impl EnginePool {
    /// Starts the engine zygote: `exe --engine-worker`, with a cleared environment, stdin and
    /// stdout on `/dev/null`, stderr shared (its rare messages are diagnostics), and one extra
    /// descriptor, its control socket. Call before any key exists (the module's INVARIANT).
    pub fn spawn(exe: &Path) -> Result<EnginePool, EngineFailure> {
        let unavailable =
            |what: &str, e: std::io::Error| EngineFailure::Unavailable(format!("{what}: {e}"));
        let (ours, theirs) = sys::seqpacket_pair().map_err(|e| unavailable("socketpair", e))?;
        let mut cmd = std::process::Command::new(exe);
        // argv[0] as ours, so process listings name the program, not `/proc/self/exe`.
        if let Some(arg0) = std::env::args_os().next() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        }
        cmd.arg(ZYGOTE_FLAG)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        sys::pass_as_fd3(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&theirs));
        let child = cmd
            .spawn()
            .map_err(|e| unavailable(&format!("start {}", exe.display()), e))?;
        drop(theirs);
        Ok(EnginePool {
            control: Mutex::new(Some(ours)),
            spare: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            max_in_flight: 1,
            timeout: Duration::from_secs(10),
            outputs: BTreeMap::new(),
            status: None,
            _zygote: Some(child),
        })
    }

    /// Sends one control message (with a descriptor) and reads the zygote's reply.
    fn call(
        &self,
        msg: &Control,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<ControlReply, EngineFailure> {
        let mut guard = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let Some(control) = guard.as_ref() else {
            return Err(EngineFailure::Unavailable(
                "the engine zygote is gone".into(),
            ));
        };
        let result = (|| {
            sys::send_with_fd(control.as_fd(), &msg.encode(), fd)
                .map_err(|e| format!("send to the zygote: {e}"))?;
            let mut buf = vec![0u8; MAX_CONTROL];
            let n = rustix::io::read(control, &mut buf)
                .map_err(|e| format!("read from the zygote: {e}"))?;
            if n == 0 {
                return Err("the engine zygote closed its control socket".to_string());
            }
            ControlReply::decode(&buf[..n]).map_err(|e| format!("zygote reply: {e}"))
        })();
        result.map_err(|e| {
            tracing::error!(error = %e, "ENGINE ZYGOTE LOST: no engine worker can be started");
            *guard = None;
            EngineFailure::Unavailable(e)
        })
    }

    /// Hands the zygote one model (bytes already checked against the policy's SHA-256) in a
    /// sealed memfd; it parses it before lock-down. `outputs` are the model's output names, which
    /// every reply must match.
    pub fn load(
        &mut self,
        id: &str,
        bytes: &[u8],
        outputs: Vec<String>,
    ) -> Result<(), EngineFailure> {
        let memfd = sys::sealed_memfd(id, bytes)
            .map_err(|e| EngineFailure::Unavailable(format!("memfd for model \"{id}\": {e}")))?;
        match self.call(&Control::Load { id: id.to_string() }, Some(memfd.as_fd()))? {
            ControlReply::Ok => {
                self.outputs.insert(id.to_string(), outputs);
                Ok(())
            }
            ControlReply::Failed(e) => Err(EngineFailure::Unavailable(e)),
            other => Err(EngineFailure::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Locks the zygote (and so every worker) down and sets the limits; returns the workers'
    /// sandbox status line. In `enforce` mode (`best_effort` false) a missing barrier is an error
    /// naming it. Then forks the first worker.
    pub fn lock_down(
        &mut self,
        best_effort: bool,
        address_space_mb: u64,
        timeout: Duration,
        max_in_flight: usize,
    ) -> Result<String, EngineFailure> {
        let status = match self.call(
            &Control::LockDown {
                best_effort,
                address_space_mb,
            },
            None,
        )? {
            ControlReply::LockedDown(s) => s,
            ControlReply::Failed(e) => return Err(EngineFailure::Unavailable(e)),
            other => {
                return Err(EngineFailure::Unavailable(format!(
                    "unexpected reply {other:?}"
                )))
            }
        };
        self.timeout = timeout;
        self.max_in_flight = max_in_flight.max(1);
        self.status = Some(status.clone());
        let first = self.fork_worker()?;
        *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(first);
        Ok(status)
    }

    /// The workers' sandbox status line, once locked down.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    fn fork_worker(&self) -> Result<Worker, EngineFailure> {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| EngineFailure::Unavailable(format!("socketpair: {e}")))?;
        match self.call(&Control::Spawn, Some(theirs.as_fd()))? {
            ControlReply::Spawned { pid } => Ok(Worker { pid, channel: ours }),
            ControlReply::Failed(e) => Err(EngineFailure::Unavailable(e)),
            other => Err(EngineFailure::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// How worker `pid` ended (after killing it if `kill`).
    fn ending(&self, pid: i32, kill: bool) -> Option<Exit> {
        let msg = if kill {
            Control::Kill { pid }
        } else {
            Control::Reap { pid }
        };
        match self.call(&msg, None) {
            Ok(ControlReply::Ended {
                signaled: true,
                value,
            }) => Some(Exit::Signal(value)),
            Ok(ControlReply::Ended {
                signaled: false,
                value,
            }) => Some(Exit::Code(value)),
            _ => None,
        }
    }

    /// Runs `model` on `inputs` in a fresh worker, within the policy's time limit and the cap on
    /// requests running at once.
    pub fn run(
        &self,
        model: &str,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, EngineFailure> {
        let expected = self
            .outputs
            .get(model)
            .ok_or_else(|| EngineFailure::Model(format!("no model \"{model}\" was loaded")))?;
        let reply = self.job(&Job::Run {
            model: model.to_string(),
            inputs,
        })?;
        match reply {
            JobReply::Outputs(outputs) => {
                let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                if names
                    .iter()
                    .copied()
                    .ne(expected.iter().map(String::as_str))
                {
                    return Err(EngineFailure::Malformed(format!(
                        "outputs {names:?}, but the model's are {expected:?}"
                    )));
                }
                Ok(outputs)
            }
            JobReply::Failed(e) => Err(EngineFailure::Model(e)),
            #[cfg(feature = "attack-hooks")]
            JobReply::Attacked(_) => Err(EngineFailure::Malformed("an attack reply".into())),
        }
    }

    /// Test builds only: makes a fresh worker attempt the sandbox crossing `name`
    /// ([`attack::attempt`]). `Ok(text)`: the call returned (`ok` or `errno N`); `Err(Crashed)`:
    /// the kernel killed the worker (e.g. `SIGSYS` from seccomp).
    #[cfg(feature = "attack-hooks")]
    pub fn attack(&self, name: &str, arg: &str) -> Result<String, EngineFailure> {
        match self.job(&Job::Attack {
            name: name.to_string(),
            arg: arg.to_string(),
        })? {
            JobReply::Attacked(r) => Ok(r),
            other => Err(EngineFailure::Malformed(format!("{other:?}"))),
        }
    }

    /// One job in one worker: admission, send, spare refill, bounded wait, read, and on any
    /// failure the worker's fate from the zygote.
    fn job(&self, job: &Job) -> Result<JobReply, EngineFailure> {
        let running = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _slot = Slot(&self.in_flight);
        if running >= self.max_in_flight {
            return Err(EngineFailure::Busy {
                max: self.max_in_flight,
            });
        }
        let started = Instant::now();
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut worker = match spare {
            Some(w) => w,
            None => self.fork_worker()?,
        };
        let sent = codec::write_frame(&mut worker.channel, &job.encode());
        // The next request's worker is forked while this one computes.
        self.refill();
        if sent.is_err() {
            return Err(self.failed(&worker, None));
        }
        let mut reader = DeadlineReader {
            stream: &worker.channel,
            deadline: started + self.timeout,
        };
        match codec::read_frame(&mut reader, MAX_JOB) {
            Ok(bytes) => match JobReply::decode(&bytes) {
                Ok(reply) => Ok(reply),
                Err(e) => Err(self.failed(&worker, Some(EngineFailure::Malformed(e.to_string())))),
            },
            Err(FrameReadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                let how = self.ending(worker.pid, true);
                tracing::warn!(pid = worker.pid, ended = ?how, "engine worker killed at its deadline");
                Err(EngineFailure::Timeout(self.timeout))
            }
            Err(FrameReadError::Codec(e)) => {
                Err(self.failed(&worker, Some(EngineFailure::Malformed(e.to_string()))))
            }
            Err(FrameReadError::Io(_)) => Err(self.failed(&worker, None)),
        }
    }

    /// The worker failed: make sure it is gone and say how it ended.
    fn failed(&self, worker: &Worker, malformed: Option<EngineFailure>) -> EngineFailure {
        let _ = worker.channel.shutdown(std::net::Shutdown::Both);
        let how = self.ending(worker.pid, malformed.is_some());
        tracing::warn!(pid = worker.pid, ended = ?how, "engine worker failed");
        match (malformed, how) {
            (Some(m), _) => m,
            (None, Some(how)) => EngineFailure::Crashed(how),
            (None, None) => EngineFailure::Unavailable("the worker's fate is unknown".into()),
        }
    }

    /// Forks the next spare worker if there is none.
    fn refill(&self) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_none() {
            match self.fork_worker() {
                Ok(w) => *spare = Some(w),
                Err(e) => tracing::error!(error = %e, "could not fork a spare engine worker"),
            }
        }
    }
}

/// Releases a request slot when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads from a worker's channel, failing with `TimedOut` once the deadline passes.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !sys::poll_readable(self.stream.as_fd(), left)? {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        (&mut &*self.stream).read(buf)
    }
}

/// The zygote's entry point (`cloister-enclave --engine-worker`); never returns.
pub fn zygote_main() -> ! {
    zygote::main()
}
