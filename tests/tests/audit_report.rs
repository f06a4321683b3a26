//! `cloister audit report` on the log of a real run, checked in headless Chromium: the page
//! loads, both charts hold a mark per data point that matches the log, the summary says the log
//! verified, an adversarial model id chosen by a client is shown as text and never becomes
//! markup, and the browser logs no console message at all (the page runs no script and its
//! Content-Security-Policy forbids any fetch, so a console message would mean something tried).
//!
//! The service runs with a policy `[audit]` section that rotates segments at 4 KiB and keeps
//! three, so the report and `verify` also cover a log whose prefix retention deleted.
//!
//! Chromium is Debian's `chromium` package (scripts/install-deps.sh); the test runs as root in
//! CI, hence `--no-sandbox`, and needs no display (`--headless`).

use std::path::Path;
use std::process::{Command, Output};

use cloister::sdk::Client;
use cloister_e2e::{bin_dir, heldout_rows, Service};
use serde_json::Value;

/// A model id a hostile tenant might ask for: refusals record the id as asked.
const EVIL_MODEL: &str = "x\"><script>console.error('pwned')</script><img src=x onerror=alert(1)>";

fn cloister(args: &[&str]) -> Output {
    Command::new(bin_dir().join("cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Loads `page` in headless Chromium; returns the DOM after load and the console lines.
fn chromium(page: &Path, profile: &Path) -> (String, Vec<String>) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect(
            "cannot run `chromium`: install it with scripts/install-deps.sh (Debian package \
             chromium)",
        );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The `data-NAME="…"` values of every element whose start tag contains `marker`.
fn attrs(dom: &str, marker: &str, name: &str) -> Vec<String> {
    dom.split('<')
        .filter(|tag| tag.contains(marker))
        .filter_map(|tag| {
            let key = format!("{name}=\"");
            let start = tag.find(&key)? + key.len();
            let len = tag[start..].find('"')?;
            Some(tag[start..start + len].to_string())
        })
        .collect()
}

#[test]
fn the_html_report_of_a_real_run_renders_in_headless_chromium() {
    let mut svc = Service::start_with(|dir| {
        let path = dir.policy();
        let policy = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            path,
            policy + "\n[audit]\nsegment_max_bytes = 4096\nretain_segments = 3\n",
        )
        .unwrap();
    });
    let client = Client::new(svc.profile.clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let attestation = svc.block_on(client.attest()).expect("attest");
    let evidence = tmp.path().join("evidence.json");
    std::fs::write(&evidence, serde_json::to_vec(&attestation.bundle).unwrap()).unwrap();

    let mut outputs = Vec::new();
    // About six records fit a 4 KiB segment: 40 make several segments, of which 3 are kept.
    let plain = 40;
    for i in 0..plain {
        let r = svc
            .block_on(client.infer("digits", heldout_rows(i % 30, 1)))
            .expect("digits");
        outputs.push(serde_json::to_string(&r.response.outputs).unwrap());
    }
    let charged = 3;
    for i in 0..charged {
        let r = svc
            .block_on(client.infer("digits-ensemble", heldout_rows(20 + i, 1)))
            .expect("ensemble");
        outputs.push(serde_json::to_string(&r.response.outputs).unwrap());
    }
    assert!(svc
        .block_on(client.infer(EVIL_MODEL, heldout_rows(0, 1)))
        .is_err());
    let (_, enclave) = svc.stop();
    assert!(enclave.success(), "enclave exit {enclave:?}");
    let dir = svc.audit_dir();
    let dir_s = dir.to_str().unwrap();
    let ev = evidence.to_str().unwrap();

    // Rotation and retention from the policy happened, and the log still verifies, saying so.
    let out = cloister(&["audit", "verify", dir_s, "--evidence", ev, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = verified["entries"].as_u64().unwrap();
    assert_eq!(records, plain as u64 + charged as u64 + 1);
    assert_eq!(verified["segments"], 3, "{verified}");
    let pruned = verified["pruned"]["first_index"].as_u64().expect("pruned");
    assert!(pruned > 0, "{verified}");
    let out = cloister(&["audit", "verify", dir_s, "--evidence", ev]);
    assert!(
        text(&out).contains("deleted by the retention policy"),
        "{}",
        text(&out)
    );

    // No stored byte is an input or an output, and every record holds only allow-listed
    // members: identifiers, digests, the mechanism and its cost — never a noise value.
    let mut stored = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        stored.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    let mut needles: Vec<Vec<u8>> = outputs.iter().map(|o| o.clone().into_bytes()).collect();
    for i in 0..30 {
        let t = serde_json::to_string(&heldout_rows(i, 1)).unwrap();
        needles.push(t.into_bytes());
    }
    needles.push(b"label".to_vec());
    needles.push(b"probabilities".to_vec());
    for n in &needles {
        assert!(
            !stored.windows(n.len()).any(|w| w == &n[..]),
            "the audit directory holds {:?}",
            String::from_utf8_lossy(n)
        );
    }
    let out = cloister(&["audit", "show", dir_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let allowed = [
        "index",
        "time_unix_ms",
        "request_id",
        "tenant",
        "model",
        "model_sha256",
        "policy_sha256",
        "outcome",
        "input_digest",
        "output_digest",
        "privacy",
        "latency_us",
        "prev",
        "hash",
    ];
    let mut charged_seen = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| allowed.contains(&k.as_str())), "{line}");
        if let Some(p) = v["privacy"].as_object() {
            let mut pk: Vec<&String> = p.keys().collect();
            pk.sort();
            assert_eq!(pk, ["cost_nano_rho", "mechanism"], "{line}");
            charged_seen += 1;
        }
        for d in ["input_digest", "output_digest"] {
            if let Some(s) = v[d].as_str() {
                assert!(
                    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{line}"
                );
            }
        }
    }
    assert_eq!(
        charged_seen, charged,
        "the charged records survive retention"
    );

    // The report.
    let html = tmp.path().join("report.html");
    let out = cloister(&[
        "audit",
        "report",
        dir_s,
        "--html",
        html.to_str().unwrap(),
        "--evidence",
        ev,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "the page itself holds no script");

    // Positive control: the console capture sees a console error and an uncaught exception.
    let control = tmp.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><script>console.error('control-error');\
         missingFunction();</script></body></html>",
    )
    .unwrap();
    let (_, console) = chromium(&control, &tmp.path().join("profile-control"));
    let joined = console.join("\n");
    assert!(joined.contains("control-error"), "{joined}");
    assert!(joined.contains("Uncaught"), "{joined}");

    let (dom, console) = chromium(&html, &tmp.path().join("profile"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(dom.contains("<title>Cloister audit report"), "{dom}");
    assert!(
        dom.contains("data-passed=\"true\""),
        "verification shown as passed"
    );

    // Both charts exist as SVG and hold the log's data points.
    assert_eq!(dom.matches("<svg id=\"budget-chart\"").count(), 1);
    assert_eq!(dom.matches("<svg id=\"requests-chart\"").count(), 1);
    let budget_points = attrs(&dom, "class=\"point budget-point\"", "data-tenant");
    assert_eq!(
        budget_points,
        vec!["dev"; charged],
        "one point per charged record"
    );
    let rho = attrs(&dom, "class=\"point budget-point\"", "data-rho");
    assert_eq!(rho.last().map(String::as_str), Some("0.03"), "{rho:?}");
    let bar_total: u64 = attrs(&dom, "class=\"bar ", "data-count")
        .iter()
        .map(|c| c.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        bar_total,
        records - pruned,
        "bars add up to the retained records"
    );
    let refused: u64 = attrs(&dom, "class=\"bar bar-refused\"", "data-count")
        .iter()
        .map(|c| c.parse::<u64>().unwrap())
        .sum();
    assert_eq!(refused, 1);
    assert!(dom.contains("<code>unknown_model</code>"), "refusal table");

    // The hostile model id is text, not markup: no element came from it.
    assert!(!dom.contains("<img"), "an <img> element was injected");
    assert!(!dom.contains("<script"), "a <script> element was injected");
    assert!(!dom.contains("pwned')</script>"));
    assert!(
        dom.contains("x\"&gt;&lt;script&gt;console.error('pwned')&lt;/script&gt;&lt;img"),
        "the hostile id is shown escaped"
    );
}
