//! The running enclave and its engine processes are sandboxed, seen from outside: the kernel's own
//! view in `/proc/PID/status`, `/proc/PID/limits` and `/proc/PID/ns/*`, and the sandbox status
//! bound into the evidence, which a client that requires a sandbox accepts. (Each barrier is
//! crossed from inside by `enclave/tests/sandbox.rs` and `enclave/tests/worker_sandbox.rs`.)

use cloister::sdk::Client;
use cloister_e2e::Service;

/// The pid of the `cloister-enclave` process whose command line names `root`.
fn enclave_pid(root: &std::path::Path) -> u32 {
    let root = root.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args
            .first()
            .is_some_and(|a| a.ends_with("cloister-enclave"))
            && args.iter().any(|a| a.starts_with(&root))
        {
            return pid;
        }
    }
    panic!("no cloister-enclave process for {root}");
}

/// The children of `parent` that are engine processes (`cloister-enclave --engine-worker`).
fn engine_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(status), Ok(cmdline)) = (
            std::fs::read_to_string(entry.path().join("status")),
            std::fs::read(entry.path().join("cmdline")),
        ) else {
            continue;
        };
        let engine = cmdline
            .split(|b| *b == 0)
            .nth(1)
            .is_some_and(|a| a == b"--engine-worker");
        if engine && field(&status, "PPid") == Some(parent.to_string().as_str()) {
            out.push(pid);
        }
    }
    out
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn the_running_enclave_is_locked_down_and_attests_its_sandbox() {
    let mut svc = Service::start();
    let pid = enclave_pid(&svc.dir.root);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(field(&status, "NoNewPrivs"), Some("1"), "{status}");
    assert_eq!(field(&status, "Seccomp"), Some("2"), "{status}");
    assert_eq!(field(&status, "Seccomp_filters"), Some("2"), "{status}");

    // Its own network namespace: not the one the gateway and this harness share.
    let netns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    assert_ne!(netns(&pid.to_string()), netns("self"));

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );

    // A client that requires an enforced sandbox accepts this enclave's evidence, whose bound
    // status names every barrier as on.
    let mut profile = svc.profile.clone();
    profile.require_sandbox = true;
    let client = Client::new(profile).unwrap();
    let attestation = svc.block_on(client.attest()).unwrap();
    let bound = &attestation.bundle.sandbox_status;
    assert!(attestation.verified.is_some(), "{:?}", attestation.checks);
    assert!(bound.starts_with("enforce: sandbox/v1 "), "{bound}");
    for barrier in [
        "no_new_privs=on",
        "not_dumpable=on",
        "rlimits=on",
        "landlock_fs=on",
        "landlock_net=on",
        "landlock_scope=on",
        "namespaces=on",
        "seccomp=on",
        "inherited_fds=on",
    ] {
        assert!(bound.contains(barrier), "{bound}");
    }
    assert!(svc.alive(), "the enclave died under its own sandbox");
}

#[test]
fn the_engine_runs_in_separate_confined_processes_and_attests_their_sandbox() {
    let mut svc = Service::start();
    let enclave = enclave_pid(&svc.dir.root);
    // The outer zygote (child of the enclave), the PID namespace's init (its child, PID 1
    // inside), and the spare worker the init forked for the next request.
    let outer = engine_children(enclave);
    assert_eq!(outer.len(), 1, "engine zygotes of {enclave}: {outer:?}");
    let init = engine_children(outer[0]);
    assert_eq!(init.len(), 1, "{init:?}");
    let workers = engine_children(init[0]);
    assert!(!workers.is_empty(), "no spare engine worker");

    let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    for (pid, filters) in [(init[0], "1"), (workers[0], "2")] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert_eq!(field(&status, "NoNewPrivs"), Some("1"), "{status}");
        assert_eq!(field(&status, "Seccomp"), Some("2"), "{status}");
        assert_eq!(field(&status, "Seccomp_filters"), Some(filters), "{status}");
        let nspid = field(&status, "NSpid").unwrap();
        assert_eq!(
            nspid.split_whitespace().count(),
            2,
            "own PID namespace: {nspid}"
        );
        for kind in ["net", "pid", "mnt"] {
            let mine = ns(&pid.to_string(), kind);
            assert_ne!(mine, ns("self", kind), "{kind}: the gateway's");
            assert_ne!(mine, ns(&enclave.to_string(), kind), "{kind}: the broker's");
        }
        // No file of the host is visible: the root is an empty tmpfs.
        let root = std::fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .count();
        assert_eq!(root, 0, "the root of {pid} is not empty");
    }

    // The bound status names the worker's barriers too.
    let client = Client::new(svc.profile.clone()).unwrap();
    let attestation = svc.block_on(client.attest()).unwrap();
    let bound = &attestation.bundle.sandbox_status;
    let (_, worker) = bound
        .split_once("; worker/v1 ")
        .unwrap_or_else(|| panic!("no worker status in {bound}"));
    assert!(!worker.contains("=off"), "{bound}");
    for barrier in [
        "mount_ns=on",
        "pid_ns=on",
        "namespaces=on",
        "seccomp=on",
        "landlock_fs=on",
    ] {
        assert!(worker.contains(barrier), "{bound}");
    }
    assert!(svc.alive());
}
