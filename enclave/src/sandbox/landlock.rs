//! Landlock: the file-system and network view of the locked-down enclave.
//!
//! After lock-down the enclave may read the policy file, its model files and the simulated key
//! root, and read and write its audit directory and the directory of its socket; every other
//! path is refused with `EACCES`, including listing `/` and executing programs. TCP bind and
//! connect are refused (ABI 4), and so are connections to abstract Unix sockets and signals to
//! processes outside the sandbox (ABI 6 scoping).
//!
//! The access rights handled are pinned to [`TESTED_ABI`] (capped to what the kernel reports), so
//! a newer kernel never silently changes what is refused; every requested right is a hard
//! requirement once the kernel's ABI says it exists.

use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::{Barrier, SandboxError, SandboxMode, SandboxPlan};

/// The newest landlock ABI this code was written and tested against (the CI kernel's).
pub const TESTED_ABI: u32 = 7;
/// File-system rules.
pub const FS_ABI: u32 = 1;
/// TCP bind/connect rules.
pub const NET_ABI: u32 = 4;
/// Abstract-Unix-socket and signal scoping.
pub const SCOPE_ABI: u32 = 6;

/// What [`restrict`] did, barrier by barrier.
#[derive(Debug)]
pub struct Outcome {
    /// The kernel's landlock ABI (0: none).
    pub abi: u32,
    /// Per landlock barrier: in force, or why not.
    pub results: Vec<(Barrier, Result<(), SandboxError>)>,
}

/// The landlock ABI version the running kernel reports; 0 if it has none.
pub fn kernel_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[allow(unsafe_code)]
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0 and the VERSION flag
    // only returns the ABI version (or -1 with errno); it reads and writes no memory of ours.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

fn pinned(abi: u32) -> ABI {
    match abi.min(TESTED_ABI) {
        0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

/// Applies the enclave's landlock ruleset to the calling thread (and the threads it starts
/// later). In `enforce` mode nothing is applied unless every landlock barrier is available.
pub fn restrict(plan: &SandboxPlan) -> Result<Outcome, SandboxError> {
    let abi = kernel_abi();
    let need = |barrier, min: u32, what: &str| {
        if abi >= min {
            Ok(())
        } else {
            Err(SandboxError::new(
                barrier,
                format!("the kernel reports landlock ABI {abi}; {what} need ABI {min} or later"),
            ))
        }
    };
    let mut results = vec![
        (
            Barrier::LandlockFs,
            need(Barrier::LandlockFs, FS_ABI, "file-system rules"),
        ),
        (
            Barrier::LandlockNet,
            need(Barrier::LandlockNet, NET_ABI, "TCP rules"),
        ),
        (
            Barrier::LandlockScope,
            need(
                Barrier::LandlockScope,
                SCOPE_ABI,
                "signal and abstract-socket scoping",
            ),
        ),
    ];
    let any_missing = results.iter().any(|(_, r)| r.is_err());
    if abi < FS_ABI || (any_missing && plan.mode == SandboxMode::Enforce) {
        return Ok(Outcome { abi, results });
    }
    let net = abi >= NET_ABI;
    let scope = abi >= SCOPE_ABI;
    if let Err(reason) = apply(plan, pinned(abi), net, scope) {
        for (_, r) in results.iter_mut() {
            if r.is_ok() {
                *r = Err(SandboxError::new(Barrier::LandlockFs, reason.clone()));
            }
        }
        for (b, r) in results.iter_mut() {
            if let Err(e) = r {
                e.barrier = *b;
            }
        }
    }
    Ok(Outcome { abi, results })
}

fn apply(plan: &SandboxPlan, abi: ABI, net: bool, scope: bool) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let read_only: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let mut read_write: BitFlags<AccessFs> = AccessFs::ReadFile
        | AccessFs::ReadDir
        | AccessFs::WriteFile
        | AccessFs::MakeReg
        | AccessFs::RemoveFile;
    if abi >= ABI::V3 {
        read_write |= AccessFs::Truncate;
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err(&e))?;
    if net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| err(&e))?;
    }
    if scope {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| err(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| err(&e))?;
    // INVARIANT: no rule grants TCP ports, so with `net` every TCP bind and connect is refused.
    for (paths, access) in [(&plan.read_only, read_only), (&plan.read_write, read_write)] {
        for path in paths {
            let access = if is_dir(path) {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            let fd = PathFd::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let status = created.restrict_self().map_err(|e| err(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(format!(
            "the kernel enforced the ruleset only as {status:?}"
        ));
    }
    Ok(())
}

fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}
