//! `cloister-engine`: Cloister's ONNX inference engine.
//!
//! The enclave loads a model with [`Model::from_bytes`] / [`Model::load`], inspects its
//! [`Model::inputs`] / [`Model::outputs`], and calls [`Model::run`]. Internally:
//!
//! - [`onnx`] decodes untrusted protobuf bytes (hand-written prost types, no `protoc`) and
//!   converts them into engine types;
//! - [`graph`] builds a validated, topologically ordered IR, constructing each node's
//!   [`Operator`] through an [`OpRegistry`] keyed by `(domain, op_type)` and running shape/type
//!   inference;
//! - [`passes`] rewrite the IR at load (constant folding, Conv+BatchNormalization folding,
//!   MatMul+Add → Gemm, Conv+Relu fusion, dead-code elimination);
//! - [`planner`] places intermediates in a temporary arena by liveness and reports memory
//!   ([`Model::run_with_memory`]);
//! - [`executor`](crate::Model::run) evaluates nodes in order and frees intermediates after
//!   their last use; [`scheduler`] runs independent nodes in parallel when a model is loaded
//!   with more than one thread ([`LoadOptions`]);
//! - [`ops`] holds the reference kernels;
//! - [`conformance`] runs the ONNX backend node tests against all of the above.
//!
//! Architecture invariants: no `unsafe` except the one `mmap` call that maps external-data
//! files ([`onnx::external`]); malformed model bytes or requests produce an [`EngineError`],
//! never a panic; only [`onnx`] knows about protobuf.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod attributes;
pub mod broadcast;
pub mod conformance;
pub mod dtype;
pub mod error;
mod executor;
pub mod graph;
pub mod lowp;
mod model;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod planner;
pub mod scheduler;
pub mod shape;
pub mod tensor;
pub mod types;

pub use attributes::{AttrValue, Attributes};
pub use dtype::DType;
pub use error::EngineError;
pub use model::{LoadOptions, Model};
pub use ops::{NodeContext, OpRegistry, Operator};
pub use tensor::{Element, SharedBytes, Tensor, TensorData};
pub use types::{Dim, TypeShape, ValueInfo};

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Model>();
    }
}
