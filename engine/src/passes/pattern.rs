//! Shared matching and rewriting helpers for the fusion and elimination passes.
//!
//! Why one place: every fusion asks the same questions of the graph (who produces this value,
//! is it read only by the next node of the pattern, is this input a constant scalar of the
//! right value) and rewrites the same way (drop the matched nodes, put one new node where the
//! last of them stood). Getting "no other consumer" or "exactly this constant" wrong turns an
//! optimisation into a silent change of the model's results, so it is written once.

use crate::attributes::Attributes;
use crate::error::Result;
use crate::graph::{Graph, Node, ValueId, ValueSource};
use crate::ops::{NodeContext, OpRegistry};
use crate::types::Dim;
use crate::DType;

/// The index of the node that produces `value`, if a node does.
pub(crate) fn producer(graph: &Graph, value: ValueId) -> Option<usize> {
    match graph.values[value].source {
        ValueSource::Node(i) if i < graph.nodes.len() => Some(i),
        _ => None,
    }
}

/// The node producing `value` when it is a default-domain `op_type` node whose (first) output
/// `value` is, and `value` is read by exactly one node input and is no graph output, i.e. the
/// value is an intermediate of a pattern and nothing else sees it.
pub(crate) fn private_producer(
    graph: &Graph,
    uses: &[usize],
    value: ValueId,
    op_type: &str,
) -> Option<usize> {
    let i = producer(graph, value)?;
    let n = &graph.nodes[i];
    (is_op(n, op_type)
        && n.outputs.first().copied().flatten() == Some(value)
        && uses[value] == 1
        && !graph.is_output(value))
    .then_some(i)
}

/// Whether `n` is the default-domain operator `op_type`.
pub(crate) fn is_op(n: &Node, op_type: &str) -> bool {
    n.domain.is_empty() && n.op_type == op_type
}

/// A node's first output, when present.
pub(crate) fn out0(n: &Node) -> Option<ValueId> {
    n.outputs.first().copied().flatten()
}

/// Whether the value is a float32 or float64 tensor (the dtypes the fused kernels serve).
pub(crate) fn is_f32_or_f64(graph: &Graph, v: ValueId) -> bool {
    matches!(graph.values[v].fact.dtype, DType::F32 | DType::F64)
}

/// The value of a one-element float constant whose rank does not exceed `max_rank` (so that
/// broadcasting it changes no shape), as `f64`.
pub(crate) fn scalar_const(graph: &Graph, v: ValueId, max_rank: usize) -> Option<f64> {
    let t = graph.constant(v)?;
    if t.len() != 1 || t.rank() > max_rank {
        return None;
    }
    match t.dtype() {
        DType::F32 => t.as_f32().map(|s| f64::from(s[0])),
        DType::F64 => t.as_f64().map(|s| s[0]),
        _ => None,
    }
}

/// Whether `got` is `want` up to float32 rounding (relative 1e-6).
pub(crate) fn close_to(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-6 * want.abs().max(1e-30)
}

/// The scalar constant among a binary node's two inputs and the other input:
/// `(other, constant value)`, whichever side the constant is on.
pub(crate) fn split_scalar(graph: &Graph, n: &Node, max_rank: usize) -> Option<(ValueId, f64)> {
    if n.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (n.inputs[0], n.inputs[1]);
    if let Some(c) = scalar_const(graph, b, max_rank) {
        return Some((a, c));
    }
    scalar_const(graph, a, max_rank).map(|c| (b, c))
}

/// Whether two dims are known to be equal (the same fixed size, or the same named size;
/// inference's unknown `?` equals nothing).
pub(crate) fn same_dim(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
        (Dim::Symbolic(x), Dim::Symbolic(y)) => x == y && x != "?",
        _ => false,
    }
}

/// Whether two shapes are known to be equal, dim by dim.
pub(crate) fn same_shape(a: &[Dim], b: &[Dim]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_dim(x, y))
}

