//! Transpose/reshape elimination:
//!
//! * a `Transpose` whose `perm` is the identity is dropped (its readers read its input);
//! * `Transpose(Transpose(x, p1), p2)` becomes `Transpose(x, c)` with `c[i] = p1[p2[i]]`, and
//!   disappears when `c` is the identity (inverse pairs cancel);
//! * a `Reshape` whose output is known to have its input's shape is dropped;
//! * `Reshape(R(x), s)`, where `R` is a `Reshape`, `Flatten`, `Squeeze` or `Unsqueeze`, becomes
//!   `Reshape(x, s)` when `s` is a constant that copies no dim from its input (no `0`, or
//!   `allowzero = 1`): only the element order matters to a reshape, and every one of these
//!   keeps it.
//!
//! Why: exporters and the other passes leave layout shuffles that cancel out (a head split
//! transposed back, a flatten before a reshape); each costs a full copy of the tensor. Only the
//! first of a pair may be removed when nothing else reads it, and a value is redirected only
//! when every use of it is a node input of this graph (never a graph output, whose name the
//! caller sees). Runs to a fixed point, one rewrite at a time, so chains collapse fully.

use super::pattern::{build_node, is_op, out0, private_producer, redirect, same_shape};
use super::Pass;
use crate::attributes::{AttrValue, Attributes};
use crate::error::Result;
use crate::graph::Graph;
use crate::ops::OpRegistry;

/// The pass.
#[derive(Debug, Default)]
pub struct TransposeReshapeElimination;

/// A Transpose node's permutation (the default reverses the axes), when valid.
fn perm_of(graph: &Graph, i: usize) -> Option<Vec<usize>> {
    let n = &graph.nodes[i];
    let rank = graph.values[*n.inputs.first()?].fact.rank();
    let perm: Vec<usize> = match n.attributes.ints("perm").ok()? {
        Some(p) => p
            .iter()
            .map(|&a| usize::try_from(a).ok())
            .collect::<Option<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return None;
    }
    for &a in &perm {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return None;
        }
    }
    Some(perm)
}

fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &a)| i == a)
}

fn without(graph: &mut Graph, remove: &[usize]) {
    let nodes = std::mem::take(&mut graph.nodes)
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| (!remove.contains(&i)).then_some(n))
        .collect();
    graph.set_nodes(nodes);
}

/// Finds and applies one rewrite; returns whether it made one.
fn rewrite_once(graph: &mut Graph, registry: &OpRegistry) -> Result<bool> {
    let uses = graph.use_counts();
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        let (Some(&x), Some(y)) = (n.inputs.first(), out0(n)) else {
            continue;
        };
        if is_op(n, "Transpose") && n.inputs.len() == 1 {
            let Some(p2) = perm_of(graph, i) else {
                continue;
            };
            if is_identity(&p2) && redirect(graph, &uses, y, x) {
                without(graph, &[i]);
                return Ok(true);
            }
            let Some(j) = private_producer(graph, &uses, x, "Transpose") else {
                continue;
            };
            let Some(p1) = perm_of(graph, j) else {
                continue;
            };
            let x0 = graph.nodes[j].inputs[0];
            let c: Vec<usize> = p2.iter().map(|&a| p1[a]).collect();
            if is_identity(&c) && redirect(graph, &uses, y, x0) {
                without(graph, &[j, i]);
                return Ok(true);
            }
            let old = &graph.nodes[i];
            let name = format!("{}+{}", graph.nodes[j].name, old.name);
            let perm = c.iter().map(|&a| a as i64).collect();
            let attributes = Attributes::new(name.clone()).with("perm", AttrValue::Ints(perm));
            let merged = build_node(
                registry,
                name,
                "Transpose",
                "",
                old.opset,
                attributes,
                vec![x0],
                old.outputs.clone(),
            )?;
            graph.nodes[i] = merged;
            without(graph, &[j]);
            return Ok(true);
        }
        if is_op(n, "Reshape") && n.inputs.len() == 2 {
            let (fx, fy) = (&graph.values[x].fact, &graph.values[y].fact);
            if same_shape(&fx.shape, &fy.shape) && redirect(graph, &uses, y, x) {
                without(graph, &[i]);
                return Ok(true);
            }
            let n = &graph.nodes[i];
            let allowzero = n.attributes.int_or("allowzero", 0).unwrap_or(0) != 0;
            let fixed_target = graph
                .constant(n.inputs[1])
                .and_then(|t| t.as_i64())
                .is_some_and(|s| allowzero || !s.contains(&0));
            if !fixed_target {
                continue;
            }
            let inner = ["Reshape", "Flatten", "Squeeze", "Unsqueeze"]
                .iter()
                .find_map(|op| private_producer(graph, &uses, x, op));
            if let Some(j) = inner {
                let x0 = graph.nodes[j].inputs[0];
                graph.nodes[i].inputs[0] = x0;
                without(graph, &[j]);
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl Pass for TransposeReshapeElimination {
    fn name(&self) -> &'static str {
        "transpose/reshape elimination"
    }

    fn run(&self, graph: &mut Graph, registry: &OpRegistry) -> Result<usize> {
        if !registry.contains("", "Transpose") {
            return Ok(0);
        }
        let mut count = 0;
        // Each rewrite removes at least one node, so this terminates within the node count.
        let limit = graph.nodes.len();
        while count < limit && rewrite_once(graph, registry)? {
            count += 1;
        }
        Ok(count)
    }
}
