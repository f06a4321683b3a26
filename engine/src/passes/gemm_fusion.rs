//! MatMul + Add → Gemm: `Add(MatMul(a, B), c)` with a rank-2 `a`, a constant rank-2 `B` and a
//! constant bias `c` of shape `[N]` or `[1, N]` becomes one `Gemm(a, B, c)`.
//!
//! Why: a linear layer exported as two nodes writes and re-reads the whole product; as one
//! node the bias is added in the product's epilogue (and a packed-weight kernel sees the whole
//! layer). Only when the product has no other reader.

use super::{sole_reader, Pass};
use crate::attributes::Attributes;
use crate::error::Result;
use crate::graph::{Graph, Node};
use crate::ops::{NodeContext, OpRegistry};
use crate::DType;

/// The pass.
#[derive(Debug, Default)]
pub struct MatMulAddToGemm;

impl Pass for MatMulAddToGemm {
    fn name(&self) -> &'static str {
        "MatMul+Add -> Gemm"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        let uses = graph.use_counts();
        // (matmul index, add index, bias value)
        let mut fusions = Vec::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            if !(n.domain.is_empty() && n.op_type == "MatMul" && n.inputs.len() == 2) {
                continue;
            }
            let (a, b) = (n.inputs[0], n.inputs[1]);
            let Some(product) = n.outputs.first().copied().flatten() else {
                continue;
            };
            let fact_a = &graph.values[a].fact;
            let Some(weights) = graph.constant(b) else {
                continue;
            };
            if fact_a.rank() != 2
                || weights.rank() != 2
                || !matches!(fact_a.dtype, DType::F32 | DType::F64)
            {
                continue;
            }
            let Some(j) = sole_reader(graph, &uses, product) else {
                continue;
            };
            let add = &graph.nodes[j];
            if !(add.domain.is_empty() && add.op_type == "Add" && add.inputs.len() == 2) {
                continue;
            }
            let bias = if add.inputs[0] == product {
                add.inputs[1]
            } else {
                add.inputs[0]
            };
            let n_cols = weights.shape()[1];
            let ok_bias = graph.constant(bias).is_some_and(|c| {
                c.dtype() == fact_a.dtype && (c.shape() == [n_cols] || c.shape() == [1, n_cols])
            });
            if ok_bias && bias != product {
                fusions.push((i, j, bias));
            }
        }
        if fusions.is_empty() {
            return Ok(0);
        }
        let mut nodes: Vec<Option<Node>> = std::mem::take(&mut graph.nodes)
            .into_iter()
            .map(Some)
            .collect();
        for &(i, j, bias) in &fusions {
            let (Some(mm), Some(add)) = (nodes[i].take(), nodes[j].take()) else {
                continue;
            };
            let attributes = Attributes::new(format!("{}+{}", mm.name, add.name));
            let ctx = NodeContext {
                name: &mm.name,
                op_type: "Gemm",
                domain: "",
                opset: mm.opset,
                attributes: &attributes,
                num_inputs: 3,
                num_outputs: 1,
            };
            let op = registry.build(&ctx)?;
            // At the Add's position: the bias is a constant, `a` was ready before the MatMul.
            nodes[j] = Some(Node {
                name: format!("{}+{}", mm.name, add.name),
                op_type: "Gemm".into(),
                domain: String::new(),
                opset: mm.opset,
                attributes,
                op,
                inputs: vec![mm.inputs[0], mm.inputs[1], bias],
                outputs: add.outputs,
            });
        }
        graph.set_nodes(nodes.into_iter().flatten().collect());
        Ok(fusions.len())
    }
}
