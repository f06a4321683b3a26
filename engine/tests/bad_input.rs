//! Hostile model files, one kind per test: truncated, cyclic, oversized, type-inconsistent, an
//! unknown operator, tensors whose data do not match their shape. Each must give a typed error
//! whose message names the node or tensor at fault, never a panic, and never an allocation sized
//! by what the file claims rather than by what it holds.
//!
//! The last test is the always-on cousin of the cargo-fuzz targets in `engine/fuzz/`:
//! a few thousand structure-aware mutations of a real model (dims, dtypes, data, op types,
//! attributes, wiring, opsets), each loaded and, when it loads, run.

mod common;

use cloister_engine::onnx::decode_model;
use cloister_engine::onnx::proto::{AttributeProto, ModelProto, TensorProto};
use cloister_engine::{DType, EngineError, Model, Tensor};
use common::*;
use prost::Message;

/// Peak virtual memory of this process (kB), from `/proc/self/status`. Unlike the resident set,
/// it also counts zeroed allocations the kernel has not backed yet.
fn vm_peak_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak")
}

/// Loads `bytes`, requiring an error whose message contains every one of `names`, and checks
/// the load did not raise the process's peak memory by more than 256 MiB.
fn load_err(bytes: &[u8], names: &[&str]) -> EngineError {
    let before = vm_peak_kb();
    let err = Model::from_bytes(bytes).expect_err("the model must be refused");
    let grown = vm_peak_kb().saturating_sub(before);
    assert!(grown < 256 * 1024, "loading grew peak memory by {grown} kB");
    let msg = err.to_string();
    for n in names {
        assert!(msg.contains(n), "error {msg:?} does not name {n:?}");
    }
    err
}

fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(4),
        t: Some(t),
        ..Default::default()
    }
}

fn i64_init(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(INT64),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A model of x [2, 4] -> Add(w) -> Relu -> y, with a 4-element initializer `w`.
fn small_model(w: TensorProto) -> Vec<u8> {
    model(
        vec![
            node("Add", &["x", "w"], &["s"], vec![]),
            node("Relu", &["s"], &["y"], vec![]),
        ],
        vec![w],
        vec![vi("x", FLOAT, &[D::N(2), D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(2), D::N(4)])],
        17,
    )
}

#[test]
fn truncated_files_are_malformed_protobuf() {
    let weights: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    let bytes = model(
        vec![node("MatMul", &["x", "w"], &["y"], vec![])],
        vec![f32_init("w", &[64, 64], &weights)],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(64)])],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(64)])],
        17,
    );
    assert!(Model::from_bytes(&bytes).is_ok());
    // Cut inside the initializer's data, in the header, one byte short: the length prefix of
    // the graph promises more than the file holds.
    for len in [bytes.len() - 1, bytes.len() / 2, 40, 7] {
        let err = load_err(&bytes[..len], &["protobuf"]);
        assert!(
            matches!(err, EngineError::MalformedProtobuf(_)),
            "{len}: {err}"
        );
    }
}

#[test]
fn a_cycle_names_the_nodes_on_it() {
    // x -> A -> a; a, c -> B -> b; b -> C -> c: B and C wait on each other.
    let bytes = model(
        vec![
            node("Relu", &["x"], &["a"], vec![]),
            node("Add", &["a", "c"], &["b"], vec![]),
            node("Relu", &["b"], &["c"], vec![]),
        ],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("c", FLOAT, &[D::N(2)])],
        17,
    );
    let err = load_err(&bytes, &["cycle", "Add_b", "Relu_c"]);
    assert!(!err.to_string().contains("Relu_a"), "{err}");
}

