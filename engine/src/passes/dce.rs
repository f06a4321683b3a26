//! Dead-code elimination: drops every node none of whose outputs reaches a graph output.
//!
//! Why: exported graphs carry unused branches (a training-only output stripped, a shape
//! computation whose consumer was folded away); running them costs time and memory for nothing.

use super::Pass;
use crate::error::Result;
use crate::graph::Graph;
use crate::ops::OpRegistry;

/// The pass.
#[derive(Debug, Default)]
pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dead-code elimination"
    }

    fn run(&self, graph: &mut Graph, _registry: &OpRegistry) -> Result<usize> {
        let mut live = vec![false; graph.values.len()];
        for (id, _) in &graph.outputs {
            live[*id] = true;
        }
        let mut keep = vec![false; graph.nodes.len()];
        for (i, n) in graph.nodes.iter().enumerate().rev() {
            if n.outputs.iter().flatten().any(|&o| live[o]) {
                keep[i] = true;
                for &v in &n.inputs {
                    live[v] = true;
                }
            }
        }
        let removed = keep.iter().filter(|k| !**k).count();
        if removed > 0 {
            let nodes = std::mem::take(&mut graph.nodes)
                .into_iter()
                .zip(keep)
                .filter_map(|(n, k)| k.then_some(n))
                .collect();
            graph.set_nodes(nodes);
        }
        Ok(removed)
    }
}
