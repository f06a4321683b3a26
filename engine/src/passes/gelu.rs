//! GELU fusion: the exact GELU exporters write with `Erf`,
//! `x · 0.5 · (1 + erf(x / √2))`, becomes one ONNX `Gelu` node (opset 20,
//! `approximate = "none"`).
//!
//! Why: the decomposed form is five element-wise nodes, each writing and re-reading a tensor as
//! large as a transformer's feed-forward layer; `Gelu` is one pass. Matched forms (every binary
//! node either way round):
//!
//! * `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)` — torch's `nn.GELU()` export;
//! * `Mul(x, Mul(Add(Erf(..), 1), 0.5))`;
//! * `Mul(Mul(x, 0.5), Add(Erf(..), 1))`;
//!
//! with `Mul(x, 1/√2)` accepted for `Div(x, √2)`. Only exact matches: every constant is a
//! one-element float of the right value (to float32 rounding), of rank no greater than `x`'s
//! (so no broadcast changes the shape), and every intermediate is read by the pattern alone.

use super::pattern::{
    apply, build_node, close_to, disjoint_matches, is_f32_or_f64, is_op, out0, private_producer,
    scalar_const, split_scalar, Fusion, PatternMatch,
};
use super::Pass;
use crate::attributes::{AttrValue, Attributes};
use crate::error::Result;
use crate::graph::{Graph, ValueId};
use crate::ops::OpRegistry;

/// The pass.
#[derive(Debug, Default)]
pub struct GeluFusion;

/// `√2`.
const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// A matched GELU: its input, the nodes it replaces and the node producing its output.
struct Match {
    x: ValueId,
    nodes: Vec<usize>,
    last: usize,
}

/// From the `Erf` node at `e`: its input `x` when the Erf reads `x / √2` (through a private
/// `Div` or `Mul`), and that node.
fn erf_argument(graph: &Graph, uses: &[usize], e: usize) -> Option<(ValueId, usize)> {
    let erf = &graph.nodes[e];
    let arg = *erf.inputs.first()?;
    for (op, want) in [("Div", SQRT_2), ("Mul", 1.0 / SQRT_2)] {
        if let Some(d) = private_producer(graph, uses, arg, op) {
            let div = &graph.nodes[d];
            // Div is not commutative: x must be the numerator.
            let (x, c) = if op == "Div" {
                let c = scalar_const(graph, *div.inputs.get(1)?, usize::MAX)?;
                (div.inputs[0], c)
            } else {
                split_scalar(graph, div, usize::MAX)?
            };
            let rank = graph.values[x].fact.rank();
            let ok_rank = div
                .inputs
                .iter()
                .filter(|&&v| v != x)
                .all(|&v| graph.values[v].fact.rank() <= rank);
            if close_to(c, want) && ok_rank {
                return Some((x, d));
            }
        }
    }
    None
}

/// The single reader node of `v` (when `v` is read once and is no graph output).
fn reader(graph: &Graph, uses: &[usize], v: ValueId) -> Option<usize> {
    super::sole_reader(graph, uses, v)
}

/// If `n` is `Mul(v, other)` or `Mul(other, v)`, returns `other`.
fn mul_other(graph: &Graph, n: usize, v: ValueId) -> Option<ValueId> {
    let m = &graph.nodes[n];
    if !is_op(m, "Mul") || m.inputs.len() != 2 {
        return None;
    }
    match (m.inputs[0] == v, m.inputs[1] == v) {
        (true, false) => Some(m.inputs[1]),
        (false, true) => Some(m.inputs[0]),
        _ => None,
    }
}

/// Whether `v` is the one-element constant `want` of rank at most `rank`.
fn is_const(graph: &Graph, v: ValueId, want: f64, rank: usize) -> bool {
    scalar_const(graph, v, rank).is_some_and(|c| close_to(c, want))
}

impl PatternMatch for Match {
    fn nodes(&self) -> &[usize] {
        &self.nodes
    }
}

fn match_at(graph: &Graph, uses: &[usize], e: usize) -> Option<Match> {
    if !is_op(&graph.nodes[e], "Erf") {
        return None;
    }
    let (x, div) = erf_argument(graph, uses, e)?;
    if !is_f32_or_f64(graph, x) {
        return None;
    }
    let rank = graph.values[x].fact.rank();
    let erf_out = out0(&graph.nodes[e])?;
    // Add(erf, 1)
    let add = reader(graph, uses, erf_out)?;
    let add_node = &graph.nodes[add];
    if !is_op(add_node, "Add") {
        return None;
    }
    let (other, one) = split_scalar(graph, add_node, rank)?;
    if other != erf_out || !close_to(one, 1.0) {
        return None;
    }
    let a = out0(add_node)?;
    let m1 = reader(graph, uses, a)?;
    let m1_out = out0(&graph.nodes[m1])?;
    let partner = mul_other(graph, m1, a)?;
    if partner == x {
        // Mul(x, a) then Mul(., 0.5)
        let m2 = reader(graph, uses, m1_out)?;
        let half = mul_other(graph, m2, m1_out)?;
        return is_const(graph, half, 0.5, rank).then(|| Match {
            x,
            nodes: vec![div, e, add, m1, m2],
            last: m2,
        });
    }
    if is_const(graph, partner, 0.5, rank) {
        // Mul(a, 0.5) then Mul(x, .)
        let m2 = reader(graph, uses, m1_out)?;
        let other = mul_other(graph, m2, m1_out)?;
        return (other == x).then(|| Match {
            x,
            nodes: vec![div, e, add, m1, m2],
            last: m2,
        });
    }
    // Mul(Mul(x, 0.5), a): `partner` is the private product x · 0.5.
    let h = private_producer(graph, uses, partner, "Mul")?;
    let half = mul_other(graph, h, x)?;
    is_const(graph, half, 0.5, rank).then(|| Match {
        x,
        nodes: vec![h, div, e, add, m1],
        last: m1,
    })
}

impl Pass for GeluFusion {
    fn name(&self) -> &'static str {
        "GELU fusion"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        // A caller's registry without the fused operator keeps the graph as written.
        if !registry.contains("", "Gelu") {
            return Ok(0);
        }
        let mut fusions = Vec::new();
        for m in disjoint_matches(graph, match_at) {
            let last = &graph.nodes[m.last];
            let name = format!("{}/Gelu", last.name);
            let attributes =
                Attributes::new(name.clone()).with("approximate", AttrValue::String("none".into()));
            let node = build_node(
                registry,
                name,
                "Gelu",
                "",
                20,
                attributes,
                vec![m.x],
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
