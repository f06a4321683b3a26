//! The graph IR: values, nodes (each holding its constructed operator) and initializers, in
//! topological order, with the static facts inference derived for every value.
//!
//! Why an IR separate from the protobuf: it is what optimisation passes, the memory planner and
//! the executor work on. Building it is where an untrusted model is validated: every value is
//! defined exactly once, every use is defined, there are no cycles, every operator exists, and
//! shape/type inference succeeds. A `Graph` that exists has passed all of these.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::attributes::Attributes;
use crate::error::{EngineError, Result};
use crate::onnx::proto::GraphProto;
use crate::onnx::{
    attributes_from_proto, complete_value_info, tensor_from_proto, value_info_from_proto,
};
use crate::ops::{normalize_domain, NodeContext, OpRegistry, Operator};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape, ValueInfo};

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// Where a value comes from.
#[derive(Debug, Clone)]
pub enum ValueSource {
    /// Supplied by the caller at run time.
    Input,
    /// A weight stored in the model.
    Initializer(Arc<Tensor>),
    /// Produced by the node at this index (in topological order).
    Node(usize),
}

/// A named value (an SSA edge).
#[derive(Debug, Clone)]
pub struct Value {
    /// The ONNX name.
    pub name: String,
    /// Its origin.
    pub source: ValueSource,
    /// What inference established about it.
    pub fact: TypeShape,
}

/// One operator application.
#[derive(Debug)]
pub struct Node {
    /// The node's name (or `#index` when unnamed).
    pub name: String,
    /// The ONNX `op_type` (for a node made by a fusion pass, a description such as
    /// `Conv+Relu`).
    pub op_type: String,
    /// The operator domain, normalised (`""` for `ai.onnx`).
    pub domain: String,
    /// The opset version imported for the domain.
    pub opset: i64,
    /// The node's attributes, as parsed at load (passes read them, e.g. an epsilon).
    pub attributes: Attributes,
    /// The constructed operator.
    pub op: Box<dyn Operator>,
    /// Input values, in order.
    pub inputs: Vec<ValueId>,
    /// Output values; `None` for outputs the node omits (empty name).
    pub outputs: Vec<Option<ValueId>>,
}

/// A validated, topologically ordered graph.
#[derive(Debug)]
pub struct Graph {
    /// All values.
    pub values: Vec<Value>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Caller-supplied inputs (excluding initializers), in declaration order.
    pub inputs: Vec<(ValueId, ValueInfo)>,
    /// Graph outputs, in declaration order.
    pub outputs: Vec<(ValueId, ValueInfo)>,
    /// For each value, the index of the last node that reads it, after which the executor may
    /// drop it; `None` for values that must survive the whole run (graph outputs, initializers).
    pub free_after: Vec<Option<usize>>,
}

/// A node before its operator is built.
struct PendingNode {
    name: String,
    op_type: String,
    domain: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    proto_index: usize,
}

