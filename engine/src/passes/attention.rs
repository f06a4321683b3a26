//! Attention fusion: scaled dot-product attention as exporters write it,
//!
//! ```text
//! Softmax(Add(Div(MatMul(Q, Kt), c), mask), axis = -1)  ·  V        (MatMul)
//! ```
//!
//! with the scaling a `Div` by a constant `c`, a `Mul` by a constant, or absent, and the mask
//! `Add` optional (either operand order), becomes one `ai.cloister` `ScaledDotProductAttention`
//! node ([`crate::ops::fused`]) with `scale = 1/c` (or the `Mul`'s factor).
//!
//! Why: the unfused graph materialises the `[batch, heads, Sq, Sk]` score tensor four times
//! (product, scaled, masked, probabilities); the fused kernel holds one row of `Sk` scores at a
//! time. Only exact matches: `Q`, `Kt` and `V` of rank ≥ 2 (no 1-D `MatMul` promotion), a
//! float32/float64 graph, the scale a one-element float constant that broadcasts to no larger
//! shape, the Softmax over the last axis, a mask whose last two dims are 1 or the scores' own,
//! and every intermediate (product, scaled, masked, probabilities) read only by the next node.

use super::pattern::{
    apply, build_node, disjoint_matches, is_f32_or_f64, is_op, out0, private_producer,
    scalar_const, split_scalar, Fusion, PatternMatch,
};
use super::Pass;
use crate::attributes::{AttrValue, Attributes};
use crate::error::Result;
use crate::graph::{Graph, ValueId};
use crate::ops::fused::{CLOISTER_DOMAIN, SDPA};
use crate::ops::OpRegistry;

/// The pass.
#[derive(Debug, Default)]
pub struct AttentionFusion;

/// A matched attention block.
struct Match {
    q: ValueId,
    kt: ValueId,
    v: ValueId,
    mask: Option<ValueId>,
    scale: f64,
    nodes: Vec<usize>,
    last: usize,
}

/// `MatMul(Q, Kt)` optionally scaled, ending in value `t` read only by the pattern:
/// `(Q, Kt, scale, nodes)`.
fn scaled_product(
    graph: &Graph,
    uses: &[usize],
    t: ValueId,
) -> Option<(ValueId, ValueId, f64, Vec<usize>)> {
    let mut nodes = Vec::new();
    let mut scale = 1.0;
    let mut r = t;
    if let Some(d) = private_producer(graph, uses, t, "Div") {
        let n = &graph.nodes[d];
        let c = scalar_const(graph, *n.inputs.get(1)?, usize::MAX)?;
        if c == 0.0 || !c.is_finite() {
            return None;
        }
        nodes.push(d);
        scale = 1.0 / c;
        r = n.inputs[0];
    } else if let Some(m) = private_producer(graph, uses, t, "Mul") {
        let (other, c) = split_scalar(graph, &graph.nodes[m], usize::MAX)?;
        if !c.is_finite() {
            return None;
        }
        nodes.push(m);
        scale = c;
        r = other;
    }
    let mm = private_producer(graph, uses, r, "MatMul")?;
    let n = &graph.nodes[mm];
    if n.inputs.len() != 2 {
        return None;
    }
    let (q, kt) = (n.inputs[0], n.inputs[1]);
    // The scale constant must not raise the scores' rank.
    let scores_rank = graph.values[r].fact.rank();
    if let Some(&s) = nodes.first() {
        if graph.nodes[s]
            .inputs
            .iter()
            .any(|&v| graph.values[v].fact.rank() > scores_rank)
        {
            return None;
        }
    }
    nodes.push(mm);
    Some((q, kt, scale, nodes))
}

impl PatternMatch for Match {
    fn nodes(&self) -> &[usize] {
        &self.nodes
    }
}

fn match_at(graph: &Graph, uses: &[usize], sm: usize) -> Option<Match> {
    let softmax = &graph.nodes[sm];
    if !is_op(softmax, "Softmax") || softmax.inputs.len() != 1 {
        return None;
    }
    let s = softmax.inputs[0];
    let rank = graph.values[s].fact.rank();
    let default_axis = if softmax.opset < 13 { 1 } else { -1 };
    let axis = softmax.attributes.int_or("axis", default_axis).ok()?;
    let r = i64::try_from(rank).ok()?;
    if rank < 2 || (if axis < 0 { axis + r } else { axis }) != r - 1 {
        return None;
    }
    let p = out0(softmax)?;
    let mm2 = super::sole_reader(graph, uses, p)?;
    let mm2n = &graph.nodes[mm2];
    if !is_op(mm2n, "MatMul")
        || mm2n.inputs.len() != 2
        || mm2n.inputs[0] != p
        || mm2n.inputs[1] == p
    {
        return None;
    }
    let v = mm2n.inputs[1];
    if uses[s] != 1 || graph.is_output(s) {
        return None;
    }
    // With a mask Add (either order), or without.
    let mut found = None;
    if let Some(add) = private_producer(graph, uses, s, "Add") {
        let ins = &graph.nodes[add].inputs;
        if ins.len() == 2 {
            for (t, m) in [(ins[0], ins[1]), (ins[1], ins[0])] {
                if let Some((q, kt, scale, mut nodes)) = scaled_product(graph, uses, t) {
                    nodes.push(add);
                    found = Some((q, kt, scale, nodes, Some(m)));
                    break;
                }
            }
        }
    }
    if found.is_none() {
        found = scaled_product(graph, uses, s).map(|(q, kt, sc, n)| (q, kt, sc, n, None));
    }
    let (q, kt, scale, mut nodes, mask) = found?;
    let f = |x: ValueId| &graph.values[x].fact;
    if f(q).rank() < 2 || f(kt).rank() < 2 || f(v).rank() < 2 {
        return None;
    }
    if ![q, kt, v]
        .iter()
        .chain(mask.iter())
        .all(|&x| is_f32_or_f64(graph, x))
    {
        return None;
    }
    nodes.push(sm);
    nodes.push(mm2);
    Some(Match {
        q,
        kt,
        v,
        mask,
        scale,
        nodes,
        last: mm2,
    })
}

impl Pass for AttentionFusion {
    fn name(&self) -> &'static str {
        "attention fusion"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        // A caller's registry without the fused operator keeps the graph as written.
        if !registry.contains(CLOISTER_DOMAIN, SDPA) {
            return Ok(0);
        }
        let mut fusions = Vec::new();
        for m in disjoint_matches(graph, match_at) {
            let last = &graph.nodes[m.last];
            let name = format!("{}/{SDPA}", last.name);
            let attributes =
                Attributes::new(name.clone()).with("scale", AttrValue::Float(m.scale as f32));
            let mut inputs = vec![m.q, m.kt, m.v];
            inputs.extend(m.mask);
            let node = build_node(
                registry,
                name,
                SDPA,
                CLOISTER_DOMAIN,
                1,
                attributes,
                inputs,
                vec![out0(last)],
            )?;
            fusions.push(Fusion {
                remove: m.nodes,
                at: m.last,
                node,
            });
        }
        Ok(apply(graph, fusions))
    }
}
