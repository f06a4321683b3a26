//! Control flow: `If`, `Loop` and `Scan`, whose bodies are subgraphs.
//!
//! Why here and not in the executor: a control-flow node is an ordinary [`Operator`] to the
//! graph around it. Its subgraphs are built at load by `graph.rs` (with the formal input facts
//! [`subgraph_inputs`] gives, and the outer values they read turned into the node's *implicit
//! inputs*, after the explicit ones), so passes, liveness, the planner and the scheduler need no
//! special case; at run time the operator feeds its subgraph and calls the same executor.
//!
//! Bounds against hostile models: a `Loop` runs at most
//! [`GraphLimits::max_loop_iterations`](crate::graph::GraphLimits) iterations
//! ([`EngineError::IterationLimit`]; a trip count above the bound with no condition input fails
//! before the first iteration), scan outputs are checked against
//! [`MAX_TENSOR_ELEMENTS`](crate::shape::MAX_TENSOR_ELEMENTS) as they grow, and a `Scan` runs
//! once per slice of its (already allocated) inputs.

use std::borrow::Cow;
use std::sync::Arc;

use super::{check_arity, dispatch_all, is_absent, is_absent_tensor, NodeContext, OpRegistry};
use crate::attributes::Attributes;
use crate::error::{EngineError, Result};
use crate::executor::{check_fact, execute_borrowed};
use crate::graph::Subgraph;
use crate::shape::MAX_TENSOR_ELEMENTS;
use crate::tensor::{Element, Tensor};
use crate::types::{Dim, TypeShape};
use crate::{DType, Operator};

/// Registers `If`, `Loop` and `Scan` (every opset version from 1 to 25 is the same operator
/// here; `Scan`-8's batch axis and `sequence_lens` are handled by version).
pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "If", |ctx| Ok(Box::new(If::new(ctx)?)));
    r.register("", "Loop", |ctx| Ok(Box::new(Loop::new(ctx)?)));
    r.register("", "Scan", |ctx| Ok(Box::new(Scan::new(ctx)?)));
}

/// The facts of the formal inputs a standard control-flow operator feeds its subgraph in
/// attribute `attr`, from the node's explicit input facts; `None` when the operator is not one
/// of these (the subgraph's declared input types are used then).
pub(crate) fn subgraph_inputs(
    op_type: &str,
    domain: &str,
    opset: i64,
    attrs: &Attributes,
    attr: &str,
    inputs: &[TypeShape],
) -> Result<Option<Vec<TypeShape>>> {
    if !domain.is_empty() {
        return Ok(None);
    }
    match (op_type, attr) {
        ("If", "then_branch" | "else_branch") => Ok(Some(Vec::new())),
        ("Loop", "body") => {
            let mut facts = vec![
                TypeShape::fixed(DType::I64, &[]),
                TypeShape::fixed(DType::Bool, &[]),
            ];
            // A loop-carried value may change its dims from one iteration to the next: the body
            // is inferred with the rank only.
            facts.extend(
                inputs
                    .get(2..)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| TypeShape::new(f.dtype, vec![Dim::unknown(); f.rank()])),
            );
            Ok(Some(facts))
        }
        ("Scan", "body") => {
            let k = scan_input_count(attrs, inputs.len(), opset)?;
            let opset8 = opset < 9;
            let first_state = usize::from(opset8);
            let states = inputs.len() - first_state - k;
            let mut facts = Vec::with_capacity(states + k);
            for f in &inputs[first_state..first_state + states] {
                facts.push(if opset8 {
                    drop_axes(f, &[0])?
                } else {
                    TypeShape::new(f.dtype, f.shape.clone())
                });
            }
            let axes = scan_axes(attrs, "scan_input_axes", k, opset)?;
            for (j, f) in inputs[first_state + states..].iter().enumerate() {
                facts.push(if opset8 {
                    drop_axes(f, &[0, 1])?
                } else {
                    let axis = crate::shape::normalize_axis("Scan", axes[j], f.rank())?;
                    drop_axes(f, &[axis])?
                });
            }
            Ok(Some(facts))
        }
        _ => Ok(None),
    }
}

