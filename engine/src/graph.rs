//! The graph IR: values, nodes (each holding its constructed operator) and initializers, in
//! topological order, with the static facts inference derived for every value.
//!
//! Why an IR separate from the protobuf: it is what optimisation passes, the memory planner and
//! the executor work on. Building it is where an untrusted model is validated: every value is
//! defined exactly once, every use is defined, there are no cycles, every operator exists, and
//! shape/type inference succeeds. A `Graph` that exists has passed all of these.
//!
//! Subgraphs (the `GRAPH` attributes of `If`, `Loop`, `Scan`) are built here too, recursively,
//! each into a [`Subgraph`] held by its node's attributes. A subgraph may read values of the
//! graphs around it; those reads are resolved at load (a name no enclosing graph defines is
//! [`EngineError::UndefinedOuterValue`], naming the node) and become *implicit inputs* of the
//! control node in the enclosing graph, after its explicit ones. So the enclosing graph's
//! passes, planner, liveness and scheduler see every outer value a subgraph reads as an ordinary
//! input of that node: dead-code elimination keeps its producer, liveness keeps it alive until
//! the node ran, the scheduler orders it before. Nesting is bounded by [`MAX_SUBGRAPH_DEPTH`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::attributes::{AttrValue, Attributes};
use crate::error::{EngineError, Result};
use crate::onnx::proto::{GraphProto, NodeProto};
use crate::onnx::{
    attribute_graphs, attributes_from_proto, complete_value_info, tensor_from_proto,
    value_info_from_proto,
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

/// Deepest nesting of subgraphs a model may use (the main graph is level 0, the body of one
/// of its `Loop`s level 1, ...). Deeper nesting is [`EngineError::SubgraphTooDeep`]. Real
/// exporters nest a few levels; the bound keeps the recursive build (and the protobuf decoder,
/// which itself stops at 100 nested messages, about 33 graph levels) well inside the stack.
pub const MAX_SUBGRAPH_DEPTH: usize = 16;

/// Default bound on the iterations one `Loop` node may run per evaluation
/// ([`GraphLimits::max_loop_iterations`]).
pub const DEFAULT_MAX_LOOP_ITERATIONS: u64 = 1 << 20;

/// Limits a graph is built under; control-flow operators read them from their [`Subgraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphLimits {
    /// Most iterations one `Loop` evaluation may run; one more is
    /// [`EngineError::IterationLimit`] (a trip count above it with no condition input fails
    /// before the first iteration). Bounds time and the memory of scan outputs against a
    /// hostile model (`M = 2^63 - 1`, a condition that never turns false).
    pub max_loop_iterations: u64,
}

impl Default for GraphLimits {
    fn default() -> Self {
        GraphLimits {
            max_loop_iterations: DEFAULT_MAX_LOOP_ITERATIONS,
        }
    }
}

/// A nested graph (a branch of `If`, the body of `Loop` or `Scan`), built and validated with
/// its enclosing scope. Its [`Graph::inputs`] are the formal inputs the operator feeds; the
/// outer values it reads are `captures`.
#[derive(Debug)]
pub struct Subgraph {
    /// The graph.
    pub graph: Graph,
    /// Outer values the subgraph reads (that are not outer constants, which it holds as its own
    /// initializers): `(its value id, index among the node's implicit inputs)`. The node's
    /// implicit inputs follow its explicit ones, so the tensor for a capture is
    /// `inputs[num_explicit + index]`.
    pub captures: Vec<(ValueId, usize)>,
    /// The limits the model was loaded under.
    pub limits: GraphLimits,
}

impl PartialEq for Subgraph {
    /// Identity: two subgraphs are equal when they are the same object.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// What an enclosing graph tells a subgraph about one of the outer names it reads.
#[derive(Debug, Clone)]
struct OuterValue {
    fact: TypeShape,
    constant: Option<Arc<Tensor>>,
}

/// A node before its operator is built.
struct PendingNode {
    name: String,
    op_type: String,
    domain: String,
    /// Explicit inputs, then implicit ones (outer names its subgraphs read).
    inputs: Vec<String>,
    /// How many of `inputs` are explicit.
    explicit: usize,
    outputs: Vec<String>,
    proto_index: usize,
}

/// Shared state of one model's (recursive) build.
struct Builder<'a> {
    opsets: &'a HashMap<String, i64>,
    registry: &'a OpRegistry,
    limits: GraphLimits,
}

