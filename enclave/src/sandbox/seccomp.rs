//! Seccomp: the system calls the locked-down enclave may make.
//!
//! The allow-list is data: `policies/seccomp/enclave.json` (seccompiler's JSON format, one entry
//! per system call with a comment saying who needs it), compiled to BPF by `build.rs` and
//! embedded here. Any other system call kills the whole process (`SECCOMP_RET_KILL_PROCESS`,
//! seen by the parent as `SIGSYS`): no sockets, `connect`, `bind`, `execve`, `fork`, `ptrace`,
//! `mount`, `kill`, `setrlimit` or `seccomp`. `clone` is allowed only with `CLONE_THREAD`.
//! The `stat` family is refused too: landlock does not mediate it, so it would let a compromised
//! enclave probe which paths exist (note: `std::fs::read` stats the file it reads; after lock-down
//! read with `File::open` and `read`).
//!
//! Two filters are installed, both with `TSYNC` so every thread carries them: first
//! `enclave_clone3`, which makes `clone3` fail with `ENOSYS` (its flags are behind a pointer the
//! filter cannot read, and glibc then falls back to `clone`), then the allow-list itself, which
//! also forbids installing anything after it.
//!
//! The engine's processes have their own, tighter lists in `policies/seccomp/engine-worker.json`:
//! `engine_zygote` (the process that forks one worker per request: no open, no socket, no exec;
//! `fork`, `wait4` and `kill(SIGKILL)` of its own workers) and `engine_worker`, stacked on top in
//! each forked worker (read and write on its channel, memory, exit: nothing else; no executable
//! memory in either).

use seccompiler::{sock_filter, BpfProgram};
use sha2::{Digest, Sha256};

use super::{Barrier, SandboxError};

static ALLOW_LIST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_enclave.bpf"));
static CLONE3_ENOSYS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_enclave_clone3.bpf"));

static ENGINE_ZYGOTE: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_engine_zygote.bpf"));
static ENGINE_WORKER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/seccomp_engine_worker.bpf"));

/// The engine processes' allow-lists as reviewed, for reports and tests.
pub const ENGINE_ALLOW_LIST_JSON: &str =
    include_str!("../../../policies/seccomp/engine-worker.json");

/// The allow-list as reviewed, for reports.
pub const ALLOW_LIST_JSON: &str = include_str!("../../../policies/seccomp/enclave.json");

fn decode(bytes: &[u8]) -> BpfProgram {
    bytes
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// SHA-256 over both embedded BPF programs (allow-list first): names the exact filter.
pub fn filter_sha256() -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((ALLOW_LIST.len() as u64).to_le_bytes());
    h.update(ALLOW_LIST);
    h.update(CLONE3_ENOSYS);
    h.finalize().into()
}

/// SHA-256 over both embedded engine programs (zygote first): names the workers' exact filter.
pub fn engine_filter_sha256() -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((ENGINE_ZYGOTE.len() as u64).to_le_bytes());
    h.update(ENGINE_ZYGOTE);
    h.update(ENGINE_WORKER);
    h.finalize().into()
}

/// The system calls the allow-list names (sorted, without repeats).
pub fn allowed_syscalls() -> Vec<String> {
    syscalls_of(ALLOW_LIST_JSON, "enclave")
}

/// The system calls the engine filter `name` (`engine_zygote` or `engine_worker`) names.
pub fn engine_allowed_syscalls(name: &str) -> Vec<String> {
    syscalls_of(ENGINE_ALLOW_LIST_JSON, name)
}

fn syscalls_of(json: &str, filter: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut names: Vec<String> = doc[filter]["filter"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r["syscall"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// Installs both filters on every thread of the process.
pub fn install() -> Result<(), SandboxError> {
    let allow = decode(ALLOW_LIST);
    let clone3 = decode(CLONE3_ENOSYS);
    if allow.is_empty() || clone3.is_empty() {
        return Err(SandboxError::new(
            Barrier::Seccomp,
            format!(
                "this build has no seccomp allow-list for {}",
                std::env::consts::ARCH
            ),
        ));
    }
    for (name, prog) in [("enclave_clone3", &clone3), ("enclave", &allow)] {
        seccompiler::apply_filter_all_threads(prog)
            .map_err(|e| SandboxError::new(Barrier::Seccomp, format!("install {name}: {e}")))?;
    }
    Ok(())
}

fn install_one(name: &str, bytes: &[u8]) -> Result<(), SandboxError> {
    let prog = decode(bytes);
    if prog.is_empty() {
        return Err(SandboxError::new(
            Barrier::Seccomp,
            format!(
                "this build has no seccomp allow-list for {}",
                std::env::consts::ARCH
            ),
        ));
    }
    // The engine processes are single-threaded: the calling thread is the whole process.
    seccompiler::apply_filter(&prog)
        .map_err(|e| SandboxError::new(Barrier::Seccomp, format!("install {name}: {e}")))
}

/// Installs `engine_zygote` on the (single-threaded) engine zygote.
pub fn install_engine_zygote() -> Result<(), SandboxError> {
    install_one("engine_zygote", ENGINE_ZYGOTE)
}

/// Stacks `engine_worker` on a freshly forked engine worker (which already carries
/// `engine_zygote`; the kernel applies the stricter answer of the two).
pub fn install_engine_worker() -> Result<(), SandboxError> {
    install_one("engine_worker", ENGINE_WORKER)
}