/// `f` without the listed (ascending) axes.
fn drop_axes(f: &TypeShape, axes: &[usize]) -> Result<TypeShape> {
    if axes.iter().any(|&a| a >= f.rank()) {
        return Err(EngineError::operand(
            "Scan",
            format!("input of rank {} has no scan axis", f.rank()),
        ));
    }
    let shape = f
        .shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    Ok(TypeShape::new(f.dtype, shape))
}

fn scan_input_count(attrs: &Attributes, inputs: usize, opset: i64) -> Result<usize> {
    let k = attrs.required_int("num_scan_inputs")?;
    let first_state = usize::from(opset < 9);
    match usize::try_from(k) {
        Ok(k) if k >= 1 && k + first_state <= inputs => Ok(k),
        _ => Err(attrs.invalid(
            "num_scan_inputs",
            format!("{k} scan inputs among {inputs} inputs"),
        )),
    }
}

/// A per-scan-input (or -output) axis list (`scan_input_axes`, `scan_output_axes`), zeros by
/// default and always zeros before opset 9.
fn scan_axes(attrs: &Attributes, name: &str, n: usize, opset: i64) -> Result<Vec<i64>> {
    if opset < 9 {
        return Ok(vec![0; n]);
    }
    match attrs.ints(name)? {
        None => Ok(vec![0; n]),
        Some(v) if v.len() == n => Ok(v.to_vec()),
        Some(v) => Err(attrs.invalid(name, format!("{} entries, expected {n}", v.len()))),
    }
}

/// A direction list: `false` forward, `true` reverse.
fn directions(attrs: &Attributes, name: &str, n: usize) -> Result<Vec<bool>> {
    match attrs.ints(name)? {
        None => Ok(vec![false; n]),
        Some(v) if v.len() == n && v.iter().all(|&d| d == 0 || d == 1) => {
            Ok(v.iter().map(|&d| d == 1).collect())
        }
        Some(v) => Err(attrs.invalid(name, format!("{v:?}: expected {n} entries of 0 or 1"))),
    }
}

fn required_graph(ctx: &NodeContext<'_>, name: &str) -> Result<Arc<Subgraph>> {
    ctx.attributes.graph(name)?.cloned().ok_or_else(|| {
        ctx.attributes
            .invalid(name, "required attribute is missing")
    })
}

/// The facts of a subgraph's outputs, as inferred.
fn output_facts(sub: &Subgraph) -> Vec<TypeShape> {
    sub.graph
        .outputs
        .iter()
        .map(|(id, _)| sub.graph.values[*id].fact.clone())
        .collect()
}

/// One fact covering both `a` and `b` (If branches, a loop-carried value before and after):
/// same dtype and rank; dims kept where they agree, unknown where they differ.
fn merge(op: &str, what: &str, a: &TypeShape, b: &TypeShape) -> Result<TypeShape> {
    if a.dtype != b.dtype {
        return Err(EngineError::operand(
            op,
            format!("{what}: element types {} and {} differ", a.dtype, b.dtype),
        ));
    }
    if a.rank() != b.rank() {
        return Err(EngineError::UnsupportedFeature(format!(
            "{op}: {what} has rank {} or {} depending on the data (a rank unknown until run \
             time)",
            a.rank(),
            b.rank()
        )));
    }
    let shape = a
        .shape
        .iter()
        .zip(&b.shape)
        .map(|(x, y)| if x == y { x.clone() } else { Dim::unknown() })
        .collect();
    Ok(TypeShape::new(a.dtype, shape))
}

/// The truth value of a condition tensor (its single element).
fn truth(op: &str, t: &Tensor) -> Result<bool> {
    if t.len() != 1 {
        return Err(EngineError::operand(
            op,
            format!("condition has {} elements, expected 1", t.len()),
        ));
    }
    match t.as_bool() {
        Some(v) => Ok(v[0]),
        None => Err(EngineError::operand(
            op,
            format!("condition is {}, expected bool", t.dtype()),
        )),
    }
}