impl Graph {
    /// Builds and validates the IR from a decoded `GraphProto`. `opsets` maps a normalised
    /// domain to the imported opset version.
    pub fn from_proto(
        g: &GraphProto,
        opsets: &HashMap<String, i64>,
        registry: &OpRegistry,
    ) -> Result<Graph> {
        Graph::from_proto_with(g, opsets, registry, GraphLimits::default())
    }

    /// Like [`Graph::from_proto`], under explicit [`GraphLimits`].
    pub fn from_proto_with(
        g: &GraphProto,
        opsets: &HashMap<String, i64>,
        registry: &OpRegistry,
        limits: GraphLimits,
    ) -> Result<Graph> {
        // Depth and outer names first, on the protobuf: the recursive build below then never
        // goes deeper than the bound, and a missing name is reported at the node that reads it.
        check_scopes(g, &HashSet::new(), 0)?;
        let builder = Builder {
            opsets,
            registry,
            limits,
        };
        match builder.build(g, None, &HashMap::new()) {
            Ok((graph, _)) => Ok(graph),
            Err(e) if undecidable_at_load(&e) => {
                Specialize::graph(g, opsets, registry, limits)?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }
}

/// A graph with `outputs` outputs that nothing produces: the stand-in for an `If` branch that
/// cannot be taken (running it would be a typed "read before it was produced" error).
fn unreachable_graph(outputs: usize) -> Graph {
    let values: Vec<Value> = (0..outputs)
        .map(|k| Value {
            name: format!("(unreachable branch output {k})"),
            source: ValueSource::Input,
            fact: TypeShape::fixed(crate::DType::F32, &[]),
        })
        .collect();
    let outputs: Vec<(ValueId, ValueInfo)> = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            (
                k,
                ValueInfo {
                    name: v.name.clone(),
                    dtype: v.fact.dtype,
                    shape: Vec::new(),
                },
            )
        })
        .collect();
    let free_after = liveness(&values, &[], &outputs);
    Graph {
        values,
        nodes: Vec::new(),
        inputs: Vec::new(),
        outputs,
        free_after,
    }
}

/// Whether a build failed only because a node's inference cannot decide a type statically (a
/// rank that depends on input *values*: `Squeeze` without axes on dims that come from data, an
/// `If` whose branches differ in rank on a condition computed from inputs).
fn undecidable_at_load(e: &EngineError) -> bool {
    matches!(e, EngineError::Node { .. }) && matches!(e.root(), EngineError::UnsupportedFeature(_))
}

/// A model whose graph cannot be typed at load, run by specialising it to each request: the
/// graph is rebuilt (validated and inferred as at load) with the request's exact input shapes,
/// and the values of small integer and boolean inputs (the `size` of an exported `AffineGrid`, a
/// shape tensor, a flag), so every rank is known, then executed. Loading still checks the structure, the
/// operators and the declared inputs and outputs; each run pays one graph build.
#[derive(Debug)]
struct Specialize {
    proto: GraphProto,
    opsets: HashMap<String, i64>,
    registry: OpRegistry,
    limits: GraphLimits,
}

/// Integer and boolean inputs up to this many elements are specialised on their values.
const SPECIALIZE_VALUE_LIMIT: usize = 64;

