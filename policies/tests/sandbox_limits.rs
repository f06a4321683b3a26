//! The `[sandbox]` resource limits: defaults, accepted values, and positioned errors for values
//! out of range.

use cloister_policy::{Policy, PolicyError, Sandbox, SandboxMode};

const KEY: &str = "5a96b0b5987eb036e6d561bd08df5c59d97786ae6ca224fbc878dfbaf37bbf22";
const MODEL: &str = "dde6ff292ade1b87b6539695afe580737d973cc1cef97042347ccb5ac8401817";

/// A valid policy (line 1 is `schema_version`) followed by `sandbox` from line 23 on.
fn policy(sandbox: &str) -> String {
    format!(
        r#"schema_version = 1
[service]
name = "svc"
max_request_bytes = 1048576
request_timeout_ms = 10000
max_batch_rows = 1024
replay_window_secs = 300
[attestation]
provider = "sim"
allow_simulated = true
[[tenants]]
id = "dev"
api_key_sha256 = "{KEY}"
models = ["digits"]
max_requests_per_minute = 600
[[models]]
id = "digits"
path = "models/digits.onnx"
sha256 = "{MODEL}"
#
#
#
{sandbox}"#
    )
}

fn parse(src: &str) -> Result<Policy, Vec<PolicyError>> {
    Policy::from_toml_str_all(src, "policy.toml")
}

#[test]
fn absent_limits_take_their_defaults() {
    for src in [policy(""), policy("[sandbox]\nmode = \"best-effort\"\n")] {
        let p = parse(&src).unwrap();
        assert_eq!(
            p.sandbox.max_concurrent_requests,
            Sandbox::DEFAULT_MAX_CONCURRENT_REQUESTS
        );
        assert_eq!(
            p.sandbox.worker_memory_mb,
            Sandbox::DEFAULT_WORKER_MEMORY_MB
        );
        assert_eq!(p.sandbox.enclave_memory_mb, None);
    }
    assert_eq!(
        parse(&policy("")).unwrap().sandbox.mode,
        SandboxMode::Enforce
    );
}

#[test]
fn given_limits_are_kept() {
    let p = parse(&policy(
        "[sandbox]\nmax_concurrent_requests = 3\nworker_memory_mb = 512\nenclave_memory_mb = 8192\n",
    ))
    .unwrap();
    assert_eq!(p.sandbox.max_concurrent_requests, 3);
    assert_eq!(p.sandbox.worker_memory_mb, 512);
    assert_eq!(p.sandbox.enclave_memory_mb, Some(8192));
}

#[test]
fn out_of_range_limits_are_refused_at_their_position() {
    for (line, field, min, max) in [
        (
            "max_concurrent_requests = 0",
            "max_concurrent_requests",
            1,
            4096,
        ),
        (
            "max_concurrent_requests = 5000",
            "max_concurrent_requests",
            1,
            4096,
        ),
        ("worker_memory_mb = 16", "worker_memory_mb", 64, 1 << 20),
        ("enclave_memory_mb = 1", "enclave_memory_mb", 256, 1 << 20),
    ] {
        let src = policy(&format!("[sandbox]\n{line}\n"));
        let errors = parse(&src).expect_err(line);
        assert_eq!(errors.len(), 1, "{line}: {errors:?}");
        let e = &errors[0];
        assert!(
            matches!(e, PolicyError::OutOfRange { field: f, min: a, max: b, .. }
                if *f == field && *a == min && *b == max),
            "{line}: {e:?}"
        );
        // `[sandbox]` is on line 23, the value on line 24, after `<field> = `.
        assert_eq!(e.line(), 24, "{line}");
        assert_eq!(e.column(), field.len() + 4, "{line}");
        assert!(e.message().contains(field), "{}", e.message());
        assert!(e.hint().contains(&min.to_string()), "{}", e.hint());
    }
    // An unknown key in [sandbox] is still an error.
    assert!(parse(&policy("[sandbox]\nmax_memory = 3\n")).is_err());
}