/// Runs `sub` on its formal inputs (checked against what inference assumed) and the captured
/// outer values (borrowed from the node's implicit inputs, after its `explicit` ones).
fn run_subgraph<'a>(
    op: &str,
    sub: &Subgraph,
    formal: Vec<Cow<'a, Tensor>>,
    inputs: &[&'a Tensor],
    explicit: usize,
) -> Result<Vec<Tensor>> {
    let g = &sub.graph;
    if formal.len() != g.inputs.len() {
        return Err(EngineError::operand(
            op,
            format!(
                "subgraph takes {} inputs, given {}",
                g.inputs.len(),
                formal.len()
            ),
        ));
    }
    let mut feeds = Vec::with_capacity(formal.len() + sub.captures.len());
    for ((id, _), t) in g.inputs.iter().zip(formal) {
        check_fact(g, *id, &t)?;
        feeds.push((*id, t));
    }
    for &(id, k) in &sub.captures {
        let t = inputs.get(explicit + k).ok_or_else(|| {
            EngineError::operand(op, format!("captured value {k} was not supplied"))
        })?;
        feeds.push((id, Cow::Borrowed(*t)));
    }
    let outs = execute_borrowed(g, feeds)?;
    if outs.len() != g.outputs.len() {
        return Err(EngineError::operand(
            op,
            "subgraph returned too few outputs",
        ));
    }
    Ok(outs)
}

/// `x` at `index` along `axis`, with that axis removed.
fn select(x: &Tensor, axis: usize, index: usize) -> Result<Tensor> {
    fn go<T: Element>(x: &Tensor, axis: usize, index: usize) -> Result<Tensor> {
        let shape = x.shape();
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("Scan", "dtype"))?;
        let outer: usize = shape[..axis].iter().product();
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            let s = (o * n + index) * inner;
            out.extend_from_slice(&v[s..s + inner]);
        }
        let mut out_shape = shape.to_vec();
        out_shape.remove(axis);
        Tensor::from_vec(out_shape, out)
    }
    if axis >= x.rank() || index >= x.shape()[axis] {
        return Err(EngineError::operand("Scan", "slice out of range"));
    }
    dispatch_all!(x.dtype(), T => go::<T>(x, axis, index))
}

/// Stacks equally shaped `parts` along a new `axis` (in reverse order when `reverse`). With no
/// parts, an empty tensor of `dtype` whose part shape is `fact`'s (unknown dims as 0).
fn stack(parts: &[Tensor], axis: usize, reverse: bool, fact: &TypeShape) -> Result<Tensor> {
    fn go<T: Element>(parts: &[Tensor], axis: usize, reverse: bool) -> Result<Tensor> {
        let part = parts[0].shape();
        let slices = parts
            .iter()
            .map(|p| {
                p.as_slice::<T>()
                    .ok_or_else(|| EngineError::operand("stack", "dtype"))
            })
            .collect::<Result<Vec<&[T]>>>()?;
        let outer: usize = part[..axis].iter().product();
        let inner: usize = part[axis..].iter().product();
        let n = parts.len();
        let mut out = Vec::with_capacity(outer * inner * n);
        for o in 0..outer {
            for t in 0..n {
                let p = if reverse { n - 1 - t } else { t };
                out.extend_from_slice(&slices[p][o * inner..(o + 1) * inner]);
            }
        }
        let mut shape = part.to_vec();
        shape.insert(axis, n);
        Tensor::from_vec(shape, out)
    }
    fn empty<T: Element>(shape: Vec<usize>) -> Result<Tensor> {
        Tensor::from_vec::<T>(shape, Vec::new())
    }
    match parts.first() {
        Some(first) => {
            if parts
                .iter()
                .any(|p| p.shape() != first.shape() || p.dtype() != first.dtype())
            {
                return Err(EngineError::operand(
                    "stack",
                    "parts differ in shape or element type",
                ));
            }
            if axis > first.rank() {
                return Err(EngineError::operand("stack", "axis out of range"));
            }
            dispatch_all!(first.dtype(), T => go::<T>(parts, axis, reverse))
        }
        None => {
            let mut shape: Vec<usize> = fact.shape.iter().map(|d| d.fixed().unwrap_or(0)).collect();
            if axis > shape.len() {
                return Err(EngineError::operand("stack", "axis out of range"));
            }
            shape.insert(axis, 0);
            dispatch_all!(fact.dtype, T => empty::<T>(shape))
        }
    }
}

/// Collects one scan output per iteration: every part must keep the first part's dtype and
/// shape, and all of them together stay within [`MAX_TENSOR_ELEMENTS`].
#[derive(Default)]
struct Collector {
    parts: Vec<Tensor>,
    elements: usize,
}

