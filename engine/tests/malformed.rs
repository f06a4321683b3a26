//! Untrusted model bytes: garbage, truncations, bit flips and structurally invalid graphs must
//! produce an `EngineError`, never a panic.

mod common;

use cloister_engine::{EngineError, Model};
use common::*;

fn digits_bytes() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/digits.onnx"),
    )
    .unwrap()
}

#[test]
fn garbage_bytes_are_errors() {
    for bytes in [
        &b""[..],
        b"\x00",
        b"not an onnx model at all",
        &[0xff; 64],
        &[
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
        ],
        &[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    ] {
        assert!(Model::from_bytes(bytes).is_err(), "{bytes:?} accepted");
    }
    // An empty message decodes but has no graph.
    assert!(matches!(
        Model::from_bytes(b""),
        Err(EngineError::InvalidModel(_))
    ));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = digits_bytes();
    assert!(Model::from_bytes(&bytes).is_ok());
    for len in 0..bytes.len() {
        // Some prefixes may be valid protobuf by chance; they must still not panic.
        let _ = Model::from_bytes(&bytes[..len]);
    }
    assert!(Model::from_bytes(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn random_byte_flips_never_panic() {
    let bytes = digits_bytes();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if let Ok(m) = Model::from_bytes(&b) {
            // A model that still loads must run (or fail cleanly) on a conforming input.
            if let Some(info) = m.inputs().first() {
                let shape: Vec<usize> = info
                    .shape
                    .iter()
                    .map(|d| d.fixed().unwrap_or(2).min(128))
                    .collect();
                let n = shape.iter().product();
                if info.dtype == cloister_engine::DType::F32 {
                    let t = cloister_engine::Tensor::from_f32(shape, vec![1.0; n]).unwrap();
                    let _ = m.run(vec![(info.name.clone(), t)]);
                }
            }
        }
    }
}

fn one_node(n: cloister_engine::onnx::proto::NodeProto, opset: i64) -> Vec<u8> {
    model(
        vec![n],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        opset,
    )
}

#[test]
fn structural_errors_are_typed() {
    let err =
        Model::from_bytes(&one_node(node("Frobnicate", &["x"], &["y"], vec![]), 13)).unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedOp { ref op_type, .. } if op_type == "Frobnicate"),
        "{err}"
    );

    let err =
        Model::from_bytes(&one_node(node("Relu", &["nope"], &["y"], vec![]), 13)).unwrap_err();
    assert!(matches!(err, EngineError::InvalidModel(_)), "{err}");

    // A cycle: y = Relu(z), z = Relu(y).
    let bytes = model(
        vec![
            node("Relu", &["z"], &["y"], vec![]),
            node("Relu", &["y"], &["z"], vec![]),
        ],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        13,
    );
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(EngineError::InvalidModel(_))
    ));

    // Output declared but never produced.
    let bytes = model(
        vec![],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        13,
    );
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(EngineError::InvalidModel(_))
    ));

    // Initializer whose data does not match its dims.
    let mut bad = f32_init("w", &[3], &[1.0, 2.0]);
    bad.dims = vec![3];
    let bytes = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![bad],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        13,
    );
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, EngineError::Tensor { ref tensor, .. } if tensor == "w")
            && matches!(err.root(), EngineError::InvalidModel(_)),
        "{err}"
    );

    // Shapes that cannot broadcast are caught at load time by inference.
    let bytes = model(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![f32_init("w", &[3], &[1.0, 2.0, 3.0])],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        13,
    );
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err.root(), EngineError::Broadcast { .. }), "{err}");

    // Missing required attribute.
    let err = Model::from_bytes(&one_node(node("Concat", &["x"], &["y"], vec![]), 13)).unwrap_err();
    assert!(
        matches!(err.root(), EngineError::BadAttribute { .. }),
        "{err}"
    );
}
