//! Each optimisation pass on a small graph: the node list before and after, and the model's
//! outputs with and without the pass (they must agree).

mod common;

use std::collections::HashMap;

use cloister_engine::graph::Graph;
use cloister_engine::onnx::decode_model;
use cloister_engine::onnx::proto::AttributeProto;
use cloister_engine::passes::{self, Pass};
use cloister_engine::{LoadOptions, Model, OpRegistry, Tensor};
use common::*;

fn graph(bytes: &[u8]) -> Graph {
    let m = decode_model(bytes).unwrap();
    let opsets = HashMap::from([(String::new(), 17)]);
    Graph::from_proto(m.graph.as_ref().unwrap(), &opsets, &OpRegistry::standard()).unwrap()
}

fn ops(g: &Graph) -> Vec<String> {
    g.nodes.iter().map(|n| n.op_type.clone()).collect()
}

/// Runs `pass` alone; returns the op types before and after and the rewrite count.
fn apply(pass: &dyn Pass, bytes: &[u8]) -> (Vec<String>, Vec<String>, usize) {
    let mut g = graph(bytes);
    let before = ops(&g);
    let n = pass.run(&mut g, &OpRegistry::standard()).unwrap();
    (before, ops(&g), n)
}

/// The model's outputs with the standard passes and without: equal within 1e-5 (relative).
fn same_outputs(bytes: &[u8], inputs: Vec<(String, Tensor)>) {
    let plain = Model::from_bytes_with(
        bytes,
        &OpRegistry::standard(),
        &LoadOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap();
    let fast = Model::from_bytes(bytes).unwrap();
    let a = plain.run(inputs.clone()).unwrap();
    let b = fast.run(inputs).unwrap();
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta.shape(), tb.shape(), "{na}");
        let (x, y) = (ta.as_f32().unwrap(), tb.as_f32().unwrap());
        let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-5 * scale, "{na}: {p} vs {q}");
        }
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(7),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn seq(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) * scale)
        .collect()
}

#[test]
fn dead_code_elimination_drops_unread_nodes() {
    // x -> Relu -> y (output); x -> Sigmoid -> Neg (nobody reads it).
    let bytes = model(
        vec![
            node("Sigmoid", &["x"], &["s"], vec![]),
            node("Relu", &["x"], &["y"], vec![]),
            node("Neg", &["s"], &["n"], vec![]),
        ],
        vec![],
        vec![vi("x", FLOAT, &[D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(4)])],
        17,
    );
    let (before, after, n) = apply(&passes::dce::DeadCodeElimination, &bytes);
    assert_eq!(before, ["Sigmoid", "Relu", "Neg"]);
    assert_eq!(after, ["Relu"]);
    assert_eq!(n, 2);
    same_outputs(
        &bytes,
        vec![("x".into(), Tensor::from_f32(vec![4], seq(4, 1.0)).unwrap())],
    );
}

#[test]
fn constant_folding_turns_constant_subgraphs_into_initializers() {
    // w' = Transpose(w) and a Reshape of an initializer are computed once at load.
    let bytes = model(
        vec![
            node("Transpose", &["w"], &["wt"], vec![ints("perm", &[1, 0])]),
            node("MatMul", &["x", "wt"], &["y"], vec![]),
        ],
        vec![f32_init("w", &[3, 2], &seq(6, 0.5))],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(2)])],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(3)])],
        17,
    );
    let (before, after, n) = apply(&passes::fold::ConstantFolding, &bytes);
    assert_eq!(before, ["Transpose", "MatMul"]);
    assert_eq!(after, ["MatMul"]);
    assert_eq!(n, 1);
    same_outputs(
        &bytes,
        vec![(
            "x".into(),
            Tensor::from_f32(vec![2, 2], seq(4, 1.0)).unwrap(),
        )],
    );
}

