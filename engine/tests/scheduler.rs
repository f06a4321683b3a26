//! The parallel scheduler: levels of independent nodes, results identical to the sequential
//! executor, and errors in a parallel branch still name the node.

mod common;

use std::collections::HashMap;

use cloister_engine::graph::Graph;
use cloister_engine::onnx::decode_model;
use cloister_engine::scheduler::levels;
use cloister_engine::{LoadOptions, Model, OpRegistry, Tensor};
use common::*;

/// x -> Sigmoid -> a, x -> Neg -> b, Gather(table, idx) -> g, a + b -> s, s * g -> y.
fn diamond() -> Vec<u8> {
    model(
        vec![
            node("Sigmoid", &["x"], &["a"], vec![]),
            node("Neg", &["x"], &["b"], vec![]),
            node("Gather", &["table", "idx"], &["g"], vec![]),
            node("Add", &["a", "b"], &["s"], vec![]),
            node("Mul", &["s", "g"], &["y"], vec![]),
        ],
        vec![f32_init("table", &[3], &[1.0, 2.0, 3.0])],
        vec![vi("x", FLOAT, &[D::N(4)]), vi("idx", INT64, &[D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(4)]), vi("a", FLOAT, &[D::N(4)])],
        17,
    )
}

fn with_threads(bytes: &[u8], threads: usize) -> Model {
    Model::from_bytes_with(
        bytes,
        &OpRegistry::standard(),
        &LoadOptions {
            threads,
            ..Default::default()
        },
    )
    .unwrap()
}

fn inputs(idx: [i64; 4]) -> Vec<(String, Tensor)> {
    vec![
        (
            "x".into(),
            Tensor::from_f32(vec![4], vec![-1.0, 0.0, 0.5, 2.0]).unwrap(),
        ),
        (
            "idx".into(),
            Tensor::from_i64(vec![4], idx.to_vec()).unwrap(),
        ),
    ]
}

#[test]
fn independent_nodes_share_a_level() {
    let m = decode_model(&diamond()).unwrap();
    let opsets = HashMap::from([(String::new(), 17)]);
    let g = Graph::from_proto(m.graph.as_ref().unwrap(), &opsets, &OpRegistry::standard()).unwrap();
    let by_op: HashMap<&str, usize> = g
        .nodes
        .iter()
        .zip(levels(&g))
        .map(|(n, l)| (n.op_type.as_str(), l))
        .collect();
    assert_eq!(by_op["Sigmoid"], 0);
    assert_eq!(by_op["Neg"], 0);
    assert_eq!(by_op["Gather"], 0);
    assert_eq!(by_op["Add"], 1);
    assert_eq!(by_op["Mul"], 2);
}

#[test]
fn parallel_runs_equal_sequential_runs() {
    let bytes = diamond();
    let seq = with_threads(&bytes, 1).run(inputs([0, 1, 2, 1])).unwrap();
    for threads in [2, 4] {
        let m = with_threads(&bytes, threads);
        for _ in 0..20 {
            assert_eq!(m.run(inputs([0, 1, 2, 1])).unwrap(), seq);
        }
    }
    // y = (sigmoid(x) - x) * table[idx]
    let y = seq[0].1.as_f32().unwrap();
    let want = 1.0 / (1.0 + (-0.5f32).exp()) - 0.5;
    assert!((y[2] - want * 3.0).abs() < 1e-6);
}

#[test]
fn an_error_in_a_parallel_branch_names_its_node() {
    let m = with_threads(&diamond(), 2);
    let err = m.run(inputs([0, 1, 7, 1])).unwrap_err();
    assert!(err.to_string().contains("Gather_g"), "{err}");
}