#[test]
fn oversized_tensors_are_refused_before_allocation() {
    // Declared 2^40 elements (4 TiB of f32) backed by 16 bytes.
    let mut w = f32_init("w", &[4], &[1.0; 4]);
    w.dims = vec![1 << 20, 1 << 20];
    let err = load_err(&small_model(w), &["\"w\"", "too large"]);
    assert!(
        matches!(err.root(), EngineError::TensorTooLarge(_)),
        "{err}"
    );

    // Within the element limit (2^30, 4 GiB), but the file holds 16 bytes: refused by comparing
    // lengths, without decoding into a 4 GiB buffer (load_err checks peak memory).
    let mut w = f32_init("w", &[4], &[1.0; 4]);
    w.dims = vec![1 << 30];
    load_err(
        &small_model(w),
        &["\"w\"", "1073741824 elements", "data holds 4"],
    );

    // The same through typed `float_data` and through a `Constant` node's tensor attribute.
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![1 << 30],
        data_type: Some(FLOAT),
        float_data: vec![1.0; 4],
        ..Default::default()
    };
    load_err(&small_model(w), &["\"w\"", "data holds 4"]);
    let mut value = f32_init("big", &[4], &[1.0; 4]);
    value.dims = vec![1 << 30];
    let bytes = model(
        vec![
            node("Constant", &[], &["w"], vec![attr_tensor("value", value)]),
            node("Add", &["x", "w"], &["y"], vec![]),
        ],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2), D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(2), D::N(4)])],
        17,
    );
    load_err(&bytes, &["Constant_w", "\"big\""]);

    // Shapes computed by the graph: a ConstantOfShape of 2^40 elements is an error naming the
    // node; one of 2^30 (allowed per tensor) is not evaluated at load time.
    for (dims, refused) in [([1i64 << 20, 1 << 20], true), ([1 << 15, 1 << 15], false)] {
        let bytes = model(
            vec![
                node("ConstantOfShape", &["shape"], &["big"], vec![]),
                node("Shape", &["big"], &["y"], vec![]),
            ],
            vec![i64_init("shape", &[2], &dims)],
            vec![vi("x", FLOAT, &[D::N(1)])],
            vec![vi("y", INT64, &[D::N(2)])],
            17,
        );
        if refused {
            let err = load_err(&bytes, &["ConstantOfShape_big", "too large"]);
            assert!(
                matches!(err.root(), EngineError::TensorTooLarge(_)),
                "{err}"
            );
        } else {
            let before = vm_peak_kb();
            Model::from_bytes(&bytes).expect("loads without evaluating the big constant");
            assert!(
                vm_peak_kb() - before < 256 * 1024,
                "load-time folding allocated"
            );
        }
    }

    // Range with constant bounds: its length is known (and checked) at load time.
    let bytes = model(
        vec![node("Range", &["s", "l", "d"], &["r"], vec![])],
        vec![
            i64_init("s", &[], &[0]),
            i64_init("l", &[], &[1 << 40]),
            i64_init("d", &[], &[1]),
        ],
        vec![vi("x", FLOAT, &[D::N(1)])],
        vec![vi("r", INT64, &[D::S("n")])],
        17,
    );
    load_err(&bytes, &["Range_r", "too large"]);
}

#[test]
fn type_inconsistent_models_name_the_node_or_value() {
    // Float plus int64.
    let bytes = model(
        vec![node("Add", &["x", "k"], &["y"], vec![])],
        vec![i64_init("k", &[2], &[1, 2])],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        17,
    );
    load_err(&bytes, &["Add_y", "dtype"]);

    // The graph declares an int64 output that computes float.
    let bytes = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", INT64, &[D::N(2)])],
        17,
    );
    load_err(&bytes, &["\"y\"", "int64", "float32"]);

    // Declared output shape contradicts the inferred one.
    let bytes = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        17,
    );
    load_err(&bytes, &["\"y\""]);

    // An initializer whose dtype code says float but whose data is in int64_data.
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(FLOAT),
        int64_data: vec![1, 2, 3, 4],
        ..Default::default()
    };
    load_err(&small_model(w), &["\"w\"", "data holds 0"]);

    // An unknown element type code.
    let mut w = f32_init("w", &[4], &[1.0; 4]);
    w.data_type = Some(99);
    let err = load_err(&small_model(w), &["\"w\"", "99"]);
    assert!(matches!(err.root(), EngineError::UnsupportedDtype(99)));

    // A shape computed by the graph that does not fit the data: Reshape [2, 4] to [3, 3].
    let bytes = model(
        vec![node("Reshape", &["x", "shape"], &["y"], vec![])],
        vec![i64_init("shape", &[2], &[3, 3])],
        vec![vi("x", FLOAT, &[D::N(2), D::N(4)])],
        vec![vi("y", FLOAT, &[D::N(3), D::N(3)])],
        17,
    );
    load_err(&bytes, &["Reshape_y"]);
}

