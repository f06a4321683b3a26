//! Program files are validated before any key or ciphertext exists: every malformed program
//! is a typed error naming what is wrong, exactness (ranges and noise) is proved at load, and
//! the plaintext reference reproduces the accuracy `train.py` recorded.

mod common;

use cloister_he::program::{argmax, Activation};
use cloister_he::{plaintext, HeError, Program, ProgramError};
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "format": "cloister-he-program/v2",
        "name": "tiny",
        "input": {"features": 3, "min": 0, "max": 3, "offset": [0.0], "scale": [1.0],
                  "rounding": "floor"},
        "layers": [
            {"weights": [[1, -2, 3], [0, 7, -7]], "biases": [5, -5],
             "activation": {"low_bits": 0, "tables": [
                 [0,0,0,0,0,0,0,0,0,1,2,3,3,3,3,3], [0,0,0,0,0,0,0,0,0,1,2,3,3,3,3,3]]}},
            {"weights": [[1, -1], [-1, 1]], "biases": [0, 1]}
        ],
        "output": {"bits": 6, "classes": ["a", "b"], "decision": "argmax", "scale": 1.0}
    })
}

fn parse(v: &Value) -> Result<Program, ProgramError> {
    Program::from_json(&v.to_string())
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = base();
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = if let Ok(i) = p.parse::<usize>() {
            &mut cur[i]
        } else {
            &mut cur[*p]
        };
    }
    cur[path[path.len() - 1]] = value;
    v
}

fn accuracy(model: &str) -> f64 {
    let program = common::program(model);
    let heldout = common::heldout_for(model);
    let correct = heldout
        .input
        .iter()
        .zip(&heldout.labels)
        .filter(|(row, &label)| {
            let q = program.quantize(row).unwrap();
            let scores = plaintext::evaluate(&program, &q).unwrap();
            program.decide(&scores) == Some(label as usize)
        })
        .count();
    correct as f64 / heldout.labels.len() as f64
}