impl Specialize {
    /// The one-node graph that specialises `g` per run; `None` when `g` does not declare the
    /// dtype and shape of every output (there would be nothing to check runs against).
    fn graph(
        g: &GraphProto,
        opsets: &HashMap<String, i64>,
        registry: &OpRegistry,
        limits: GraphLimits,
    ) -> Result<Option<Graph>> {
        // Every operator must exist: a missing one is reported at load, as always.
        let mut missing = None;
        for_each_node(g, &mut |n| {
            let domain = normalize_domain(n.domain.as_deref().unwrap_or(""));
            let op = n.op_type.as_deref().unwrap_or("");
            if missing.is_none() && !registry.contains(domain, op) {
                missing = Some(EngineError::UnsupportedOp {
                    op_type: op.to_string(),
                    domain: domain.to_string(),
                    node: n.name.clone().unwrap_or_default(),
                });
            }
        });
        if let Some(e) = missing {
            return Err(e);
        }
        // Sequences, maps and optionals are outside the value model whatever the shapes.
        if !all_dense(g) {
            return Ok(None);
        }
        let inits: HashSet<&str> = g
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        if g.input
            .iter()
            .any(|v| v.name.as_deref().is_some_and(|n| inits.contains(n)))
        {
            return Ok(None);
        }
        let mut values = Vec::new();
        let mut inputs = Vec::new();
        for vi in &g.input {
            let info = complete_value_info(vi)?;
            values.push(Value {
                name: info.name.clone(),
                source: ValueSource::Input,
                fact: TypeShape::new(info.dtype, info.shape.clone()),
            });
            inputs.push((values.len() - 1, info));
        }
        let mut outputs = Vec::new();
        for vi in &g.output {
            let (name, dtype, shape) = value_info_from_proto(vi)?;
            let (Some(dtype), Some(shape)) = (dtype, shape) else {
                return Ok(None);
            };
            if values.iter().any(|v| v.name == name) {
                return Ok(None);
            }
            values.push(Value {
                name: name.clone(),
                source: ValueSource::Node(0),
                fact: TypeShape::new(dtype, shape.clone()),
            });
            outputs.push((values.len() - 1, ValueInfo { name, dtype, shape }));
        }
        let name = g.name.clone().unwrap_or_default();
        let node = Node {
            name: name.clone(),
            op_type: "(specialised per run)".to_string(),
            domain: String::new(),
            opset: opsets.get("").copied().unwrap_or(1),
            attributes: Attributes::new(name),
            op: Box::new(Specialize {
                proto: g.clone(),
                opsets: opsets.clone(),
                registry: registry.clone(),
                limits,
            }),
            inputs: inputs.iter().map(|(id, _)| *id).collect(),
            outputs: outputs.iter().map(|(id, _)| Some(*id)).collect(),
        };
        let nodes = vec![node];
        let free_after = liveness(&values, &nodes, &outputs);
        Ok(Some(Graph {
            values,
            nodes,
            inputs,
            outputs,
            free_after,
        }))
    }
}

impl Operator for Specialize {
    fn op_type(&self) -> &str {
        "(specialised per run)"
    }

    fn infer(&self, _inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        self.proto
            .output
            .iter()
            .map(|vi| {
                let (_, dtype, shape) = value_info_from_proto(vi)?;
                match (dtype, shape) {
                    (Some(d), Some(s)) => Ok(TypeShape::new(d, s)),
                    _ => Err(EngineError::InvalidModel("undeclared output".into())),
                }
            })
            .collect()
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let facts: Vec<TypeShape> = inputs
            .iter()
            .map(|t| {
                let small_int = matches!(
                    t.dtype(),
                    crate::DType::I64 | crate::DType::I32 | crate::DType::Bool
                ) && (1..=SPECIALIZE_VALUE_LIMIT).contains(&t.len());
                if small_int {
                    TypeShape::of_constant(Arc::new((*t).clone()))
                } else {
                    TypeShape::fixed(t.dtype(), t.shape())
                }
            })
            .collect();
        let builder = Builder {
            opsets: &self.opsets,
            registry: &self.registry,
            limits: self.limits,
        };
        let (graph, _) = builder.build(&self.proto, Some(&facts), &HashMap::new())?;
        let feeds = graph
            .inputs
            .iter()
            .zip(inputs)
            .map(|((id, _), t)| (*id, std::borrow::Cow::Borrowed(*t)))
            .collect();
        crate::executor::execute_borrowed(&graph, feeds)
    }
}

