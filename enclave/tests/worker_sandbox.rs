//! Crosses every barrier from a real, locked-down engine worker, and proves the broker survives
//! each way a worker can fail.
//!
//! This test binary plays the broker: it starts the production engine zygote
//! ([`EnginePool::spawn`] re-executes this binary with `--engine-worker`, which `main` hands to
//! the production `worker::zygote_main`), loads two models through sealed memfds, locks the
//! zygote down in `enforce` mode exactly as the enclave does, and then sends jobs. The attack
//! jobs exist only with the test-only `attack-hooks` feature (refused in release builds): each
//! makes a fresh worker attempt one crossing, and the test asserts precisely how it failed —
//! the worker killed by `SIGSYS` (seccomp), or the call's result. Then, from outside, it checks
//! the kernel's view of a live worker (`/proc/PID/status`, namespaces).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cloister_enclave::worker::{self, EngineFailure, EnginePool, Exit};
use cloister_engine::onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use cloister_engine::Tensor;
use prost::Message;

const TIMEOUT: Duration = Duration::from_millis(1500);
const MEMORY_MB: u64 = 1024;
const MAX_IN_FLIGHT: usize = 2;

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == worker::ZYGOTE_FLAG)
    {
        worker::zygote_main();
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let fx = Fixture::new();
    let mut results = Vec::new();
    for (name, test) in TESTS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&fx)));
        match &r {
            Ok(()) => println!("test worker_sandbox::{name} ... ok"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("test worker_sandbox::{name} ... FAILED\n    {msg}");
            }
        }
        results.push(r.is_ok());
    }
    let failed = results.iter().filter(|ok| !**ok).count();
    println!(
        "\ntest result: {}. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" },
        results.len() - failed
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

type Test = fn(&Fixture);

const TESTS: &[(&str, Test)] = &[
    (
        "locks_down_completely_in_enforce_mode",
        locks_down_completely,
    ),
    ("serves_a_model_correctly", serves_a_model),
    ("crossings_fail_as_each_barrier_says", crossings),
    (
        "only_stdio_and_its_channel_are_open",
        only_stdio_and_channel,
    ),
    (
        "a_crash_fails_only_its_request",
        crash_fails_only_its_request,
    ),
    ("malformed_replies_are_typed_errors", malformed_replies),
    (
        "a_runaway_model_is_stopped_at_its_deadline",
        runaway_model_is_stopped,
    ),
    ("the_address_space_cap_holds", address_space_cap),
    ("concurrent_requests_are_capped", concurrency_cap),
    ("the_kernel_sees_a_confined_worker", kernel_view),
];

struct Fixture {
    pool: EnginePool,
    status: String,
    dir: tempfile::TempDir,
    tcp: std::net::TcpListener,
}

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&n| Dimension {
                            value: Some(dimension::Value::DimValue(n)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn model(nodes: Vec<NodeProto>, init: Vec<TensorProto>, x: &[i64], y: &[i64]) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: init,
            input: vec![vi("x", x)],
            output: vec![vi("y", y)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: Some(output.to_string()),
        op_type: Some(op.into()),
        ..Default::default()
    }
}

/// `y = x + 1` on `[1, 4]`.
fn add_one() -> Vec<u8> {
    let one = TensorProto {
        name: Some("one".into()),
        dims: vec![1],
        data_type: Some(1),
        raw_data: Some(1f32.to_le_bytes().to_vec()),
        ..Default::default()
    };
    model(
        vec![node("Add", &["x", "one"], "y")],
        vec![one],
        &[1, 4],
        &[1, 4],
    )
}

/// 400 chained `[256, 256]` MatMuls: seconds of work, far past the test's deadline.
fn slow() -> Vec<u8> {
    let n = 256usize;
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![n as i64, n as i64],
        data_type: Some(1),
        raw_data: Some(
            (0..n * n)
                .flat_map(|i| (if i % (n + 1) == 0 { 1f32 } else { 0f32 }).to_le_bytes())
                .collect(),
        ),
        ..Default::default()
    };
    let mut nodes = Vec::new();
    let mut prev = "x".to_string();
    for i in 0..400 {
        let out = if i == 399 {
            "y".to_string()
        } else {
            format!("h{i}")
        };
        nodes.push(node("MatMul", &[&prev, "w"], &out));
        prev = out;
    }
    let d = n as i64;
    model(nodes, vec![w], &[d, d], &[d, d])
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        // A descriptor the zygote inherits (no close-on-exec), as a leaky parent would pass it:
        // the zygote must close it at lock-down (checked in `the_kernel_sees_a_confined_worker`).
        let leaked = std::fs::File::open(dir.path()).unwrap();
        let leaked = std::os::fd::IntoRawFd::into_raw_fd(leaked);
        // SAFETY: F_SETFD with an integer argument on a descriptor this test owns.
        assert_eq!(unsafe { libc::fcntl(leaked, libc::F_SETFD, 0) }, 0);
        let mut pool = EnginePool::spawn(&exe).expect("start the zygote");
        let add = add_one();
        std::fs::write(dir.path().join("add.onnx"), &add).unwrap();
        pool.load("add", &add, vec!["y".into()]).expect("load add");
        pool.load("slow", &slow(), vec!["y".into()])
            .expect("load slow");
        let status = pool
            .lock_down(false, MEMORY_MB, TIMEOUT, MAX_IN_FLIGHT)
            .expect("the worker locks down in enforce mode");
        Fixture {
            pool,
            status,
            dir,
            tcp: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn run_add(&self) -> Result<Vec<f32>, EngineFailure> {
        let x = Tensor::from_f32(vec![1, 4], vec![1.0, 2.0, -3.5, 0.0]).unwrap();
        let out = self.pool.run("add", vec![("x".into(), x)])?;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "y");
        Ok(out[0].1.as_f32().unwrap().to_vec())
    }

    fn still_serves(&self) {
        assert_eq!(
            self.run_add().expect("the next request is served"),
            vec![2.0, 3.0, -2.5, 1.0]
        );
    }
}

