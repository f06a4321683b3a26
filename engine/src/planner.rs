//! The memory planner: places every intermediate value of a run in one temporary arena, by
//! liveness, so values whose lifetimes do not overlap share bytes; and reports the model's
//! memory in the seed's three arenas.
//!
//! Why separate from the executor: placement is a pure function of the schedule (which node
//! produces and last reads each value) and the sizes, so it can be tested on its own and reused
//! by an executor that allocates from the arena. Today's executor still gives each kernel its
//! own buffer and frees it after the last reader, so its measured peak (live bytes) is what the
//! plan would achieve without fragmentation; [`MemoryReport`] shows both.
//!
//! Algorithm: greedy by size (largest first), each value at the lowest offset where it overlaps
//! no already-placed value that is live at the same time. Offsets are aligned to 64 bytes.

use crate::graph::{Graph, ValueSource};

/// Alignment of every placement, in bytes (a cache line; what SIMD kernels want).
pub const ALIGN: usize = 64;

/// Where each value lives in the temporary arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Byte offset per value id; `None` for initializers, inputs and values never produced.
    pub offsets: Vec<Option<usize>>,
    /// Size of the arena the plan needs.
    pub arena_bytes: usize,
}

/// One run's memory, in the seed's arenas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReport {
    /// Permanent arena: the weights (initializers, including folded constants).
    pub permanent_bytes: usize,
    /// The caller's inputs.
    pub input_bytes: usize,
    /// Temporary arena as planned by liveness ([`plan`]).
    pub planned_temporary_bytes: usize,
    /// Every intermediate and output value added up (what a planner-less executor that never
    /// frees would need).
    pub unshared_temporary_bytes: usize,
    /// Largest sum of simultaneously live intermediates the executor actually held.
    pub peak_live_bytes: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The interval of node indices during which each produced value must exist:
/// `[producer, last reader]` (graph outputs: to the end).
fn lifetimes(graph: &Graph) -> Vec<Option<(usize, usize)>> {
    let end = graph.nodes.len();
    graph
        .values
        .iter()
        .enumerate()
        .map(|(id, v)| match v.source {
            ValueSource::Node(p) if p < end => {
                Some((p, graph.free_after[id].unwrap_or(end).max(p)))
            }
            _ => None,
        })
        .collect()
}

/// Places the values produced by nodes, given each value's size in bytes (`sizes[id]`; values
/// without a size, or of size 0, take no space).
pub fn plan(graph: &Graph, sizes: &[usize]) -> ArenaPlan {
    let life = lifetimes(graph);
    let mut order: Vec<usize> = (0..graph.values.len())
        .filter(|&v| life[v].is_some() && sizes.get(v).copied().unwrap_or(0) > 0)
        .collect();
    order.sort_by_key(|&v| (std::cmp::Reverse(sizes[v]), v));
    let mut offsets = vec![None; graph.values.len()];
    // Placed blocks: (offset, size, first, last).
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut arena = 0;
    for v in order {
        let (first, last) = life[v].unwrap_or((0, 0));
        let size = align(sizes[v]);
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, f, l)| f <= last && first <= l)
            .map(|&(o, s, _, _)| (o, s))
            .collect();
        conflicts.sort_unstable();
        let mut at = 0;
        for (o, s) in conflicts {
            if at + size <= o {
                break;
            }
            at = at.max(o + s);
        }
        placed.push((at, size, first, last));
        offsets[v] = Some(at);
        arena = arena.max(at + size);
    }
    ArenaPlan {
        offsets,
        arena_bytes: arena,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::decode_model;
    use crate::onnx::proto::{
        tensor_shape_proto::{dimension, Dimension},
        type_proto, GraphProto, ModelProto, NodeProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use crate::OpRegistry;
    use prost::Message;
    use std::collections::HashMap;

    fn vi(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto {
                        dim: vec![Dimension {
                            value: Some(dimension::Value::DimValue(16)),
                            denotation: None,
                        }],
                    }),
                })),
                denotation: None,
            }),
            doc_string: None,
        }
    }

    fn chain(ops: &[(&str, &[&str], &str)]) -> Graph {
        let node = |(op, ins, out): &(&str, &[&str], &str)| NodeProto {
            op_type: Some(op.to_string()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: Some(out.to_string()),
            ..Default::default()
        };
        let bytes = ModelProto {
            graph: Some(GraphProto {
                node: ops.iter().map(node).collect(),
                input: vec![vi("x")],
                output: vec![vi(ops.last().unwrap().2)],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let m = decode_model(&bytes).unwrap();
        let opsets = HashMap::from([(String::new(), 17)]);
        Graph::from_proto(m.graph.as_ref().unwrap(), &opsets, &OpRegistry::standard()).unwrap()
    }

    #[test]
    fn a_chain_needs_two_buffers_not_one_per_value() {
        // x -> a -> b -> c -> y: at most two intermediates are live at once.
        let g = chain(&[
            ("Relu", &["x"], "a"),
            ("Neg", &["a"], "b"),
            ("Abs", &["b"], "c"),
            ("Sigmoid", &["c"], "y"),
        ]);
        let sizes = vec![64; g.values.len()];
        let p = plan(&g, &sizes);
        assert_eq!(p.arena_bytes, 128);
        // Neighbours never share; a and c may.
        let off = |n: &str| p.offsets[g.values.iter().position(|v| v.name == n).unwrap()];
        assert_ne!(off("a"), off("b"));
        assert_ne!(off("b"), off("c"));
        assert_eq!(off("x"), None, "inputs are the caller's");
    }

    #[test]
    fn values_live_together_never_overlap() {
        // a is read again by the last node, so it overlaps every other intermediate.
        let g = chain(&[
            ("Relu", &["x"], "a"),
            ("Neg", &["a"], "b"),
            ("Abs", &["b"], "c"),
            ("Add", &["a", "c"], "y"),
        ]);
        let sizes: Vec<usize> = (0..g.values.len()).map(|i| 64 * (i + 1)).collect();
        let p = plan(&g, &sizes);
        let life = lifetimes(&g);
        for i in 0..g.values.len() {
            for j in i + 1..g.values.len() {
                if let (Some(oi), Some(oj), Some((fi, li)), Some((fj, lj))) =
                    (p.offsets[i], p.offsets[j], life[i], life[j])
                {
                    if fi <= lj && fj <= li {
                        let (si, sj) = (align(sizes[i]), align(sizes[j]));
                        assert!(oi + si <= oj || oj + sj <= oi, "{i} and {j} overlap");
                    }
                }
            }
        }
        let total: usize = (0..g.values.len())
            .filter(|&v| life[v].is_some())
            .map(|v| sizes[v])
            .sum();
        assert!(p.arena_bytes < total, "{} < {total}", p.arena_bytes);
    }
}