#[test]
fn matmul_add_becomes_gemm_only_for_rank_2_with_a_single_reader() {
    let linear = |extra_reader: bool| {
        let mut nodes = vec![
            node("MatMul", &["x", "w"], &["m"], vec![]),
            node("Add", &["m", "b"], &["y"], vec![]),
        ];
        let mut outs = vec![vi("y", FLOAT, &[D::S("N"), D::N(3)])];
        if extra_reader {
            nodes.push(node("Relu", &["m"], &["r"], vec![]));
            outs.push(vi("r", FLOAT, &[D::S("N"), D::N(3)]));
        }
        model(
            nodes,
            vec![
                f32_init("w", &[4, 3], &seq(12, 0.25)),
                f32_init("b", &[3], &[0.5, -1.0, 2.0]),
            ],
            vec![vi("x", FLOAT, &[D::S("N"), D::N(4)])],
            outs,
            17,
        )
    };
    let bytes = linear(false);
    let (before, after, n) = apply(&passes::gemm_fusion::MatMulAddToGemm, &bytes);
    assert_eq!(before, ["MatMul", "Add"]);
    assert_eq!(after, ["Gemm"]);
    assert_eq!(n, 1);
    same_outputs(
        &bytes,
        vec![(
            "x".into(),
            Tensor::from_f32(vec![2, 4], seq(8, 1.0)).unwrap(),
        )],
    );
    // The product is read elsewhere too: left alone.
    let (_, after, n) = apply(&passes::gemm_fusion::MatMulAddToGemm, &linear(true));
    assert_eq!((after.len(), n), (3, 0));
    // Rank 3 (a transformer's [batch, seq, hidden]): Gemm cannot take it.
    let bytes = model(
        vec![
            node("MatMul", &["x", "w"], &["m"], vec![]),
            node("Add", &["m", "b"], &["y"], vec![]),
        ],
        vec![
            f32_init("w", &[4, 3], &seq(12, 0.25)),
            f32_init("b", &[3], &[0.5, -1.0, 2.0]),
        ],
        vec![vi("x", FLOAT, &[D::N(1), D::N(2), D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(1), D::N(2), D::N(3)])],
        17,
    );
    let (_, after, _) = apply(&passes::gemm_fusion::MatMulAddToGemm, &bytes);
    assert_eq!(after, ["MatMul", "Add"]);
}

fn conv_bn_relu() -> Vec<u8> {
    let c = 3;
    model(
        vec![
            node(
                "Conv",
                &["x", "k"],
                &["c"],
                vec![ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "BatchNormalization",
                &["c", "g", "beta", "mean", "var"],
                &["bn"],
                vec![],
            ),
            node("Relu", &["bn"], &["y"], vec![]),
        ],
        vec![
            f32_init("k", &[c, 2, 3, 3], &seq(c as usize * 18, 0.1)),
            f32_init("g", &[c], &[0.5, 1.5, 1.0]),
            f32_init("beta", &[c], &[0.1, -0.2, 0.3]),
            f32_init("mean", &[c], &[0.05, -0.1, 0.2]),
            f32_init("var", &[c], &[0.9, 1.1, 2.0]),
        ],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(2), D::N(5), D::N(5)])],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(c), D::N(5), D::N(5)])],
        17,
    )
}

#[test]
fn batch_norm_folds_into_the_conv_before_it() {
    let bytes = conv_bn_relu();
    let (before, after, n) = apply(&passes::conv_bn::ConvBatchNorm, &bytes);
    assert_eq!(before, ["Conv", "BatchNormalization", "Relu"]);
    assert_eq!(after, ["Conv", "Relu"]);
    assert_eq!(n, 1);
    same_outputs(
        &bytes,
        vec![(
            "x".into(),
            Tensor::from_f32(vec![2, 2, 5, 5], seq(100, 0.3)).unwrap(),
        )],
    );
}

#[test]
fn relu_fuses_into_the_conv_epilogue() {
    let bytes = model(
        vec![
            node("Conv", &["x", "k"], &["c"], vec![]),
            node("Relu", &["c"], &["y"], vec![]),
        ],
        vec![f32_init("k", &[2, 1, 2, 2], &seq(8, 0.5))],
        vec![vi("x", FLOAT, &[D::N(1), D::N(1), D::N(3), D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(1), D::N(2), D::N(2), D::N(2)])],
        17,
    );
    let (before, after, n) = apply(&passes::conv_activation::ConvRelu, &bytes);
    assert_eq!(before, ["Conv", "Relu"]);
    assert_eq!(after, ["Conv+Relu"]);
    assert_eq!(n, 1);
    let x = Tensor::from_f32(vec![1, 1, 3, 3], seq(9, 1.0)).unwrap();
    same_outputs(&bytes, vec![("x".into(), x.clone())]);
    // The epilogue really clamps: some pre-activation values are negative.
    let plain = Model::from_bytes_with(
        &bytes,
        &OpRegistry::standard(),
        &LoadOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap();
    let out = plain.run(vec![("x".into(), x)]).unwrap();
    assert!(out[0].1.as_f32().unwrap().contains(&0.0));
}

#[test]
fn the_standard_pipeline_reports_each_pass() {
    let m = Model::from_bytes(&conv_bn_relu()).unwrap();
    let report: HashMap<&str, usize> = m.pass_report().iter().copied().collect();
    assert_eq!(report["Conv+BatchNormalization folding"], 1);
    assert_eq!(report["Conv+Relu fusion"], 1);
    let ops: Vec<&str> = m.graph().nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Conv+Relu"]);
}
