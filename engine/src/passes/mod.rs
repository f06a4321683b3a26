//! Graph optimisation passes over the validated IR ([`Graph`]), one module per rewrite.
//!
//! Why on the IR rather than on the protobuf: a pass sees what inference established (dtypes,
//! ranks, which values are constants) and rebuilds operators through the same [`OpRegistry`],
//! so a rewritten graph is held to the same contract as a loaded one. Every pass preserves the
//! graph's inputs and outputs (names, order, types) and its topological order; each reports how
//! many rewrites it made. [`optimize`] runs the standard pipeline; `Model` runs it at load
//! unless told not to ([`LoadOptions`](crate::LoadOptions)).

pub mod attention;
pub mod conv_activation;
pub mod conv_bn;
pub mod dce;
pub mod fold;
pub mod gelu;
pub mod gemm_fusion;
pub mod layer_norm;
pub mod transpose;

mod pattern;

use crate::error::Result;
use crate::graph::Graph;
use crate::ops::OpRegistry;

/// One graph rewrite.
pub trait Pass {
    /// A short name for reports.
    fn name(&self) -> &'static str;
    /// Rewrites `graph` in place; returns the number of rewrites made.
    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize>;
}

/// The standard pipeline, in order: fold constants (so later patterns see constant weights
/// and scalars), eliminate redundant transposes/reshapes (so patterns see through layout
/// shuffles), fuse decomposed LayerNorm, GELU and attention, fold BatchNormalization into Conv,
/// MatMul+Add into Gemm, fuse Conv+Relu, then remove what no output needs.
pub fn standard() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(fold::ConstantFolding),
        Box::new(transpose::TransposeReshapeElimination),
        Box::new(layer_norm::LayerNormFusion),
        Box::new(gelu::GeluFusion),
        Box::new(attention::AttentionFusion),
        Box::new(conv_bn::ConvBatchNorm),
        Box::new(gemm_fusion::MatMulAddToGemm),
        Box::new(conv_activation::ConvRelu),
        Box::new(dce::DeadCodeElimination),
    ]
}

/// Runs the standard pipeline; returns `(pass name, rewrites)` for each pass.
pub fn optimize(graph: &mut Graph, registry: &OpRegistry) -> Result<Vec<(&'static str, usize)>> {
    standard()
        .iter()
        .map(|p| Ok((p.name(), p.run(graph, registry)?)))
        .collect()
}

/// The index of the only node that reads `value`, when exactly one node reads it once and it
/// is not a graph output (so a pass may fold the producer into that reader).
pub(crate) fn sole_reader(graph: &Graph, uses: &[usize], value: usize) -> Option<usize> {
    if uses[value] != 1 || graph.is_output(value) {
        return None;
    }
    graph.nodes.iter().position(|n| n.inputs.contains(&value))
}
