//! The running enclave is sandboxed, seen from outside: the kernel's own view in
//! `/proc/PID/status`, `/proc/PID/limits` and `/proc/PID/ns/net`, and the sandbox status bound into the evidence,
//! which a client that requires a sandbox accepts. (Each barrier is crossed from inside by
//! `enclave/tests/sandbox.rs`.)

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
    ] {
        assert!(bound.contains(barrier), "{bound}");
    }
    assert!(svc.alive(), "the enclave died under its own sandbox");
}
