//! LayerNorm fusion: the decomposed layer normalisation exporters write before opset 17,
//!
//! ```text
//! m = ReduceMean(x, axes)          d = Sub(x, m)           p = Pow(d, 2)   (or Mul(d, d))
//! v = ReduceMean(p, axes)          s = Sqrt(Add(v, eps))   n = Div(d, s)
//! y = Add(Mul(n, gamma), beta)     (the Mul and the Add optional)
//! ```
//!
//! becomes one `LayerNormalization(x, gamma[, beta])` with `axis` the first reduced axis and
//! `epsilon` taken from the Add.
//!
//! Why: nine element-wise and reduction nodes become one pass over each row, computed in `f64`
//! by the reference kernel (so the fused result is, if anything, closer to exact). Only exact
//! matches: both reductions over the same trailing, contiguous axes with `keepdims = 1`, the
//! exponent exactly 2, `eps` a one-element float constant, `gamma`/`beta` broadcasting onto the
//! normalised dims without changing the shape, and every intermediate read only inside the
//! pattern (`d` by exactly the square and the Div). Without a `Mul`, the fused node gets a
//! scale of ones (when the normalised dims are fixed).

use std::sync::Arc;

use super::pattern::{
    apply, build_node, disjoint_matches, is_f32_or_f64, is_op, out0, private_producer, same_dim,
    scalar_const, Fusion, PatternMatch,
};
use super::Pass;
use crate::attributes::{AttrValue, Attributes};
use crate::error::Result;
use crate::graph::{Graph, Node, Value, ValueId, ValueSource};
use crate::ops::OpRegistry;
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// The pass.
#[derive(Debug, Default)]
pub struct LayerNormFusion;

/// A matched decomposition.
struct Match {
    x: ValueId,
    axis: usize,
    epsilon: f64,
    gamma: Option<ValueId>,
    beta: Option<ValueId>,
    nodes: Vec<usize>,
    last: usize,
}

/// The first axis of a `ReduceMean` node over `rank` dims when it reduces a trailing,
/// contiguous run of axes and keeps them; `None` for anything else.
fn reduce_mean_axis(graph: &Graph, n: &Node, rank: usize) -> Option<usize> {
    if !is_op(n, "ReduceMean") || n.attributes.int_or("keepdims", 1).ok()? != 1 {
        return None;
    }
    let list: Vec<i64> = if n.opset < 18 {
        if n.inputs.len() != 1 {
            return None;
        }
        n.attributes.ints("axes").ok()?.unwrap_or(&[]).to_vec()
    } else {
        match n.inputs.len() {
            1 => Vec::new(),
            2 => graph.constant(n.inputs[1])?.as_i64()?.to_vec(),
            _ => return None,
        }
    };
    if list.is_empty() {
        // Every axis, unless told to reduce nothing.
        return (n.attributes.int_or("noop_with_empty_axes", 0).ok()? == 0 && rank > 0)
            .then_some(0);
    }
    let r = i64::try_from(rank).ok()?;
    let mut axes: Vec<i64> = list
        .iter()
        .map(|&a| if a < 0 { a + r } else { a })
        .collect();
    axes.sort_unstable();
    axes.dedup();
    let first = *axes.first()?;
    let trailing = axes.len() == list.len()
        && first >= 0
        && axes.iter().enumerate().all(|(i, &a)| a == first + i as i64)
        && *axes.last()? == r - 1;
    trailing.then_some(first as usize)
}

/// Whether a scale/bias value broadcasts onto `x`'s normalised dims `x[axis..]` without
/// changing the shape (its rank at most theirs, each dim 1 or the same).
fn fits_trailing(graph: &Graph, p: ValueId, x: ValueId, axis: usize) -> bool {
    let (pf, xf) = (&graph.values[p].fact, &graph.values[x].fact);
    let norm = &xf.shape[axis..];
    pf.dtype == xf.dtype
        && pf.rank() <= norm.len()
        && pf
            .shape
            .iter()
            .zip(&norm[norm.len() - pf.rank()..])
            .all(|(a, b)| *a == Dim::Fixed(1) || same_dim(a, b))
}

/// The single node reading `v` and `v`'s other operand, when that node is the binary `op`.
fn binary_reader(graph: &Graph, uses: &[usize], v: ValueId, op: &str) -> Option<(usize, ValueId)> {
    let j = super::sole_reader(graph, uses, v)?;
    let n = &graph.nodes[j];
    if !is_op(n, op) || n.inputs.len() != 2 {
        return None;
    }
    match (n.inputs[0] == v, n.inputs[1] == v) {
        (true, false) => Some((j, n.inputs[1])),
        (false, true) => Some((j, n.inputs[0])),
        _ => None,
    }
}

/// Matches the pattern whose `Sub` node is at `sub`.
impl PatternMatch for Match {
    fn nodes(&self) -> &[usize] {
        &self.nodes
    }
}

