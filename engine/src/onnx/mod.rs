//! The ONNX front end: protobuf decoding and conversion into engine types.
//!
//! Why a boundary: only this module knows about prost and the ONNX wire format. Everything it
//! hands out — [`Tensor`](crate::Tensor), [`ValueInfo`](crate::ValueInfo),
//! [`Attributes`](crate::Attributes) — is engine-owned, so other front ends (or a hand-built
//! graph) can feed the same graph builder. All conversions treat the bytes as untrusted.

pub mod external;
pub mod proto;

mod convert;

pub(crate) use convert::{
    attribute_graphs, attributes_from_proto, complete_value_info, decode_raw, tensor_from_proto,
    value_info_from_proto,
};

use prost::Message;

use crate::error::{EngineError, Result};

/// Decodes a serialized `ModelProto`.
pub fn decode_model(bytes: &[u8]) -> Result<proto::ModelProto> {
    proto::ModelProto::decode(bytes).map_err(|e| EngineError::MalformedProtobuf(e.to_string()))
}

/// Decodes a serialized `TensorProto` (a test-data `.pb` file), returning its name (if any)
/// and value.
pub fn decode_tensor(bytes: &[u8]) -> Result<(Option<String>, crate::Tensor)> {
    let proto = proto::TensorProto::decode(bytes)
        .map_err(|e| EngineError::MalformedProtobuf(e.to_string()))?;
    let t = tensor_from_proto(&proto)?;
    Ok((proto.name.filter(|n| !n.is_empty()), t))
}
