//! Every validation rule, with the exact line and column it reports.

use std::path::Path;

use cloister_policy::{default_policy_toml, Policy, PolicyError, Provider, SandboxMode};

const KEY: &str = "5a96b0b5987eb036e6d561bd08df5c59d97786ae6ca224fbc878dfbaf37bbf22";
const MODEL: &str = "dde6ff292ade1b87b6539695afe580737d973cc1cef97042347ccb5ac8401817";

/// A valid policy with known line numbers (line 1 is `schema_version`).
fn valid() -> String {
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
"#
    )
}

/// `valid()` with one exact substring replaced (which must occur).
fn with(from: &str, to: &str) -> String {
    let src = valid();
    assert!(src.contains(from), "test bug: {from:?} not in policy");
    src.replacen(from, to, 1)
}

fn error(src: &str) -> PolicyError {
    match Policy::from_toml_str(src, "policy.toml") {
        Ok(_) => panic!("policy unexpectedly valid:\n{src}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_at(e: &PolicyError, line: usize, column: usize) {
    assert_eq!((e.line(), e.column()), (line, column), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("policy.toml:{line}:{column}: ")),
        "{e}"
    );
    assert!(e.to_string().contains(" — fix: "), "{e}");
    assert!(!e.hint().is_empty());
}

#[test]
fn valid_policy_loads() {
    let p = Policy::from_toml_str(&valid(), "policy.toml").unwrap();
    assert_eq!(p.schema_version, 1);
    assert_eq!(p.service.name, "svc");
    assert_eq!(p.service.max_batch_rows, 1024);
    assert_eq!(p.service.request_timeout().as_millis(), 10_000);
    assert_eq!(p.attestation.provider, Provider::Sim);
    assert!(p.attestation.allow_simulated);
    assert_eq!(
        p.tenants[0].api_key_sha256.to_vec(),
        hex::decode(KEY).unwrap()
    );
    assert_eq!(p.model("digits").unwrap().sha256_hex(), MODEL);
    assert!(p.tenant("dev").unwrap().may_use("digits"));
    assert!(!p.tenant("dev").unwrap().may_use("other"));
    assert!(p.tenant("nobody").is_none());
    let key: [u8; 32] = hex::decode(KEY).unwrap().try_into().unwrap();
    assert_eq!(p.tenant_by_api_key_hash(&key).unwrap().id, "dev");
    assert!(p.tenant_by_api_key_hash(&[0u8; 32]).is_none());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(valid().as_bytes());
    assert_eq!(p.digest.to_vec(), digest.to_vec());
}

#[test]
fn unknown_model_message_is_exact() {
    let e = error(&with(r#"models = ["digits"]"#, r#"models = ["digitz"]"#));
    assert!(matches!(e, PolicyError::UnknownModel { .. }), "{e:?}");
    assert_at(&e, 17, 11);
    assert_eq!(
        e.to_string(),
        "policy.toml:17:11: tenant \"dev\" refers to unknown model \"digitz\" — fix: add a \
         [[models]] entry with id = \"digitz\" or correct the name (known models: digits)"
    );
    assert_eq!(
        e.message(),
        "tenant \"dev\" refers to unknown model \"digitz\""
    );
}

#[test]
fn unknown_model_points_at_the_second_list_item() {
    let e = error(&with(
        r#"models = ["digits"]"#,
        r#"models = ["digits", "nope"]"#,
    ));
    assert_at(&e, 17, 21);
}

#[test]
fn typo_in_top_level_table_name() {
    let e = error(&with("[[tenants]]", "[[tenantz]]"));
    match &e {
        PolicyError::UnknownField {
            field, expected, ..
        } => {
            assert_eq!(field, "tenantz");
            for f in [
                "schema_version",
                "service",
                "attestation",
                "tenants",
                "models",
            ] {
                assert!(expected.iter().any(|x| x == f), "{expected:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_at(&e, 14, 3);
    let text = e.to_string();
    assert!(text.contains("unknown field `tenantz`"), "{text}");
    assert!(
        text.contains("`tenants`") && text.contains("`models`"),
        "{text}"
    );
    assert!(
        e.hint().contains("rename `tenantz` to `tenants`"),
        "{}",
        e.hint()
    );
}

#[test]
fn typo_in_nested_key() {
    let e = error(&with("max_request_bytes", "max_request_bytez"));
    assert!(
        matches!(&e, PolicyError::UnknownField { field, .. } if field == "max_request_bytez"),
        "{e:?}"
    );
    assert_at(&e, 5, 1);
    assert!(e.hint().contains("`max_request_bytes`"), "{}", e.hint());
}

#[test]
fn wrong_types() {
    let e = error(&with("max_batch_rows = 1024", r#"max_batch_rows = "1024""#));
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, 7, 18);

    let e = error(&with(
        "allow_simulated = true",
        r#"allow_simulated = "yes""#,
    ));
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, 12, 19);

    let e = error(&with("replay_window_secs = 300", "replay_window_secs = -5"));
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, 8, 22);

    let e = error(&with(r#"models = ["digits"]"#, r#"models = "digits""#));
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, 17, 10);
}

#[test]
fn unknown_provider() {
    let e = error(&with(r#"provider = "sim""#, r#"provider = "sgx""#));
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, 11, 12);
    assert!(e.message().contains("sgx"), "{e}");
    assert!(e.message().contains("snp"), "{e}");
}

#[test]
fn missing_field() {
    let e = error(&with("request_timeout_ms = 10000\n", ""));
    assert!(
        matches!(&e, PolicyError::MissingField { field, .. } if field == "request_timeout_ms"),
        "{e:?}"
    );
    assert_eq!(e.line(), 3, "{e}");
    assert!(e.hint().contains("request_timeout_ms = "), "{}", e.hint());
}

#[test]
fn toml_syntax_error() {
    let e = error(&with(r#"name = "svc""#, r#"name = "svc"#));
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e:?}");
    assert_eq!(e.line(), 4, "{e}");
}

#[test]
fn schema_version_must_be_one() {
    let e = error(&with("schema_version = 1", "schema_version = 2"));
    assert!(
        matches!(e, PolicyError::UnsupportedSchemaVersion { .. }),
        "{e:?}"
    );
    assert_at(&e, 1, 18);
    // Reported before any unknown fields a newer schema would have.
    let e = error(&with(
        "schema_version = 1",
        "schema_version = 2\nnew_thing = 1",
    ));
    assert!(
        matches!(e, PolicyError::UnsupportedSchemaVersion { .. }),
        "{e:?}"
    );
    let e = error(&with("schema_version = 1", "schema_version = \"1\""));
    assert!(
        matches!(e, PolicyError::UnsupportedSchemaVersion { .. }),
        "{e:?}"
    );
    let e = error(&with("schema_version = 1\n", ""));
    assert!(
        matches!(&e, PolicyError::MissingField { field, .. } if field == "schema_version"),
        "{e:?}"
    );
}

#[test]
fn invalid_ids_point_at_the_bad_character() {
    let e = error(&with(r#"id = "dev""#, r#"id = "Dev""#));
    assert!(
        matches!(e, PolicyError::InvalidId { what: "tenant", .. }),
        "{e:?}"
    );
    assert_at(&e, 15, 7);

    let e = error(&with(r#"id = "dev""#, r#"id = "de v""#));
    assert_at(&e, 15, 9);

    let e = error(&with(r#"id = "dev""#, r#"id = "-dev""#));
    assert_at(&e, 15, 7);

    let e = error(&with(r#"id = "dev""#, r#"id = """#));
    assert!(matches!(e, PolicyError::Empty { field: "id", .. }), "{e:?}");
    assert_at(&e, 15, 6);

    // Allowed punctuation after the first character.
    let src = with(r#"id = "dev""#, r#"id = "0dev.a_b-c""#);
    Policy::from_toml_str(&src, "policy.toml").unwrap();
}

#[test]
fn duplicate_ids() {
    let extra_tenant = format!(
        "\n[[tenants]]\nid = \"dev\"\napi_key_sha256 = \"{}\"\nmodels = []\nmax_requests_per_minute = 1\n",
        "11".repeat(32)
    );
    let e = error(&format!("{}{extra_tenant}", valid()));
    match &e {
        PolicyError::DuplicateId {
            what,
            id,
            first_line,
            ..
        } => {
            assert_eq!((*what, id.as_str(), *first_line), ("tenant", "dev", 15));
        }
        other => panic!("{other:?}"),
    }
    assert_at(&e, 26, 6);

    let extra_model = format!(
        "\n[[models]]\nid = \"digits\"\npath = \"x.onnx\"\nsha256 = \"{}\"\n",
        "22".repeat(32)
    );
    let e = error(&format!("{}{extra_model}", valid()));
    assert!(
        matches!(
            e,
            PolicyError::DuplicateId {
                what: "model",
                first_line: 21,
                ..
            }
        ),
        "{e:?}"
    );
    assert_at(&e, 26, 6);
}

#[test]
fn duplicate_api_keys() {
    let extra = format!(
        "\n[[tenants]]\nid = \"other\"\napi_key_sha256 = \"{}\"\nmodels = []\nmax_requests_per_minute = 1\n",
        KEY.to_uppercase()
    );
    let e = error(&format!("{}{extra}", valid()));
    assert!(matches!(e, PolicyError::DuplicateApiKey { .. }), "{e:?}");
    assert_at(&e, 27, 18);
}

#[test]
fn hex_digests() {
    let e = error(&with(KEY, &KEY[..63]));
    match &e {
        PolicyError::InvalidDigest {
            field,
            expected_hex_chars,
            problem,
            ..
        } => {
            assert_eq!((*field, *expected_hex_chars), ("api_key_sha256", 64));
            assert!(problem.contains("63"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
    assert_at(&e, 16, 18);

    // A non-hex character is pointed at exactly: 'g' is the 6th character of the value.
    let bad = format!("5a96bg{}", &KEY[6..]);
    let e = error(&with(KEY, &bad));
    assert_at(&e, 16, 24);

    let e = error(&with(MODEL, &format!("{MODEL}00")));
    assert!(
        matches!(
            e,
            PolicyError::InvalidDigest {
                field: "sha256",
                ..
            }
        ),
        "{e:?}"
    );
    assert_at(&e, 23, 10);

    let e = error(&with(
        "allow_simulated = true\n",
        "allow_simulated = true\nexpected_measurements = [\"abcd\"]\n",
    ));
    assert!(
        matches!(
            e,
            PolicyError::InvalidDigest {
                field: "expected_measurements",
                expected_hex_chars: 96,
                ..
            }
        ),
        "{e:?}"
    );
    assert_at(&e, 13, 26);
}

#[test]
fn simulated_provider_needs_explicit_permission() {
    let e = error(&with("allow_simulated = true\n", ""));
    assert!(
        matches!(e, PolicyError::SimulatedNotAllowed { .. }),
        "{e:?}"
    );
    assert_at(&e, 11, 12);

    let e = error(&with("allow_simulated = true", "allow_simulated = false"));
    assert!(
        matches!(e, PolicyError::SimulatedNotAllowed { .. }),
        "{e:?}"
    );
    assert_at(&e, 12, 19);

    // snp needs nothing.
    let src =
        with(r#"provider = "sim""#, r#"provider = "snp""#).replace("allow_simulated = true\n", "");
    let p = Policy::from_toml_str(&src, "policy.toml").unwrap();
    assert_eq!(p.attestation.provider, Provider::Snp);
    assert!(!p.attestation.allow_simulated);
}

#[test]
fn limits_must_be_positive() {
    for (line, key) in [
        (5, "max_request_bytes = 1048576"),
        (6, "request_timeout_ms = 10000"),
        (7, "max_batch_rows = 1024"),
        (8, "replay_window_secs = 300"),
        (18, "max_requests_per_minute = 600"),
    ] {
        let name = key.split(' ').next().unwrap();
        let e = error(&with(key, &format!("{name} = 0")));
        assert!(
            matches!(e, PolicyError::ZeroLimit { field, .. } if field == name),
            "{e:?}"
        );
        assert_at(&e, line, name.len() + 4);
    }
}

#[test]
fn empty_values() {
    let e = error(&with(r#"name = "svc""#, r#"name = """#));
    assert!(
        matches!(e, PolicyError::Empty { field: "name", .. }),
        "{e:?}"
    );
    assert_at(&e, 4, 8);
    let e = error(&with(r#"path = "models/digits.onnx""#, r#"path = """#));
    assert!(
        matches!(e, PolicyError::Empty { field: "path", .. }),
        "{e:?}"
    );
    assert_at(&e, 22, 8);
}

#[test]
fn missing_sections() {
    let src = valid();
    let cut = src.find("[[tenants]]").unwrap();
    let e = error(&src[..cut]);
    assert!(
        matches!(
            e,
            PolicyError::MissingSection {
                section: "tenants",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.line(), 14, "{e}");
}

#[test]
fn all_semantic_errors_at_once_in_file_order() {
    let src = with("max_batch_rows = 1024", "max_batch_rows = 0")
        .replace(r#"models = ["digits"]"#, r#"models = ["digitz"]"#)
        .replace(r#"id = "dev""#, r#"id = "DEV""#)
        .replace("allow_simulated = true\n", "");
    let errors = Policy::from_toml_str_all(&src, "policy.toml").unwrap_err();
    let got: Vec<(usize, usize)> = errors.iter().map(|e| (e.line(), e.column())).collect();
    assert_eq!(
        got,
        vec![(7, 18), (11, 12), (14, 7), (16, 11)],
        "{errors:#?}"
    );
    // The single-error API returns the first of them.
    let first = Policy::from_toml_str(&src, "policy.toml").unwrap_err();
    assert_eq!((first.line(), first.column()), (7, 18));
    let text = cloister_policy::render_errors(&errors);
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dev = Policy::load(&dir.join("dev.toml")).unwrap();
    assert_eq!(dev.attestation.provider, Provider::Sim);
    assert_eq!(dev.base_dir, dir);
    assert_eq!(
        dev.model_path("digits").unwrap(),
        dir.join("models/digits.onnx")
    );
    let bytes = std::fs::read(dir.join("dev.toml")).unwrap();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    assert_eq!(dev.digest.to_vec(), digest.to_vec());

    let prod = Policy::load(&dir.join("production-snp.toml")).unwrap();
    assert_eq!(prod.attestation.provider, Provider::Snp);
    assert!(!prod.attestation.allow_simulated);
    assert_eq!(prod.attestation.expected_measurements.len(), 1);
    // Absolute model paths are kept as written.
    let m = prod.model("digits").unwrap();
    assert_eq!(
        m.resolved_path(&dir),
        Path::new("/opt/cloister/models/digits.onnx")
    );
    assert!(prod.tenant("research.lab").unwrap().may_use("digits-v2"));
    assert!(!prod.tenant("research.lab").unwrap().may_use("digits"));
}

#[test]
fn default_policy_matches_dev_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dev = Policy::load(&dir.join("dev.toml")).unwrap();
    let rendered = default_policy_toml(
        &hex::encode(dev.tenants[0].api_key_sha256),
        &dev.models[0].sha256_hex(),
        &dev.models[1].sha256_hex(),
    );
    assert_eq!(
        rendered,
        std::fs::read_to_string(dir.join("dev.toml")).unwrap()
    );

    let p = Policy::from_toml_str(&default_policy_toml(KEY, MODEL, MODEL), "default").unwrap();
    assert_eq!(p.tenants[0].id, "dev");
    assert!(p.tenants[0].may_use("digits"));
    assert_eq!(p.models[0].path, Path::new("models/digits.onnx"));
    assert_eq!(p.models[0].sha256_hex(), MODEL);

    // Garbage arguments cannot inject TOML; they surface as a positioned digest error.
    let e = Policy::from_toml_str(
        &default_policy_toml("x\"\nprovider = \"snp", MODEL, MODEL),
        "d",
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::InvalidDigest { .. }), "{e:?}");
}

#[test]
fn load_reports_io_and_encoding_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("absent.toml");
    let e = Policy::load(&missing).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }), "{e:?}");
    assert_eq!(e.line(), 0);
    assert!(e.to_string().contains("absent.toml"), "{e}");

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, b"schema_version = 1\nname = \"ab\xffc\"\n").unwrap();
    let e = Policy::load(&bad).unwrap_err();
    assert!(matches!(e, PolicyError::NotUtf8 { .. }), "{e:?}");
    assert_eq!((e.line(), e.column()), (2, 11));
}

#[test]
fn garbage_never_panics() {
    let src = valid();
    // Truncate at every character boundary; each prefix either parses or errors with a position.
    for (i, _) in src.char_indices() {
        if let Err(errors) = Policy::from_toml_str_all(&src[..i], "p") {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.line() >= 1 && e.column() >= 1, "{e}");
            }
        }
    }
    for junk in [
        "",
        "\u{0}",
        "[[",
        "= =",
        "schema_version = 99999999999999999999",
        "[service]\n[service]",
    ] {
        assert!(Policy::from_toml_str(junk, "p").is_err());
    }
}

#[test]
fn sandbox_mode_defaults_to_enforce_and_is_checked() {
    let p = Policy::from_toml_str(&valid(), "policy.toml").unwrap();
    assert_eq!(p.sandbox.mode, SandboxMode::Enforce);

    let src = format!("{}\n[sandbox]\nmode = \"best-effort\"\n", valid());
    let p = Policy::from_toml_str(&src, "policy.toml").unwrap();
    assert_eq!(p.sandbox.mode, SandboxMode::BestEffort);
    assert_eq!(p.sandbox.mode.as_str(), "best-effort");

    let src = format!("{}\n[sandbox]\n", valid());
    let p = Policy::from_toml_str(&src, "policy.toml").unwrap();
    assert_eq!(p.sandbox.mode, SandboxMode::Enforce);

    // An unknown mode points at the value and names the accepted ones.
    let lines = valid().lines().count();
    let src = format!("{}\n[sandbox]\nmode = \"off\"\n", valid());
    let e = error(&src);
    assert!(matches!(e, PolicyError::WrongType { .. }), "{e:?}");
    assert_at(&e, lines + 3, 8);
    assert!(e.message().contains("best-effort"), "{e}");

    // A typo in the table is an unknown field with a position.
    let src = format!("{}\n[sandbox]\nmod = \"enforce\"\n", valid());
    let e = error(&src);
    assert!(
        matches!(&e, PolicyError::UnknownField { field, .. } if field == "mod"),
        "{e:?}"
    );
    assert_at(&e, lines + 3, 1);
}
