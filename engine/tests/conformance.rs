//! The ONNX backend node-test suite of `onnx==1.23.2`, run against the standard registry.
//!
//! Self-sufficient: when the data is missing it installs the pinned `onnx` with pip and writes
//! the data with `onnx_node_tests.py` into `<target>/onnx-node-tests-1.23.2/`. Requires
//! `python3` with pip. Passes when no test of a claimed (registered) operator fails; a test is
//! skipped only when its model uses an operator type the engine does not register.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_engine::conformance::{run_suite, Outcome};
use cloister_engine::OpRegistry;

const ONNX_VERSION: &str = "1.23.2";

fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// The suite's directory, generated on first use.
fn data_dir() -> PathBuf {
    let dir = target_dir().join(format!("onnx-node-tests-{ONNX_VERSION}"));
    let stamp = dir.join("ONNX_VERSION");
    if std::fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == ONNX_VERSION) {
        return dir;
    }
    let have = Command::new(python())
        .args(["-c", "import onnx; print(onnx.__version__)"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == ONNX_VERSION);
    if !have {
        run(Command::new(python()).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            &format!("onnx=={ONNX_VERSION}"),
        ]));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_node_tests.py");
    run(Command::new(python()).arg(script).arg(&dir));
    dir
}

#[test]
fn onnx_node_tests_of_claimed_operators_all_pass() {
    let dir = data_dir();
    let registry = OpRegistry::standard();
    let verbose = std::env::var_os("CONFORMANCE_VERBOSE").is_some();
    let start = std::time::Instant::now();
    let report = run_suite(&dir, &registry, |r| {
        if verbose || matches!(r.outcome, Outcome::Failed(_)) {
            println!("{r}");
        }
    })
    .expect("the suite directory is readable");
    println!("per operator (passed/failed/skipped):");
    for (op, t) in report.per_operator() {
        if t.passed + t.failed > 0 {
            println!(
                "  {op:<28} {:>4} {:>4} {:>4}",
                t.passed, t.failed, t.skipped
            );
        }
    }
    println!(
        "{} operator types claimed; {} in {:.1?}",
        registry.op_types().len(),
        report.summary(),
        start.elapsed()
    );
    assert_eq!(
        report.results.len(),
        1884,
        "onnx {ONNX_VERSION} has 1884 node tests"
    );
    assert_eq!(report.failed(), 0, "{}", report.summary());
}
