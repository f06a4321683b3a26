//! Conv + Relu fusion: a `Relu` that is the only reader of a `Conv` becomes the Conv's
//! epilogue, applied to the output buffer in place.
//!
//! Why: the activation then costs no extra tensor and no extra pass over memory; faster Conv
//! kernels will apply it while the output tile is still in registers. [`Fused`] is the
//! operator-side interface: any operator plus an element-wise epilogue.

use super::{sole_reader, Pass};
use crate::error::Result;
use crate::graph::{Graph, Node};
use crate::ops::{OpRegistry, Operator};
use crate::tensor::{Tensor, TensorData};
use crate::types::TypeShape;
use crate::DType;

/// An element-wise activation applied to an operator's first output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// `max(x, 0)` (NaN stays NaN, as `Relu` does).
    Relu,
}

/// An operator followed by an epilogue on its first output.
#[derive(Debug)]
pub struct Fused {
    inner: Box<dyn Operator>,
    epilogue: Epilogue,
    op_type: String,
}

impl Fused {
    /// Wraps `inner`; `op_type` names the fusion in errors (e.g. `Conv+Relu`).
    pub fn new(inner: Box<dyn Operator>, epilogue: Epilogue, op_type: String) -> Fused {
        Fused {
            inner,
            epilogue,
            op_type,
        }
    }
}

fn relu<T: PartialOrd + Copy + Default>(v: &mut [T]) {
    let zero = T::default();
    for x in v {
        if *x < zero {
            *x = zero;
        }
    }
}

impl Operator for Fused {
    fn op_type(&self) -> &str {
        &self.op_type
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        let mut outs = self.inner.infer(inputs)?;
        // A constant the inner operator could fold is no longer the fused result.
        if let Some(o) = outs.first_mut() {
            o.value = None;
        }
        Ok(outs)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut outs = self.inner.eval(inputs)?;
        if let Some(first) = outs.first_mut() {
            let t = std::mem::replace(first, Tensor::scalar(0f32));
            let (shape, mut data) = t.into_parts();
            match (self.epilogue, &mut data) {
                (Epilogue::Relu, TensorData::F32(v)) => relu(v),
                (Epilogue::Relu, TensorData::F64(v)) => relu(v),
                _ => {
                    return Err(crate::EngineError::operand(
                        &self.op_type,
                        "epilogue needs a float32 or float64 output",
                    ))
                }
            }
            *first = Tensor::new(shape, data)?;
        }
        Ok(outs)
    }
}

/// The pass.
#[derive(Debug, Default)]
pub struct ConvRelu;

impl Pass for ConvRelu {
    fn name(&self) -> &'static str {
        "Conv+Relu fusion"
    }

    fn run(&self, graph: &mut Graph, _registry: &OpRegistry) -> Result<usize> {
        let uses = graph.use_counts();
        let mut pairs = Vec::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            if !(n.domain.is_empty() && n.op_type == "Conv") {
                continue;
            }
            let Some(y) = n.outputs.first().copied().flatten() else {
                continue;
            };
            if !matches!(graph.values[y].fact.dtype, DType::F32 | DType::F64) {
                continue;
            }
            if let Some(j) = sole_reader(graph, &uses, y) {
                let r = &graph.nodes[j];
                if r.domain.is_empty() && r.op_type == "Relu" && r.inputs == [y] {
                    pairs.push((i, j));
                }
            }
        }
        if pairs.is_empty() {
            return Ok(0);
        }
        let mut nodes: Vec<Option<Node>> = std::mem::take(&mut graph.nodes)
            .into_iter()
            .map(Some)
            .collect();
        for &(i, j) in &pairs {
            let (Some(conv), Some(relu)) = (nodes[i].take(), nodes[j].take()) else {
                continue;
            };
            let op_type = "Conv+Relu".to_string();
            nodes[i] = Some(Node {
                name: format!("{}+{}", conv.name, relu.name),
                op: Box::new(Fused::new(conv.op, Epilogue::Relu, op_type.clone())),
                op_type,
                outputs: relu.outputs,
                ..conv
            });
        }
        graph.set_nodes(nodes.into_iter().flatten().collect());
        Ok(pairs.len())
    }
}
