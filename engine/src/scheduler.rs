//! The parallel scheduler: runs independent branches of the graph at the same time on a rayon
//! thread pool.
//!
//! Why waves: a node's *level* is one more than the highest level among the producers of its
//! inputs, so all nodes of one level depend only on earlier levels and can run concurrently
//! (a transformer's Q, K and V projections; a ResNet block's main path and its shortcut). Each
//! wave reads the value table immutably, its results are checked against inference and stored
//! in node order, and every value is dropped after the last wave that reads it. Errors are the
//! same `EngineError::Node`s as the sequential executor's, first node in topological order
//! first. With one thread `Model` uses the sequential executor instead.

use rayon::prelude::*;

use crate::error::{EngineError, Result};
use crate::executor::{check_fact, lookup};
use crate::graph::{Graph, ValueId, ValueSource};
use crate::tensor::Tensor;

/// Each node's level (0 for nodes that read only inputs and initializers).
pub fn levels(graph: &Graph) -> Vec<usize> {
    let mut level = vec![0usize; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        level[i] = n
            .inputs
            .iter()
            .filter_map(|&v| match graph.values[v].source {
                ValueSource::Node(p) if p < i => Some(level[p] + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
    }
    level
}

/// Evaluates `graph` wave by wave on `pool`; same contract as the sequential executor.
pub(crate) fn execute_parallel(
    graph: &Graph,
    feeds: Vec<(ValueId, Tensor)>,
    pool: &rayon::ThreadPool,
) -> Result<Vec<Tensor>> {
    let level = levels(graph);
    let depth = level.iter().max().map_or(0, |m| m + 1);
    let mut waves: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, &l) in level.iter().enumerate() {
        waves[l].push(i);
    }
    // The last wave that reads each value; graph outputs are never dropped.
    let mut last_wave: Vec<Option<usize>> = vec![None; graph.values.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last_wave[v] = last_wave[v].max(Some(level[i]));
        }
    }
    for (id, _) in &graph.outputs {
        last_wave[*id] = None;
    }

    let mut env: Vec<Option<Tensor>> = (0..graph.values.len()).map(|_| None).collect();
    for (id, t) in feeds {
        env[id] = Some(t);
    }
    for (w, wave) in waves.iter().enumerate() {
        let results: Vec<Result<Vec<Tensor>>> = {
            let env = &env;
            let run = |&i: &usize| -> Result<Vec<Tensor>> {
                let node = &graph.nodes[i];
                let inputs = node
                    .inputs
                    .iter()
                    .map(|&id| lookup(graph, env, id))
                    .collect::<Result<Vec<&Tensor>>>()?;
                node.op.eval(&inputs).map_err(|e| wrap(graph, i, e))
            };
            if wave.len() == 1 {
                wave.iter().map(run).collect()
            } else {
                pool.install(|| wave.par_iter().map(run).collect())
            }
        };
        for (&i, r) in wave.iter().zip(results) {
            let node = &graph.nodes[i];
            let r = r?;
            if r.len() < node.outputs.len() {
                return Err(wrap(
                    graph,
                    i,
                    EngineError::InvalidModel(format!(
                        "operator returned {} outputs, node declares {}",
                        r.len(),
                        node.outputs.len()
                    )),
                ));
            }
            for (slot, t) in node.outputs.iter().zip(r) {
                if let Some(id) = *slot {
                    check_fact(graph, id, &t).map_err(|e| wrap(graph, i, e))?;
                    env[id] = Some(t);
                }
            }
        }
        for (id, slot) in env.iter_mut().enumerate() {
            if last_wave[id] == Some(w) && !matches!(graph.values[id].source, ValueSource::Input) {
                *slot = None;
            }
        }
        // A value no node reads (and not an output) is dropped after the wave producing it.
        for &i in wave {
            for &id in graph.nodes[i].outputs.iter().flatten() {
                if last_wave[id].is_none() && !graph.is_output(id) {
                    env[id] = None;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(graph.outputs.len());
    for (k, (id, _)) in graph.outputs.iter().enumerate() {
        let needed_later = graph.outputs[k + 1..].iter().any(|(o, _)| o == id);
        let t = match (&graph.values[*id].source, needed_later) {
            (ValueSource::Initializer(t), _) => (**t).clone(),
            (_, true) => lookup(graph, &env, *id)?.clone(),
            (_, false) => match env[*id].take() {
                Some(t) => t,
                None => lookup(graph, &env, *id)?.clone(),
            },
        };
        out.push(t);
    }
    Ok(out)
}

fn wrap(graph: &Graph, i: usize, e: EngineError) -> EngineError {
    EngineError::Node {
        node: graph.nodes[i].name.clone(),
        op_type: graph.nodes[i].op_type.clone(),
        source: Box::new(e),
    }
}
