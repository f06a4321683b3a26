//! The program file is validated before any key or ciphertext exists: every malformed
//! program is a typed error naming what is wrong, and the plaintext reference is exact.

mod common;

use cloister_he::program::argmax;
use cloister_he::{plaintext, HeError, Program, ProgramError};
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "format": "cloister-he-program/v1",
        "name": "tiny",
        "input": {"features": 3, "bits": 2, "step": 1.0},
        "classes": ["a", "b"],
        "weights": [[1, -2, 3], [0, 7, -7]],
        "biases": [5, -5],
        "weight_scale": 1.0,
        "score_bits": 8
    })
}

fn parse(v: &Value) -> Result<Program, ProgramError> {
    Program::from_json(&v.to_string())
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = base();
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[path[path.len() - 1]] = value;
    v
}

#[test]
fn the_committed_program_loads_and_matches_its_recorded_accuracy() {
    let program = common::program();
    let heldout = common::heldout();
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("models/digits-he/metrics.json")).unwrap(),
    )
    .unwrap();
    let correct = heldout
        .input
        .iter()
        .zip(&heldout.labels)
        .filter(|(row, &label)| {
            let q = program.quantize(row).unwrap();
            let scores = plaintext::evaluate(&program, &q).unwrap();
            argmax(&scores) == Some(label as usize)
        })
        .count();
    let accuracy = correct as f64 / heldout.labels.len() as f64;
    let recorded = metrics["quantized_plaintext_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - recorded).abs() < 1e-9,
        "rust {accuracy} vs python {recorded}"
    );
}

#[test]
fn plaintext_reference_is_exact_integer_arithmetic() {
    let program = parse(&base()).unwrap();
    assert_eq!(
        plaintext::evaluate(&program, &[3, 2, 1]).unwrap(),
        vec![5 + 3 - 4 + 3, -5 + 14 - 7]
    );
    assert!(matches!(
        plaintext::evaluate(&program, &[3, 2]),
        Err(HeError::InputLength { .. })
    ));
    assert!(matches!(
        plaintext::evaluate(&program, &[3, 4, 0]),
        Err(HeError::InputRange {
            index: 1,
            value: 4,
            max: 3
        })
    ));
    assert!(matches!(
        program.quantize(&[1.0, f64::NAN, 0.0]),
        Err(HeError::InputNotFinite { index: 1 })
    ));
    assert_eq!(program.quantize(&[-1.0, 2.5, 99.0]).unwrap(), vec![0, 2, 3]);
}

#[test]
fn malformed_programs_are_typed_errors() {
    assert!(matches!(
        Program::from_json("{"),
        Err(ProgramError::Json(_))
    ));
    assert!(matches!(
        Program::from_json("[]"),
        Err(ProgramError::Json(_))
    ));
    let mut unknown = base();
    unknown["surprise"] = json!(1);
    assert!(matches!(parse(&unknown), Err(ProgramError::Json(_))));
    assert!(matches!(
        parse(&with(&["format"], json!("v0"))),
        Err(ProgramError::Format { .. })
    ));
    assert!(matches!(
        parse(&with(&["input", "features"], json!(0))),
        Err(ProgramError::NoFeatures)
    ));
    assert!(matches!(
        parse(&with(&["input", "bits"], json!(3))),
        Err(ProgramError::InputBits(3))
    ));
    assert!(matches!(
        parse(&with(&["input", "bits"], json!(0))),
        Err(ProgramError::InputBits(0))
    ));
    assert!(matches!(
        parse(&with(&["input", "step"], json!(0.0))),
        Err(ProgramError::Step(_))
    ));
    assert!(matches!(
        parse(&with(&["input", "step"], json!(-1.0))),
        Err(ProgramError::Step(_))
    ));
    assert!(matches!(
        parse(&with(&["classes"], json!(["a"]))),
        Err(ProgramError::TooFewClasses(1))
    ));
    assert!(matches!(
        parse(&with(&["weights"], json!([[1, 2, 3]]))),
        Err(ProgramError::WeightRows {
            rows: 1,
            classes: 2
        })
    ));
    assert!(matches!(
        parse(&with(&["weights"], json!([[1, 2, 3], [1, 2]]))),
        Err(ProgramError::WeightCols {
            row: 1,
            len: 2,
            features: 3
        })
    ));
    assert!(matches!(
        parse(&with(&["biases"], json!([1]))),
        Err(ProgramError::Biases { .. })
    ));
    assert!(matches!(
        parse(&with(&["score_bits"], json!(7))),
        Err(ProgramError::ScoreBits(7))
    ));
    assert!(matches!(
        parse(&with(&["score_bits"], json!(2))),
        Err(ProgramError::ScoreBits(2))
    ));
    assert!(matches!(
        parse(&with(&["score_bits"], json!(-4))),
        Err(ProgramError::Json(_))
    ));
    assert!(matches!(
        parse(&with(&["weights"], json!([[1, 2, 3], [0, 128, 0]]))),
        Err(ProgramError::WeightRange {
            row: 1,
            col: 1,
            value: 128,
            ..
        })
    ));
    // 3*7 + 3*7 + 5 = 47 fits 8 bits (limit 128); 127*3*3 does not.
    assert!(matches!(
        parse(&with(&["weights"], json!([[1, 2, 3], [127, 127, 127]]))),
        Err(ProgramError::MayOverflow { class: 1, .. })
    ));
    assert!(matches!(
        parse(&with(&["biases"], json!([i64::MAX, 0]))),
        Err(ProgramError::MayOverflow { class: 0, .. })
    ));
    assert!(matches!(
        parse(&with(&["biases"], json!([i64::MIN, 0]))),
        Err(ProgramError::MayOverflow { class: 0, .. })
    ));
}

#[test]
fn argmax_takes_the_first_maximum() {
    assert_eq!(argmax(&[1, 5, 5, 2]), Some(1));
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[-3, -1, -2]), Some(1));
}
