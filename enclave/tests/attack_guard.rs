//! The test-only `attack-hooks` feature cannot reach a release build: `src/attack_guard.rs`
//! is compiled alone with `rustc`, with the feature on and debug assertions off (what
//! `cargo build --release --features attack-hooks` does), and must fail with its message; with
//! debug assertions on, or without the feature, it must compile.

use std::path::Path;
use std::process::Command;

fn compile(feature: bool, debug_assertions: bool) -> (bool, String) {
    let guard = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/attack_guard.rs");
    let out = tempfile::tempdir().unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2021",
        "--crate-type",
        "lib",
        "--crate-name",
        "guard",
    ])
    .arg("-C")
    .arg(format!(
        "debug-assertions={}",
        if debug_assertions { "on" } else { "off" }
    ))
    .arg("--out-dir")
    .arg(out.path())
    .arg(&guard);
    if feature {
        cmd.args(["--cfg", "feature=\"attack-hooks\""]);
    }
    let o = cmd.output().expect("run rustc");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_release_build_with_attack_hooks_does_not_compile() {
    let (ok, stderr) = compile(true, false);
    assert!(!ok, "the release build with attack-hooks compiled");
    assert!(
        stderr.contains("refused") && stderr.contains("release builds"),
        "{stderr}"
    );
}

#[test]
fn debug_builds_and_builds_without_the_feature_compile() {
    for (feature, debug) in [(true, true), (false, false), (false, true)] {
        let (ok, stderr) = compile(feature, debug);
        assert!(ok, "feature={feature} debug={debug}: {stderr}");
    }
}
