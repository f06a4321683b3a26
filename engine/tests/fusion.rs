//! The fusion and elimination passes (LayerNorm, GELU, attention, transpose/reshape), each on
//! small graphs: the node list before and after the pass alone (printed and asserted), the
//! rewritten node's attributes where they carry extracted values, near-misses that must be left
//! alone, and the model's outputs with the standard passes and without on random inputs (they
//! must agree).

mod common;

use std::collections::HashMap;

use cloister_engine::graph::Graph;
use cloister_engine::onnx::decode_model;
use cloister_engine::onnx::proto::{AttributeProto, NodeProto, TensorProto, ValueInfoProto};
use cloister_engine::passes::{self, Pass};
use cloister_engine::{AttrValue, LoadOptions, Model, OpRegistry, Tensor};
use common::*;

fn graph(bytes: &[u8], opset: i64) -> Graph {
    let m = decode_model(bytes).unwrap();
    let opsets = HashMap::from([(String::new(), opset)]);
    Graph::from_proto(m.graph.as_ref().unwrap(), &opsets, &OpRegistry::standard()).unwrap()
}

fn ops(g: &Graph) -> Vec<String> {
    g.nodes.iter().map(|n| n.op_type.clone()).collect()
}

/// Runs `pass` alone, prints the graph before and after; returns the op types before and
/// after, the rewrite count and the rewritten graph.
fn apply_at(pass: &dyn Pass, bytes: &[u8], opset: i64) -> (Vec<String>, Vec<String>, usize, Graph) {
    let mut g = graph(bytes, opset);
    let before = ops(&g);
    let n = pass.run(&mut g, &OpRegistry::standard()).unwrap();
    let after = ops(&g);
    eprintln!("{}: {before:?}\n  -> {after:?} ({n} rewrites)", pass.name());
    (before, after, n, g)
}

fn apply(pass: &dyn Pass, bytes: &[u8]) -> (Vec<String>, Vec<String>, usize, Graph) {
    apply_at(pass, bytes, 17)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape.to_vec(), self.vec(n, lo, hi)).unwrap()
    }
}

