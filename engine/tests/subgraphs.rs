//! Subgraphs: `If`, `Loop` and `Scan` on small hand-built models, outer-scope captures (and
//! that passes and liveness keep what a subgraph reads), and the load-time and run-time bounds
//! against hostile nesting, missing names and endless loops.

mod common;

use cloister_engine::onnx::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use cloister_engine::{EngineError, LoadOptions, Model, OpRegistry, Tensor};
use common::{attr_int, f32_init, model, node, vi, D, FLOAT, INT64};

const BOOL: i32 = 9;

fn attr_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(5),
        g: Some(g),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(7),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn graph(
    name: &str,
    nodes: Vec<NodeProto>,
    inputs: Vec<cloister_engine::onnx::proto::ValueInfoProto>,
    outputs: Vec<cloister_engine::onnx::proto::ValueInfoProto>,
) -> GraphProto {
    GraphProto {
        node: nodes,
        name: Some(name.into()),
        input: inputs,
        output: outputs,
        ..Default::default()
    }
}

fn i64_init(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(INT64),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn run(m: &Model, inputs: Vec<(&str, Tensor)>) -> Result<Vec<Tensor>, EngineError> {
    Ok(m.run(
        inputs
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
    )?
    .into_iter()
    .map(|(_, t)| t)
    .collect())
}

fn load(bytes: &[u8]) -> Model {
    Model::from_bytes(bytes).expect("model loads")
}

fn load_err(bytes: &[u8]) -> EngineError {
    Model::from_bytes(bytes).expect_err("model must be refused")
}

/// `y = If(c) then x * x_sq_outer + 0 else -x`, both branches reading the outer `x`, and the
/// then-branch an outer intermediate `sq` that nothing else in the main graph reads.
fn if_model() -> Vec<u8> {
    let then_branch = graph(
        "then",
        vec![node("Add", &["sq", "x"], &["t"], vec![])],
        vec![],
        vec![vi("t", FLOAT, &[D::N(3)])],
    );
    let else_branch = graph(
        "else",
        vec![node("Neg", &["x"], &["e"], vec![])],
        vec![],
        vec![vi("e", FLOAT, &[D::N(3)])],
    );
    model(
        vec![
            node("Mul", &["x", "x"], &["sq"], vec![]),
            node(
                "If",
                &["c"],
                &["y"],
                vec![
                    attr_graph("then_branch", then_branch),
                    attr_graph("else_branch", else_branch),
                ],
            ),
        ],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        16,
    )
}

#[test]
fn if_selects_its_branch_at_run_time() {
    let m = load(&if_model());
    let x = || Tensor::from_f32(vec![3], vec![1.0, 2.0, -3.0]).unwrap();
    let yes = run(&m, vec![("c", Tensor::scalar(true)), ("x", x())]).unwrap();
    assert_eq!(yes[0].as_f32().unwrap(), &[2.0, 6.0, 6.0]);
    let no = run(&m, vec![("c", Tensor::scalar(false)), ("x", x())]).unwrap();
    assert_eq!(no[0].as_f32().unwrap(), &[-1.0, -2.0, 3.0]);
}

#[test]
fn an_outer_value_read_only_by_a_subgraph_survives_passes_and_liveness() {
    // `sq` is read by no main-graph node, only by the then-branch: dead-code elimination must
    // keep its producer, and liveness must keep it until the If ran.
    for threads in [1, 2] {
        let m = Model::from_bytes_with(
            &if_model(),
            &OpRegistry::standard(),
            &LoadOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        let g = m.graph();
        let mul = g.nodes.iter().position(|n| n.op_type == "Mul");
        let iff = g.nodes.iter().position(|n| n.op_type == "If").unwrap();
        assert!(
            mul.is_some(),
            "DCE removed the producer of a captured value"
        );
        let sq = g.values.iter().position(|v| v.name == "sq").unwrap();
        assert!(
            g.nodes[iff].inputs.contains(&sq),
            "capture is an implicit input"
        );
        assert_eq!(g.free_after[sq], Some(iff), "live until the If ran");
        let y = run(
            &m,
            vec![
                ("c", Tensor::scalar(true)),
                ("x", Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(y[0].as_f32().unwrap(), &[2.0, 6.0, 12.0]);
    }
}

#[test]
fn if_branches_may_produce_different_shapes() {
    // then: x (3 elements); else: x concatenated with itself (6). The output's dim is unknown
    // at load; each run gets its branch's shape.
    let then_branch = graph(
        "then",
        vec![node("Identity", &["x"], &["t"], vec![])],
        vec![],
        vec![vi("t", FLOAT, &[D::N(3)])],
    );
    let else_branch = graph(
        "else",
        vec![node(
            "Concat",
            &["x", "x"],
            &["e"],
            vec![attr_int("axis", 0)],
        )],
        vec![],
        vec![vi("e", FLOAT, &[D::N(6)])],
    );
    let bytes = model(
        vec![node(
            "If",
            &["c"],
            &["y"],
            vec![
                attr_graph("then_branch", then_branch),
                attr_graph("else_branch", else_branch),
            ],
        )],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::S("n")])],
        13,
    );
    let m = load(&bytes);
    let x = || Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    assert_eq!(
        run(&m, vec![("c", Tensor::scalar(true)), ("x", x())]).unwrap()[0].shape(),
        &[3]
    );
    let e = run(&m, vec![("c", Tensor::scalar(false)), ("x", x())]).unwrap();
    assert_eq!(e[0].as_f32().unwrap(), &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
}

/// A Loop computing the cumulative sum of `xs` (read from the outer scope) that exits early,
/// through its condition, once the sum reaches `limit` (also outer).
fn cumsum_loop(trip: Option<i64>) -> Vec<u8> {
    let body = graph(
        "body",
        vec![
            node("Gather", &["xs", "i"], &["xi"], vec![attr_int("axis", 0)]),
            node("Add", &["s_in", "xi"], &["s_out"], vec![]),
            node("Less", &["s_out", "limit"], &["go"], vec![]),
            node("Identity", &["s_out"], &["partial"], vec![]),
        ],
        vec![
            vi("i", INT64, &[]),
            vi("c_in", BOOL, &[]),
            vi("s_in", FLOAT, &[]),
        ],
        vec![
            vi("go", BOOL, &[]),
            vi("s_out", FLOAT, &[]),
            vi("partial", FLOAT, &[]),
        ],
    );
    let mut inits = vec![f32_init("zero", &[], &[0.0])];
    let trip_name = match trip {
        Some(m) => {
            inits.push(i64_init("m", &[], &[m]));
            "m"
        }
        None => "",
    };
    model(
        vec![node(
            "Loop",
            &[trip_name, "c0", "zero"],
            &["sum", "partials"],
            vec![attr_graph("body", body)],
        )],
        inits,
        vec![
            vi("c0", BOOL, &[]),
            vi("xs", FLOAT, &[D::S("n")]),
            vi("limit", FLOAT, &[]),
        ],
        vec![vi("sum", FLOAT, &[]), vi("partials", FLOAT, &[D::S("k")])],
        16,
    )
}

#[test]
fn loop_computes_a_cumulative_sum_and_exits_early_on_its_condition() {
    let m = load(&cumsum_loop(Some(5)));
    let xs = || Tensor::from_f32(vec![5], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    // Stops after the third iteration: 1, 3, 6 (6 < 6 is false).
    let out = run(
        &m,
        vec![
            ("c0", Tensor::scalar(true)),
            ("xs", xs()),
            ("limit", Tensor::scalar(6.0f32)),
        ],
    )
    .unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[6.0]);
    assert_eq!(out[1].shape(), &[3]);
    assert_eq!(out[1].as_f32().unwrap(), &[1.0, 3.0, 6.0]);
    // A high limit: the trip count (5) ends it.
    let out = run(
        &m,
        vec![
            ("c0", Tensor::scalar(true)),
            ("xs", xs()),
            ("limit", Tensor::scalar(100.0f32)),
        ],
    )
    .unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[15.0]);
    assert_eq!(out[1].as_f32().unwrap(), &[1.0, 3.0, 6.0, 10.0, 15.0]);
    // A false initial condition: no iteration, the initial value and an empty scan output.
    let out = run(
        &m,
        vec![
            ("c0", Tensor::scalar(false)),
            ("xs", xs()),
            ("limit", Tensor::scalar(100.0f32)),
        ],
    )
    .unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[0.0]);
    assert_eq!(out[1].shape(), &[0]);
}

#[test]
fn a_loop_past_its_iteration_bound_is_a_typed_error() {
    let limited = |bytes: &[u8], max: u64| {
        Model::from_bytes_with(
            bytes,
            &OpRegistry::standard(),
            &LoadOptions {
                max_loop_iterations: max,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let inputs = |n: usize| {
        vec![
            ("c0", Tensor::scalar(true)),
            ("xs", Tensor::from_f32(vec![n], vec![0.0; n]).unwrap()),
            ("limit", Tensor::scalar(1.0f32)),
        ]
    };
    // A while-loop whose condition never turns false (the sum of zeros stays below 1).
    let m = limited(&cumsum_loop(None), 4);
    let err = run(&m, inputs(10)).unwrap_err();
    assert!(
        matches!(err.root(), EngineError::IterationLimit { limit: 4 }),
        "{err}"
    );
    // Within the bound it runs: 3 zeros, trip count 3.
    let m = limited(&cumsum_loop(Some(3)), 4);
    assert_eq!(run(&m, inputs(3)).unwrap()[1].shape(), &[3]);
    // A counted loop (no condition input) with a trip count above the bound fails up front.
    let body = graph(
        "body",
        vec![node("Identity", &["c_in"], &["c_out"], vec![])],
        vec![vi("i", INT64, &[]), vi("c_in", BOOL, &[])],
        vec![vi("c_out", BOOL, &[])],
    );
    let counted = model(
        vec![
            node("Identity", &["x"], &["x2"], vec![]),
            node("Loop", &["m", ""], &[], vec![attr_graph("body", body)]),
        ],
        vec![i64_init("m", &[], &[i64::MAX])],
        vec![vi("x", FLOAT, &[D::N(1)])],
        vec![vi("x2", FLOAT, &[D::N(1)])],
        16,
    );
    let m = load(&counted);
    // Nothing reads the loop: DCE drops it, so this model runs.
    assert!(m.graph().nodes.iter().all(|n| n.op_type != "Loop"));
    let m = Model::from_bytes_with(
        &counted,
        &OpRegistry::standard(),
        &LoadOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap();
    let err = run(
        &m,
        vec![("x", Tensor::from_f32(vec![1], vec![1.0]).unwrap())],
    )
    .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::IterationLimit { .. }),
        "{err}"
    );
}

#[test]
fn scan_sums_along_an_axis_in_reverse() {
    // x: [2, 3]; scan axis 1, reversed; state: running sum [2]; scan output stacked on axis 1.
    let body = graph(
        "body",
        vec![
            node("Add", &["s_in", "col"], &["s_out"], vec![]),
            node("Identity", &["s_out"], &["o"], vec![]),
        ],
        vec![vi("s_in", FLOAT, &[D::N(2)]), vi("col", FLOAT, &[D::N(2)])],
        vec![vi("s_out", FLOAT, &[D::N(2)]), vi("o", FLOAT, &[D::N(2)])],
    );
    let bytes = model(
        vec![node(
            "Scan",
            &["s0", "x"],
            &["s", "ys"],
            vec![
                attr_graph("body", body),
                attr_int("num_scan_inputs", 1),
                attr_ints("scan_input_axes", &[1]),
                attr_ints("scan_input_directions", &[1]),
                attr_ints("scan_output_axes", &[-1]),
            ],
        )],
        vec![],
        vec![
            vi("s0", FLOAT, &[D::N(2)]),
            vi("x", FLOAT, &[D::N(2), D::N(3)]),
        ],
        vec![
            vi("s", FLOAT, &[D::N(2)]),
            vi("ys", FLOAT, &[D::N(2), D::N(3)]),
        ],
        16,
    );
    let m = load(&bytes);
    let out = run(
        &m,
        vec![
            ("s0", Tensor::from_f32(vec![2], vec![0.0, 0.0]).unwrap()),
            (
                "x",
                Tensor::from_f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
            ),
        ],
    )
    .unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[6.0, 15.0]);
    // Columns visited 2, 1, 0: partial sums [3, 6], [5, 11], [6, 15], stacked on the last axis.
    assert_eq!(out[1].shape(), &[2, 3]);
    assert_eq!(out[1].as_f32().unwrap(), &[3.0, 5.0, 6.0, 6.0, 11.0, 15.0]);
}

/// `levels` Ifs nested in each other's then-branches (`if_1` in the main graph, `if_2` in its
/// branch, ...), the innermost branch returning the outer `x`.
fn nested_ifs(levels: usize) -> Vec<u8> {
    fn branch(level: usize, levels: usize) -> GraphProto {
        let out = format!("y{level}");
        let nodes = if level == levels {
            vec![node("Identity", &["x"], &[&out], vec![])]
        } else {
            vec![nested_if(level + 1, levels, &out)]
        };
        graph(
            &format!("g{level}"),
            nodes,
            vec![],
            vec![vi(&out, FLOAT, &[D::N(1)])],
        )
    }
    fn nested_if(level: usize, levels: usize, out: &str) -> NodeProto {
        let mut n = node(
            "If",
            &["c"],
            &[out],
            vec![
                attr_graph("then_branch", branch(level, levels)),
                attr_graph("else_branch", {
                    let o = format!("e{level}");
                    graph(
                        &format!("e{level}"),
                        vec![node("Identity", &["x"], &[&o], vec![])],
                        vec![],
                        vec![vi(&o, FLOAT, &[D::N(1)])],
                    )
                }),
            ],
        );
        n.name = Some(format!("if_{level}"));
        n
    }
    model(
        vec![nested_if(1, levels, "y")],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        16,
    )
}

#[test]
fn nesting_up_to_the_bound_loads_and_deeper_is_refused_naming_the_node() {
    let limit = cloister_engine::graph::MAX_SUBGRAPH_DEPTH;
    let m = load(&nested_ifs(limit));
    let y = run(
        &m,
        vec![
            ("c", Tensor::scalar(true)),
            ("x", Tensor::from_f32(vec![1], vec![7.0]).unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(y[0].as_f32().unwrap(), &[7.0]);
    let err = load_err(&nested_ifs(limit + 1));
    match err.root() {
        EngineError::SubgraphTooDeep { node, limit: l } => {
            assert_eq!(node, &format!("if_{}", limit + 1));
            assert_eq!(*l, limit);
        }
        other => panic!("expected SubgraphTooDeep, got {other}"),
    }
    // Far deeper than the decoder accepts: a decode error, not a crash.
    assert!(Model::from_bytes(&nested_ifs(60)).is_err());
}

#[test]
fn a_subgraph_reading_an_undefined_outer_name_is_refused_naming_node_and_name() {
    let then_branch = graph(
        "then",
        vec![node("Add", &["x", "nowhere"], &["t"], vec![])],
        vec![],
        vec![vi("t", FLOAT, &[D::N(1)])],
    );
    let else_branch = graph(
        "else",
        vec![node("Identity", &["x"], &["e"], vec![])],
        vec![],
        vec![vi("e", FLOAT, &[D::N(1)])],
    );
    let bytes = model(
        vec![node(
            "If",
            &["c"],
            &["y"],
            vec![
                attr_graph("then_branch", then_branch),
                attr_graph("else_branch", else_branch),
            ],
        )],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        16,
    );
    match load_err(&bytes).root() {
        EngineError::UndefinedOuterValue { node, name } => {
            assert_eq!(node, "Add_t");
            assert_eq!(name, "nowhere");
        }
        other => panic!("expected UndefinedOuterValue, got {other}"),
    }
    // A value defined in a sibling branch is not in scope either.
    let then_branch = graph(
        "then",
        vec![node("Identity", &["e"], &["t"], vec![])],
        vec![],
        vec![vi("t", FLOAT, &[D::N(1)])],
    );
    let else_branch = graph(
        "else",
        vec![node("Identity", &["x"], &["e"], vec![])],
        vec![],
        vec![vi("e", FLOAT, &[D::N(1)])],
    );
    let bytes = model(
        vec![node(
            "If",
            &["c"],
            &["y"],
            vec![
                attr_graph("then_branch", then_branch),
                attr_graph("else_branch", else_branch),
            ],
        )],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(1)])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        16,
    );
    assert!(matches!(
        load_err(&bytes).root(),
        EngineError::UndefinedOuterValue { name, .. } if name == "e"
    ));
}

#[test]
fn a_subgraph_reading_the_output_of_its_own_node_is_a_cycle() {
    let body = graph(
        "then",
        vec![node("Identity", &["y"], &["t"], vec![])],
        vec![],
        vec![vi("t", FLOAT, &[D::N(1)])],
    );
    let bytes = model(
        vec![node(
            "If",
            &["c"],
            &["y"],
            vec![
                attr_graph("then_branch", body.clone()),
                attr_graph("else_branch", body),
            ],
        )],
        vec![],
        vec![vi("c", BOOL, &[])],
        vec![vi("y", FLOAT, &[D::N(1)])],
        16,
    );
    let err = load_err(&bytes);
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn branches_of_different_rank_are_typed_per_run() {
    // t = If(c) then x ([3]) else ReduceSum(x) (a scalar); y = t + x ([3] either way). The rank
    // of t depends on the data, so the model is specialised to each request's inputs.
    let then_branch = graph(
        "then",
        vec![node("Identity", &["x"], &["t1"], vec![])],
        vec![],
        vec![vi("t1", FLOAT, &[D::N(3)])],
    );
    let else_branch = graph(
        "else",
        vec![node(
            "ReduceSum",
            &["x"],
            &["t0"],
            vec![attr_int("keepdims", 0)],
        )],
        vec![],
        vec![vi("t0", FLOAT, &[])],
    );
    let bytes = model(
        vec![
            node(
                "If",
                &["c"],
                &["t"],
                vec![
                    attr_graph("then_branch", then_branch),
                    attr_graph("else_branch", else_branch),
                ],
            ),
            node("Add", &["t", "x"], &["y"], vec![]),
        ],
        vec![],
        vec![vi("c", BOOL, &[]), vi("x", FLOAT, &[D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(3)])],
        16,
    );
    let m = load(&bytes);
    let x = || Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    let y = run(&m, vec![("c", Tensor::scalar(true)), ("x", x())]).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), &[2.0, 4.0, 6.0]);
    let y = run(&m, vec![("c", Tensor::scalar(false)), ("x", x())]).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), &[7.0, 8.0, 9.0]);
    // Without a declared output shape there is nothing to hold runs to: refused at load.
    let mut undeclared = cloister_engine::onnx::decode_model(&bytes).unwrap();
    undeclared.graph.as_mut().unwrap().output[0] = cloister_engine::onnx::proto::ValueInfoProto {
        name: Some("y".into()),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&undeclared);
    assert!(matches!(
        load_err(&bytes).root(),
        EngineError::UnsupportedFeature(_)
    ));
}
