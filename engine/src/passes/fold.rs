//! Constant folding: evaluates, once at load, every node whose inputs are all constants, and
//! turns its outputs into initializers.
//!
//! Why: exporters leave weight transposes, shape arithmetic and `Constant` nodes that would
//! otherwise run on every request. Load-time *inference* already propagates small constants
//! (`graph.rs`); this pass removes the nodes. Bounded: only nodes whose inferred outputs have
//! fully known shapes of at most [`MAX_FOLDED_ELEMENTS`] are evaluated (so a model cannot make
//! the loader allocate what it likes), and random operators are never folded.

use std::sync::Arc;

use super::Pass;
use crate::error::Result;
use crate::graph::{Graph, ValueSource};
use crate::ops::OpRegistry;
use crate::tensor::Tensor;
use crate::types::TypeShape;

/// The largest tensor (elements) folding evaluates or stores as a new initializer.
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 22;

/// Operators whose output is not a function of their inputs.
const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
];

/// The pass.
#[derive(Debug, Default)]
pub struct ConstantFolding;

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant folding"
    }

    fn run(&self, graph: &mut Graph, _registry: &OpRegistry) -> Result<usize> {
        let mut folded = vec![false; graph.nodes.len()];
        for (i, n) in graph.nodes.iter().enumerate() {
            if n.domain.is_empty() && NONDETERMINISTIC.contains(&n.op_type.as_str()) {
                continue;
            }
            // Control flow (If/Loop/Scan) is never run at load: a Loop may run long.
            if n.attributes.has_subgraphs() {
                continue;
            }
            let inputs: Option<Vec<Arc<Tensor>>> = n
                .inputs
                .iter()
                .map(|&v| graph.constant(v).cloned())
                .collect();
            let Some(inputs) = inputs else { continue };
            let small = |o: &Option<usize>| {
                o.is_none_or(|o| {
                    graph.values[o]
                        .fact
                        .shape
                        .iter()
                        .try_fold(1usize, |n, d| d.fixed().and_then(|d| n.checked_mul(d)))
                        .is_some_and(|n| n <= MAX_FOLDED_ELEMENTS)
                })
            };
            if inputs.iter().any(|t| t.len() > MAX_FOLDED_ELEMENTS) || !n.outputs.iter().all(small)
            {
                continue;
            }
            let refs: Vec<&Tensor> = inputs.iter().map(|t| t.as_ref()).collect();
            // A node that fails here fails the same way at run time, with context; leave it.
            let Ok(results) = n.op.eval(&refs) else {
                continue;
            };
            let fits = results.len() >= n.outputs.len()
                && n.outputs.iter().zip(&results).all(|(o, t)| {
                    t.len() <= MAX_FOLDED_ELEMENTS
                        && o.is_none_or(|o| {
                            let f = &graph.values[o].fact;
                            f.dtype == t.dtype()
                                && f.rank() == t.rank()
                                && f.shape
                                    .iter()
                                    .zip(t.shape())
                                    .all(|(d, &s)| d.fixed().is_none_or(|d| d == s))
                        })
                });
            if !fits {
                continue;
            }
            for (o, t) in n.outputs.clone().into_iter().zip(results) {
                if let Some(o) = o {
                    let t = Arc::new(t);
                    graph.values[o].fact = TypeShape::of_constant(t.clone());
                    graph.values[o].source = ValueSource::Initializer(t);
                }
            }
            folded[i] = true;
        }
        let count = folded.iter().filter(|f| **f).count();
        if count > 0 {
            let nodes = std::mem::take(&mut graph.nodes)
                .into_iter()
                .zip(folded)
                .filter_map(|(n, f)| (!f).then_some(n))
                .collect();
            graph.set_nodes(nodes);
        }
        Ok(count)
    }
}