fn plain(bytes: &[u8]) -> Model {
    Model::from_bytes_with(
        bytes,
        &OpRegistry::standard(),
        &LoadOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Loads the model with the standard passes and without, checks `pass` rewrote `rewrites`
/// times at load, and requires equal outputs (within 1e-5 of the output's scale) on each of
/// the input sets.
fn same_outputs(bytes: &[u8], pass: &str, rewrites: usize, cases: Vec<Vec<(String, Tensor)>>) {
    let plain = plain(bytes);
    let fast = Model::from_bytes(bytes).unwrap();
    let report: HashMap<&str, usize> = fast.pass_report().iter().copied().collect();
    assert_eq!(report[pass], rewrites, "{:?}", fast.pass_report());
    for inputs in cases {
        let a = plain.run(inputs.clone()).unwrap();
        let b = fast.run(inputs).unwrap();
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(ta.shape(), tb.shape(), "{na}");
            let (x, y) = (ta.as_f32().unwrap(), tb.as_f32().unwrap());
            let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            eprintln!("{na}: max |Δ| / scale = {:.2e}", worst / scale);
            for (p, q) in x.iter().zip(y) {
                assert!(
                    (p - q).abs() <= 1e-5 * scale,
                    "{na}: unfused {p} vs fused {q}"
                );
            }
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

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_init(name, &[], &[v])
}

fn i64_init(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(INT64),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn attr<'a>(g: &'a Graph, op: &str, name: &str) -> &'a AttrValue {
    let n = g.nodes.iter().find(|n| n.op_type == op).unwrap();
    n.attributes.get(name).unwrap()
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// Options for the decomposed LayerNorm graph.
#[derive(Clone, Copy)]
struct Ln {
    /// ReduceMean axes.
    axes: &'static [i64],
    exponent: f32,
    /// Square with `Mul(d, d)` instead of `Pow(d, 2)`.
    mul_square: bool,
    /// `d` is also a graph output.
    leak_d: bool,
    affine: bool,
    opset: i64,
}

const LN: Ln = Ln {
    axes: &[-1],
    exponent: 2.0,
    mul_square: false,
    leak_d: false,
    affine: true,
    opset: 17,
};

/// x [N, 3, 8] -> decomposed LayerNorm (eps 1e-5) with gamma/beta over the normalised dims.
fn layer_norm(o: Ln) -> Vec<u8> {
    let norm: Vec<i64> = if o.axes.len() == 2 {
        vec![3, 8]
    } else {
        vec![8]
    };
    let n: usize = norm.iter().product::<i64>() as usize;
    let mut rng = Rng(7);
    let reduce = |input: &str, out: &str| {
        if o.opset >= 18 {
            node("ReduceMean", &[input, "axes"], &[out], vec![])
        } else {
            node("ReduceMean", &[input], &[out], vec![ints("axes", o.axes)])
        }
    };
    let mut nodes = vec![
        reduce("x", "mean"),
        node("Sub", &["x", "mean"], &["d"], vec![]),
    ];
    nodes.push(if o.mul_square {
        node("Mul", &["d", "d"], &["p"], vec![])
    } else {
        node("Pow", &["d", "two"], &["p"], vec![])
    });
    nodes.extend([
        reduce("p", "var"),
        node("Add", &["var", "eps"], &["ve"], vec![]),
        node("Sqrt", &["ve"], &["sd"], vec![]),
        node("Div", &["d", "sd"], &["nrm"], vec![]),
    ]);
    let last = if o.affine {
        nodes.push(node("Mul", &["nrm", "gamma"], &["scaled"], vec![]));
        nodes.push(node("Add", &["beta", "scaled"], &["y"], vec![]));
        "y"
    } else {
        "nrm"
    };
    let mut outs = vec![vi(last, FLOAT, &[D::S("N"), D::N(3), D::N(8)])];
    if o.leak_d {
        outs.push(vi("d", FLOAT, &[D::S("N"), D::N(3), D::N(8)]));
    }
    model(
        nodes,
        vec![
            scalar("two", o.exponent),
            scalar("eps", 1e-5),
            f32_init("gamma", &norm, &rng.vec(n, 0.5, 1.5)),
            f32_init("beta", &norm, &rng.vec(n, -0.5, 0.5)),
            i64_init("axes", o.axes),
        ],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(3), D::N(8)])],
        outs,
        o.opset,
    )
}

fn ln_cases() -> Vec<Vec<(String, Tensor)>> {
    let mut rng = Rng(42);
    [1, 2]
        .iter()
        .map(|&n| vec![("x".to_string(), rng.tensor(&[n, 3, 8], -3.0, 5.0))])
        .collect()
}

#[test]
fn decomposed_layer_norm_becomes_one_layer_normalization() {
    let bytes = layer_norm(LN);
    let (before, after, n, g) = apply(&passes::layer_norm::LayerNormFusion, &bytes);
    assert_eq!(
        before,
        [
            "ReduceMean",
            "Sub",
            "Pow",
            "ReduceMean",
            "Add",
            "Sqrt",
            "Div",
            "Mul",
            "Add"
        ]
    );
    assert_eq!(after, ["LayerNormalization"]);
    assert_eq!(n, 1);
    // axis and epsilon are read from the pattern.
    assert_eq!(attr(&g, "LayerNormalization", "axis"), &AttrValue::Int(2));
    assert_eq!(
        attr(&g, "LayerNormalization", "epsilon"),
        &AttrValue::Float(1e-5)
    );
    assert_eq!(g.nodes[0].inputs.len(), 3, "x, gamma and beta");
    same_outputs(&bytes, "LayerNorm fusion", 1, ln_cases());
}

