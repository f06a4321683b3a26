//! Reading the float model out of an ONNX graph: the compiler accepts only a *chain* of dense
//! layers, because that is what the integer program can express exactly (clear weights times
//! encrypted inputs, then one bootstrap table per neuron).
//!
//! The model is loaded with `cloister-engine`'s loader (the same bounded protobuf parser and
//! graph validation the service uses), with optimisation passes off so that nodes are seen as
//! written. Accepted, in order:
//!
//! * before the first layer: `Identity`, `Flatten` (axis 1), and `Add`/`Sub`/`Mul`/`Div` with a
//!   constant (a scaler: folded into the first layer's weights);
//! * layers: `Gemm` (`transA = 0`, any `transB`, `alpha`, `beta`) or `MatMul` with a constant
//!   right operand, optionally followed by `Add` of a constant bias;
//! * `Relu` after every layer but the last;
//! * at the end, ignored: `Sigmoid`, `Softmax` or `LogSoftmax` over the classes. They are
//!   monotone, so the class (argmax, or `logit > 0` for a single sigmoid output) is the same
//!   before and after them; the program's scores are the logits.
//!
//! Anything else is [`CompileError::Unsupported`] naming the node.

use std::collections::HashMap;

use cloister_engine::graph::{Graph, ValueId};
use cloister_engine::{Model, Tensor};

use super::error::CompileError;

/// One dense layer in float: `z = W x + b`, then ReLU if `relu`.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatLayer {
    /// `[outputs][inputs]`.
    pub weights: Vec<Vec<f64>>,
    pub biases: Vec<f64>,
    pub relu: bool,
}

/// The float model the compiler quantizes.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// Raw input features.
    pub features: usize,
    /// Per-feature affine map applied before the first layer (`a · x + c`, a folded scaler).
    pub input_scale: Vec<f64>,
    pub input_shift: Vec<f64>,
    pub layers: Vec<FloatLayer>,
    /// The ignored monotone head (`Sigmoid`, `Softmax`, `LogSoftmax`), if any.
    pub head: Option<String>,
}

impl FloatModel {
    /// Number of scores (logits).
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.biases.len())
    }

    /// Float pre-activations of every layer for one raw row (`[layer][neuron]`).
    pub fn pre_activations(&self, row: &[f64]) -> Vec<Vec<f64>> {
        let mut x: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(i, &v)| self.input_scale[i] * v + self.input_shift[i])
            .collect();
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let z: Vec<f64> = layer
                .weights
                .iter()
                .zip(&layer.biases)
                .map(|(w, &b)| b + w.iter().zip(&x).map(|(w, v)| w * v).sum::<f64>())
                .collect();
            x = if layer.relu {
                z.iter().map(|v| v.max(0.0)).collect()
            } else {
                z.clone()
            };
            out.push(z);
        }
        out
    }
}

/// Where the chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first layer: scalers, Flatten, Identity.
    Input,
    /// Right after a layer: a bias Add, Relu or the head may follow.
    Linear,
    /// After a Relu: the next layer must follow.
    Activated,
    /// After the head: nothing may follow.
    Head,
}