#[test]
fn committed_programs_load_and_match_their_recorded_accuracy() {
    for model in ["digits-he", "breast-cancer-lr", "digits-mlp-he"] {
        let metrics: Value = serde_json::from_str(
            &std::fs::read_to_string(
                common::repo()
                    .join("models")
                    .join(model)
                    .join("metrics.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let recorded = metrics["quantized_plaintext_accuracy"].as_f64().unwrap();
        let got = accuracy(model);
        eprintln!("{model}: quantized plaintext accuracy {got:.4}");
        assert!(
            (got - recorded).abs() < 1e-9,
            "{model}: rust {got} vs python {recorded}"
        );
    }
    assert!(accuracy("breast-cancer-lr") >= 0.97);
    assert!(accuracy("digits-mlp-he") >= 0.92);
    let mlp = common::program("digits-mlp-he").analyse().unwrap();
    assert_eq!(mlp.pbs_count, 80);
    assert!(mlp.worst_output_noise_ratio <= 1.0 && mlp.worst_pbs_noise_ratio <= 1.0);
    assert_eq!(
        common::program("breast-cancer-lr")
            .analyse()
            .unwrap()
            .pbs_count,
        0
    );
}

#[test]
fn the_activation_is_the_negacyclic_table_for_every_input() {
    let act = Activation {
        low_bits: 2,
        tables: vec![(0..16).map(|i| (i as i64 - 3).clamp(0, 5)).collect()],
    };
    // In range: z in -32..32 reads F[floor(z / 4) + 8].
    assert_eq!(act.apply(0, -32), 0);
    assert_eq!(act.apply(0, 0), 5);
    assert_eq!(act.apply(0, -13), 1); // floor(19 / 4) = 4 -> F[4]
                                      // Out of range, the bootstrap's negacyclic reflection: min F + max F - F[u - 16].
    assert_eq!(act.apply(0, 32), 5); // u = 16 -> 5 - F[0]
    assert_eq!(act.apply(0, -33), 0); // u = 31 -> 5 - F[15]
    assert_eq!(act.apply(0, 32 + 128), act.apply(0, 32)); // period 128
}

#[test]
fn plaintext_reference_is_exact_integer_arithmetic() {
    let program = parse(&base()).unwrap();
    // z = [5 + 3 - 4 + 3, -5 + 14 - 7] = [7, 2]; u = z + 8 = [15, 10]; h = [3, 2];
    // scores = [3 - 2, -3 + 2 + 1] = [1, 0].
    assert_eq!(
        plaintext::evaluate(&program, &[3, 2, 1]).unwrap(),
        vec![1, 0]
    );
    // Wrap-around: x = [0, 0, 3] gives z = [14, -26], u = [22, 14]: h0 = (0 + 3) - F[6] = 3,
    // h1 = F[14] = 3; scores = [0, 1].
    assert_eq!(
        plaintext::evaluate(&program, &[0, 0, 3]).unwrap(),
        vec![0, 1]
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
            ..
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
        Err(ProgramError::Features(0))
    ));
    assert!(matches!(
        parse(&with(&["input", "scale"], json!([0.0]))),
        Err(ProgramError::Step(_))
    ));
    assert!(matches!(
        parse(&with(&["input", "scale"], json!([1.0, 2.0]))),
        Err(ProgramError::QuantizerLength { .. })
    ));
    assert!(matches!(
        parse(&with(&["layers", "0", "weights"], json!([[1, 2, 3]]))),
        Err(ProgramError::WeightRows { layer: 0, .. })
    ));
    assert!(matches!(
        parse(&with(&["layers", "1", "weights"], json!([[1], [1, 1]]))),
        Err(ProgramError::WeightCols {
            layer: 1,
            row: 0,
            ..
        })
    ));
    assert!(matches!(
        parse(&with(
            &["layers", "1", "activation"],
            base()["layers"][0]["activation"].clone()
        )),
        Err(ProgramError::ActivationPlacement { layer: 1 })
    ));
    assert!(matches!(
        parse(&with(&["layers", "0", "activation", "low_bits"], json!(6))),
        Err(ProgramError::LowBits(6))
    ));
    assert!(matches!(
        parse(&with(
            &["layers", "0", "activation", "tables"],
            json!([[0, 1]])
        )),
        Err(ProgramError::Tables { layer: 0 })
    ));
    assert!(matches!(
        parse(&with(&["output", "bits"], json!(1))),
        Err(ProgramError::ScoreBits(1))
    ));
    assert!(matches!(
        parse(&with(&["output", "classes"], json!(["a", "b", "c"]))),
        Err(ProgramError::Classes { .. })
    ));
    // Scores span -3..=3: 2 bits do not hold them.
    assert!(matches!(
        parse(&with(&["output", "bits"], json!(2))),
        Err(ProgramError::MayOverflow { .. })
    ));
    assert!(matches!(
        parse(&with(&["layers", "1", "biases"], json!([i64::MAX, 0]))),
        Err(ProgramError::BiasRange { layer: 1, .. })
    ));
    // Noise: bootstrap outputs (sigma ~ 2^49) summed with weights 1000 cannot be decoded at
    // a step of 2^(64-20): the program is refused at load, not decrypted wrongly later.
    let mut noisy = with(
        &["layers", "1", "weights"],
        json!([[1000, -1000], [-1000, 1000]]),
    );
    noisy["output"]["bits"] = json!(20);
    assert!(matches!(
        parse(&noisy),
        Err(ProgramError::Noise {
            layer: 1,
            what: "score decryption",
            ..
        })
    ));
    // A second layer with low bits would multiply bootstrap noise by 32 before a bootstrap.
    let mut deep = base();
    deep["layers"] = json!([
        base()["layers"][0].clone(),
        {"weights": [[1, 1], [1, 1]], "biases": [0, 0],
         "activation": {"low_bits": 3, "tables": base()["layers"][0]["activation"]["tables"].clone()}},
        base()["layers"][1].clone()
    ]);
    assert!(matches!(
        parse(&deep),
        Err(ProgramError::Noise {
            layer: 1,
            what: "bootstrap input",
            ..
        })
    ));
}

#[test]
fn version_1_programs_are_converted() {
    let program = common::program("digits-he");
    assert_eq!(program.layers.len(), 1);
    assert_eq!(program.input.max, 3);
    assert_eq!(program.output.bits, 10);
}

#[test]
fn argmax_takes_the_first_maximum() {
    assert_eq!(argmax(&[1, 5, 5, 2]), Some(1));
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[-3, -1, -2]), Some(1));
}
