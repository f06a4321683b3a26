//! The public entry point: a loaded, validated model that can be run concurrently.
//!
//! Why the checks live here: `run` is the boundary with request data. Names, dtypes and shapes
//! (including the consistency of symbolic dims across inputs) are validated against the model's
//! declaration before any operator sees the tensors, so callers get a typed error naming their
//! mistake rather than an operator failure deep in the graph.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{EngineError, Result};
use crate::executor::{execute, Profile};
use crate::graph::Graph;
use crate::graph::ValueSource;
use crate::onnx::decode_model;
use crate::ops::{normalize_domain, OpRegistry};
use crate::planner::{plan, MemoryReport};
use crate::tensor::Tensor;
use crate::types::{format_dims, Dim, ValueInfo};

/// How [`Model`] loads a graph.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Run the standard optimisation passes ([`passes::standard`](crate::passes::standard)) after
    /// validation. On by default; off to run the graph exactly as written (e.g. to compare).
    pub optimize: bool,
    /// Threads that run independent branches of the graph at once ([`crate::scheduler`]).
    /// 1 (the default) runs the sequential executor on the caller's thread and starts no
    /// threads.
    pub threads: usize,
    /// Most iterations one `Loop` node may run per evaluation; more is
    /// [`EngineError::IterationLimit`] (see [`GraphLimits`](crate::graph::GraphLimits)).
    /// Default [`DEFAULT_MAX_LOOP_ITERATIONS`](crate::graph::DEFAULT_MAX_LOOP_ITERATIONS).
    pub max_loop_iterations: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            optimize: true,
            threads: 1,
            max_loop_iterations: crate::graph::DEFAULT_MAX_LOOP_ITERATIONS,
        }
    }
}

/// A loaded ONNX model. Immutable after loading; `Send + Sync`, so one instance can serve many
/// concurrent requests through an `Arc`.
#[derive(Debug)]
pub struct Model {
    graph: Graph,
    /// What each optimisation pass rewrote at load, in order.
    pass_report: Vec<(&'static str, usize)>,
    /// The scheduler's pool, when loaded with more than one thread.
    pool: Option<rayon::ThreadPool>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    opsets: HashMap<String, i64>,
    producer: String,
}

impl Model {
    /// Decodes and validates a serialized ONNX model using the standard operators.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Model::from_bytes_with_registry(bytes, &OpRegistry::standard())
    }

    /// Like [`Model::from_bytes`], with a caller-supplied registry (e.g. with custom operators).
    pub fn from_bytes_with_registry(bytes: &[u8], registry: &OpRegistry) -> Result<Model> {
        Model::from_bytes_with(bytes, registry, &LoadOptions::default())
    }

    /// Like [`Model::from_bytes_with_registry`], with explicit [`LoadOptions`].
    pub fn from_bytes_with(
        bytes: &[u8],
        registry: &OpRegistry,
        options: &LoadOptions,
    ) -> Result<Model> {
        let proto = decode_model(bytes)?;
        let graph_proto = proto
            .graph
            .as_ref()
            .ok_or_else(|| EngineError::InvalidModel("model has no graph".into()))?;
        let mut opsets = HashMap::new();
        for o in &proto.opset_import {
            let domain = normalize_domain(o.domain.as_deref().unwrap_or("")).to_string();
            let version = o.version.unwrap_or(0);
            if version < 1 {
                return Err(EngineError::InvalidModel(format!(
                    "opset import for domain {domain:?} has version {version}"
                )));
            }
            if opsets.insert(domain.clone(), version).is_some() {
                return Err(EngineError::InvalidModel(format!(
                    "domain {domain:?} imported twice"
                )));
            }
        }
        let limits = crate::graph::GraphLimits {
            max_loop_iterations: options.max_loop_iterations,
        };
        let mut graph = Graph::from_proto_with(graph_proto, &opsets, registry, limits)?;
        let pass_report = if options.optimize {
            crate::passes::optimize(&mut graph, registry)?
        } else {
            Vec::new()
        };
        let inputs = graph.inputs.iter().map(|(_, v)| v.clone()).collect();
        let outputs = graph.outputs.iter().map(|(_, v)| v.clone()).collect();
        let producer = format!(
            "{} {}",
            proto.producer_name.unwrap_or_default(),
            proto.producer_version.unwrap_or_default()
        );
        let pool = if options.threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(options.threads)
                    .build()
                    .map_err(|e| {
                        EngineError::UnsupportedFeature(format!("cannot start threads: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(Model {
            graph,
            pass_report,
            pool,
            inputs,
            outputs,
            opsets,
            producer: producer.trim().to_string(),
        })
    }

    /// Reads and loads a model file. Tensors stored as external data (`onnx.save_model(...,
    /// save_as_external_data=True)`) are read from files in the model's directory, large ones
    /// memory-mapped and used in place ([`crate::onnx::external`]).
    pub fn load(path: &Path) -> Result<Model> {
        Model::load_with(path, &OpRegistry::standard(), &LoadOptions::default())
    }

    /// Like [`Model::load`], with a caller-supplied registry and [`LoadOptions`].
    pub fn load_with(path: &Path, registry: &OpRegistry, options: &LoadOptions) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Model::from_bytes_in_dir(&bytes, dir, registry, options)
    }

    /// Like [`Model::from_bytes_with`], resolving external data against `dir` (the directory
    /// the model's bytes came from). Without a directory ([`Model::from_bytes`]) a model with
    /// external data is refused.
    pub fn from_bytes_in_dir(
        bytes: &[u8],
        dir: &Path,
        registry: &OpRegistry,
        options: &LoadOptions,
    ) -> Result<Model> {
        crate::onnx::external::with_base_dir(dir, || {
            Model::from_bytes_with(bytes, registry, options)
        })
    }

    /// The inputs a caller must supply (graph inputs that are not initializers), in order.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// The outputs `run` returns, in order.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// The imported opset version for `domain` (`""` is `ai.onnx`).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        self.opsets.get(normalize_domain(domain)).copied()
    }

