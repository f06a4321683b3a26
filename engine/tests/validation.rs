//! Request validation: wrong names, dtypes and shapes give the typed error, before evaluation.

mod common;

use cloister_engine::{DType, EngineError, Model, Tensor};
use common::*;

fn digits() -> Model {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/digits.onnx");
    Model::load(&path).unwrap()
}

fn x(shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, vec![0.5; n]).unwrap()
}

#[test]
fn wrong_name_is_unknown_input() {
    let err = digits()
        .run(vec![("X".into(), x(vec![1, 64]))])
        .unwrap_err();
    assert!(
        matches!(err, EngineError::UnknownInput { ref name } if name == "X"),
        "{err}"
    );
}

#[test]
fn missing_and_duplicate_inputs() {
    let err = digits().run(vec![]).unwrap_err();
    assert!(
        matches!(err, EngineError::MissingInput { ref name } if name == "input"),
        "{err}"
    );
    let err = digits()
        .run(vec![
            ("input".into(), x(vec![1, 64])),
            ("input".into(), x(vec![1, 64])),
        ])
        .unwrap_err();
    assert!(matches!(err, EngineError::DuplicateInput { .. }), "{err}");
}

#[test]
fn wrong_shape_is_shape_mismatch() {
    for shape in [vec![1, 63], vec![64], vec![1, 1, 64], vec![2, 65]] {
        let err = digits()
            .run(vec![("input".into(), x(shape.clone()))])
            .unwrap_err();
        match err {
            EngineError::ShapeMismatch {
                input,
                expected,
                got,
            } => {
                assert_eq!(input, "input");
                assert_eq!(expected, "[N, 64]");
                assert_eq!(got, shape);
            }
            other => panic!("expected ShapeMismatch, got {other}"),
        }
    }
}

#[test]
fn wrong_dtype_is_dtype_mismatch() {
    let t = Tensor::from_f64(vec![1, 64], vec![0.0; 64]).unwrap();
    let err = digits().run(vec![("input".into(), t)]).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::DtypeMismatch {
                expected: DType::F32,
                got: DType::F64,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn symbolic_dims_must_agree_across_inputs() {
    let bytes = model(
        vec![node("Add", &["a", "b"], &["y"], vec![])],
        vec![],
        vec![
            vi("a", FLOAT, &[D::S("N"), D::N(2)]),
            vi("b", FLOAT, &[D::S("N"), D::N(2)]),
        ],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(2)])],
        13,
    );
    let m = Model::from_bytes(&bytes).unwrap();
    let ok = m
        .run(vec![
            ("a".into(), x(vec![3, 2])),
            ("b".into(), x(vec![3, 2])),
        ])
        .unwrap();
    assert_eq!(ok[0].1.shape(), &[3, 2]);
    assert_eq!(ok[0].1.as_f32().unwrap(), &[1.0; 6]);
    let err = m
        .run(vec![
            ("a".into(), x(vec![3, 2])),
            ("b".into(), x(vec![1, 2])),
        ])
        .unwrap_err();
    assert!(
        matches!(err, EngineError::InconsistentDim { ref dim, first: 3, second: 1, .. } if dim == "N"),
        "{err}"
    );
}