#[test]
fn layer_norm_variants_fuse_with_the_right_axis() {
    // Two trailing axes (as a negative and a positive axis), Mul(d, d) for the square, axes as
    // an input (opset 18), no affine part (a scale of ones is made).
    for o in [
        Ln {
            axes: &[-1, 1],
            ..LN
        },
        Ln {
            mul_square: true,
            ..LN
        },
        Ln { opset: 18, ..LN },
        Ln {
            affine: false,
            ..LN
        },
    ] {
        let bytes = layer_norm(o);
        let (_, after, n, g) = apply_at(&passes::layer_norm::LayerNormFusion, &bytes, o.opset);
        assert_eq!(
            (after.as_slice(), n),
            (&["LayerNormalization".to_string()][..], 1)
        );
        let axis = if o.axes.len() == 2 { 1 } else { 2 };
        assert_eq!(
            attr(&g, "LayerNormalization", "axis"),
            &AttrValue::Int(axis)
        );
        same_outputs(&bytes, "LayerNorm fusion", 1, ln_cases());
    }
}

#[test]
fn near_misses_of_layer_norm_are_left_alone() {
    for (what, o) in [
        (
            "fourth power, not square",
            Ln {
                exponent: 4.0,
                ..LN
            },
        ),
        (
            "the centred value is also an output",
            Ln { leak_d: true, ..LN },
        ),
        ("a leading axis is not LayerNorm", Ln { axes: &[1], ..LN }),
    ] {
        let bytes = layer_norm(o);
        let (before, after, n, _) = apply(&passes::layer_norm::LayerNormFusion, &bytes);
        assert_eq!((before, n), (after, 0), "{what}");
        same_outputs(&bytes, "LayerNorm fusion", 0, ln_cases());
    }
}

// ---------------------------------------------------------------------------------------------
// GELU

/// The GELU decompositions: (label, nodes).
fn gelu_forms() -> Vec<(&'static str, Vec<NodeProto>)> {
    let erf = |div: NodeProto| {
        vec![
            div,
            node("Erf", &["s"], &["e"], vec![]),
            node("Add", &["one", "e"], &["a"], vec![]),
        ]
    };
    let div = || node("Div", &["x", "sqrt2"], &["s"], vec![]);
    let mut torch = erf(div());
    torch.extend([
        node("Mul", &["x", "a"], &["m"], vec![]),
        node("Mul", &["m", "half"], &["y"], vec![]),
    ]);
    let mut half_first = erf(div());
    half_first.extend([
        node("Mul", &["half", "a"], &["m"], vec![]),
        node("Mul", &["m", "x"], &["y"], vec![]),
    ]);
    let mut x_half = vec![node("Mul", &["x", "half"], &["h"], vec![])];
    x_half.extend(erf(node("Mul", &["inv_sqrt2", "x"], &["s"], vec![])));
    x_half.push(node("Mul", &["a", "h"], &["y"], vec![]));
    vec![
        ("torch: (x * (1 + erf(x / sqrt2))) * 0.5", torch),
        ("x * ((1 + erf(x / sqrt2)) * 0.5)", half_first),
        ("(x * 0.5) * (1 + erf(x * (1/sqrt2)))", x_half),
    ]
}

fn gelu_model(nodes: Vec<NodeProto>, sqrt2: f32, extra_output: Option<&str>) -> Vec<u8> {
    let shape = || vec![D::S("N"), D::N(16)];
    let mut outs = vec![vi("y", FLOAT, &shape())];
    if let Some(o) = extra_output {
        outs.push(vi(o, FLOAT, &shape()));
    }
    model(
        nodes,
        vec![
            scalar("sqrt2", sqrt2),
            scalar("inv_sqrt2", 1.0 / sqrt2),
            scalar("one", 1.0),
            scalar("half", 0.5),
        ],
        vec![vi("x", FLOAT, &shape())],
        outs,
        17,
    )
}

fn gelu_cases() -> Vec<Vec<(String, Tensor)>> {
    let mut rng = Rng(3);
    vec![vec![("x".to_string(), rng.tensor(&[3, 16], -6.0, 6.0))]]
}

