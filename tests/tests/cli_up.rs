//! The README's promise: `cloister up` starts the service, and the printed
//! `cloister attest` / `cloister infer` commands work against it; Ctrl-C or
//! SIGTERM stops everything cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloister_e2e::{bin_dir, free_port};

#[test]
fn cloister_up_attest_infer_and_clean_stop() {
    let bins = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut up = Command::new(bins.join("cloister"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", &listen])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start cloister up");
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90).saturating_sub(started.elapsed()))
            .expect("cloister up printed its banner");
        let done = line.contains("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(banner.contains(&format!("https://{listen}")), "{banner}");
    assert!(banner.contains("SIMULATED"), "{banner}");
    assert!(banner.contains("measurement"), "{banner}");

    // The printed example command, run as printed.
    let infer_line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" infer --profile "))
        .expect("example infer command");
    let parts: Vec<&str> = infer_line.split_whitespace().collect();
    let out = Command::new(parts[0]).args(&parts[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "infer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("infer prints JSON");
    let rows = doc["probabilities"].as_array().expect("probabilities");
    assert_eq!(rows.len(), 3);
    let classes: Vec<usize> = rows
        .iter()
        .map(|r| {
            let r: Vec<f64> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (0..10)
                .max_by(|&a, &b| r[a].partial_cmp(&r[b]).unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(classes, vec![7, 6, 3], "the first three held-out digits");

    let profile = data.join("client.toml");
    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--profile"])
        .arg(&profile)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "attest failed: {text}");
    assert!(text.contains("SIMULATED"), "{text}");
    assert!(text.contains("[PASS] report-signature"), "{text}");
    assert!(!text.contains("[FAIL]"), "{text}");
    // `cloister up` runs the enclave sandboxed in enforce mode by default, and `cloister attest`
    // shows the status bound into the evidence, the engine worker's barriers included.
    assert!(text.contains("sandbox: enforce: sandbox/v1 "), "{text}");
    assert!(text.contains("; worker/v1 "), "{text}");
    assert!(!text.contains("=off"), "{text}");

    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--json", "--profile"])
        .arg(&profile)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("attest --json");
    assert_eq!(doc["passed"], true);
    assert_eq!(doc["simulated"], true);

    // Save the evidence, re-verify it offline, and refuse a tampered copy.
    let saved = tmp.path().join("evidence.json");
    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--profile"])
        .arg(&profile)
        .arg("--save-evidence")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--profile"])
        .arg(&profile)
        .arg("--evidence")
        .arg(&saved)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("not that it is live"), "{text}");
    let tampered_evidence = tmp.path().join("tampered.json");
    std::fs::write(
        &tampered_evidence,
        cloister_e2e::flip_report_byte(&std::fs::read(&saved).unwrap(), 0x90),
    )
    .unwrap();
    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--profile"])
        .arg(&profile)
        .arg("--evidence")
        .arg(&tampered_evidence)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] report-signature"));

    // A client with a tampered expected measurement exits non-zero and sends nothing.
    let mut tampered = cloister::profile::Profile::load(&profile).unwrap();
    tampered.expected_measurements = vec!["ab".repeat(48)];
    let bad = tmp.path().join("bad-client.toml");
    tampered.save(&bad).unwrap();
    let out = Command::new(bins.join("cloister"))
        .args(["attest", "--profile"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "attest should fail: {text}");
    assert!(
        text.contains("[FAIL] measurement-allowed"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The printed ensemble command returns noisy labels, and `budget` shows what they cost.
    let ensemble_line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains("--model digits-ensemble"))
        .expect("example ensemble command");
    let parts: Vec<&str> = ensemble_line.split_whitespace().collect();
    let out = Command::new(parts[0]).args(&parts[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["label"].as_array().map(Vec::len), Some(3), "{doc}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("privacy: gnmax cost 0.03"));
    let budget_line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" budget --profile "))
        .expect("example budget command");
    let parts: Vec<&str> = budget_line.split_whitespace().collect();
    let out = Command::new(parts[0])
        .args(&parts[1..])
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["accounts"][0]["account"], "tenant/dev");
    assert_eq!(report["accounts"][0]["spent_rho"], 0.03);

    // The printed homomorphic commands: keygen, then an encrypted inference whose classes are
    // exactly those of the plaintext quantized program on the same rows.
    let keygen_line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" keygen --he "))
        .expect("example keygen command");
    let parts: Vec<&str> = keygen_line.split_whitespace().collect();
    let out = Command::new(parts[0]).args(&parts[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let he_line = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" --he --he-keys "))
        .expect("example homomorphic infer command");
    let parts: Vec<&str> = he_line.split_whitespace().collect();
    let out = Command::new(parts[0])
        .args(&parts[1..])
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("uploading"),
        "first use uploads the key: {stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let program = cloister_he::program::Program::from_json(
        &std::fs::read_to_string(data.join("models/breast-cancer-lr.program.json")).unwrap(),
    )
    .unwrap();
    let input: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("he-example-input.json")).unwrap())
            .unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (result, row) in results.iter().zip(input["input"].as_array().unwrap()) {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let q = program.quantize(&row).unwrap();
        let reference = cloister_he::plaintext::evaluate(&program, &q).unwrap();
        assert_eq!(
            result["class"].as_u64(),
            program.decide(&reference).map(|c| c as u64)
        );
        assert_eq!(result["input_decrypted"], false);
    }

    // SIGTERM stops everything cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "cloister up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cloister up exit: {status}");
    assert!(!data.join("run/enclave.sock").exists(), "socket removed");
    let summary = cloister_audit::verify_dir(&data.join("audit")).unwrap();
    // infer, ensemble infer, budget; then homomorphic: the program query, the first row refused
    // with he_key_unknown, one record per key chunk, and the three rows.
    let key_len = std::fs::metadata(data.join("he-keys/he-server.key"))
        .unwrap()
        .len();
    let chunks = key_len.div_ceil(cloister::he_infer::KEY_CHUNK_BYTES as u64);
    assert_eq!(
        summary.entries,
        3 + 1 + 1 + chunks + 3,
        "every request is audited"
    );

    // Second start reuses the data directory (no new keys, same policy).
    let policy_before = std::fs::read(data.join("policy.toml")).unwrap();
    let key_before = std::fs::read(data.join("secrets/dev-api-key")).unwrap();
    let cfg = cloister::datadir::DataDir::new(&data).unwrap();
    let prepared = cloister::datadir::prepare(&cfg, listen.parse().unwrap()).unwrap();
    assert!(!prepared.first_run);
    assert_eq!(
        std::fs::read(data.join("policy.toml")).unwrap(),
        policy_before
    );
    assert_eq!(
        std::fs::read(data.join("secrets/dev-api-key")).unwrap(),
        key_before
    );
}

