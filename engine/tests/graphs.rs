//! Small end-to-end graphs: ops composed through the loader and executor, opset-dependent
//! semantics, initializers, and custom operators through the registry.

mod common;

use cloister_engine::{DType, Dim, EngineError, Model, OpRegistry, Operator, Tensor, TypeShape};
use common::*;

#[test]
fn gemm_softmax_argmax_pipeline() {
    // y = ArgMax(Softmax(Gemm(x, W^T, b)))
    let bytes = model(
        vec![
            node(
                "Gemm",
                &["x", "w", "b"],
                &["z"],
                vec![attr_int("transB", 1)],
            ),
            node("Softmax", &["z"], &["p"], vec![]),
            node(
                "ArgMax",
                &["p"],
                &["y"],
                vec![attr_int("axis", 1), attr_int("keepdims", 0)],
            ),
        ],
        vec![
            f32_init("w", &[3, 2], &[1.0, 0.0, 0.0, 1.0, -1.0, -1.0]),
            f32_init("b", &[3], &[0.0, 0.0, 0.5]),
        ],
        vec![vi("x", FLOAT, &[D::S("batch"), D::N(2)])],
        vec![
            vi("y", INT64, &[D::S("batch")]),
            vi("p", FLOAT, &[D::S("batch"), D::N(3)]),
        ],
        13,
    );
    let m = Model::from_bytes(&bytes).unwrap();
    assert_eq!(m.outputs()[0].dtype, DType::I64);
    let x = Tensor::from_f32(vec![3, 2], vec![2.0, 1.0, 0.0, 3.0, -2.0, -2.0]).unwrap();
    let out = m.run(vec![("x".into(), x)]).unwrap();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.as_i64().unwrap(), &[0, 1, 2]);
    assert_eq!(out[1].0, "p");
    assert_eq!(out[1].1.shape(), &[3, 3]);
}

#[test]
fn softmax_axis_depends_on_opset() {
    let build = |opset| {
        model(
            vec![node("Softmax", &["x"], &["y"], vec![])],
            vec![],
            vec![vi("x", FLOAT, &[D::N(1), D::N(2), D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(1), D::N(2), D::N(2)])],
            opset,
        )
    };
    let x = || Tensor::from_f32(vec![1, 2, 2], vec![0.0, 0.0, 0.0, 0.0]).unwrap();
    let legacy = Model::from_bytes(&build(11)).unwrap();
    let y = legacy.run(vec![("x".into(), x())]).unwrap();
    assert_eq!(
        y[0].1.as_f32().unwrap(),
        &[0.25; 4],
        "opset 11: axis 1, flattened"
    );
    let modern = Model::from_bytes(&build(13)).unwrap();
    let y = modern.run(vec![("x".into(), x())]).unwrap();
    assert_eq!(y[0].1.as_f32().unwrap(), &[0.5; 4], "opset 13: axis -1");
}

#[test]
fn reshape_transpose_concat_flatten_with_intermediates_freed() {
    let shape = cloister_engine::onnx::proto::TensorProto {
        name: Some("s".into()),
        dims: vec![2],
        data_type: Some(7),
        int64_data: vec![3, -1],
        ..Default::default()
    };
    let bytes = model(
        vec![
            node("Reshape", &["x", "s"], &["r"], vec![]),
            node("Transpose", &["r"], &["t"], vec![]),
            node("Concat", &["t", "t"], &["c"], vec![attr_int("axis", 0)]),
            node("Flatten", &["c"], &["y"], vec![attr_int("axis", 0)]),
        ],
        vec![shape],
        vec![vi("x", FLOAT, &[D::N(2), D::N(3)])],
        vec![vi("y", FLOAT, &[D::N(1), D::N(12)])],
        13,
    );
    let m = Model::from_bytes(&bytes).unwrap();
    let x = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    let y = m.run(vec![("x".into(), x)]).unwrap().remove(0).1;
    assert_eq!(y.shape(), &[1, 12]);
    // r = [[1,2],[3,4],[5,6]], t = [[1,3,5],[2,4,6]]
    assert_eq!(
        y.as_f32().unwrap(),
        &[1., 3., 5., 2., 4., 6., 1., 3., 5., 2., 4., 6.]
    );
    // Liveness: r and t die at their last reader; y survives.
    let g = m.graph();
    let id = |n: &str| g.values.iter().position(|v| v.name == n).unwrap();
    assert_eq!(g.free_after[id("r")], Some(1));
    assert_eq!(g.free_after[id("t")], Some(2));
    assert_eq!(g.free_after[id("y")], None);
}

/// A custom operator in a private domain: doubles its input.
#[derive(Debug)]
struct Double;

impl Operator for Double {
    fn op_type(&self) -> &str {
        "Double"
    }
    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>, EngineError> {
        Ok(vec![inputs[0].clone()])
    }
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let v = inputs[0]
            .as_f32()
            .ok_or_else(|| EngineError::operand("Double", "f32 only"))?;
        Ok(vec![Tensor::from_f32(
            inputs[0].shape().to_vec(),
            v.iter().map(|x| x * 2.0).collect(),
        )?])
    }
}

#[test]
fn custom_operators_register_without_touching_the_engine() {
    let mut n = node("Double", &["x"], &["y"], vec![]);
    n.domain = Some("com.example".into());
    let bytes = model(
        vec![n],
        vec![],
        vec![vi("x", FLOAT, &[D::N(2)])],
        vec![vi("y", FLOAT, &[D::N(2)])],
        13,
    );
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedOp { ref domain, .. } if domain == "com.example")
    );
    let mut reg = OpRegistry::standard();
    reg.register("com.example", "Double", |_| Ok(Box::new(Double)));
    let m = Model::from_bytes_with_registry(&bytes, &reg).unwrap();
    let x = Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap();
    assert_eq!(
        m.run(vec![("x".into(), x)]).unwrap()[0].1.as_f32().unwrap(),
        &[3.0, -4.0]
    );
    assert_eq!(m.outputs()[0].shape, vec![Dim::Fixed(2)]);
}