impl Graph {
    /// Builds and validates the IR from a decoded `GraphProto`. `opsets` maps a normalised
    /// domain to the imported opset version.
    pub fn from_proto(
        g: &GraphProto,
        opsets: &HashMap<String, i64>,
        registry: &OpRegistry,
    ) -> Result<Graph> {
        if !g.sparse_initializer.is_empty() {
            return Err(EngineError::UnsupportedFeature(
                "sparse initializers".into(),
            ));
        }
        let mut values: Vec<Value> = Vec::new();
        let mut ids: HashMap<String, ValueId> = HashMap::new();
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(EngineError::InvalidModel(
                    "initializer without a name".into(),
                ));
            }
            let tensor = Arc::new(tensor_from_proto(t)?);
            let fact = TypeShape::of_constant(tensor.clone());
            define(
                &mut values,
                &mut ids,
                &name,
                ValueSource::Initializer(tensor),
                fact,
            )?;
        }

        let init_names: std::collections::HashSet<String> = g
            .initializer
            .iter()
            .filter_map(|t| t.name.clone())
            .collect();
        let mut inputs = Vec::new();
        for vi in &g.input {
            if vi.name.as_ref().is_some_and(|n| init_names.contains(n)) {
                continue; // An initializer listed as an input (IR < 4): a constant, not an input.
            }
            let info = complete_value_info(vi)?;
            let fact = TypeShape::new(info.dtype, info.shape.clone());
            let id = define(&mut values, &mut ids, &info.name, ValueSource::Input, fact)?;
            inputs.push((id, info));
        }

        // Collect nodes; define their outputs with placeholder facts filled in by inference.
        let mut pending = Vec::with_capacity(g.node.len());
        let mut producer: HashMap<String, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            let name = n
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(format!("#{i}"));
            let op_type = n.op_type.clone().unwrap_or_default();
            if op_type.is_empty() {
                return Err(EngineError::InvalidModel(format!(
                    "node {name:?} has no op_type"
                )));
            }
            let mut node_inputs = n.input.clone();
            while node_inputs.last().is_some_and(String::is_empty) {
                node_inputs.pop();
            }
            if node_inputs.iter().any(String::is_empty) && !ids.contains_key("") {
                // An optional input omitted before a present one reads the shared "absent"
                // value: an empty `[0]` tensor (see `ops::is_absent`).
                let t = Arc::new(Tensor::from_f32(vec![0], Vec::new())?);
                let fact = TypeShape::of_constant(t.clone());
                define(&mut values, &mut ids, "", ValueSource::Initializer(t), fact)?;
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if producer.insert(o.clone(), i).is_some() {
                    return Err(EngineError::InvalidModel(format!(
                        "value {o:?} is produced by more than one node"
                    )));
                }
            }
            pending.push(PendingNode {
                name,
                op_type,
                domain: normalize_domain(n.domain.as_deref().unwrap_or("")).to_string(),
                inputs: node_inputs,
                outputs: n.output.clone(),
                proto_index: i,
            });
        }

        let order = topo_order(&pending, &producer, &ids)?;

        let mut nodes = Vec::with_capacity(pending.len());
        for (pos, &pi) in order.iter().enumerate() {
            let p = &pending[pi];
            let wrap = |e: EngineError| EngineError::Node {
                node: p.name.clone(),
                op_type: p.op_type.clone(),
                source: Box::new(e),
            };
            let input_ids: Vec<ValueId> = p
                .inputs
                .iter()
                .map(|n| ids.get(n).copied())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    EngineError::InvalidModel(format!("node {:?} reads an undefined value", p.name))
                })?;
            let attributes = attributes_from_proto(&p.name, &g.node[p.proto_index].attribute)?;
            let opset = match opsets.get(&p.domain) {
                Some(v) => *v,
                None if p.domain.is_empty() => {
                    return Err(EngineError::InvalidModel(
                        "model imports no opset for the default domain".into(),
                    ))
                }
                None => 1,
            };
            let ctx = NodeContext {
                name: &p.name,
                op_type: &p.op_type,
                domain: &p.domain,
                opset,
                attributes: &attributes,
                num_inputs: p.inputs.len(),
                num_outputs: p.outputs.len(),
            };
            let op = registry.build(&ctx).map_err(|e| match e {
                e @ EngineError::UnsupportedOp { .. } => e,
                e => wrap(e),
            })?;
            let in_facts: Vec<TypeShape> =
                input_ids.iter().map(|&i| values[i].fact.clone()).collect();
            let mut out_facts = op.infer(&in_facts).map_err(wrap)?;
            fold_constants(op.as_ref(), &in_facts, &mut out_facts).map_err(wrap)?;
            if out_facts.len() < p.outputs.iter().filter(|o| !o.is_empty()).count()
                || out_facts.len() < p.outputs.len()
            {
                return Err(wrap(EngineError::InvalidModel(format!(
                    "node declares {} outputs but the operator produces {}",
                    p.outputs.len(),
                    out_facts.len()
                ))));
            }
            let mut out_ids = Vec::with_capacity(p.outputs.len());
            for (o, fact) in p.outputs.iter().zip(out_facts) {
                if o.is_empty() {
                    out_ids.push(None);
                } else {
                    out_ids.push(Some(define(
                        &mut values,
                        &mut ids,
                        o,
                        ValueSource::Node(pos),
                        fact,
                    )?));
                }
            }
            nodes.push(Node {
                name: p.name.clone(),
                op_type: p.op_type.clone(),
                domain: p.domain.clone(),
                opset,
                attributes,
                op,
                inputs: input_ids,
                outputs: out_ids,
            });
        }

        let mut outputs = Vec::with_capacity(g.output.len());
        for vi in &g.output {
            let (name, dtype, shape) = value_info_from_proto(vi)?;
            let id = *ids.get(&name).ok_or_else(|| {
                EngineError::InvalidModel(format!("graph output {name:?} is never produced"))
            })?;
            let fact = &values[id].fact;
            if let Some(d) = dtype {
                if d != fact.dtype {
                    return Err(EngineError::InvalidModel(format!(
                        "graph output {name:?} is declared {d} but computes {}",
                        fact.dtype
                    )));
                }
            }
            let shape = match shape {
                Some(s) => {
                    check_compatible(&name, &s, &fact.shape)?;
                    s
                }
                None => fact.shape.clone(),
            };
            outputs.push((
                id,
                ValueInfo {
                    name,
                    dtype: fact.dtype,
                    shape,
                },
            ));
        }
        if outputs.is_empty() {
            return Err(EngineError::InvalidModel("graph has no outputs".into()));
        }

        let free_after = liveness(&values, &nodes, &outputs);
        Ok(Graph {
            values,
            nodes,
            inputs,
            outputs,
            free_after,
        })
    }

    /// The value ids that some node or a graph output reads, counted (a graph output counts
    /// once per listing).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0usize; self.values.len()];
        for n in &self.nodes {
            for &v in &n.inputs {
                uses[v] += 1;
            }
        }
        for (v, _) in &self.outputs {
            uses[*v] += 1;
        }
        uses
    }

    /// Whether `id` is a graph output.
    pub fn is_output(&self, id: ValueId) -> bool {
        self.outputs.iter().any(|(o, _)| *o == id)
    }

    /// The constant behind a value, if it is an initializer.
    pub fn constant(&self, id: ValueId) -> Option<&Arc<Tensor>> {
        match &self.values[id].source {
            ValueSource::Initializer(t) => Some(t),
            _ => None,
        }
    }

    /// Replaces the node list after a pass (still in topological order), re-pointing every
    /// produced value at its producer's new index and recomputing liveness. Values no node
    /// produces any more (and that are not inputs or initializers) are left unreferenced.
    pub fn set_nodes(&mut self, nodes: Vec<Node>) {
        for v in &mut self.values {
            if matches!(v.source, ValueSource::Node(_)) {
                v.source = ValueSource::Node(usize::MAX);
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            for &o in n.outputs.iter().flatten() {
                self.values[o].source = ValueSource::Node(i);
            }
        }
        self.nodes = nodes;
        self.free_after = liveness(&self.values, &self.nodes, &self.outputs);
    }
}

