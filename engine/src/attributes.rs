//! Node attributes, decoded once from ONNX into engine-owned values.
//!
//! Why not hand operators the protobuf: operator constructors (including custom operators
//! registered from other crates) should not depend on prost types or re-implement ONNX's
//! attribute-type rules. [`Attributes`] gives typed getters whose errors name the node and the
//! attribute.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::tensor::Tensor;

/// One decoded attribute value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttrValue {
    /// `FLOAT`.
    Float(f32),
    /// `INT`.
    Int(i64),
    /// `STRING` (UTF-8).
    String(String),
    /// `TENSOR`.
    Tensor(Arc<Tensor>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `STRINGS`.
    Strings(Vec<String>),
    /// `GRAPH`: a subgraph, built and validated with its enclosing scope
    /// ([`Subgraph`](crate::graph::Subgraph)).
    Graph(Arc<crate::graph::Subgraph>),
    /// `GRAPHS`.
    Graphs(Vec<Arc<crate::graph::Subgraph>>),
    /// A kind the engine cannot represent yet (graphs, sparse tensors, type protos, or a tensor
    /// with an unsupported dtype); the reason is reported only if an operator asks for it.
    Unsupported(String),
}

impl AttrValue {
    fn kind(&self) -> &'static str {
        match self {
            AttrValue::Float(_) => "float",
            AttrValue::Int(_) => "int",
            AttrValue::String(_) => "string",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Floats(_) => "floats",
            AttrValue::Ints(_) => "ints",
            AttrValue::Strings(_) => "strings",
            AttrValue::Graph(_) => "graph",
            AttrValue::Graphs(_) => "graphs",
            AttrValue::Unsupported(_) => "unsupported",
        }
    }
}

/// The attributes of one node, with typed getters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    node: String,
    values: BTreeMap<String, AttrValue>,
}

impl Attributes {
    /// An attribute set for `node` (the name used in error messages).
    pub fn new(node: impl Into<String>) -> Attributes {
        Attributes {
            node: node.into(),
            values: BTreeMap::new(),
        }
    }

    /// Adds an attribute; a repeated name is an invalid model.
    pub fn insert(&mut self, name: impl Into<String>, value: AttrValue) -> Result<()> {
        let name = name.into();
        if self.values.contains_key(&name) {
            return Err(EngineError::InvalidModel(format!(
                "node {:?} has attribute {name:?} twice",
                self.node
            )));
        }
        self.values.insert(name, value);
        Ok(())
    }

    /// Builder-style [`Attributes::insert`] for tests and programmatic graphs.
    pub fn with(mut self, name: &str, value: AttrValue) -> Attributes {
        self.values.insert(name.to_string(), value);
        self
    }

    /// The raw value, if present.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.values.get(name)
    }

    /// Names of all attributes present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    fn bad(&self, name: &str, reason: impl Into<String>) -> EngineError {
        EngineError::BadAttribute {
            node: self.node.clone(),
            attribute: name.to_string(),
            reason: reason.into(),
        }
    }

    fn wrong_kind(&self, name: &str, want: &str, got: &AttrValue) -> EngineError {
        match got {
            AttrValue::Unsupported(why) => self.bad(name, format!("unsupported: {why}")),
            other => self.bad(name, format!("expected {want}, found {}", other.kind())),
        }
    }

    /// An `INT` attribute, if present.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_kind(name, "int", other)),
        }
    }

    /// An `INT` attribute, or `default` when absent.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A required `INT` attribute.
    pub fn required_int(&self, name: &str) -> Result<i64> {
        self.int(name)?
            .ok_or_else(|| self.bad(name, "required attribute is missing"))
    }

    /// A `FLOAT` attribute, or `default` when absent.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(other) => Err(self.wrong_kind(name, "float", other)),
        }
    }

    /// An `INTS` attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<&[i64]>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "ints", other)),
        }
    }

    /// A `FLOATS` attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<&[f32]>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "floats", other)),
        }
    }

    /// A `STRING` attribute, if present.
    pub fn string(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::String(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "string", other)),
        }
    }

    /// A `TENSOR` attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<&Arc<Tensor>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "tensor", other)),
        }
    }

    /// A `GRAPH` attribute (a built subgraph), if present.
    pub fn graph(&self, name: &str) -> Result<Option<&Arc<crate::graph::Subgraph>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Graph(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, "graph", other)),
        }
    }

    /// Whether any attribute holds a subgraph (the node is control flow: passes must not
    /// evaluate it at load, and the values its subgraphs read are among its inputs).
    pub fn has_subgraphs(&self) -> bool {
        self.values
            .values()
            .any(|v| matches!(v, AttrValue::Graph(_) | AttrValue::Graphs(_)))
    }

    /// Builds the error for an attribute whose value is out of range.
    pub fn invalid(&self, name: &str, reason: impl Into<String>) -> EngineError {
        self.bad(name, reason)
    }
}
