//! Conversion of decoded ONNX messages (tensors, value infos, attributes) into engine types.
//!
//! Why a module: these are the places where sizes and codes from untrusted bytes turn into
//! allocations, so every length and dimension is checked here before any data is copied.

use std::sync::Arc;

use super::proto::{
    attribute_type as at, data_location, tensor_shape_proto::dimension, type_proto, AttributeProto,
    GraphProto, TensorProto, ValueInfoProto,
};
use crate::attributes::{AttrValue, Attributes};
use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::shape::{dims_from_i64, numel};
use crate::tensor::{Tensor, TensorData};
use crate::types::{Dim, ValueInfo};

/// Converts a `TensorProto` (an initializer, a tensor attribute or a test-data file) into a
/// [`Tensor`]. Errors are wrapped in [`EngineError::Tensor`], naming the tensor. The declared
/// dims are checked (overflow, [`MAX_TENSOR_ELEMENTS`](crate::shape::MAX_TENSOR_ELEMENTS)) and
/// compared with the data actually present before anything is allocated.
pub(crate) fn tensor_from_proto(t: &TensorProto) -> Result<Tensor> {
    decode_tensor_proto(t).map_err(|e| EngineError::Tensor {
        tensor: t.name.clone().unwrap_or_default(),
        source: Box::new(e),
    })
}