#[test]
fn an_unknown_operator_names_node_domain_and_type() {
    let mut n = node("Frobnicate", &["x"], &["y"], vec![]);
    n.domain = Some("com.example".into());
    let mut bytes = ModelProto::decode(
        &model(
            vec![n],
            vec![],
            vec![vi("x", FLOAT, &[D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            17,
        )[..],
    )
    .unwrap();
    bytes
        .opset_import
        .push(cloister_engine::onnx::proto::OperatorSetIdProto {
            domain: Some("com.example".into()),
            version: Some(1),
        });
    let err = load_err(
        &bytes.encode_to_vec(),
        &["Frobnicate", "com.example", "Frobnicate_y"],
    );
    assert!(matches!(err, EngineError::UnsupportedOp { .. }), "{err}");
}

#[test]
fn tensor_data_that_does_not_match_its_shape_names_the_tensor() {
    // raw_data one element short, one byte short, one element long.
    for len in [12usize, 15, 20] {
        let mut w = f32_init("w", &[4], &[1.0; 4]);
        w.raw_data = Some(vec![0; len]);
        let err = load_err(&small_model(w), &["\"w\"", "4 elements"]);
        assert!(matches!(err, EngineError::Tensor { .. }), "{err}");
    }
    // Typed data of the wrong length; int32 data out of range for uint8.
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(FLOAT),
        float_data: vec![1.0; 5],
        ..Default::default()
    };
    load_err(&small_model(w), &["\"w\"", "data holds 5"]);
    let bytes = model(
        vec![node("Cast", &["q"], &["y"], vec![attr_int("to", 1)])],
        vec![TensorProto {
            name: Some("q".into()),
            dims: vec![2],
            data_type: Some(2), // uint8
            int32_data: vec![7, 300],
            ..Default::default()
        }],
        vec![vi("x", FLOAT, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        17,
    );
    load_err(&bytes, &["\"q\"", "300"]);

    // The test-data decoder (`cloister conformance`'s .pb files) says the same.
    let mut t = f32_init("input_0", &[2, 2], &[1.0; 4]);
    t.dims = vec![3, 3];
    let err = cloister_engine::onnx::decode_tensor(&t.encode_to_vec()).unwrap_err();
    assert!(err.to_string().contains("\"input_0\""), "{err}");

    // And a request tensor built by a caller.
    assert!(Tensor::from_f32(vec![3, 3], vec![1.0; 4]).is_err());
}

/// xorshift64: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const OPS: &[&str] = &[
    "Relu",
    "Add",
    "MatMul",
    "Gemm",
    "Softmax",
    "Reshape",
    "Transpose",
    "Concat",
    "Gather",
    "Slice",
    "Conv",
    "MaxPool",
    "Identity",
    "Cast",
    "Unsqueeze",
    "Squeeze",
    "Expand",
    "Tile",
    "ReduceSum",
    "Flatten",
    "Where",
    "Pad",
    "Frobnicate",
    "",
];
const INTS: &[i64] = &[
    -1,
    0,
    1,
    2,
    3,
    7,
    64,
    -(1 << 40),
    1 << 20,
    1 << 40,
    i64::MAX,
    i64::MIN,
];

/// One structure-aware mutation of a decoded model.
fn mutate(m: &mut ModelProto, rng: &mut Rng) {
    let Some(g) = m.graph.as_mut() else { return };
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .collect();
    match rng.below(11) {
        0 if !g.initializer.is_empty() => {
            let k = rng.below(g.initializer.len());
            let t = &mut g.initializer[k];
            if t.dims.is_empty() {
                t.dims.push(*rng.pick(INTS));
            } else {
                let d = rng.below(t.dims.len());
                t.dims[d] = *rng.pick(INTS);
            }
        }
        1 if !g.initializer.is_empty() => {
            let k = rng.below(g.initializer.len());
            g.initializer[k].data_type = Some(rng.below(30) as i32);
        }
        2 if !g.initializer.is_empty() => {
            let k = rng.below(g.initializer.len());
            if let Some(raw) = g.initializer[k].raw_data.as_mut() {
                let cut = rng.below(raw.len() + 1);
                raw.truncate(cut);
            }
        }
        3 if !g.node.is_empty() => {
            let k = rng.below(g.node.len());
            g.node[k].op_type = Some(rng.pick(OPS).to_string());
        }
        4 if !g.node.is_empty() => {
            let k = rng.below(g.node.len());
            let n = &mut g.node[k];
            if !n.input.is_empty() && !names.is_empty() {
                let i = rng.below(n.input.len());
                n.input[i] = rng.pick(&names).clone();
            }
        }
        5 if !g.node.is_empty() => {
            let k = rng.below(g.node.len());
            let v = *rng.pick(INTS);
            g.node[k].attribute.push(attr_int(
                rng.pick::<&str>(&["axis", "perm", "to", "transB"]),
                v,
            ));
        }
        6 if !g.node.is_empty() => {
            let k = rng.below(g.node.len());
            g.node.remove(k);
        }
        7 if !g.node.is_empty() => {
            let k = rng.below(g.node.len());
            let n = g.node[k].clone();
            g.node.push(n);
        }
        8 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = Some(rng.below(30) as i64 - 2);
            }
        }
        9 if !g.input.is_empty() => {
            let v = *rng.pick(INTS);
            let k = rng.below(g.input.len());
            let shape = g.input[k]
                .r#type
                .as_mut()
                .and_then(|t| t.value.as_mut())
                .and_then(|v| match v {
                    cloister_engine::onnx::proto::type_proto::Value::TensorType(t) => {
                        t.shape.as_mut()
                    }
                    _ => None,
                });
            if let Some(s) = shape.filter(|s| !s.dim.is_empty()) {
                let d = rng.below(s.dim.len());
                s.dim[d].value = Some(
                    cloister_engine::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(v),
                );
            }
        }
        _ => {
            // A node output renamed onto an existing value (duplicate definition or a cycle).
            if let (Some(n), false) = (g.node.last_mut(), names.is_empty()) {
                if !n.output.is_empty() {
                    n.output[0] = rng.pick(&names).clone();
                }
            }
        }
    }
}

/// Runs a loaded model on a conforming input, bounded in size.
fn try_run(m: &Model) {
    let mut feeds = Vec::new();
    for info in m.inputs() {
        let shape: Vec<usize> = info
            .shape
            .iter()
            .map(|d| d.fixed().unwrap_or(2).min(64))
            .collect();
        let n: usize = shape.iter().product();
        if n > 1 << 16 {
            return;
        }
        let t = match info.dtype {
            DType::F32 => Tensor::from_f32(shape, (0..n).map(|i| i as f32 * 0.01).collect()),
            DType::I64 => Tensor::from_i64(shape, (0..n).map(|i| i as i64 % 3).collect()),
            _ => return,
        };
        feeds.push((info.name.clone(), t.unwrap()));
    }
    let _ = m.run(feeds);
}

#[test]
fn thousands_of_structured_mutations_of_real_models_never_panic() {
    let digits = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/digits.onnx"),
    )
    .unwrap();
    // A small convolutional model too: Conv, MaxPool, Flatten, Gemm.
    let conv = model(
        vec![
            node(
                "Conv",
                &["x", "k"],
                &["c"],
                vec![cloister_engine::onnx::proto::AttributeProto {
                    name: Some("pads".into()),
                    r#type: Some(7),
                    ints: vec![1, 1, 1, 1],
                    ..Default::default()
                }],
            ),
            node("Relu", &["c"], &["r"], vec![]),
            node(
                "MaxPool",
                &["r"],
                &["p"],
                vec![cloister_engine::onnx::proto::AttributeProto {
                    name: Some("kernel_shape".into()),
                    r#type: Some(7),
                    ints: vec![2, 2],
                    ..Default::default()
                }],
            ),
            node("Flatten", &["p"], &["f"], vec![]),
            node(
                "Gemm",
                &["f", "w", "b"],
                &["y"],
                vec![attr_int("transB", 1)],
            ),
        ],
        vec![
            f32_init("k", &[4, 1, 3, 3], &[0.1; 36]),
            f32_init("w", &[10, 64], &[0.01; 640]),
            f32_init("b", &[10], &[0.5; 10]),
        ],
        vec![vi("x", FLOAT, &[D::S("N"), D::N(1), D::N(8), D::N(8)])],
        vec![vi("y", FLOAT, &[D::S("N"), D::N(10)])],
        17,
    );
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let (mut loaded, mut refused) = (0, 0);
    for (label, bytes) in [("digits", &digits), ("conv", &conv)] {
        let base = decode_model(bytes).unwrap();
        assert!(Model::from_bytes(bytes).is_ok(), "{label} loads unmutated");
        for _ in 0..1500 {
            let mut m = base.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut m, &mut rng);
            }
            match Model::from_bytes(&m.encode_to_vec()) {
                Ok(model) => {
                    loaded += 1;
                    try_run(&model);
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    eprintln!("{loaded} mutants loaded (and ran), {refused} refused");
    assert!(refused > 1000, "the mutations reach the validator");
}
