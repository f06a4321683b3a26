//! `[privacy]`, tenant budgets and `[models.privacy]`: valid settings load with exact nano-ρ
//! amounts; each mistake is an error at its line with a fix.

use cloister_policy::{ModelPrivacy, NanoRho, Policy, PolicyError};

const KEY: &str = "5a96b0b5987eb036e6d561bd08df5c59d97786ae6ca224fbc878dfbaf37bbf22";
const SHA: &str = "dde6ff292ade1b87b6539695afe580737d973cc1cef97042347ccb5ac8401817";

fn policy(tenant_extra: &str, model_privacy: &str, privacy: &str) -> String {
    format!(
        r#"schema_version = 1
[service]
name = "t"
max_request_bytes = 1000
request_timeout_ms = 1000
max_batch_rows = 10
replay_window_secs = 60
[attestation]
provider = "sim"
allow_simulated = true
[[tenants]]
id = "dev"
api_key_sha256 = "{KEY}"
models = ["ens"]
max_requests_per_minute = 10
{tenant_extra}
[[models]]
id = "ens"
path = "e.onnx"
sha256 = "{SHA}"
{model_privacy}
{privacy}
"#
    )
}

const GNMAX: &str = "[models.privacy]\nmechanism = \"gnmax\"\nvotes_output = \"votes\"\nclasses = 10\nrho_per_query = 0.01\nbudget_rho = 5";

fn errors(src: &str) -> Vec<PolicyError> {
    Policy::from_toml_str_all(src, "p.toml").unwrap_err()
}

fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_valid_gnmax_model_with_budgets_loads_in_nano_rho() {
    let src = policy(
        "budget_rho = 2.0",
        GNMAX,
        "[privacy]\nglobal_budget_rho = 10\ndelta = 1e-6",
    );
    let p = Policy::from_toml_str(&src, "p.toml").unwrap();
    assert_eq!(p.tenants[0].budget, Some(NanoRho(2_000_000_000)));
    assert_eq!(p.privacy.global_budget, Some(NanoRho(10_000_000_000)));
    assert_eq!(p.privacy.delta.get(), 1e-6);
    match &p.models[0].privacy {
        ModelPrivacy::GnMax {
            votes_output,
            classes,
            rho_per_query,
            budget,
        } => {
            assert_eq!(votes_output, "votes");
            assert_eq!(*classes, 10);
            assert_eq!(*rho_per_query, NanoRho(10_000_000));
            assert_eq!(*budget, Some(NanoRho(5_000_000_000)));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.models[0].privacy.charges());
}

#[test]
fn a_tenant_without_budget_may_not_use_a_charged_model() {
    let src = policy("", GNMAX, "");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line(), line_of(&src, "models = [\"ens\"]"));
    assert!(e[0].to_string().contains("budget_rho"), "{}", e[0]);
}

#[test]
fn mistakes_in_the_mechanism_are_positioned() {
    let src = policy(
        "budget_rho = 1",
        "[models.privacy]\nmechanism = \"laplace-magic\"",
        "",
    );
    let e = errors(&src);
    assert_eq!(e[0].line(), line_of(&src, "laplace-magic"));
    assert!(e[0].message().contains("unknown privacy mechanism"));

    let src = policy(
        "budget_rho = 1",
        "[models.privacy]\nmechanism = \"gnmax\"\nvotes_output = \"votes\"\nclasses = 10",
        "",
    );
    let e = errors(&src);
    assert!(
        e.iter().any(|e| e.message().contains("rho_per_query")),
        "{e:?}"
    );

    let src = policy("budget_rho = -1", GNMAX, "");
    let e = errors(&src);
    assert_eq!(e[0].line(), line_of(&src, "budget_rho = -1"));
    assert!(e[0].message().contains("positive"), "{}", e[0]);

    let src = policy("budget_rho = 1", GNMAX, "[privacy]\ndelta = 1.5");
    let e = errors(&src);
    assert_eq!(e[0].line(), line_of(&src, "delta = 1.5"));

    let src = policy(
        "budget_rho = 1",
        "[models.privacy]\nmechanism = \"dp-trained\"\nepsilon = 3\ndelta = 1e-5\nrho_per_query = 1",
        "",
    );
    let e = errors(&src);
    assert!(e[0].message().contains("does not apply"), "{}", e[0]);

    let src = policy(
        "budget_rho = 1",
        "[models.privacy]\nmechanism = \"gnmax\"\nrho_per_qery = 1",
        "",
    );
    let e = errors(&src);
    assert!(matches!(e[0], PolicyError::UnknownField { .. }), "{e:?}");
}

#[test]
fn a_declared_dp_trained_model_costs_nothing() {
    let src = policy(
        "",
        "[models.privacy]\nmechanism = \"dp-trained\"\nepsilon = 3\ndelta = 1e-5",
        "",
    );
    let p = Policy::from_toml_str(&src, "p.toml").unwrap();
    assert!(!p.models[0].privacy.charges());
    assert!(matches!(
        p.models[0].privacy,
        ModelPrivacy::DpTrained { .. }
    ));
}