fn locks_down_completely(fx: &Fixture) {
    let s = &fx.status;
    assert!(s.starts_with("worker/v1 "), "{s}");
    assert!(!s.contains("=off"), "{s}");
    for on in [
        "no_new_privs=on",
        "not_dumpable=on",
        "rlimits=on",
        "inherited_fds=on",
        "namespaces=on",
        "mount_ns=on",
        "pid_ns=on",
        "landlock_fs=on",
        "landlock_net=on",
        "landlock_scope=on",
        "seccomp=on",
    ] {
        assert!(s.contains(on), "{on} missing in {s}");
    }
    assert!(s.contains(&format!("address_space_mb={MEMORY_MB}")), "{s}");
    assert_eq!(fx.pool.status(), Some(s.as_str()));
}

fn serves_a_model(fx: &Fixture) {
    fx.still_serves();
    // The price of a fresh process per request, end to end (fork of the spare, job out,
    // outputs back, reap), on a model whose own run is negligible.
    let n = 50;
    let started = Instant::now();
    for _ in 0..n {
        fx.still_serves();
    }
    println!(
        "    engine worker round trip (x+1 on [1,4]): {:.2} ms per request, {n} requests",
        started.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    // An engine error (wrong input name) is the model's failure, not a crash.
    let x = Tensor::from_f32(vec![1, 4], vec![0.0; 4]).unwrap();
    match fx.pool.run("add", vec![("nope".into(), x)]) {
        Err(EngineFailure::Model(m)) => assert!(m.contains("nope"), "{m}"),
        other => panic!("expected a model error, got {other:?}"),
    }
}

/// How one crossing must end.
enum Expect {
    /// The worker is killed by this signal.
    Killed(i32),
    /// The call returns this.
    Returns(&'static str),
}

fn crossings(fx: &Fixture) {
    let broker = std::process::id().to_string();
    let port = fx.tcp.local_addr().unwrap().port().to_string();
    let model_path = fx.dir.path().join("add.onnx").display().to_string();
    let sigsys = Expect::Killed(libc::SIGSYS);
    let cases: Vec<(&str, &str, Expect, &str)> = vec![
        (
            "open_etc_passwd",
            "",
            sigsys,
            "seccomp: no open/openat at all",
        ),
        (
            "open_path",
            &model_path,
            Expect::Killed(libc::SIGSYS),
            "seccomp: not even a model file",
        ),
        (
            "read_broker_mem",
            &broker,
            Expect::Killed(libc::SIGSYS),
            "seccomp: /proc/<broker>/mem cannot be opened",
        ),
        (
            "process_vm_readv_broker",
            &broker,
            Expect::Killed(libc::SIGSYS),
            "seccomp: no reading another process's memory",
        ),
        (
            "socket_inet",
            "",
            Expect::Killed(libc::SIGSYS),
            "seccomp: no socket()",
        ),
        (
            "connect_loopback",
            &port,
            Expect::Killed(libc::SIGSYS),
            "seccomp: no connect(), to the test's loopback listener",
        ),
        (
            "execve_bin_sh",
            "",
            Expect::Killed(libc::SIGSYS),
            "seccomp: no execve()",
        ),
        (
            "fork",
            "",
            Expect::Killed(libc::SIGSYS),
            "seccomp: the worker filter has no clone()",
        ),
        (
            "ptrace_broker",
            &broker,
            Expect::Killed(libc::SIGSYS),
            "seccomp: no ptrace()",
        ),
        (
            "mount_tmpfs",
            "",
            Expect::Killed(libc::SIGSYS),
            "seccomp: no mount()",
        ),
        (
            "kill_broker",
            &broker,
            Expect::Killed(libc::SIGSYS),
            "seccomp: no kill()",
        ),
        (
            "exec_memory",
            "",
            Expect::Killed(libc::SIGSYS),
            "seccomp: no PROT_EXEC mapping",
        ),
        (
            "allowed",
            "",
            Expect::Returns("ok 499999500000"),
            "positive control: memory and its channel work",
        ),
    ];
    let mut failures = Vec::new();
    for (name, arg, expect, why) in cases {
        let got = fx.pool.attack(name, arg);
        let ok = match (&expect, &got) {
            (Expect::Killed(sig), Err(EngineFailure::Crashed(Exit::Signal(s)))) => s == sig,
            (Expect::Returns(want), Ok(r)) => r == want,
            _ => false,
        };
        if !ok {
            failures.push(format!("{name} ({why}): got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n    "));
    // The broker was not touched, and the next request is served.
    fx.still_serves();
}

fn only_stdio_and_channel(fx: &Fixture) {
    // The test (the broker) holds many descriptors, one of them inherited by the zygote; the
    // worker holds stdin, stdout, stderr and its channel (3), nothing else.
    assert_eq!(
        fx.pool.attack("probe_fds", "").expect("probe returns"),
        "open 0,1,2,3"
    );
}

fn crash_fails_only_its_request(fx: &Fixture) {
    match fx.pool.attack("abort", "") {
        Err(e @ EngineFailure::Crashed(Exit::Signal(libc::SIGABRT))) => {
            let api = e.to_api_error();
            assert_eq!(api.code.as_str(), "inference_failed", "{api:?}");
        }
        other => panic!("expected a SIGABRT crash, got {other:?}"),
    }
    fx.still_serves();
}

fn malformed_replies(fx: &Fixture) {
    for name in ["garbage_reply", "huge_frame", "wrong_outputs"] {
        match fx.pool.attack(name, "") {
            Err(e @ EngineFailure::Malformed(_)) => {
                assert_eq!(e.to_api_error().code.as_str(), "internal", "{e}");
            }
            other => panic!("{name}: expected a malformed-reply error, got {other:?}"),
        }
        fx.still_serves();
    }
}

fn runaway_model_is_stopped(fx: &Fixture) {
    for run in [
        Box::new(|| {
            let x = Tensor::from_f32(vec![256, 256], vec![1.0; 256 * 256]).unwrap();
            fx.pool.run("slow", vec![("x".into(), x)]).map(|_| ())
        }) as Box<dyn Fn() -> Result<(), EngineFailure>>,
        Box::new(|| fx.pool.attack("spin", "").map(|_| ())),
    ] {
        let started = Instant::now();
        let r = run();
        let took = started.elapsed();
        match r {
            Err(e @ EngineFailure::Timeout(_)) => {
                assert_eq!(e.to_api_error().code.as_str(), "timeout")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(
            took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(3),
            "stopped after {took:?}"
        );
        fx.still_serves();
    }
}

fn address_space_cap(fx: &Fixture) {
    // Twice the cap: the allocation fails and the worker aborts; the broker is unaffected.
    let mb = (2 * MEMORY_MB).to_string();
    match fx.pool.attack("allocate_mb", &mb) {
        Err(EngineFailure::Crashed(Exit::Signal(libc::SIGABRT))) => {}
        other => panic!("expected the allocation to abort the worker, got {other:?}"),
    }
    // Well under the cap works.
    assert_eq!(fx.pool.attack("allocate_mb", "64").unwrap(), "ok");
    fx.still_serves();
}

fn concurrency_cap(fx: &Fixture) {
    std::thread::scope(|s| {
        let busy: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| s.spawn(|| fx.pool.attack("spin", "")))
            .collect();
        // Give both time to be admitted.
        std::thread::sleep(Duration::from_millis(300));
        match fx.pool.run(
            "add",
            vec![(
                "x".into(),
                Tensor::from_f32(vec![1, 4], vec![0.0; 4]).unwrap(),
            )],
        ) {
            Err(e @ EngineFailure::Busy { max: MAX_IN_FLIGHT }) => {
                assert_eq!(e.to_api_error().code.as_str(), "rate_limited")
            }
            other => panic!("expected busy, got {other:?}"),
        }
        for b in busy {
            assert!(matches!(b.join().unwrap(), Err(EngineFailure::Timeout(_))));
        }
    });
    fx.still_serves();
}

fn status_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The engine processes this test started: (pid, NSpid fields).
pub fn engine_processes(exe: &Path) -> BTreeMap<u32, Vec<u32>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ppid_ok = status_of(pid).is_some();
        let ours = std::fs::read_link(entry.path().join("exe")).is_ok_and(|e| e == exe)
            || args[0] == exe.as_os_str().as_encoded_bytes();
        if ppid_ok && args.len() >= 2 && ours && args[1] == worker::ZYGOTE_FLAG.as_bytes() {
            let st = status_of(pid).unwrap_or_default();
            let nspid = field(&st, "NSpid")
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            out.insert(pid, nspid);
        }
    }
    out
}

fn kernel_view(fx: &Fixture) {
    fx.still_serves(); // a spare worker is forked after each job
    let exe = std::env::current_exe().unwrap();
    // A spare worker is forked after each job and stacks its own filter first thing, before it
    // reads any job; right after the fork it briefly carries only the zygote's filter. Wait
    // (bounded) until the spare has finished its lock-down, then check everything below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let procs = loop {
        let procs = engine_processes(&exe);
        let spare_locked = procs.iter().any(|(pid, ns)| {
            ns.len() == 2
                && ns[1] > 1
                && status_of(*pid).is_some_and(|st| field(&st, "Seccomp_filters") == Some("2"))
        });
        if spare_locked || std::time::Instant::now() > deadline {
            break procs;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The outer zygote (no PID namespace of its own), the namespace's init (NSpid … 1) and at
    // least one spare worker (NSpid … N > 1).
    let init = procs
        .iter()
        .find(|(_, ns)| ns.len() == 2 && ns[1] == 1)
        .unwrap_or_else(|| panic!("no zygote init in {procs:?}"));
    let worker = procs
        .iter()
        .filter(|(_, ns)| ns.len() == 2 && ns[1] > 1)
        .max_by_key(|(pid, _)| {
            status_of(**pid).is_some_and(|st| field(&st, "Seccomp_filters") == Some("2"))
        })
        .unwrap_or_else(|| panic!("no worker in {procs:?}"));
    let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    for (pid, filters) in [(init.0, "1"), (worker.0, "2")] {
        let st = status_of(*pid).unwrap();
        assert_eq!(field(&st, "NoNewPrivs"), Some("1"), "{st}");
        assert_eq!(field(&st, "Seccomp"), Some("2"), "{st}");
        assert_eq!(field(&st, "Seccomp_filters"), Some(filters), "{st}");
        for kind in ["net", "pid", "mnt", "user", "ipc"] {
            assert_ne!(
                ns(&pid.to_string(), kind),
                ns("self", kind),
                "{kind} namespace of {pid}"
            );
        }
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let as_line = limits
            .lines()
            .find(|l| l.starts_with("Max address space"))
            .unwrap();
        let cap = (MEMORY_MB << 20).to_string();
        assert_eq!(
            as_line.split_whitespace().collect::<Vec<_>>()[3..5],
            [cap.as_str(), cap.as_str()],
            "{as_line}"
        );
    }
    // The zygote closed the descriptor it inherited: it holds stdio and its control socket.
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{}/fd", init.0))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    assert_eq!(fds, vec![0, 1, 2, 3], "descriptors of the zygote");
    // The worker's root is the empty tmpfs, not the host's `/`.
    let root = std::fs::read_dir(format!("/proc/{}/root", worker.0))
        .unwrap()
        .count();
    assert_eq!(root, 0, "the worker's root is not empty");
}