/// Extract the float chain from a loaded model.
pub fn extract(model: &Model) -> Result<FloatModel, CompileError> {
    let graph = model.graph();
    if graph.inputs.len() != 1 {
        return Err(CompileError::Structure(format!(
            "the model has {} inputs; one feature vector is supported",
            graph.inputs.len()
        )));
    }
    let constants = constant_nodes(graph)?;
    let constant = |id: ValueId| -> Option<&Tensor> {
        graph
            .constant(id)
            .map(|t| t.as_ref())
            .or_else(|| constants.get(&id).copied())
    };

    let mut cur = graph.inputs[0].0;
    let mut stage = Stage::Input;
    let mut scale: Vec<f64> = vec![1.0];
    let mut shift: Vec<f64> = vec![0.0];
    let mut layers: Vec<FloatLayer> = Vec::new();
    let mut head = None;

    for (index, node) in graph.nodes.iter().enumerate() {
        let name = if node.name.is_empty() {
            format!("#{index}")
        } else {
            node.name.clone()
        };
        let op = node.op_type.as_str();
        let unsupported = |reason: &str| CompileError::Unsupported {
            node: name.clone(),
            op: op.to_string(),
            reason: reason.to_string(),
        };
        if op == "Constant" {
            continue;
        }
        if !node.domain.is_empty() {
            return Err(unsupported("operators outside the default ONNX domain"));
        }
        // Exactly one operand is the running value; the others must be constants.
        let data: Vec<usize> = node
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, &v)| constant(v).is_none())
            .map(|(i, _)| i)
            .collect();
        if data.len() != 1 || node.inputs[data[0]] != cur {
            return Err(unsupported(
                "its operands are not the chain's running value plus constants (branches are \
                 not supported)",
            ));
        }
        let pos = data[0];
        let out = match node.outputs.first().copied().flatten() {
            Some(o) => o,
            None => return Err(unsupported("it has no output")),
        };
        if stage == Stage::Head {
            return Err(unsupported("nothing may follow the final Sigmoid/Softmax"));
        }
        let attr = |e: cloister_engine::EngineError| unsupported(&e.to_string());
        let other = |i: usize| -> Result<&Tensor, CompileError> {
            node.inputs
                .get(i)
                .and_then(|&v| constant(v))
                .ok_or_else(|| unsupported("a constant operand is missing"))
        };
        match op {
            "Identity" if stage == Stage::Input => {}
            "Flatten" if stage == Stage::Input => {
                let axis = node.attributes.int_or("axis", 1).map_err(attr)?;
                if axis != 1 {
                    return Err(unsupported("only Flatten with axis = 1"));
                }
            }
            "Add" | "Sub" | "Mul" | "Div" if stage == Stage::Input => {
                let c = floats(other(1 - pos)?).ok_or_else(|| unsupported("non-float constant"))?;
                let c = feature_vector(other(1 - pos)?, &c)
                    .ok_or_else(|| unsupported("the constant is not one value per feature"))?;
                let (a, b) = (scale.clone(), shift.clone());
                let n = a.len().max(b.len()).max(c.len());
                let at = |v: &Vec<f64>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
                if [a.len(), b.len(), c.len()]
                    .iter()
                    .any(|&l| l != 1 && l != n)
                {
                    return Err(unsupported("per-feature constants of different lengths"));
                }
                let mut na = Vec::with_capacity(n);
                let mut nb = Vec::with_capacity(n);
                for i in 0..n {
                    let (ai, bi, ci) = (at(&a, i), at(&b, i), at(&c, i));
                    let (x, y) = match (op, pos) {
                        ("Add", _) => (ai, bi + ci),
                        ("Sub", 0) => (ai, bi - ci),
                        ("Sub", _) => (-ai, ci - bi),
                        ("Mul", _) => (ai * ci, bi * ci),
                        ("Div", 0) if ci != 0.0 => (ai / ci, bi / ci),
                        ("Div", 0) => return Err(unsupported("division by zero")),
                        _ => return Err(unsupported("only division of the input by a constant")),
                    };
                    na.push(x);
                    nb.push(y);
                }
                scale = na;
                shift = nb;
            }
            "Gemm" | "MatMul" if matches!(stage, Stage::Input | Stage::Activated) => {
                if pos != 0 {
                    return Err(unsupported("the input must be the left operand"));
                }
                let b = other(1)?;
                let bv = floats(b).ok_or_else(|| unsupported("non-float weights"))?;
                if b.rank() != 2 {
                    return Err(unsupported("weights must be a matrix"));
                }
                let (r, c) = (b.shape()[0], b.shape()[1]);
                let (trans_b, alpha, beta) = if op == "Gemm" {
                    if node.attributes.int_or("transA", 0).map_err(attr)? != 0 {
                        return Err(unsupported("transA = 1"));
                    }
                    (
                        node.attributes.int_or("transB", 0).map_err(attr)? != 0,
                        f64::from(node.attributes.float_or("alpha", 1.0).map_err(attr)?),
                        f64::from(node.attributes.float_or("beta", 1.0).map_err(attr)?),
                    )
                } else {
                    (false, 1.0, 1.0)
                };
                let (outs, ins) = if trans_b { (r, c) } else { (c, r) };
                let weights: Vec<Vec<f64>> = (0..outs)
                    .map(|j| {
                        (0..ins)
                            .map(|i| {
                                alpha
                                    * if trans_b {
                                        bv[j * c + i]
                                    } else {
                                        bv[i * c + j]
                                    }
                            })
                            .collect()
                    })
                    .collect();
                let mut biases = vec![0.0; outs];
                if op == "Gemm" && node.inputs.len() > 2 {
                    let t = other(2)?;
                    let cv = floats(t).ok_or_else(|| unsupported("non-float bias"))?;
                    let cv = feature_vector(t, &cv)
                        .filter(|v| v.len() == 1 || v.len() == outs)
                        .ok_or_else(|| unsupported("the bias is not one value per output"))?;
                    for (j, bj) in biases.iter_mut().enumerate() {
                        *bj = beta * if cv.len() == 1 { cv[0] } else { cv[j] };
                    }
                }
                let expected = layers.last().map_or(0, |l: &FloatLayer| l.biases.len());
                if !layers.is_empty() && ins != expected {
                    return Err(unsupported(&format!(
                        "it takes {ins} inputs but the previous layer has {expected} outputs"
                    )));
                }
                if layers.is_empty()
                    && [scale.len(), shift.len()]
                        .iter()
                        .any(|&l| l != 1 && l != ins)
                {
                    return Err(unsupported(
                        "the input scaler's length does not match the layer's inputs",
                    ));
                }
                layers.push(FloatLayer {
                    weights,
                    biases,
                    relu: false,
                });
                stage = Stage::Linear;
            }
            "Gemm" | "MatMul" => {
                return Err(unsupported(
                    "two layers without a Relu between them (fold them into one)",
                ))
            }
            "Add" if stage == Stage::Linear => {
                let layer = layers.last_mut().expect("stage Linear has a layer");
                let t = other(1 - pos)?;
                let cv = floats(t).ok_or_else(|| unsupported("non-float bias"))?;
                let n = layer.biases.len();
                let cv = feature_vector(t, &cv)
                    .filter(|v| v.len() == 1 || v.len() == n)
                    .ok_or_else(|| unsupported("the bias is not one value per output"))?;
                for (j, bj) in layer.biases.iter_mut().enumerate() {
                    *bj += if cv.len() == 1 { cv[0] } else { cv[j] };
                }
            }
            "Relu" if stage == Stage::Linear => {
                layers.last_mut().expect("stage Linear has a layer").relu = true;
                stage = Stage::Activated;
            }
            "Sigmoid" | "Softmax" | "LogSoftmax" if stage == Stage::Linear => {
                if op != "Sigmoid" {
                    let axis = node.attributes.int_or("axis", -1).map_err(attr)?;
                    if axis != -1 && axis != 1 {
                        return Err(unsupported("only over the class axis (axis = 1 or -1)"));
                    }
                }
                head = Some(op.to_string());
                stage = Stage::Head;
            }
            _ => {
                return Err(unsupported(match stage {
                    Stage::Input => "not supported before the first layer",
                    Stage::Linear => "not supported after a layer",
                    Stage::Activated => "not supported after a Relu",
                    Stage::Head => "nothing may follow the final Sigmoid/Softmax",
                }))
            }
        }
        cur = out;
    }

    if !graph.is_output(cur) {
        return Err(CompileError::Structure(
            "the chain's last value is not a graph output".into(),
        ));
    }
    let Some(last) = layers.last() else {
        return Err(CompileError::Structure("no Gemm or MatMul layer".into()));
    };
    if last.relu {
        return Err(CompileError::Structure(
            "the model ends with a Relu; the last layer must produce the logits".into(),
        ));
    }
    let features = layers[0].weights.first().map_or(0, Vec::len);
    if features == 0 || last.biases.is_empty() {
        return Err(CompileError::Structure(
            "a layer has no inputs or outputs".into(),
        ));
    }
    let widen = |v: Vec<f64>| {
        if v.len() == 1 {
            vec![v[0]; features]
        } else {
            v
        }
    };
    let (input_scale, input_shift) = (widen(scale), widen(shift));
    let finite = input_scale
        .iter()
        .chain(&input_shift)
        .chain(
            layers
                .iter()
                .flat_map(|l| l.weights.iter().flatten().chain(&l.biases)),
        )
        .all(|v| v.is_finite());
    if !finite {
        return Err(CompileError::Structure(
            "a weight, bias or scaler constant is not finite".into(),
        ));
    }
    Ok(FloatModel {
        features,
        input_scale,
        input_shift,
        layers,
        head,
    })
}