/// Largest input, and largest output, (in elements) that load-time constant folding evaluates.
const FOLD_LIMIT: usize = 1 << 16;

/// Load-time constant propagation for inference: when every input of a node is a known
/// constant (small enough), evaluates the node once and records the exact output values and
/// shapes, so shape-computing subgraphs (`Shape` → `Gather` → `Concat` → `Reshape`) infer exact
/// shapes downstream. The node still runs at request time; folding it away is a later pass.
fn fold_constants(op: &dyn Operator, ins: &[TypeShape], outs: &mut [TypeShape]) -> Result<()> {
    if ins.is_empty()
        || ins
            .iter()
            .any(|f| f.value.as_ref().is_none_or(|v| v.len() > FOLD_LIMIT))
    {
        return Ok(());
    }
    // Only outputs whose inferred size is known and small: a model must not make the loader
    // allocate (`ConstantOfShape` of a huge constant shape, `Range` to 2^31) before any request.
    let small = |f: &TypeShape| {
        f.shape
            .iter()
            .try_fold(1usize, |n, d| d.fixed().and_then(|d| n.checked_mul(d)))
            .is_some_and(|n| n <= FOLD_LIMIT)
    };
    if !outs.iter().all(small) {
        return Ok(());
    }
    let tensors: Vec<&Tensor> = ins.iter().filter_map(|f| f.value.as_deref()).collect();
    // An evaluation error here is reported again, with context, when the node runs.
    let Ok(results) = op.eval(&tensors) else {
        return Ok(());
    };
    for (fact, t) in outs.iter_mut().zip(results) {
        if t.dtype() != fact.dtype || t.rank() != fact.rank() {
            return Err(EngineError::InvalidModel(format!(
                "operator {} evaluates to {} {:?} but infers {} {}",
                op.op_type(),
                t.dtype(),
                t.shape(),
                fact.dtype,
                crate::types::format_dims(&fact.shape)
            )));
        }
        *fact = TypeShape::of_constant(Arc::new(t));
    }
    Ok(())
}

