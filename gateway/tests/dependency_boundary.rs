//! Architecture invariant: the gateway cannot open a sealed request.
//!
//! The gateway crate must not depend — directly or transitively, through
//! normal or build dependencies — on any crate that implements the opening side
//! of the seal (HPKE, OHTTP, Binary HTTP) or on the enclave or client crates
//! that hold such keys. This test reads `cargo metadata` and walks the resolved
//! graph. A positive control checks the walker does find `ohttp` under the
//! enclave, so this test cannot pass by walking nothing.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Crates whose presence would let the gateway open sealed traffic.
const FORBIDDEN: &[&str] = &[
    "ohttp",
    "bhttp",
    "hpke",
    "hpke-rs",
    "x25519-dalek",
    "cloister-seal",
    "cloister-enclave",
    "cloister",
    "cloister-attestation",
    "cloister-privacy",
    "tfhe",
    "cloister-he",
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// Names of every crate reachable from `root` through normal and build edges.
fn reachable(meta: &Value, root: &str) -> BTreeSet<String> {
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root_id = names
        .iter()
        .find(|(_, n)| **n == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("package {root} not in workspace"));
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([root_id]);
    let mut visited = BTreeSet::from([root_id]);
    while let Some(id) = queue.pop_front() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let non_dev = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].as_str() != Some("dev"));
            if !non_dev {
                continue;
            }
            let dep_id = dep["pkg"].as_str().unwrap();
            if visited.insert(dep_id) {
                seen.insert(names[dep_id].to_string());
                queue.push_back(dep_id);
            }
        }
    }
    seen
}

#[test]
fn gateway_depends_on_nothing_that_can_open_a_sealed_request() {
    let meta = metadata();
    let deps = reachable(&meta, "cloister-gateway");
    assert!(
        deps.contains("rustls"),
        "walker sanity: gateway must reach rustls"
    );
    let bad: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|f| deps.contains(*f))
        .collect();
    assert!(
        bad.is_empty(),
        "the gateway must not depend on {bad:?}: it would be able to open sealed requests"
    );
}

#[test]
fn positive_control_the_enclave_does_reach_ohttp() {
    let meta = metadata();
    let deps = reachable(&meta, "cloister-enclave");
    assert!(
        deps.contains("ohttp"),
        "walker failed to see ohttp under the enclave"
    );
}