    /// `producer_name producer_version` from the model, for audit records.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The validated graph IR (after the load-time passes).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Bytes of the weights used in place from memory-mapped external-data files: the part of
    /// the permanent arena that is file-backed page cache, read on first use, rather than
    /// memory the process allocated ([`crate::onnx::external`]).
    pub fn mapped_weight_bytes(&self) -> usize {
        self.graph
            .values
            .iter()
            .map(|v| match &v.source {
                ValueSource::Initializer(t) if t.is_shared() => {
                    t.shared_bytes().map_or(0, |b| b.len())
                }
                _ => 0,
            })
            .sum()
    }

    /// What each optimisation pass rewrote at load: `(pass, rewrites)`, empty when loaded
    /// without optimisation.
    pub fn pass_report(&self) -> &[(&'static str, usize)] {
        &self.pass_report
    }

    /// Runs the model. Every declared input must be given exactly once, with the declared dtype
    /// and a shape matching the declaration (symbolic dims match any size, consistently across
    /// inputs). Returns the outputs in graph order.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        self.run_inner(inputs, None)
    }

    /// Like [`Model::run`], and reports the run's memory: weights, inputs, the temporary arena
    /// the liveness planner ([`crate::planner`]) places the intermediates in, and the peak the
    /// executor actually held.
    pub fn run_with_memory(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<(Vec<(String, Tensor)>, MemoryReport)> {
        let mut profile = Profile::default();
        let outputs = self.run_inner(inputs, Some(&mut profile))?;
        let permanent_bytes = self
            .graph
            .values
            .iter()
            .map(|v| match &v.source {
                ValueSource::Initializer(t) => crate::executor::tensor_bytes(t),
                _ => 0,
            })
            .sum();
        let report = MemoryReport {
            permanent_bytes,
            input_bytes: profile.input_bytes,
            planned_temporary_bytes: plan(&self.graph, &profile.sizes).arena_bytes,
            unshared_temporary_bytes: profile.sizes.iter().sum(),
            peak_live_bytes: profile.peak_live,
        };
        Ok((outputs, report))
    }

    fn run_inner(
        &self,
        inputs: Vec<(String, Tensor)>,
        profile: Option<&mut Profile>,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut given: Vec<Option<Tensor>> = (0..self.inputs.len()).map(|_| None).collect();
        for (name, t) in inputs {
            let k = self
                .inputs
                .iter()
                .position(|v| v.name == name)
                .ok_or_else(|| EngineError::UnknownInput { name: name.clone() })?;
            if given[k].replace(t).is_some() {
                return Err(EngineError::DuplicateInput { name });
            }
        }
        let mut bindings: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut feeds = Vec::with_capacity(self.inputs.len());
        for ((info, t), (id, _)) in self.inputs.iter().zip(given).zip(&self.graph.inputs) {
            let t = t.ok_or_else(|| EngineError::MissingInput {
                name: info.name.clone(),
            })?;
            check_input(info, &t, &mut bindings)?;
            feeds.push((*id, t));
        }
        let values = match (&self.pool, profile) {
            (Some(pool), None) => crate::scheduler::execute_parallel(&self.graph, feeds, pool)?,
            (_, profile) => execute(&self.graph, feeds, profile)?,
        };
        Ok(self
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .zip(values)
            .collect())
    }
}

/// Checks one input tensor against its declaration, binding symbolic dims.
fn check_input<'a>(
    info: &'a ValueInfo,
    t: &Tensor,
    bindings: &mut HashMap<&'a str, (usize, &'a str)>,
) -> Result<()> {
    if t.dtype() != info.dtype {
        return Err(EngineError::DtypeMismatch {
            input: info.name.clone(),
            expected: info.dtype,
            got: t.dtype(),
        });
    }
    let shape_err = || EngineError::ShapeMismatch {
        input: info.name.clone(),
        expected: format_dims(&info.shape),
        got: t.shape().to_vec(),
    };
    if t.rank() != info.shape.len() {
        return Err(shape_err());
    }
    for (d, &n) in info.shape.iter().zip(t.shape()) {
        match d {
            Dim::Fixed(f) if *f != n => return Err(shape_err()),
            Dim::Fixed(_) => {}
            Dim::Symbolic(s) => match bindings.get(s.as_str()) {
                Some(&(bound, _)) if bound != n => {
                    return Err(EngineError::InconsistentDim {
                        dim: s.clone(),
                        first: bound,
                        second: n,
                        input: info.name.clone(),
                    })
                }
                Some(_) => {}
                None => {
                    bindings.insert(s, (n, &info.name));
                }
            },
        }
    }
    Ok(())
}
