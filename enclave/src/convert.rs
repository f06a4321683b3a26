//! Conversion between the JSON tensor form and engine tensors, with the
//! request-level checks the policy asks for (names, ranks, fixed dimensions,
//! batch size). Element types come from the model, never from the request.

use std::collections::BTreeMap;

use cloister_engine::{DType, Dim, Tensor, TensorData, ValueInfo};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::tensor::{Scalar, WireTensor};

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidInput, message)
}

/// Checks the named inputs against the model's declared inputs and converts them.
pub fn inputs_to_engine(
    declared: &[ValueInfo],
    given: &BTreeMap<String, WireTensor>,
    max_batch_rows: usize,
) -> Result<Vec<(String, Tensor)>, ApiError> {
    for name in given.keys() {
        if !declared.iter().any(|d| &d.name == name) {
            let known: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
            return Err(invalid(format!(
                "unexpected input \"{name}\"; the model's inputs are {known:?}"
            )));
        }
    }
    let mut out = Vec::with_capacity(declared.len());
    for info in declared {
        let t = given.get(&info.name).ok_or_else(|| {
            invalid(format!(
                "missing input \"{}\" ({} with shape {})",
                info.name,
                info.dtype.name(),
                shape_text(&info.shape)
            ))
        })?;
        t.validate(&info.name).map_err(|e| invalid(e.to_string()))?;
        check_shape(info, &t.shape)?;
        if let Some(&rows) = t.shape.first() {
            if rows > max_batch_rows {
                return Err(invalid(format!(
                    "input \"{}\" has {rows} rows; the policy allows at most {max_batch_rows}",
                    info.name
                )));
            }
        }
        out.push((info.name.clone(), to_tensor(&info.name, info.dtype, t)?));
    }
    Ok(out)
}

fn shape_text(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn check_shape(info: &ValueInfo, shape: &[usize]) -> Result<(), ApiError> {
    let bad = || {
        invalid(format!(
            "input \"{}\" has shape {:?}; the model expects {}",
            info.name,
            shape,
            shape_text(&info.shape)
        ))
    };
    if shape.len() != info.shape.len() {
        return Err(bad());
    }
    for (d, &n) in info.shape.iter().zip(shape) {
        if let Dim::Fixed(f) = d {
            if *f != n {
                return Err(bad());
            }
        }
    }
    Ok(())
}

fn to_tensor(name: &str, dtype: DType, t: &WireTensor) -> Result<Tensor, ApiError> {
    let bad = |i: usize| {
        invalid(format!(
            "input \"{name}\": element {i} is not a valid {}",
            dtype.name()
        ))
    };
    fn ints<T: TryFrom<i64>>(
        data: &[Scalar],
        bad: impl Fn(usize) -> ApiError,
    ) -> Result<Vec<T>, ApiError> {
        data.iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_i64()
                    .and_then(|v| T::try_from(v).ok())
                    .ok_or_else(|| bad(i))
            })
            .collect()
    }
    let data = match dtype {
        DType::F32 => TensorData::F32(
            t.data
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let v = s.as_f64().ok_or_else(|| bad(i))?;
                    if v.is_finite() && v.abs() > f32::MAX as f64 {
                        return Err(bad(i));
                    }
                    Ok(v as f32)
                })
                .collect::<Result<_, _>>()?,
        ),
        DType::F64 => TensorData::F64(
            t.data
                .iter()
                .enumerate()
                .map(|(i, s)| s.as_f64().ok_or_else(|| bad(i)))
                .collect::<Result<_, _>>()?,
        ),
        DType::I64 => TensorData::I64(ints(&t.data, bad)?),
        DType::I32 => TensorData::I32(ints(&t.data, bad)?),
        DType::I8 => TensorData::I8(ints(&t.data, bad)?),
        DType::U8 => TensorData::U8(ints(&t.data, bad)?),
        DType::Bool => TensorData::Bool(
            t.data
                .iter()
                .enumerate()
                .map(|(i, s)| s.as_bool().ok_or_else(|| bad(i)))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(invalid(format!(
                "input \"{name}\": dtype {} is not accepted over the wire yet",
                other.name()
            )))
        }
    };
    Tensor::new(t.shape.clone(), data).map_err(|e| invalid(format!("input \"{name}\": {e}")))
}

/// Converts an engine output to the JSON form, with its dtype named.
pub fn tensor_to_wire(t: &Tensor) -> Result<WireTensor, ApiError> {
    let data: Vec<Scalar> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| Scalar::from_f32(x)).collect(),
        TensorData::F64(v) => v.iter().map(|&x| Scalar::from_f64(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| Scalar::Number(x.into())).collect(),
        TensorData::I32(v) => v.iter().map(|&x| Scalar::Number(x.into())).collect(),
        TensorData::I8(v) => v.iter().map(|&x| Scalar::Number(x.into())).collect(),
        TensorData::U8(v) => v.iter().map(|&x| Scalar::Number(x.into())).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| Scalar::Bool(x)).collect(),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(ApiError::new(
                ErrorCode::InferenceFailed,
                format!("output dtype {} cannot be returned yet", t.dtype().name()),
            ))
        }
    };
    Ok(WireTensor {
        shape: t.shape().to_vec(),
        dtype: Some(t.dtype().name().to_string()),
        data,
    })
}