fn match_at(graph: &Graph, uses: &[usize], sub: usize) -> Option<Match> {
    let s = &graph.nodes[sub];
    if !is_op(s, "Sub") || s.inputs.len() != 2 {
        return None;
    }
    let (x, mean) = (s.inputs[0], s.inputs[1]);
    let d = out0(s)?;
    if !is_f32_or_f64(graph, x) || graph.is_output(d) {
        return None;
    }
    let rank = graph.values[x].fact.rank();
    let rm1 = private_producer(graph, uses, mean, "ReduceMean")?;
    if graph.nodes[rm1].inputs[0] != x {
        return None;
    }
    let axis = reduce_mean_axis(graph, &graph.nodes[rm1], rank)?;
    // d is read by exactly the square and the Div.
    let readers: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| graph.nodes[i].inputs.contains(&d))
        .collect();
    let [r1, r2] = readers[..] else { return None };
    let is_square = |i: usize| {
        let n = &graph.nodes[i];
        (is_op(n, "Mul") && n.inputs == [d, d] && uses[d] == 3)
            || (is_op(n, "Pow")
                && n.inputs.len() == 2
                && n.inputs[0] == d
                && uses[d] == 2
                && scalar_const(graph, n.inputs[1], rank).is_some_and(|c| c == 2.0))
    };
    let (sq, div) = if is_square(r1) {
        (r1, r2)
    } else if is_square(r2) {
        (r2, r1)
    } else {
        return None;
    };
    let p = out0(&graph.nodes[sq])?;
    let rm2 = super::sole_reader(graph, uses, p)?;
    let rm2n = &graph.nodes[rm2];
    if rm2n.inputs[0] != p || reduce_mean_axis(graph, rm2n, rank)? != axis {
        return None;
    }
    let var = out0(rm2n)?;
    let (add_eps, eps) = binary_reader(graph, uses, var, "Add")?;
    let epsilon = scalar_const(graph, eps, rank)?;
    let ve = out0(&graph.nodes[add_eps])?;
    let sqrt = super::sole_reader(graph, uses, ve)?;
    if !is_op(&graph.nodes[sqrt], "Sqrt") {
        return None;
    }
    let sd = out0(&graph.nodes[sqrt])?;
    let dv = &graph.nodes[div];
    if !is_op(dv, "Div") || dv.inputs != [d, sd] || uses[sd] != 1 || graph.is_output(sd) {
        return None;
    }
    let mut nodes = vec![rm1, sub, sq, rm2, add_eps, sqrt, div];
    let mut last = div;
    let (mut gamma, mut beta) = (None, None);
    let n = out0(dv)?;
    if let Some((mul, g)) = binary_reader(graph, uses, n, "Mul") {
        if fits_trailing(graph, g, x, axis) {
            nodes.push(mul);
            last = mul;
            gamma = Some(g);
            let y = out0(&graph.nodes[mul])?;
            if let Some((add, b)) = binary_reader(graph, uses, y, "Add") {
                if fits_trailing(graph, b, x, axis) {
                    nodes.push(add);
                    last = add;
                    beta = Some(b);
                }
            }
        }
    }
    Some(Match {
        x,
        axis,
        epsilon,
        gamma,
        beta,
        nodes,
        last,
    })
}

/// A new initializer of ones over `x`'s normalised dims, when they are fixed.
fn ones_scale(graph: &mut Graph, x: ValueId, axis: usize, name: &str) -> Option<ValueId> {
    let f = &graph.values[x].fact;
    let dims: Vec<usize> = f.shape[axis..]
        .iter()
        .map(Dim::fixed)
        .collect::<Option<_>>()?;
    let n: usize = dims.iter().product();
    let t = match f.dtype {
        DType::F32 => Tensor::from_f32(dims, vec![1.0; n]).ok()?,
        DType::F64 => Tensor::from_f64(dims, vec![1.0; n]).ok()?,
        _ => return None,
    };
    let t = Arc::new(t);
    graph.values.push(Value {
        name: format!("{name}/ones"),
        source: ValueSource::Initializer(t.clone()),
        fact: TypeShape::of_constant(t),
    });
    Some(graph.values.len() - 1)
}

impl Pass for LayerNormFusion {
    fn name(&self) -> &'static str {
        "LayerNorm fusion"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        // A caller's registry without the fused operator keeps the graph as written.
        if !registry.contains("", "LayerNormalization") {
            return Ok(0);
        }
        let mut fusions = Vec::new();
        for m in disjoint_matches(graph, match_at) {
            let last = &graph.nodes[m.last];
            let name = format!("{}/LayerNormalization", last.name);
            let out = out0(last);
            let gamma = match m.gamma {
                Some(g) => g,
                None => match ones_scale(graph, m.x, m.axis, &name) {
                    Some(g) => g,
                    None => continue,
                },
            };
            let attributes = Attributes::new(name.clone())
                .with("axis", AttrValue::Int(m.axis as i64))
                .with("epsilon", AttrValue::Float(m.epsilon as f32));
            let mut inputs = vec![m.x, gamma];
            inputs.extend(m.beta);
            let node = build_node(
                registry,
                name,
                "LayerNormalization",
                "",
                17,
                attributes,
                inputs,
                vec![out],
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
