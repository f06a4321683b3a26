//! The executor: runs a [`Graph`]'s nodes in topological order over a value table.
//!
//! Why minimal: one sequential pass, dropping each intermediate right after its last reader so
//! peak memory tracks the live set rather than the whole graph. Arena planning, parallelism and
//! batching will replace this loop without changing the [`Graph`] contract.

use std::borrow::Cow;

use crate::error::{EngineError, Result};
use crate::graph::{Graph, ValueId, ValueSource};
use crate::tensor::Tensor;

/// What a profiled run measured: each value's size and the peak of live intermediates.
#[derive(Debug, Default)]
pub(crate) struct Profile {
    /// Bytes of each value produced by a node (0 for the others).
    pub sizes: Vec<usize>,
    /// Bytes of the caller's inputs.
    pub input_bytes: usize,
    /// Largest sum of node-produced values held at once.
    pub peak_live: usize,
    live: usize,
}

/// Bytes a tensor's elements occupy.
pub(crate) fn tensor_bytes(t: &Tensor) -> usize {
    t.len() * t.dtype().size_of().max(1)
}

/// Evaluates `graph` given tensors for its inputs (already validated against the declared
/// inputs); returns the graph outputs in declaration order. With `profile`, also records the
/// size of every value and the peak of live intermediates.
pub(crate) fn execute(
    graph: &Graph,
    feeds: Vec<(ValueId, Tensor)>,
    profile: Option<&mut Profile>,
) -> Result<Vec<Tensor>> {
    let feeds = feeds
        .into_iter()
        .map(|(id, t)| (id, Cow::Owned(t)))
        .collect();
    run(graph, feeds, profile)
}

/// Evaluates a subgraph: like [`execute`], but feeds may be borrowed (the outer values a
/// subgraph captures, the scan slices it is handed), so a `Loop` body reading a large outer
/// tensor does not copy it per iteration.
pub(crate) fn execute_borrowed(
    graph: &Graph,
    feeds: Vec<(ValueId, Cow<'_, Tensor>)>,
) -> Result<Vec<Tensor>> {
    run(graph, feeds, None)
}

fn run(
    graph: &Graph,
    feeds: Vec<(ValueId, Cow<'_, Tensor>)>,
    mut profile: Option<&mut Profile>,
) -> Result<Vec<Tensor>> {
    let mut env: Vec<Option<Cow<'_, Tensor>>> = (0..graph.values.len()).map(|_| None).collect();
    if let Some(p) = profile.as_deref_mut() {
        p.sizes = vec![0; graph.values.len()];
    }
    for (id, t) in feeds {
        if let Some(p) = profile.as_deref_mut() {
            p.input_bytes += tensor_bytes(&t);
        }
        env[id] = Some(t);
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let wrap = |e: EngineError| EngineError::Node {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            source: Box::new(e),
        };
        let results = {
            let inputs = node
                .inputs
                .iter()
                .map(|&id| lookup_cow(graph, &env, id))
                .collect::<Result<Vec<&Tensor>>>()?;
            node.op.eval(&inputs).map_err(wrap)?
        };
        if results.len() < node.outputs.len() {
            return Err(wrap(EngineError::InvalidModel(format!(
                "operator returned {} outputs, node declares {}",
                results.len(),
                node.outputs.len()
            ))));
        }
        for (slot, t) in node.outputs.iter().zip(results) {
            if let Some(id) = *slot {
                check_fact(graph, id, &t).map_err(wrap)?;
                if let Some(p) = profile.as_deref_mut() {
                    p.sizes[id] = tensor_bytes(&t);
                    p.live += p.sizes[id];
                    p.peak_live = p.peak_live.max(p.live);
                }
                env[id] = Some(Cow::Owned(t));
            }
        }
        for &id in node.inputs.iter().chain(node.outputs.iter().flatten()) {
            if graph.free_after[id] == Some(i) {
                if let (Some(p), ValueSource::Node(_)) =
                    (profile.as_deref_mut(), &graph.values[id].source)
                {
                    p.live -= p.sizes[id];
                }
                env[id] = None;
            }
        }
    }
    let mut out = Vec::with_capacity(graph.outputs.len());
    for (k, (id, _)) in graph.outputs.iter().enumerate() {
        let needed_later = graph.outputs[k + 1..].iter().any(|(o, _)| o == id);
        let t = match (&graph.values[*id].source, needed_later) {
            (ValueSource::Initializer(t), _) => (**t).clone(),
            (_, true) => lookup_cow(graph, &env, *id)?.clone(),
            (_, false) => env[*id]
                .take()
                .ok_or_else(|| missing(graph, *id))?
                .into_owned(),
        };
        out.push(t);
    }
    Ok(out)
}

pub(crate) fn lookup<'a>(
    graph: &'a Graph,
    env: &'a [Option<Tensor>],
    id: ValueId,
) -> Result<&'a Tensor> {
    match &graph.values[id].source {
        ValueSource::Initializer(t) => Ok(t),
        _ => env[id].as_ref().ok_or_else(|| missing(graph, id)),
    }
}

fn lookup_cow<'a>(
    graph: &'a Graph,
    env: &'a [Option<Cow<'_, Tensor>>],
    id: ValueId,
) -> Result<&'a Tensor> {
    match &graph.values[id].source {
        ValueSource::Initializer(t) => Ok(t),
        _ => env[id].as_deref().ok_or_else(|| missing(graph, id)),
    }
}

fn missing(graph: &Graph, id: ValueId) -> EngineError {
    EngineError::InvalidModel(format!(
        "value {:?} read before it was produced or after it was freed",
        graph.values[id].name
    ))
}

/// INVARIANT: evaluation agrees with inference — same dtype, rank and every fixed dim.
pub(crate) fn check_fact(graph: &Graph, id: ValueId, t: &Tensor) -> Result<()> {
    let fact = &graph.values[id].fact;
    let ok = fact.dtype == t.dtype()
        && fact.rank() == t.rank()
        && fact
            .shape
            .iter()
            .zip(t.shape())
            .all(|(d, &n)| d.fixed().is_none_or(|f| f == n));
    if !ok {
        return Err(EngineError::InvalidModel(format!(
            "value {:?}: operator produced {} {:?}, inference said {} {}",
            graph.values[id].name,
            t.dtype(),
            t.shape(),
            fact.dtype,
            crate::types::format_dims(&fact.shape)
        )));
    }
    Ok(())
}
