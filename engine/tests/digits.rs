//! The demo model: loads, declares the agreed signature, and matches onnxruntime on the
//! held-out rows exported by `models/digits/train.py`.

use std::path::PathBuf;

use cloister_engine::{DType, Dim, Model, Tensor};
use serde::Deserialize;

#[derive(Deserialize)]
struct Heldout {
    input: Vec<Vec<f32>>,
    labels: Vec<i64>,
    onnxruntime_probabilities: Vec<Vec<f32>>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/digits")
}

fn model() -> Model {
    Model::load(&dir().join("digits.onnx")).expect("digits.onnx loads")
}

fn heldout() -> Heldout {
    let text = std::fs::read_to_string(dir().join("heldout.json")).expect("heldout.json");
    serde_json::from_str(&text).expect("heldout.json parses")
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[test]
fn signature_is_input_n_by_64_and_probabilities_n_by_10() {
    let m = model();
    assert_eq!(m.inputs().len(), 1);
    let i = &m.inputs()[0];
    assert_eq!(i.name, "input");
    assert_eq!(i.dtype, DType::F32);
    assert!(matches!(i.shape[0], Dim::Symbolic(_)));
    assert_eq!(i.shape[1], Dim::Fixed(64));
    assert_eq!(m.outputs().len(), 1);
    let o = &m.outputs()[0];
    assert_eq!(o.name, "probabilities");
    assert_eq!(o.dtype, DType::F32);
    assert_eq!(o.shape.len(), 2);
    assert_eq!(o.shape[0], i.shape[0], "batch dim is shared");
    assert_eq!(o.shape[1], Dim::Fixed(10));
}

#[test]
fn matches_onnxruntime_on_heldout_rows() {
    let m = model();
    let h = heldout();
    let n = h.input.len();
    assert!(n >= 300, "expected the full 20% split, got {n} rows");
    assert_eq!(h.labels.len(), n);
    let flat: Vec<f32> = h.input.iter().flatten().copied().collect();
    let x = Tensor::from_f32(vec![n, 64], flat).unwrap();
    let out = m.run(vec![("input".into(), x)]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "probabilities");
    let p = &out[0].1;
    assert_eq!(p.shape(), &[n, 10]);
    let p = p.as_f32().unwrap();

    let mut max_diff = 0f32;
    let (mut ours_correct, mut ort_correct) = (0, 0);
    for (r, (ort_row, &label)) in h
        .onnxruntime_probabilities
        .iter()
        .zip(&h.labels)
        .enumerate()
    {
        let row = &p[r * 10..(r + 1) * 10];
        for (a, b) in row.iter().zip(ort_row) {
            max_diff = max_diff.max((a - b).abs());
        }
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "row {r} sums to {sum}");
        ours_correct += usize::from(argmax(row) as i64 == label);
        ort_correct += usize::from(argmax(ort_row) as i64 == label);
    }
    eprintln!(
        "rows {n}: max |engine - onnxruntime| = {max_diff:e}, \
         accuracy {ours_correct}/{n} (onnxruntime {ort_correct}/{n})"
    );
    assert!(
        max_diff <= 1e-5,
        "max |engine - onnxruntime| = {max_diff:e}"
    );
    assert_eq!(
        ours_correct, ort_correct,
        "argmax accuracy differs from onnxruntime"
    );
    let acc = ours_correct as f64 / n as f64;
    assert!(acc > 0.9, "accuracy {acc}");
}

#[test]
fn single_rows_match_the_batch() {
    let m = model();
    let h = heldout();
    for r in [0usize, 17, 123] {
        let x = Tensor::from_f32(vec![1, 64], h.input[r].clone()).unwrap();
        let out = m.run(vec![("input".into(), x)]).unwrap();
        let p = out[0].1.as_f32().unwrap();
        for (a, b) in p.iter().zip(&h.onnxruntime_probabilities[r]) {
            assert!((a - b).abs() <= 1e-5);
        }
    }
}

#[test]
fn empty_batch_gives_empty_output() {
    let m = model();
    let x = Tensor::from_f32(vec![0, 64], vec![]).unwrap();
    let out = m.run(vec![("input".into(), x)]).unwrap();
    assert_eq!(out[0].1.shape(), &[0, 10]);
}

#[test]
fn model_is_shareable_across_threads() {
    let m = std::sync::Arc::new(model());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                let x = Tensor::from_f32(vec![1, 64], vec![i as f32; 64]).unwrap();
                m.run(vec![("input".into(), x)]).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap()[0].1.shape(), &[1, 10]);
    }
}