/// Adds a value; every name may be defined once (SSA).
fn define(
    values: &mut Vec<Value>,
    ids: &mut HashMap<String, ValueId>,
    name: &str,
    source: ValueSource,
    fact: TypeShape,
) -> Result<ValueId> {
    if ids.contains_key(name) {
        return Err(EngineError::InvalidModel(format!(
            "value {name:?} is defined more than once"
        )));
    }
    values.push(Value {
        name: name.to_string(),
        source,
        fact,
    });
    ids.insert(name.to_string(), values.len() - 1);
    Ok(values.len() - 1)
}

/// Kahn's algorithm over node indices; stable (keeps file order among ready nodes).
fn topo_order(
    pending: &[PendingNode],
    producer: &HashMap<String, usize>,
    defined: &HashMap<String, ValueId>,
) -> Result<Vec<usize>> {
    let mut indegree = vec![0usize; pending.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); pending.len()];
    for (i, p) in pending.iter().enumerate() {
        for name in &p.inputs {
            if let Some(&src) = producer.get(name) {
                if defined.contains_key(name) {
                    return Err(EngineError::InvalidModel(format!(
                        "value {name:?} is both a graph input/initializer and a node output"
                    )));
                }
                indegree[i] += 1;
                consumers[src].push(i);
            } else if !defined.contains_key(name) {
                return Err(EngineError::InvalidModel(format!(
                    "node {:?} reads undefined value {name:?}",
                    p.name
                )));
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..pending.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(pending.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &consumers[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    if order.len() != pending.len() {
        // Every node left with a positive in-degree waits on the cycle (or on a node behind
        // it); name a few so the model's author can find it.
        let stuck: Vec<&str> = (0..pending.len())
            .filter(|&i| indegree[i] > 0)
            .map(|i| pending[i].name.as_str())
            .collect();
        let shown = stuck
            .iter()
            .take(8)
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>();
        return Err(EngineError::InvalidModel(format!(
            "graph has a cycle through nodes {}{}",
            shown.join(", "),
            if stuck.len() > 8 { ", ..." } else { "" }
        )));
    }
    Ok(order)
}

/// Declared output shapes must not contradict inferred ones where both are fixed.
fn check_compatible(name: &str, declared: &[Dim], inferred: &[Dim]) -> Result<()> {
    let clash = declared.len() != inferred.len()
        || declared
            .iter()
            .zip(inferred)
            .any(|(a, b)| matches!((a, b), (Dim::Fixed(x), Dim::Fixed(y)) if x != y));
    if clash {
        return Err(EngineError::InvalidModel(format!(
            "graph output {name:?} is declared {} but computes {}",
            crate::types::format_dims(declared),
            crate::types::format_dims(inferred)
        )));
    }
    Ok(())
}

/// For each value, the last node index that reads it (or its producer, if nothing reads it).
fn liveness(
    values: &[Value],
    nodes: &[Node],
    outputs: &[(ValueId, ValueInfo)],
) -> Vec<Option<usize>> {
    let mut free_after: Vec<Option<usize>> = values
        .iter()
        .map(|v| match v.source {
            ValueSource::Node(i) => Some(i),
            _ => None,
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        for &v in &n.inputs {
            if !matches!(values[v].source, ValueSource::Initializer(_)) {
                free_after[v] = Some(i);
            }
        }
    }
    // INVARIANT: graph outputs are never freed before the run returns.
    for (id, _) in outputs {
        free_after[*id] = None;
    }
    free_after
}