impl Collector {
    fn push(&mut self, op: &str, t: Tensor) -> Result<()> {
        if let Some(first) = self.parts.first() {
            if first.shape() != t.shape() || first.dtype() != t.dtype() {
                return Err(EngineError::operand(
                    op,
                    format!(
                        "scan output changes from {} {:?} to {} {:?} between iterations",
                        first.dtype(),
                        first.shape(),
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
        }
        self.elements = self.elements.saturating_add(t.len().max(1));
        if self.elements > MAX_TENSOR_ELEMENTS {
            return Err(EngineError::TensorTooLarge(vec![
                i64::try_from(self.parts.len() + 1).unwrap_or(i64::MAX),
                i64::try_from(t.len()).unwrap_or(i64::MAX),
            ]));
        }
        self.parts.push(t);
        Ok(())
    }
}

/// `If`: runs one of two branches on a boolean condition.
#[derive(Debug)]
struct If {
    then_branch: Arc<Subgraph>,
    else_branch: Arc<Subgraph>,
    explicit: usize,
}

impl If {
    fn new(ctx: &NodeContext<'_>) -> Result<If> {
        check_arity("If", ctx.num_inputs, 1, 1)?;
        let then_branch = required_graph(ctx, "then_branch")?;
        let else_branch = required_graph(ctx, "else_branch")?;
        let (t, e) = (
            then_branch.graph.outputs.len(),
            else_branch.graph.outputs.len(),
        );
        if t != e || ctx.num_outputs > t {
            return Err(EngineError::InvalidModel(format!(
                "If: branches produce {t} and {e} outputs, the node declares {}",
                ctx.num_outputs
            )));
        }
        Ok(If {
            then_branch,
            else_branch,
            explicit: ctx.num_inputs,
        })
    }
}

impl Operator for If {
    fn op_type(&self) -> &str {
        "If"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("If", inputs.len(), self.explicit, usize::MAX)?;
        let cond = &inputs[0];
        if cond.dtype != DType::Bool {
            return Err(EngineError::operand(
                "If",
                format!("condition is {}, expected bool", cond.dtype),
            ));
        }
        // A condition known at load picks its branch's facts (exported functions branch on
        // ranks known at export time; the other branch may not even type-check for this input).
        if let Some(c) = &cond.value {
            let branch = if truth("If", c)? {
                &self.then_branch
            } else {
                &self.else_branch
            };
            return Ok(output_facts(branch));
        }
        output_facts(&self.then_branch)
            .iter()
            .zip(output_facts(&self.else_branch).iter())
            .enumerate()
            .map(|(k, (a, b))| merge("If", &format!("output {k}"), a, b))
            .collect()
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("If", inputs.len(), self.explicit, usize::MAX)?;
        let branch = if truth("If", inputs[0])? {
            &self.then_branch
        } else {
            &self.else_branch
        };
        run_subgraph("If", branch, Vec::new(), inputs, self.explicit)
    }
}

/// `Loop`: a trip count and/or a condition, loop-carried values and per-iteration scan
/// outputs stacked along a new first axis.
#[derive(Debug)]
struct Loop {
    body: Arc<Subgraph>,
    explicit: usize,
    carried: usize,
    scans: usize,
}

impl Loop {
    fn new(ctx: &NodeContext<'_>) -> Result<Loop> {
        // `M` and `cond` are optional; omitted trailing ones are not counted.
        let body = required_graph(ctx, "body")?;
        let carried = ctx.num_inputs.saturating_sub(2);
        let outs = body.graph.outputs.len();
        if body.graph.inputs.len() != 2 + carried || outs < 1 + carried {
            return Err(EngineError::InvalidModel(format!(
                "Loop: body takes {} inputs and returns {outs} outputs, the node carries \
                 {carried} values",
                body.graph.inputs.len()
            )));
        }
        let scans = outs - 1 - carried;
        if ctx.num_outputs > carried + scans {
            return Err(EngineError::InvalidModel(format!(
                "Loop: the node declares {} outputs, the body gives {}",
                ctx.num_outputs,
                carried + scans
            )));
        }
        Ok(Loop {
            body,
            explicit: ctx.num_inputs,
            carried,
            scans,
        })
    }
}

impl Operator for Loop {
    fn op_type(&self) -> &str {
        "Loop"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Loop", inputs.len(), self.explicit, usize::MAX)?;
        let present = |k: usize| (k < self.explicit && !is_absent(&inputs[k])).then(|| &inputs[k]);
        if let Some(m) = present(0) {
            let one = m
                .concrete_shape()
                .is_none_or(|s| s.iter().product::<usize>() == 1);
            if m.dtype != DType::I64 || !one {
                return Err(EngineError::operand(
                    "Loop",
                    format!(
                        "trip count is {} {}, expected one int64",
                        m.dtype,
                        crate::types::format_dims(&m.shape)
                    ),
                ));
            }
        }
        if let Some(cond) = present(1).filter(|c| c.dtype != DType::Bool) {
            return Err(EngineError::operand(
                "Loop",
                format!("condition is {}, expected bool", cond.dtype),
            ));
        }
        let body = output_facts(&self.body);
        if body[0].dtype != DType::Bool {
            return Err(EngineError::operand(
                "Loop",
                format!("body condition output is {}, expected bool", body[0].dtype),
            ));
        }
        let mut out = Vec::with_capacity(self.carried + self.scans);
        for k in 0..self.carried {
            out.push(merge(
                "Loop",
                &format!("loop-carried value {k}"),
                &inputs[2 + k],
                &body[1 + k],
            )?);
        }
        for f in &body[1 + self.carried..] {
            let mut shape = vec![Dim::unknown()];
            shape.extend(f.shape.iter().cloned());
            out.push(TypeShape::new(f.dtype, shape));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Loop", inputs.len(), self.explicit, usize::MAX)?;
        let limit = self.body.limits.max_loop_iterations;
        let present = |k: usize| k < self.explicit && !is_absent_tensor(inputs[k]);
        let trip = if !present(0) {
            None
        } else {
            let v = inputs[0]
                .as_i64()
                .filter(|v| v.len() == 1)
                .ok_or_else(|| EngineError::operand("Loop", "trip count is not one int64"))?;
            Some(v[0])
        };
        let has_cond = present(1);
        let mut cond = if has_cond {
            truth("Loop", inputs[1])?
        } else {
            true
        };
        // A counted loop that will certainly exceed the bound fails before any work.
        if !has_cond && trip.is_some_and(|m| u64::try_from(m).is_ok_and(|m| m > limit)) {
            return Err(EngineError::IterationLimit { limit });
        }
        let mut carried: Vec<Cow<'_, Tensor>> = inputs[2.min(self.explicit)..self.explicit]
            .iter()
            .map(|t| Cow::Borrowed(*t))
            .collect();
        let mut scans: Vec<Collector> = (0..self.scans).map(|_| Collector::default()).collect();
        let mut i: i64 = 0;
        while cond && trip.is_none_or(|m| i < m) {
            if u64::try_from(i).is_ok_and(|i| i >= limit) {
                return Err(EngineError::IterationLimit { limit });
            }
            let mut formal = Vec::with_capacity(2 + self.carried);
            formal.push(Cow::Owned(Tensor::scalar(i)));
            formal.push(Cow::Owned(Tensor::scalar(cond)));
            formal.append(&mut carried);
            let mut outs =
                run_subgraph("Loop", &self.body, formal, inputs, self.explicit)?.into_iter();
            cond = truth(
                "Loop",
                &outs
                    .next()
                    .ok_or_else(|| EngineError::operand("Loop", "no condition output"))?,
            )?;
            carried = outs.by_ref().take(self.carried).map(Cow::Owned).collect();
            for (c, t) in scans.iter_mut().zip(outs) {
                c.push("Loop", t)?;
            }
            i += 1;
        }
        let facts = output_facts(&self.body);
        let mut out: Vec<Tensor> = carried.into_iter().map(Cow::into_owned).collect();
        for (k, c) in scans.iter().enumerate() {
            out.push(stack(&c.parts, 0, false, &facts[1 + self.carried + k])?);
        }
        Ok(out)
    }
}

/// `Scan`: runs its body once per slice of the scan inputs, threading state variables and
/// stacking per-iteration scan outputs; axes and directions per input and output (opset 9+),
/// or the batch axis and `sequence_lens` of opset 8.
#[derive(Debug)]
struct Scan {
    body: Arc<Subgraph>,
    opset8: bool,
    explicit: usize,
    states: usize,
    scan_in: usize,
    scan_out: usize,
    in_axes: Vec<i64>,
    in_reverse: Vec<bool>,
    out_axes: Vec<i64>,
    out_reverse: Vec<bool>,
}

impl Scan {
    fn new(ctx: &NodeContext<'_>) -> Result<Scan> {
        let attrs = ctx.attributes;
        let opset8 = ctx.opset < 9;
        let body = required_graph(ctx, "body")?;
        let scan_in = scan_input_count(attrs, ctx.num_inputs, ctx.opset)?;
        let states = ctx.num_inputs - usize::from(opset8) - scan_in;
        let outs = body.graph.outputs.len();
        if body.graph.inputs.len() != states + scan_in || outs < states {
            return Err(EngineError::InvalidModel(format!(
                "Scan: body takes {} inputs and returns {outs} outputs for {states} state \
                 variables and {scan_in} scan inputs",
                body.graph.inputs.len()
            )));
        }
        let scan_out = outs - states;
        if ctx.num_outputs > outs {
            return Err(EngineError::InvalidModel(format!(
                "Scan: the node declares {} outputs, the body gives {outs}",
                ctx.num_outputs
            )));
        }
        let (in_reverse, out_reverse) = if opset8 {
            (
                directions(attrs, "directions", scan_in)?,
                vec![false; scan_out],
            )
        } else {
            (
                directions(attrs, "scan_input_directions", scan_in)?,
                directions(attrs, "scan_output_directions", scan_out)?,
            )
        };
        Ok(Scan {
            in_axes: scan_axes(attrs, "scan_input_axes", scan_in, ctx.opset)?,
            out_axes: scan_axes(attrs, "scan_output_axes", scan_out, ctx.opset)?,
            body,
            opset8,
            explicit: ctx.num_inputs,
            states,
            scan_in,
            scan_out,
            in_reverse,
            out_reverse,
        })
    }

    fn first_state(&self) -> usize {
        usize::from(self.opset8)
    }

    /// An output axis, normalised against the rank of the stacked output.
    fn out_axis(&self, k: usize, part_rank: usize) -> Result<usize> {
        crate::shape::normalize_axis("Scan", self.out_axes[k], part_rank + 1)
    }

    /// One scan over `states` and `scans` (no batch axis); returns final states and stacked
    /// scan outputs.
    fn scan_once<'a>(
        &self,
        states: Vec<Cow<'a, Tensor>>,
        scans: &[Cow<'a, Tensor>],
        axes: &[usize],
        inputs: &[&'a Tensor],
    ) -> Result<Vec<Tensor>> {
        let len = match (scans.first(), axes.first()) {
            (Some(s), Some(&a)) => s.shape()[a],
            _ => 0,
        };
        for (s, &a) in scans.iter().zip(axes) {
            if s.shape()[a] != len {
                return Err(EngineError::operand(
                    "Scan",
                    format!(
                        "scan inputs have different lengths {len} and {}",
                        s.shape()[a]
                    ),
                ));
            }
        }
        let mut states = states;
        let mut collected: Vec<Collector> =
            (0..self.scan_out).map(|_| Collector::default()).collect();
        for t in 0..len {
            let mut formal = std::mem::take(&mut states);
            for (j, (s, &a)) in scans.iter().zip(axes).enumerate() {
                let index = if self.in_reverse[j] { len - 1 - t } else { t };
                formal.push(Cow::Owned(select(s, a, index)?));
            }
            let mut outs =
                run_subgraph("Scan", &self.body, formal, inputs, self.explicit)?.into_iter();
            states = outs.by_ref().take(self.states).map(Cow::Owned).collect();
            for (c, o) in collected.iter_mut().zip(outs) {
                c.push("Scan", o)?;
            }
        }
        let facts = output_facts(&self.body);
        let mut out: Vec<Tensor> = states.into_iter().map(Cow::into_owned).collect();
        for (k, c) in collected.iter().enumerate() {
            let fact = &facts[self.states + k];
            let axis = if self.opset8 {
                0
            } else {
                self.out_axis(k, fact.rank())?
            };
            out.push(stack(&c.parts, axis, self.out_reverse[k], fact)?);
        }
        Ok(out)
    }
}

impl Operator for Scan {
    fn op_type(&self) -> &str {
        "Scan"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Scan", inputs.len(), self.explicit, usize::MAX)?;
        let fs = self.first_state();
        let state_in = &inputs[fs..fs + self.states];
        let scan_ins = &inputs[fs + self.states..self.explicit];
        let body = output_facts(&self.body);
        // The sequence length (and, at opset 8, the batch size) from the first scan input.
        let first = &scan_ins[0];
        let (batch, len) = if self.opset8 {
            if first.rank() < 2 {
                return Err(EngineError::operand(
                    "Scan",
                    "scan input lacks batch and sequence axes",
                ));
            }
            (Some(first.shape[0].clone()), first.shape[1].clone())
        } else {
            let a = crate::shape::normalize_axis("Scan", self.in_axes[0], first.rank())?;
            (None, first.shape[a].clone())
        };
        let mut out = Vec::with_capacity(self.states + self.scan_out);
        for (k, (init, after)) in state_in.iter().zip(&body).enumerate() {
            let mut after = after.clone();
            if let Some(b) = &batch {
                after.shape.insert(0, b.clone());
            }
            out.push(merge("Scan", &format!("state {k}"), init, &after)?);
        }
        for (k, f) in body[self.states..].iter().enumerate() {
            let mut shape = f.shape.clone();
            match &batch {
                Some(b) => {
                    shape.insert(0, len.clone());
                    shape.insert(0, b.clone());
                }
                None => shape.insert(self.out_axis(k, f.rank())?, len.clone()),
            }
            out.push(TypeShape::new(f.dtype, shape));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Scan", inputs.len(), self.explicit, usize::MAX)?;
        let fs = self.first_state();
        let state_in = &inputs[fs..fs + self.states];
        let scan_ins = &inputs[fs + self.states..self.explicit];
        if !self.opset8 {
            let axes = scan_ins
                .iter()
                .zip(&self.in_axes)
                .map(|(s, &a)| crate::shape::normalize_axis("Scan", a, s.rank()))
                .collect::<Result<Vec<_>>>()?;
            let states = state_in.iter().map(|t| Cow::Borrowed(*t)).collect();
            let scans: Vec<Cow<'_, Tensor>> = scan_ins.iter().map(|t| Cow::Borrowed(*t)).collect();
            return self.scan_once(states, &scans, &axes, inputs);
        }
        // Opset 8: a leading batch axis on every state and scan input; each batch entry is an
        // independent scan over axis 1.
        let batch = scan_ins[0].shape().first().copied().unwrap_or(0);
        let len = scan_ins[0].shape().get(1).copied().unwrap_or(0);
        if state_in
            .iter()
            .chain(scan_ins)
            .any(|t| t.shape().first() != Some(&batch))
            || scan_ins.iter().any(|t| t.rank() < 2)
        {
            return Err(EngineError::operand(
                "Scan",
                "inputs disagree on the batch size or lack the sequence axis",
            ));
        }
        if !is_absent_tensor(inputs[0]) {
            let lens = super::tensor_ops::int_list("Scan", inputs[0])?;
            if lens.len() != batch || lens.iter().any(|&l| usize::try_from(l) != Ok(len)) {
                return Err(EngineError::UnsupportedFeature(
                    "Scan: sequence_lens shorter than the sequence axis".into(),
                ));
            }
        }
        let axes = vec![0; self.scan_in];
        let mut per_batch: Vec<Vec<Tensor>> = Vec::with_capacity(batch);
        for b in 0..batch {
            let states = state_in
                .iter()
                .map(|t| select(t, 0, b).map(Cow::Owned))
                .collect::<Result<Vec<_>>>()?;
            let scans = scan_ins
                .iter()
                .map(|t| select(t, 0, b).map(Cow::Owned))
                .collect::<Result<Vec<_>>>()?;
            per_batch.push(self.scan_once(states, &scans, &axes, inputs)?);
        }
        let facts = output_facts(&self.body);
        (0..self.states + self.scan_out)
            .map(|k| {
                let parts: Vec<Tensor> = per_batch
                    .iter_mut()
                    .map(|o| std::mem::replace(&mut o[k], Tensor::scalar(0i64)))
                    .collect();
                let mut fact = facts[k].clone();
                if k >= self.states {
                    fact.shape.insert(0, Dim::Fixed(0));
                }
                stack(&parts, 0, false, &fact)
            })
            .collect()
    }
}