#[test]
fn policy_check_reports_line_and_column() {
    let bins = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let good =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/dev.toml");
    let out = Command::new(bins.join("cloister"))
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("[[tenants]]", "[[tenantz]]");
    let bad = tmp.path().join("typo.toml");
    std::fs::write(&bad, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("[[tenantz]]"))
        .unwrap()
        + 1;
    let out = Command::new(bins.join("cloister"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("typo.toml:{line}:")), "{err}");
    assert!(err.contains("tenantz"), "{err}");
}

#[test]
fn attest_verify_report_checks_a_real_milan_report_offline() {
    let bins = bin_dir();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data");
    let run = |extra: &[&str]| {
        Command::new(bins.join("cloister"))
            .args(["attest", "verify-report", "--report"])
            .arg(data.join("report_milan.hex"))
            .arg("--vcek")
            .arg(data.join("vcek_milan.der"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[PASS] report-signature"), "{text}");
    assert!(text.contains("[PASS] vcek-matches-report"), "{text}");
    let chain = data.join("cert_chain_milan");
    let out = run(&["--chain", chain.to_str().unwrap(), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["passed"], true);
    // The Milan VCEK does not chain to Genoa's built-in ASK...
    let out = run(&["--product", "genoa"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] vcek-signed-by-ask"));
    // ...and Milan's chain is not Genoa's pinned root.
    let out = run(&["--product", "genoa", "--chain", chain.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] ark-pinned-and-self-signed"));
}