fn decode_tensor_proto(t: &TensorProto) -> Result<Tensor> {
    if t.data_location == Some(data_location::EXTERNAL) {
        return super::external::tensor_from_external(t);
    }
    if !t.external_data.is_empty() {
        return Err(super::external::ExternalDataError::NotMarkedExternal.into());
    }
    if t.segment.is_some() {
        return Err(EngineError::UnsupportedFeature("tensor segments".into()));
    }
    let dtype = DType::from_onnx(t.data_type.unwrap_or(0))?;
    let shape = dims_from_i64(&t.dims)?;
    let n = numel(&shape)?;
    let bad_len = |got: usize| {
        EngineError::InvalidModel(format!(
            "shape {shape:?} needs {n} elements, data holds {got}"
        ))
    };

    let data = if let Some(b) = crate::lowp::bits(dtype) {
        let packed: Vec<u8> = match &t.raw_data {
            Some(raw) => raw.clone(),
            None => narrow_int32::<u8>(&t.int32_data)?,
        };
        let want = crate::lowp::packed_len(dtype, n);
        let got = packed.len();
        if got != want {
            return Err(bad_len(got * 8 / b));
        }
        TensorData::Bits {
            dtype,
            codes: crate::lowp::unpack(dtype, &packed, n),
        }
    } else if dtype == DType::String {
        let v = t
            .string_data
            .iter()
            .map(|b| String::from_utf8(b.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| EngineError::InvalidModel("string is not UTF-8".into()))?;
        if v.len() != n {
            return Err(bad_len(v.len()));
        }
        TensorData::String(v)
    } else if let Some(raw) = &t.raw_data {
        let width = dtype.size_of();
        if raw.len() != n.checked_mul(width).ok_or_else(|| bad_len(raw.len()))? {
            return Err(bad_len(raw.len() / width));
        }
        decode_raw(dtype, raw)
    } else {
        let typed = match dtype {
            DType::F32 => TensorData::F32(t.float_data.clone()),
            DType::F64 => TensorData::F64(t.double_data.clone()),
            DType::I64 => TensorData::I64(t.int64_data.clone()),
            DType::I32 => TensorData::I32(t.int32_data.clone()),
            DType::I8 => TensorData::I8(narrow_int32(&t.int32_data)?),
            DType::U8 => TensorData::U8(narrow_int32(&t.int32_data)?),
            DType::Bool => TensorData::Bool(t.int32_data.iter().map(|&v| v != 0).collect()),
            DType::I16 => TensorData::I16(narrow_int32(&t.int32_data)?),
            DType::U16 => TensorData::U16(narrow_int32(&t.int32_data)?),
            // 16-bit floats travel as their bit patterns in `int32_data`.
            DType::F16 => TensorData::F16(
                narrow_int32::<u16>(&t.int32_data)?
                    .into_iter()
                    .map(half::f16::from_bits)
                    .collect(),
            ),
            DType::BF16 => TensorData::BF16(
                narrow_int32::<u16>(&t.int32_data)?
                    .into_iter()
                    .map(half::bf16::from_bits)
                    .collect(),
            ),
            DType::U32 => TensorData::U32(
                t.uint64_data
                    .iter()
                    .map(|&x| {
                        u32::try_from(x).map_err(|_| {
                            EngineError::InvalidModel(format!("value {x} out of range for {dtype}"))
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            DType::U64 => TensorData::U64(t.uint64_data.clone()),
            _ => TensorData::String(Vec::new()),
        };
        if typed.len() != n {
            return Err(bad_len(typed.len()));
        }
        typed
    };
    Tensor::new(shape, data)
}

fn narrow_int32<T: TryFrom<i32>>(v: &[i32]) -> Result<Vec<T>> {
    v.iter()
        .map(|&x| {
            T::try_from(x).map_err(|_| EngineError::InvalidModel(format!("value {x} out of range")))
        })
        .collect()
}

/// Decodes little-endian `raw_data` whose length has been checked against the shape.
pub(crate) fn decode_raw(dtype: DType, raw: &[u8]) -> TensorData {
    fn chunks<const W: usize, T>(raw: &[u8], f: impl Fn([u8; W]) -> T) -> Vec<T> {
        raw.chunks_exact(W)
            .map(|c| {
                let mut b = [0u8; W];
                b.copy_from_slice(c);
                f(b)
            })
            .collect()
    }
    match dtype {
        DType::F32 => TensorData::F32(chunks(raw, f32::from_le_bytes)),
        DType::F64 => TensorData::F64(chunks(raw, f64::from_le_bytes)),
        DType::I64 => TensorData::I64(chunks(raw, i64::from_le_bytes)),
        DType::I32 => TensorData::I32(chunks(raw, i32::from_le_bytes)),
        DType::I8 => TensorData::I8(chunks(raw, i8::from_le_bytes)),
        DType::U8 => TensorData::U8(raw.to_vec()),
        DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DType::F16 => TensorData::F16(chunks(raw, half::f16::from_le_bytes)),
        DType::BF16 => TensorData::BF16(chunks(raw, half::bf16::from_le_bytes)),
        DType::I16 => TensorData::I16(chunks(raw, i16::from_le_bytes)),
        DType::U16 => TensorData::U16(chunks(raw, u16::from_le_bytes)),
        DType::U32 => TensorData::U32(chunks(raw, u32::from_le_bytes)),
        DType::U64 => TensorData::U64(chunks(raw, u64::from_le_bytes)),
        _ => TensorData::String(Vec::new()),
    }
}

/// Converts a graph input/output declaration. The shape is `None` when the model does not
/// declare one; a dimension with neither value nor name becomes a symbolic dim unique to this
/// value and axis, so it matches any size.
pub(crate) fn value_info_from_proto(
    v: &ValueInfoProto,
) -> Result<(String, Option<DType>, Option<Vec<Dim>>)> {
    let name = v.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(EngineError::InvalidModel(
            "graph input or output without a name".into(),
        ));
    }
    let tensor_type = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        None => return Ok((name, None, None)),
        Some(type_proto::Value::TensorType(tt)) => tt,
        Some(_) => {
            return Err(EngineError::UnsupportedFeature(format!(
                "value {name:?} is not a dense tensor (sequence, map, optional, sparse or opaque)"
            )))
        }
    };
    let dtype = match tensor_type.elem_type {
        None | Some(0) => None,
        Some(code) => Some(DType::from_onnx(code)?),
    };
    let shape = match &tensor_type.shape {
        None => None,
        Some(s) => Some(
            s.dim
                .iter()
                .enumerate()
                .map(|(axis, d)| match &d.value {
                    Some(dimension::Value::DimValue(v)) => {
                        usize::try_from(*v).map(Dim::Fixed).map_err(|_| {
                            EngineError::InvalidModel(format!(
                                "value {name:?} has negative dimension {v}"
                            ))
                        })
                    }
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => {
                        Ok(Dim::Symbolic(p.clone()))
                    }
                    _ => Ok(Dim::Symbolic(format!("?{name}[{axis}]"))),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok((name, dtype, shape))
}

/// Builds a [`ValueInfo`] that must be complete (graph inputs).
pub(crate) fn complete_value_info(v: &ValueInfoProto) -> Result<ValueInfo> {
    let (name, dtype, shape) = value_info_from_proto(v)?;
    let dtype = dtype.ok_or_else(|| {
        EngineError::InvalidModel(format!("graph input {name:?} has no element type"))
    })?;
    let shape = shape.ok_or_else(|| {
        EngineError::UnsupportedFeature(format!("graph input {name:?} has no declared shape"))
    })?;
    Ok(ValueInfo { name, dtype, shape })
}

/// The subgraphs of a `GRAPH` (`false`) or `GRAPHS` (`true`) attribute; `None` for other
/// kinds. The graph builder (`graph.rs`) builds these with their enclosing scope.
pub(crate) fn attribute_graphs(a: &AttributeProto) -> Option<(Vec<&GraphProto>, bool)> {
    match a.r#type.unwrap_or_else(|| guess_kind(a)) {
        at::GRAPH => Some((a.g.iter().collect(), false)),
        at::GRAPHS => Some((a.graphs.iter().collect(), true)),
        _ => None,
    }
}

/// Decodes a node's attributes other than subgraphs ([`attribute_graphs`]); `node` names the
/// node in errors.
pub(crate) fn attributes_from_proto(node: &str, attrs: &[AttributeProto]) -> Result<Attributes> {
    let mut out = Attributes::new(node);
    for a in attrs {
        let name = a.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(EngineError::InvalidModel(format!(
                "node {node:?} has an attribute without a name"
            )));
        }
        if attribute_graphs(a).is_some() {
            continue;
        }
        out.insert(name, attribute_value(a))?;
    }
    Ok(out)
}

fn attribute_value(a: &AttributeProto) -> AttrValue {
    let kind = a.r#type.unwrap_or_else(|| guess_kind(a));
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec());
    match kind {
        at::FLOAT => AttrValue::Float(a.f.unwrap_or(0.0)),
        at::INT => AttrValue::Int(a.i.unwrap_or(0)),
        at::STRING => match utf8(a.s.as_deref().unwrap_or_default()) {
            Ok(s) => AttrValue::String(s),
            Err(_) => AttrValue::Unsupported("string is not UTF-8".into()),
        },
        at::TENSOR => match a.t.as_ref().map(tensor_from_proto) {
            Some(Ok(t)) => AttrValue::Tensor(Arc::new(t)),
            Some(Err(e)) => AttrValue::Unsupported(e.to_string()),
            None => AttrValue::Unsupported("tensor attribute without a tensor".into()),
        },
        at::FLOATS => AttrValue::Floats(a.floats.clone()),
        at::INTS => AttrValue::Ints(a.ints.clone()),
        at::STRINGS => match a
            .strings
            .iter()
            .map(|s| utf8(s))
            .collect::<std::result::Result<Vec<_>, _>>()
        {
            Ok(v) => AttrValue::Strings(v),
            Err(_) => AttrValue::Unsupported("string is not UTF-8".into()),
        },
        at::GRAPH | at::GRAPHS => AttrValue::Unsupported("subgraph attributes".into()),
        at::TENSORS => AttrValue::Unsupported("tensor-list attributes".into()),
        at::SPARSE_TENSOR | at::SPARSE_TENSORS => {
            AttrValue::Unsupported("sparse tensor attributes".into())
        }
        at::TYPE_PROTO | at::TYPE_PROTOS => AttrValue::Unsupported("type attributes".into()),
        other => AttrValue::Unsupported(format!("attribute type code {other}")),
    }
}

/// IR version < 2 models may omit `type`; infer it from the populated field.
fn guess_kind(a: &AttributeProto) -> i32 {
    if a.f.is_some() {
        at::FLOAT
    } else if a.i.is_some() {
        at::INT
    } else if a.s.is_some() {
        at::STRING
    } else if a.t.is_some() {
        at::TENSOR
    } else if a.g.is_some() {
        at::GRAPH
    } else if !a.floats.is_empty() {
        at::FLOATS
    } else if !a.ints.is_empty() {
        at::INTS
    } else if !a.strings.is_empty() {
        at::STRINGS
    } else {
        at::UNDEFINED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dtype: DType, dims: Vec<i64>) -> TensorProto {
        TensorProto {
            dims,
            data_type: Some(dtype.onnx_code()),
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_data_decode() {
        let mut t = proto(DType::F32, vec![2]);
        t.raw_data = Some([1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(
            tensor_from_proto(&t).unwrap().as_f32().unwrap(),
            &[1.5, -2.0]
        );

        let mut t = proto(DType::I64, vec![1, 2]);
        t.int64_data = vec![7, -9];
        let x = tensor_from_proto(&t).unwrap();
        assert_eq!(x.shape(), &[1, 2]);
        assert_eq!(x.as_i64().unwrap(), &[7, -9]);

        let mut t = proto(DType::U8, vec![2]);
        t.int32_data = vec![3, 255];
        assert!(tensor_from_proto(&t).is_ok());
        t.int32_data = vec![3, 256];
        assert!(tensor_from_proto(&t).is_err());
    }

    #[test]
    fn lengths_and_dims_are_checked() {
        let mut t = proto(DType::F32, vec![3]);
        t.raw_data = Some(vec![0u8; 8]);
        assert!(matches!(
            tensor_from_proto(&t).unwrap_err().root(),
            EngineError::InvalidModel(_)
        ));
        let mut t = proto(DType::F32, vec![i64::MAX, i64::MAX]);
        t.raw_data = Some(vec![]);
        assert!(matches!(
            tensor_from_proto(&t).unwrap_err().root(),
            EngineError::TensorTooLarge(_)
        ));
        let t = proto(DType::F32, vec![-1]);
        assert!(tensor_from_proto(&t).is_err());
        // External data needs a directory, which loading from bytes does not have.
        let mut t = proto(DType::F32, vec![1]);
        t.data_location = Some(data_location::EXTERNAL);
        assert!(matches!(
            tensor_from_proto(&t).unwrap_err().root(),
            EngineError::ExternalData(super::super::external::ExternalDataError::NoBaseDirectory)
        ));
        let t = TensorProto {
            data_type: Some(27), // beyond the known codes
            ..Default::default()
        };
        assert!(matches!(
            tensor_from_proto(&t).unwrap_err().root(),
            EngineError::UnsupportedDtype(27)
        ));
    }
}