/// Whether every input and output declared by `g` and its nested subgraphs is a dense tensor
/// (or untyped).
fn all_dense(g: &GraphProto) -> bool {
    let dense = g
        .input
        .iter()
        .chain(&g.output)
        .all(|v| value_info_from_proto(v).is_ok());
    dense
        && g.node.iter().all(|n| {
            n.attribute.iter().all(|a| {
                attribute_graphs(a)
                    .map(|(v, _)| v)
                    .unwrap_or_default()
                    .into_iter()
                    .all(all_dense)
            })
        })
}

/// Calls `f` on every node of `g` and of the subgraphs nested in it (depth already bounded).
fn for_each_node<'a>(g: &'a GraphProto, f: &mut impl FnMut(&'a NodeProto)) {
    for n in &g.node {
        f(n);
        for a in &n.attribute {
            for sub in attribute_graphs(a).map(|(v, _)| v).unwrap_or_default() {
                for_each_node(sub, f);
            }
        }
    }
}

impl Builder<'_> {
    /// Builds one graph. `formal`: the facts of the inputs an operator feeds a subgraph (`None`
    /// for the main graph, whose declared inputs are used); `outer`: the outer names the graph
    /// reads. Returns the graph and its captures `(value id, name)`.
    fn build(
        &self,
        g: &GraphProto,
        formal: Option<&[TypeShape]>,
        outer: &HashMap<String, OuterValue>,
    ) -> Result<(Graph, Vec<(ValueId, String)>)> {
        let (opsets, registry) = (self.opsets, self.registry);
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
        match formal {
            None => {
                for vi in &g.input {
                    if vi.name.as_ref().is_some_and(|n| init_names.contains(n)) {
                        continue; // An initializer listed as an input (IR < 4): a constant.
                    }
                    let info = complete_value_info(vi)?;
                    let fact = TypeShape::new(info.dtype, info.shape.clone());
                    let id = define(&mut values, &mut ids, &info.name, ValueSource::Input, fact)?;
                    inputs.push((id, info));
                }
            }
            Some(facts) => {
                // The operator says what it feeds; a declaration may omit types (function
                // bodies do) but must not contradict the element type.
                if g.input.len() != facts.len() {
                    return Err(EngineError::InvalidModel(format!(
                        "subgraph declares {} inputs, the operator feeds {}",
                        g.input.len(),
                        facts.len()
                    )));
                }
                for (vi, fact) in g.input.iter().zip(facts) {
                    let (name, dtype, _) = value_info_from_proto(vi)?;
                    if dtype.is_some_and(|d| d != fact.dtype) {
                        return Err(EngineError::InvalidModel(format!(
                            "subgraph input {name:?} is declared {} but is fed {}",
                            dtype.map_or("?", |d| d.name()),
                            fact.dtype
                        )));
                    }
                    let fact = fact.clone();
                    let info = ValueInfo {
                        name: name.clone(),
                        dtype: fact.dtype,
                        shape: fact.shape.clone(),
                    };
                    let id = define(&mut values, &mut ids, &name, ValueSource::Input, fact)?;
                    inputs.push((id, info));
                }
            }
        }

        // Outer names this graph (or a graph nested in it) reads: outer constants become this
        // graph's own initializers (shared, not copied); other values are fed at run time.
        let mut captures = Vec::new();
        // (The main graph has no outer scope: its undefined reads are reported below, naming
        // the node.)
        let free = if formal.is_some() || !outer.is_empty() {
            free_names(g)
        } else {
            Vec::new()
        };
        for name in free {
            let Some(o) = outer.get(&name) else {
                return Err(EngineError::UndefinedOuterValue {
                    node: g.name.clone().unwrap_or_default(),
                    name,
                });
            };
            match &o.constant {
                Some(t) => {
                    let fact = TypeShape::of_constant(t.clone());
                    define(
                        &mut values,
                        &mut ids,
                        &name,
                        ValueSource::Initializer(t.clone()),
                        fact,
                    )?;
                }
                None => {
                    let id = define(
                        &mut values,
                        &mut ids,
                        &name,
                        ValueSource::Input,
                        o.fact.clone(),
                    )?;
                    captures.push((id, name));
                }
            }
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
            let explicit = node_inputs.len();
            node_inputs.extend(implicit_inputs(n));
            pending.push(PendingNode {
                name,
                op_type,
                domain: normalize_domain(n.domain.as_deref().unwrap_or("")).to_string(),
                inputs: node_inputs,
                explicit,
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
            let proto_node = &g.node[p.proto_index];
            let mut attributes = attributes_from_proto(&p.name, &proto_node.attribute)?;
            let opset = match opsets.get(&p.domain) {
                Some(v) => *v,
                None if p.domain.is_empty() => {
                    return Err(EngineError::InvalidModel(
                        "model imports no opset for the default domain".into(),
                    ))
                }
                None => 1,
            };
            let in_facts: Vec<TypeShape> =
                input_ids.iter().map(|&i| values[i].fact.clone()).collect();
            let pass_unsupported = |e| match e {
                e @ EngineError::UnsupportedOp { .. } => e,
                e => wrap(e),
            };
            self.build_subgraphs(
                p,
                proto_node,
                opset,
                &mut attributes,
                &in_facts,
                &input_ids,
                &values,
            )
            .map_err(pass_unsupported)?;
            let ctx = NodeContext {
                name: &p.name,
                op_type: &p.op_type,
                domain: &p.domain,
                opset,
                attributes: &attributes,
                num_inputs: p.explicit,
                num_outputs: p.outputs.len(),
            };
            let op = registry.build(&ctx).map_err(pass_unsupported)?;
            let mut out_facts = op.infer(&in_facts).map_err(wrap)?;
            // Control flow is never evaluated at load: a `Loop` may run long.
            if !attributes.has_subgraphs() {
                fold_constants(op.as_ref(), &in_facts, &mut out_facts).map_err(wrap)?;
            }
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
        let graph = Graph {
            values,
            nodes,
            inputs,
            outputs,
            free_after,
        };
        Ok((graph, captures))
    }

    /// Builds the subgraphs in `proto_node`'s `GRAPH`/`GRAPHS` attributes into `attributes`.
    /// `in_facts`/`input_ids`: the node's inputs, explicit then implicit.
    #[allow(clippy::too_many_arguments)]
    fn build_subgraphs(
        &self,
        p: &PendingNode,
        proto_node: &NodeProto,
        opset: i64,
        attributes: &mut Attributes,
        in_facts: &[TypeShape],
        input_ids: &[ValueId],
        values: &[Value],
    ) -> Result<()> {
        let implicit = &p.inputs[p.explicit..];
        // An `If` whose condition is known here runs only one branch; the other need not even
        // type-check for these inputs (exported functions branch on ranks), so a failure to
        // build it leaves a stub that is never run.
        let untaken = if p.domain.is_empty() && p.op_type == "If" {
            in_facts
                .first()
                .and_then(|f| f.value.as_ref())
                .and_then(|v| v.as_bool().and_then(|b| b.first().copied()))
                .map(|c| if c { "else_branch" } else { "then_branch" })
        } else {
            None
        };
        for a in &proto_node.attribute {
            let Some((graphs, many)) = attribute_graphs(a) else {
                continue;
            };
            let attr = a.name.clone().unwrap_or_default();
            let mut built = Vec::with_capacity(graphs.len());
            for sub in graphs {
                let formal = if many {
                    None
                } else {
                    crate::ops::control::subgraph_inputs(
                        &p.op_type,
                        &p.domain,
                        opset,
                        attributes,
                        &attr,
                        &in_facts[..p.explicit],
                    )?
                };
                // Everything the subgraph reads from outside is among the node's implicit
                // inputs (see `implicit_inputs`), so its facts are at hand.
                let mut outer = HashMap::new();
                for (k, name) in implicit.iter().enumerate() {
                    let id = input_ids[p.explicit + k];
                    let constant = match &values[id].source {
                        ValueSource::Initializer(t) => Some(t.clone()),
                        _ => None,
                    };
                    outer.insert(
                        name.clone(),
                        OuterValue {
                            fact: in_facts[p.explicit + k].clone(),
                            constant,
                        },
                    );
                }
                let (graph, caps) = match self.build(sub, formal.as_deref(), &outer) {
                    Ok(built) => built,
                    Err(_) if untaken == Some(attr.as_str()) => {
                        (unreachable_graph(sub.output.len()), Vec::new())
                    }
                    Err(e) => return Err(e),
                };
                let captures = caps
                    .into_iter()
                    .map(|(id, name)| {
                        let k = implicit.iter().position(|n| *n == name).ok_or_else(|| {
                            EngineError::UndefinedOuterValue {
                                node: p.name.clone(),
                                name,
                            }
                        })?;
                        Ok((id, k))
                    })
                    .collect::<Result<Vec<_>>>()?;
                built.push(Arc::new(Subgraph {
                    graph,
                    captures,
                    limits: self.limits,
                }));
            }
            let value = if many {
                AttrValue::Graphs(built)
            } else {
                AttrValue::Graph(built.pop().ok_or_else(|| {
                    EngineError::InvalidModel(format!("graph attribute {attr:?} holds no graph"))
                })?)
            };
            attributes.insert(attr, value)?;
        }
        Ok(())
    }
}

impl Graph {
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

/// The names a graph reads without defining them (from node inputs, nested subgraphs and its
/// outputs), in order of first use. Recursion is bounded by [`check_scopes`], which runs first.
fn free_names(g: &GraphProto) -> Vec<String> {
    let defined = defined_names(g);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut read = |name: &str| {
        if !name.is_empty() && !defined.contains(name) && seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for n in &g.node {
        for i in &n.input {
            read(i);
        }
        for name in implicit_inputs(n) {
            read(&name);
        }
    }
    for o in &g.output {
        read(o.name.as_deref().unwrap_or(""));
    }
    out
}

/// The outer names a node's subgraphs read: the node's implicit inputs, in order of first use.
fn implicit_inputs(n: &NodeProto) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in &n.attribute {
        for sub in attribute_graphs(a).map(|(g, _)| g).unwrap_or_default() {
            for name in free_names(sub) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Names a graph defines itself: initializers, inputs, node outputs.
fn defined_names(g: &GraphProto) -> HashSet<&str> {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(g.initializer.iter().filter_map(|t| t.name.as_deref()));
    defined.extend(g.input.iter().filter_map(|v| v.name.as_deref()));
    for n in &g.node {
        defined.extend(
            n.output
                .iter()
                .map(String::as_str)
                .filter(|o| !o.is_empty()),
        );
    }
    defined
}

/// Checks, on the protobuf, that subgraphs nest at most [`MAX_SUBGRAPH_DEPTH`] levels and that
/// every name a subgraph reads is defined in it or in an enclosing graph (`outer`). `depth` is
/// `g`'s level (0 for the main graph, whose own undefined reads the graph build reports).
fn check_scopes(g: &GraphProto, outer: &HashSet<&str>, depth: usize) -> Result<()> {
    let mut visible = outer.clone();
    visible.extend(defined_names(g));
    for (i, n) in g.node.iter().enumerate() {
        let node_name = || {
            n.name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(format!("#{i}"))
        };
        if depth > 0 {
            if let Some(name) = n
                .input
                .iter()
                .find(|x| !x.is_empty() && !visible.contains(x.as_str()))
            {
                return Err(EngineError::UndefinedOuterValue {
                    node: node_name(),
                    name: name.clone(),
                });
            }
        }
        for a in &n.attribute {
            let Some((subs, _)) = attribute_graphs(a) else {
                continue;
            };
            if depth + 1 > MAX_SUBGRAPH_DEPTH {
                return Err(EngineError::SubgraphTooDeep {
                    node: node_name(),
                    limit: MAX_SUBGRAPH_DEPTH,
                });
            }
            for sub in subs {
                check_scopes(sub, &visible, depth + 1)?;
                let inner = {
                    let mut v = visible.clone();
                    v.extend(defined_names(sub));
                    v
                };
                if let Some(o) = sub
                    .output
                    .iter()
                    .filter_map(|o| o.name.as_deref())
                    .find(|o| !inner.contains(o))
                {
                    return Err(EngineError::UndefinedOuterValue {
                        node: node_name(),
                        name: o.to_string(),
                    });
                }
            }
        }
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
