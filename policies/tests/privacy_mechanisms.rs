//! The policy side of confident-GNMax, ensemble regression and heuristic output noise: valid
//! tables load; missing or misplaced fields are errors at their line with a fix; and no policy
//! can relabel heuristic noise or give it a budget (the label is not a policy field).

use cloister_policy::{ModelPrivacy, NanoRho, Policy, PolicyError};

const KEY: &str = "5a96b0b5987eb036e6d561bd08df5c59d97786ae6ca224fbc878dfbaf37bbf22";
const SHA: &str = "dde6ff292ade1b87b6539695afe580737d973cc1cef97042347ccb5ac8401817";

fn policy(tenant_extra: &str, model_privacy: &str) -> String {
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
models = ["m"]
max_requests_per_minute = 10
{tenant_extra}
[[models]]
id = "m"
path = "m.onnx"
sha256 = "{SHA}"
{model_privacy}
"#
    )
}

fn errors(src: &str) -> Vec<PolicyError> {
    Policy::from_toml_str_all(src, "p.toml").unwrap_err()
}

const CONFIDENT: &str = "[models.privacy]\nmechanism = \"confident-gnmax\"\nvotes_output = \"votes\"\nclasses = 10\nthreshold = 15\nsigma1 = 4.0\nsigma2 = 3.0\nbudget_rho = 1.5";
const REGRESSION: &str = "[models.privacy]\nmechanism = \"ensemble-regression\"\npredictions_output = \"predictions\"\nteachers = 16\nlower = 50\nupper = 300\nrho_per_query = 0.1";
const HEURISTIC: &str =
    "[models.privacy]\nmechanism = \"heuristic-output-noise\"\noutput = \"probabilities\"\nnoise_scale = 0.05";

#[test]
fn valid_tables_load() {
    let p = Policy::from_toml_str(&policy("budget_rho = 1", CONFIDENT), "p.toml").unwrap();
    match &p.models[0].privacy {
        ModelPrivacy::ConfidentGnMax {
            votes_output,
            classes,
            threshold,
            sigma1,
            sigma2,
            budget,
        } => {
            assert_eq!((votes_output.as_str(), *classes), ("votes", 10));
            assert_eq!(
                (threshold.get(), sigma1.get(), sigma2.get()),
                (15.0, 4.0, 3.0)
            );
            assert_eq!(*budget, Some(NanoRho(1_500_000_000)));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.models[0].privacy.charges());
    let p = Policy::from_toml_str(&policy("budget_rho = 1", REGRESSION), "p.toml").unwrap();
    match &p.models[0].privacy {
        ModelPrivacy::EnsembleRegression {
            teachers,
            lower,
            upper,
            rho_per_query,
            budget,
            ..
        } => {
            assert_eq!((*teachers, lower.get(), upper.get()), (16, 50.0, 300.0));
            assert_eq!((*rho_per_query, *budget), (NanoRho(100_000_000), None));
        }
        other => panic!("{other:?}"),
    }
    // Heuristic noise charges nothing, so a tenant needs no budget for it.
    let p = Policy::from_toml_str(&policy("", HEURISTIC), "p.toml").unwrap();
    assert!(!p.models[0].privacy.charges());
    assert!(matches!(
        p.models[0].privacy,
        ModelPrivacy::HeuristicOutputNoise { .. }
    ));
}

#[test]
fn charged_mechanisms_need_a_tenant_budget() {
    for table in [CONFIDENT, REGRESSION] {
        let e = errors(&policy("", table));
        assert!(
            e.iter().any(|e| e.message().contains("budget")),
            "{table}: {e:?}"
        );
    }
}

#[test]
fn mistakes_are_positioned_with_a_fix() {
    // Missing sigma2.
    let src = policy("budget_rho = 1", &CONFIDENT.replace("sigma2 = 3.0\n", ""));
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message().contains("`sigma2`"), "{}", e[0].message());
    assert!(e[0].hint().contains("sigma2"));
    // An inverted clamp range, at the `upper` line.
    let src = policy(
        "budget_rho = 1",
        &REGRESSION.replace("upper = 300", "upper = 10"),
    );
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message().contains("lower < upper"));
    assert_eq!(
        e[0].line(),
        src.lines().position(|l| l == "upper = 10").unwrap() + 1
    );
    // A field of another mechanism.
    let e = errors(&policy(
        "budget_rho = 1",
        &format!("{REGRESSION}\nthreshold = 3"),
    ));
    assert!(
        e[0].message().contains("`threshold` does not apply"),
        "{e:?}"
    );
    // A negative noise scale.
    let e = errors(&policy("", &HEURISTIC.replace("0.05", "-1")));
    assert!(e[0].message().contains("noise_scale"), "{e:?}");
}

#[test]
fn no_policy_can_relabel_heuristic_noise_or_make_it_charge() {
    // There is no field for the label or the guarantee; trying one is an error, not ignored.
    for extra in [
        "label = \"differentially-private\"",
        "guarantee = \"(1, 1e-6)-differential privacy\"",
        "heuristic = false",
    ] {
        let e = errors(&policy("", &format!("{HEURISTIC}\n{extra}")));
        assert!(!e.is_empty(), "{extra} was accepted");
    }
    // Nor can it borrow DP fields to look accounted for.
    for extra in ["rho_per_query = 0.01", "budget_rho = 1", "epsilon = 1"] {
        let e = errors(&policy("budget_rho = 1", &format!("{HEURISTIC}\n{extra}")));
        assert!(
            e.iter().any(|e| e.message().contains("does not apply")),
            "{extra}: {e:?}"
        );
    }
}
