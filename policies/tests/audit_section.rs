//! The optional `[audit]` section: defaults, values, ranges with line and column, unknown keys.

use cloister_policy::{default_policy_toml, AuditSettings, Policy, PolicyError};

fn base() -> String {
    default_policy_toml(&"11".repeat(32), &"22".repeat(32), &"33".repeat(32))
}

#[test]
fn absent_means_64_mib_segments_and_no_deletion() {
    let p = Policy::from_toml_str(&base(), "p.toml").unwrap();
    assert_eq!(p.audit, AuditSettings::default());
    assert_eq!(p.audit.segment_max_bytes, 64 << 20);
    assert_eq!(p.audit.retain_segments, None);
}

#[test]
fn values_are_read() {
    let src = base()
        + "\n[audit]\nsegment_max_bytes = 1048576\nsegment_max_age_secs = 3600\n\
           retain_segments = 24\nretain_days = 30\n";
    let p = Policy::from_toml_str(&src, "p.toml").unwrap();
    assert_eq!(p.audit.segment_max_bytes, 1 << 20);
    assert_eq!(p.audit.segment_max_age_secs, Some(3600));
    assert_eq!(p.audit.retain_segments, Some(24));
    assert_eq!(p.audit.retain_days, Some(30));
}

#[test]
fn out_of_range_and_unknown_keys_are_errors_with_a_place() {
    let src = base() + "\n[audit]\nretain_segments = 0\nsegment_max_age_secs = 5\n";
    let lines = src.lines().count();
    let errors = Policy::from_toml_str_all(&src, "p.toml").unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        matches!(
            &errors[0],
            PolicyError::OutOfRange {
                field: "retain_segments",
                ..
            }
        ),
        "{text:?}"
    );
    assert_eq!(errors[0].line(), lines - 1, "{text:?}");
    assert!(
        matches!(
            &errors[1],
            PolicyError::OutOfRange {
                field: "segment_max_age_secs",
                ..
            }
        ),
        "{text:?}"
    );
    let src = base() + "\n[audit]\nretain_forever = true\n";
    let e = Policy::from_toml_str(&src, "p.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("retain_forever"), "{e}");
}