/// Outputs of `Constant` nodes (their `value` attribute), by value id.
fn constant_nodes(graph: &Graph) -> Result<HashMap<ValueId, &Tensor>, CompileError> {
    let mut map = HashMap::new();
    for node in graph.nodes.iter().filter(|n| n.op_type == "Constant") {
        let t = node
            .attributes
            .tensor("value")
            .ok()
            .flatten()
            .ok_or_else(|| CompileError::Unsupported {
                node: node.name.clone(),
                op: "Constant".into(),
                reason: "only Constant nodes with a tensor `value`".into(),
            })?;
        if let Some(Some(out)) = node.outputs.first() {
            map.insert(*out, t.as_ref());
        }
    }
    Ok(map)
}

/// A float tensor's values as f64.
fn floats(t: &Tensor) -> Option<Vec<f64>> {
    if let Some(v) = t.as_f32() {
        Some(v.iter().map(|&x| f64::from(x)).collect())
    } else {
        t.as_f64().map(<[f64]>::to_vec)
    }
}

/// A constant that broadcasts over `[N, F]` along the feature axis: a scalar, `[F]` or
/// `[1, F]`.
fn feature_vector(t: &Tensor, values: &[f64]) -> Option<Vec<f64>> {
    let ok = matches!(t.shape(), [] | [_] | [1, _]);
    (ok && !values.is_empty()).then(|| values.to_vec())
}