/// Builds a node through the registry (so a fused node is held to the same contract as a
/// loaded one).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_node(
    registry: &OpRegistry,
    name: String,
    op_type: &str,
    domain: &str,
    opset: i64,
    attributes: Attributes,
    inputs: Vec<ValueId>,
    outputs: Vec<Option<ValueId>>,
) -> Result<Node> {
    let ctx = NodeContext {
        name: &name,
        op_type,
        domain,
        opset,
        attributes: &attributes,
        num_inputs: inputs.len(),
        num_outputs: outputs.len(),
    };
    let op = registry.build(&ctx)?;
    Ok(Node {
        name,
        op_type: op_type.to_string(),
        domain: domain.to_string(),
        opset,
        attributes,
        op,
        inputs,
        outputs,
    })
}

/// One rewrite: the matched nodes `remove` are dropped and `node` takes the place of the last
/// of them (`at`, the one producing the pattern's output), where every input of the pattern is
/// already computed.
pub(crate) struct Fusion {
    pub remove: Vec<usize>,
    pub at: usize,
    pub node: Node,
}

/// A pattern found in a graph: the nodes a fusion would replace.
pub(crate) trait PatternMatch {
    /// Indices of the matched nodes.
    fn nodes(&self) -> &[usize];
}

/// Every match `match_at` finds (it gets the graph, the use counts and a node index), scanning
/// the nodes in order, that shares no node with an earlier match: two overlapping patterns are
/// never both rewritten.
pub(crate) fn disjoint_matches<M: PatternMatch>(
    graph: &Graph,
    match_at: impl Fn(&Graph, &[usize], usize) -> Option<M>,
) -> Vec<M> {
    let uses = graph.use_counts();
    let mut claimed = vec![false; graph.nodes.len()];
    let mut matches = Vec::new();
    for i in 0..graph.nodes.len() {
        let Some(m) = match_at(graph, &uses, i) else {
            continue;
        };
        if m.nodes().iter().any(|&n| claimed[n]) {
            continue;
        }
        for &n in m.nodes() {
            claimed[n] = true;
        }
        matches.push(m);
    }
    matches
}

/// Applies non-overlapping fusions; returns how many were applied.
pub(crate) fn apply(graph: &mut Graph, fusions: Vec<Fusion>) -> usize {
    if fusions.is_empty() {
        return 0;
    }
    let count = fusions.len();
    let mut nodes: Vec<Option<Node>> = std::mem::take(&mut graph.nodes)
        .into_iter()
        .map(Some)
        .collect();
    let mut placed: Vec<Option<Node>> = (0..nodes.len()).map(|_| None).collect();
    for f in fusions {
        for i in f.remove {
            nodes[i] = None;
        }
        placed[f.at] = Some(f.node);
    }
    let merged = nodes
        .into_iter()
        .zip(placed)
        .filter_map(|(old, new)| new.or(old))
        .collect();
    graph.set_nodes(merged);
    count
}

/// Makes every node that reads `from` read `to` instead, when all of `from`'s uses are node
/// inputs of this graph (not a graph output, nor anything `use_counts` counts besides node
/// inputs) and no reader is a control-flow node (whose subgraphs may capture the value).
/// Returns whether it did.
pub(crate) fn redirect(graph: &mut Graph, uses: &[usize], from: ValueId, to: ValueId) -> bool {
    let node_reads: usize = graph
        .nodes
        .iter()
        .map(|n| n.inputs.iter().filter(|&&v| v == from).count())
        .sum();
    // A control-flow node may hand the value to a subgraph by id: leave those alone.
    let captured = graph
        .nodes
        .iter()
        .any(|n| n.attributes.has_subgraphs() && n.inputs.contains(&from));
    if graph.is_output(from) || node_reads != uses[from] || captured {
        return false;
    }
    for n in &mut graph.nodes {
        for v in &mut n.inputs {
            if *v == from {
                *v = to;
            }
        }
    }
    true
}
