//! Conv + BatchNormalization folding: an inference-mode `BatchNormalization` whose input is a
//! `Conv` with constant weights (and its parameters constant) is folded into the Conv's
//! weights and bias: `W' = W · s`, `b' = (b − mean) · s + β` with `s = γ / √(var + ε)` per
//! output channel.
//!
//! Why: every ResNet-style block ends a convolution with a batch norm; folded, the norm costs
//! nothing at run time. Computed in `f64` and rounded once.

use std::sync::Arc;

use super::{sole_reader, Pass};
use crate::error::Result;
use crate::graph::{Graph, Value, ValueSource};
use crate::ops::{NodeContext, OpRegistry};
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

/// The pass.
#[derive(Debug, Default)]
pub struct ConvBatchNorm;

fn f64s(t: &Tensor) -> Option<Vec<f64>> {
    t.as_f32()
        .map(|v| v.iter().map(|&x| f64::from(x)).collect())
}

impl Pass for ConvBatchNorm {
    fn name(&self) -> &'static str {
        "Conv+BatchNormalization folding"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        let mut count = 0;
        let mut removed = vec![false; graph.nodes.len()];
        let uses = graph.use_counts();
        for i in 0..graph.nodes.len() {
            let conv = &graph.nodes[i];
            if !(conv.domain.is_empty() && conv.op_type == "Conv" && conv.inputs.len() >= 2) {
                continue;
            }
            let Some(y) = conv.outputs.first().copied().flatten() else {
                continue;
            };
            let Some(j) = sole_reader(graph, &uses, y) else {
                continue;
            };
            let bn = &graph.nodes[j];
            if !(bn.domain.is_empty()
                && bn.op_type == "BatchNormalization"
                && bn.inputs.len() == 5
                && bn.inputs[0] == y
                && bn.outputs.iter().flatten().count() == 1
                && bn.attributes.int_or("training_mode", 0)? == 0)
            {
                continue;
            }
            let eps = f64::from(bn.attributes.float_or("epsilon", 1e-5)?);
            let params: Option<Vec<Vec<f64>>> = bn.inputs[1..]
                .iter()
                .map(|&v| graph.constant(v).and_then(|t| f64s(t)))
                .collect();
            let Some(w) = graph.constant(conv.inputs[1]).cloned() else {
                continue;
            };
            let (Some(params), DType::F32) = (params, w.dtype()) else {
                continue;
            };
            let co = w.shape()[0];
            if params.iter().any(|p| p.len() != co) || co == 0 {
                continue;
            }
            let bias = match conv.inputs.get(2) {
                Some(&b) => match graph.constant(b).and_then(|t| f64s(t)) {
                    Some(b) if b.len() == co => b,
                    _ => continue,
                },
                None => vec![0.0; co],
            };
            let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
            let scale: Vec<f64> = (0..co).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
            let per = w.len() / co;
            let wv = w.as_f32().unwrap_or_default();
            let new_w: Vec<f32> = wv
                .iter()
                .enumerate()
                .map(|(k, &x)| (f64::from(x) * scale[k / per]) as f32)
                .collect();
            let new_b: Vec<f32> = (0..co)
                .map(|c| ((bias[c] - mean[c]) * scale[c] + beta[c]) as f32)
                .collect();
            let name = conv.name.clone();
            let mut add_const = |suffix: &str, t: Tensor| {
                let t = Arc::new(t);
                graph.values.push(Value {
                    name: format!("{name}/{suffix}"),
                    fact: TypeShape::of_constant(t.clone()),
                    source: ValueSource::Initializer(t),
                });
                graph.values.len() - 1
            };
            let w_id = add_const(
                "weight_bn_folded",
                Tensor::from_f32(w.shape().to_vec(), new_w)?,
            );
            let b_id = add_const("bias_bn_folded", Tensor::from_f32(vec![co], new_b)?);
            let bn_out = graph.nodes[j].outputs.clone();
            let conv = &mut graph.nodes[i];
            let ctx = NodeContext {
                name: &conv.name,
                op_type: "Conv",
                domain: "",
                opset: conv.opset,
                attributes: &conv.attributes,
                num_inputs: 3,
                num_outputs: 1,
            };
            conv.op = registry.build(&ctx)?;
            conv.inputs = vec![conv.inputs[0], w_id, b_id];
            conv.outputs = bn_out.into_iter().take(1).collect();
            removed[j] = true;
            count += 1;
        }
        if count > 0 {
            let nodes = std::mem::take(&mut graph.nodes)
                .into_iter()
                .zip(removed)
                .filter_map(|(n, r)| (!r).then_some(n))
                .collect();
            graph.set_nodes(nodes);
        }
        Ok(count)
    }
}