#[test]
fn erf_gelu_in_each_ordering_becomes_one_gelu() {
    for (label, nodes) in gelu_forms() {
        eprintln!("{label}");
        let bytes = gelu_model(nodes, std::f32::consts::SQRT_2, None);
        let (before, after, n, g) = apply(&passes::gelu::GeluFusion, &bytes);
        assert_eq!(before.len(), 5, "{label}");
        assert_eq!(after, ["Gelu"], "{label}");
        assert_eq!(n, 1);
        assert_eq!(
            attr(&g, "Gelu", "approximate"),
            &AttrValue::String("none".into())
        );
        same_outputs(&bytes, "GELU fusion", 1, gelu_cases());
    }
}

#[test]
fn near_misses_of_gelu_are_left_alone() {
    // x / sqrt(3) is not GELU.
    let (label, nodes) = gelu_forms().remove(0);
    let bytes = gelu_model(nodes.clone(), 3f32.sqrt(), None);
    let (before, after, n, _) = apply(&passes::gelu::GeluFusion, &bytes);
    assert_eq!((&before, n), (&after, 0), "{label} with sqrt(3)");
    same_outputs(&bytes, "GELU fusion", 0, gelu_cases());
    // erf's output also leaves the graph: the intermediate must survive, so no fusion.
    let bytes = gelu_model(nodes, std::f32::consts::SQRT_2, Some("e"));
    let (before, after, n, _) = apply(&passes::gelu::GeluFusion, &bytes);
    assert_eq!((before, n), (after, 0), "{label} with erf read twice");
    same_outputs(&bytes, "GELU fusion", 0, gelu_cases());
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Options for the attention graph (MiniLM's layout: q/k/v [B, S, H*Dh] split into heads).
#[derive(Clone, Copy)]
struct Att {
    mask: bool,
    /// Scale by `Mul(scores, 1/sqrt(d))` instead of `Div(scores, sqrt(d))`.
    mul_scale: bool,
    softmax_axis: i64,
    /// The probabilities are also a graph output.
    leak_probs: bool,
}

const ATT: Att = Att {
    mask: true,
    mul_scale: false,
    softmax_axis: -1,
    leak_probs: false,
};

const HEADS: i64 = 2;
const HEAD_DIM: i64 = 4;

fn attention(o: Att) -> Vec<u8> {
    let t = |x: &str, out: &str, perm: &[i64]| {
        node("Transpose", &[x], &[out], vec![ints("perm", perm)])
    };
    let r = |x: &str, out: &str| node("Reshape", &[x, "heads"], &[out], vec![]);
    let mut nodes = vec![
        r("q", "qh"),
        t("qh", "qt", &[0, 2, 1, 3]),
        r("k", "kh"),
        t("kh", "kt", &[0, 2, 3, 1]),
        r("v", "vh"),
        t("vh", "vt", &[0, 2, 1, 3]),
        node("MatMul", &["qt", "kt"], &["scores"], vec![]),
    ];
    nodes.push(if o.mul_scale {
        node("Mul", &["inv_scale", "scores"], &["scaled"], vec![])
    } else {
        node("Div", &["scores", "scale"], &["scaled"], vec![])
    });
    let logits = if o.mask {
        nodes.extend([
            node("Unsqueeze", &["mask", "axes12"], &["m4"], vec![]),
            node("Sub", &["one", "m4"], &["minv"], vec![]),
            node("Mul", &["minv", "f32min"], &["madd"], vec![]),
            node("Add", &["scaled", "madd"], &["masked"], vec![]),
        ]);
        "masked"
    } else {
        "scaled"
    };
    nodes.extend([
        node(
            "Softmax",
            &[logits],
            &["probs"],
            vec![attr_int("axis", o.softmax_axis)],
        ),
        node("MatMul", &["probs", "vt"], &["ctx"], vec![]),
        t("ctx", "ctxt", &[0, 2, 1, 3]),
        node("Reshape", &["ctxt", "merged"], &["y"], vec![]),
    ]);
    let hidden = HEADS * HEAD_DIM;
    let bsh = || vec![D::S("B"), D::S("S"), D::N(hidden)];
    let mut outs = vec![vi("y", FLOAT, &bsh())];
    if o.leak_probs {
        outs.push(vi(
            "probs",
            FLOAT,
            &[D::S("B"), D::N(HEADS), D::S("S"), D::S("S")],
        ));
    }
    model(
        nodes,
        vec![
            i64_init("heads", &[0, 0, HEADS, HEAD_DIM]),
            i64_init("merged", &[0, 0, hidden]),
            i64_init("axes12", &[1, 2]),
            scalar("scale", (HEAD_DIM as f32).sqrt()),
            scalar("inv_scale", 1.0 / (HEAD_DIM as f32).sqrt()),
            scalar("one", 1.0),
            scalar("f32min", f32::MIN),
        ],
        vec![
            vi("q", FLOAT, &bsh()),
            vi("k", FLOAT, &bsh()),
            vi("v", FLOAT, &bsh()),
            vi("mask", FLOAT, &[D::S("B"), D::S("S")]),
        ],
        outs,
        17,
    )
}

fn att_cases() -> Vec<Vec<(String, Tensor)>> {
    let mut rng = Rng(11);
    let hidden = (HEADS * HEAD_DIM) as usize;
    [(1usize, 5usize), (2, 3)]
        .iter()
        .map(|&(b, s)| {
            // The last token of every sequence but the first is padding.
            let mask: Vec<f32> = (0..b * s)
                .map(|i| if i % s == s - 1 && i >= s { 0.0 } else { 1.0 })
                .collect();
            vec![
                ("q".to_string(), rng.tensor(&[b, s, hidden], -2.0, 2.0)),
                ("k".to_string(), rng.tensor(&[b, s, hidden], -2.0, 2.0)),
                ("v".to_string(), rng.tensor(&[b, s, hidden], -1.0, 1.0)),
                (
                    "mask".to_string(),
                    Tensor::from_f32(vec![b, s], mask).unwrap(),
                ),
            ]
        })
        .collect()
}

#[test]
fn masked_scaled_dot_product_attention_becomes_one_node() {
    let bytes = attention(ATT);
    let (before, after, n, g) = apply(&passes::attention::AttentionFusion, &bytes);
    // (The loader orders ready nodes breadth-first.)
    assert_eq!(
        before,
        [
            "Reshape",
            "Reshape",
            "Reshape",
            "Unsqueeze",
            "Transpose",
            "Transpose",
            "Transpose",
            "Sub",
            "MatMul",
            "Mul",
            "Div",
            "Add",
            "Softmax",
            "MatMul",
            "Transpose",
            "Reshape"
        ]
    );
    assert_eq!(
        after,
        [
            "Reshape",
            "Reshape",
            "Reshape",
            "Unsqueeze",
            "Transpose",
            "Transpose",
            "Transpose",
            "Sub",
            "Mul",
            "ScaledDotProductAttention",
            "Transpose",
            "Reshape"
        ]
    );
    assert_eq!(n, 1);
    let sdpa = g
        .nodes
        .iter()
        .find(|n| n.op_type == "ScaledDotProductAttention")
        .unwrap();
    assert_eq!(sdpa.domain, "ai.cloister");
    assert_eq!(sdpa.inputs.len(), 4, "Q, Kt, V and the mask");
    assert_eq!(
        sdpa.attributes.get("scale"),
        Some(&AttrValue::Float(1.0 / (HEAD_DIM as f32).sqrt()))
    );
    same_outputs(&bytes, "attention fusion", 1, att_cases());
}

#[test]
fn unmasked_attention_with_a_multiplied_scale_fuses() {
    let bytes = attention(Att {
        mask: false,
        mul_scale: true,
        ..ATT
    });
    let (_, after, n, g) = apply(&passes::attention::AttentionFusion, &bytes);
    assert_eq!(n, 1);
    assert!(!after.contains(&"Softmax".to_string()), "{after:?}");
    let sdpa = g
        .nodes
        .iter()
        .find(|n| n.op_type == "ScaledDotProductAttention")
        .unwrap();
    assert_eq!(sdpa.inputs.len(), 3, "no mask");
    // The model still declares the (now unread) mask input.
    same_outputs(&bytes, "attention fusion", 1, att_cases());
}

#[test]
fn near_misses_of_attention_are_left_alone() {
    for (what, o) in [
        (
            "softmax over the query axis",
            Att {
                softmax_axis: 2,
                ..ATT
            },
        ),
        (
            "the probabilities are an output too",
            Att {
                leak_probs: true,
                ..ATT
            },
        ),
    ] {
        let bytes = attention(o);
        let (before, after, n, _) = apply(&passes::attention::AttentionFusion, &bytes);
        assert_eq!((before, n), (after, 0), "{what}");
        same_outputs(&bytes, "attention fusion", 0, att_cases());
    }
}

#[test]
fn the_fused_attention_operator_checks_its_operands() {
    // Registered like a custom operator; a bad model using it directly gets a clear error.
    let bytes = {
        let mut m = decode_model(&model(
            vec![NodeProto {
                domain: Some("ai.cloister".into()),
                ..node(
                    "ScaledDotProductAttention",
                    &["q", "k", "v"],
                    &["y"],
                    vec![],
                )
            }],
            vec![],
            vec![
                vi("q", FLOAT, &[D::N(2), D::N(3)]),
                vi("k", FLOAT, &[D::N(4), D::N(5)]),
                vi("v", FLOAT, &[D::N(5), D::N(2)]),
            ],
            vec![vi("y", FLOAT, &[D::N(2), D::N(2)])],
            17,
        ))
        .unwrap();
        m.opset_import
            .push(cloister_engine::onnx::proto::OperatorSetIdProto {
                domain: Some("ai.cloister".into()),
                version: Some(1),
            });
        prost::Message::encode_to_vec(&m)
    };
    let err = Model::from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("do not chain"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Transpose / Reshape

fn x_2x3x4() -> Vec<Vec<(String, Tensor)>> {
    let mut rng = Rng(5);
    vec![vec![("x".to_string(), rng.tensor(&[2, 3, 4], -1.0, 1.0))]]
}

fn xvi() -> ValueInfoProto {
    vi("x", FLOAT, &[D::N(2), D::N(3), D::N(4)])
}

#[test]
fn inverse_transposes_cancel_and_consecutive_ones_merge() {
    // perm [1, 2, 0] then its inverse [2, 0, 1]: nothing left but the Relu.
    let bytes = model(
        vec![
            node("Transpose", &["x"], &["a"], vec![ints("perm", &[1, 2, 0])]),
            node("Transpose", &["a"], &["b"], vec![ints("perm", &[2, 0, 1])]),
            node("Relu", &["b"], &["y"], vec![]),
        ],
        vec![],
        vec![xvi()],
        vec![vi("y", FLOAT, &[D::N(2), D::N(3), D::N(4)])],
        17,
    );
    let pass = passes::transpose::TransposeReshapeElimination;
    let (before, after, n, g) = apply(&pass, &bytes);
    assert_eq!(before, ["Transpose", "Transpose", "Relu"]);
    assert_eq!(after, ["Relu"]);
    assert_eq!(n, 1);
    assert_eq!(g.values[g.nodes[0].inputs[0]].name, "x");
    same_outputs(&bytes, "transpose/reshape elimination", 1, x_2x3x4());

    // [1, 0, 2] then [0, 2, 1] is one Transpose with perm [1, 2, 0]; a third cancelling it.
    let three = |with_inverse: bool| {
        let mut nodes = vec![
            node("Transpose", &["x"], &["a"], vec![ints("perm", &[1, 0, 2])]),
            node("Transpose", &["a"], &["b"], vec![ints("perm", &[0, 2, 1])]),
        ];
        let (last, shape) = if with_inverse {
            nodes.push(node(
                "Transpose",
                &["b"],
                &["c"],
                vec![ints("perm", &[2, 0, 1])],
            ));
            ("c", [2, 3, 4])
        } else {
            ("b", [3, 4, 2])
        };
        nodes.push(node("Neg", &[last], &["y"], vec![]));
        model(
            nodes,
            vec![],
            vec![xvi()],
            vec![vi(
                "y",
                FLOAT,
                &[D::N(shape[0]), D::N(shape[1]), D::N(shape[2])],
            )],
            17,
        )
    };
    let bytes = three(false);
    let (_, after, n, g) = apply(&pass, &bytes);
    assert_eq!(
        (after.as_slice(), n),
        (&["Transpose".to_string(), "Neg".to_string()][..], 1)
    );
    assert_eq!(
        g.nodes[0].attributes.get("perm"),
        Some(&AttrValue::Ints(vec![1, 2, 0]))
    );
    same_outputs(&bytes, "transpose/reshape elimination", 1, x_2x3x4());
    let bytes = three(true);
    let (_, after, n, _) = apply(&pass, &bytes);
    assert_eq!((after.as_slice(), n), (&["Neg".to_string()][..], 2));
    same_outputs(&bytes, "transpose/reshape elimination", 2, x_2x3x4());
}

#[test]
fn identity_transposes_and_reshapes_are_dropped_and_reshape_chains_merge() {
    let bytes = model(
        vec![
            node("Transpose", &["x"], &["a"], vec![ints("perm", &[0, 1, 2])]),
            node("Reshape", &["a", "same"], &["b"], vec![]),
            node("Flatten", &["b"], &["c"], vec![attr_int("axis", 1)]),
            node("Reshape", &["c", "to_4x6"], &["d"], vec![]),
            node("Sigmoid", &["d"], &["y"], vec![]),
        ],
        vec![i64_init("same", &[2, 3, 4]), i64_init("to_4x6", &[4, -1])],
        vec![xvi()],
        vec![vi("y", FLOAT, &[D::N(4), D::N(6)])],
        17,
    );
    let (before, after, n, _) = apply(&passes::transpose::TransposeReshapeElimination, &bytes);
    assert_eq!(
        before,
        ["Transpose", "Reshape", "Flatten", "Reshape", "Sigmoid"]
    );
    assert_eq!(after, ["Reshape", "Sigmoid"]);
    assert_eq!(n, 3);
    same_outputs(&bytes, "transpose/reshape elimination", 3, x_2x3x4());
}

#[test]
fn transposes_and_reshapes_that_matter_are_kept() {
    // The first Transpose is read twice; the last Reshape copies a dim (0) from its input,
    // which the Flatten before it changed; the final Transpose pair leaves the graph as an
    // output, whose name must survive (merged into one Transpose, not removed).
    let bytes = model(
        vec![
            node("Transpose", &["x"], &["a"], vec![ints("perm", &[2, 1, 0])]),
            node("Transpose", &["a"], &["b"], vec![ints("perm", &[2, 1, 0])]),
            node("Add", &["a", "a"], &["a2"], vec![]),
            node("Flatten", &["b"], &["f"], vec![attr_int("axis", 2)]),
            node("Reshape", &["f", "copy0"], &["r"], vec![]),
            node(
                "Transpose",
                &["a2"],
                &["t1"],
                vec![ints("perm", &[1, 0, 2])],
            ),
            node("Transpose", &["t1"], &["y"], vec![ints("perm", &[1, 0, 2])]),
        ],
        vec![i64_init("copy0", &[0, -1])],
        vec![xvi()],
        vec![
            vi("r", FLOAT, &[D::N(6), D::N(4)]),
            vi("y", FLOAT, &[D::N(4), D::N(3), D::N(2)]),
        ],
        17,
    );
    let (before, after, n, g) = apply(&passes::transpose::TransposeReshapeElimination, &bytes);
    assert_eq!(
        before,
        [
            "Transpose",
            "Transpose",
            "Add",
            "Flatten",
            "Transpose",
            "Reshape",
            "Transpose"
        ]
    );
    assert_eq!(
        after,
        [
            "Transpose",
            "Transpose",
            "Add",
            "Flatten",
            "Reshape",
            "Transpose"
        ]
    );
    assert_eq!(n, 1);
    let last = g.nodes.last().unwrap();
    assert_eq!(
        last.attributes.get("perm"),
        Some(&AttrValue::Ints(vec![0, 1, 2]))
    );
    assert_eq!(g.values[last.outputs[0].unwrap()].name, "y");
    same_outputs(&bytes, "transpose/reshape elimination", 1, x_2x3x4());
}
