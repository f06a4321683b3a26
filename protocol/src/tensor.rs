//! The JSON form of tensors, as users write them and as the service returns them.
//!
//! Two forms are accepted for each named input:
//! - nested arrays, shape taken from the nesting: `[[1, 2], [3, 4]]`;
//! - an object: `{"shape": [2, 2], "data": [1, 2, 3, 4]}` (optionally `"dtype"`).
//!
//! The element type is decided by the model, not by JSON: the enclave converts
//! [`Scalar`]s to the dtype the model declares and refuses values that do not
//! fit. Non-finite floats travel as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest number of elements one tensor may have in JSON form.
pub const MAX_ELEMENTS: usize = 1 << 24;
/// Deepest nesting accepted for the nested-array form.
pub const MAX_RANK: usize = 8;

/// One element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// Any JSON number; integers keep their exact value.
    Number(serde_json::Number),
    /// Strings, and the non-finite floats `"NaN"`, `"Infinity"`, `"-Infinity"`.
    String(String),
}

impl Scalar {
    /// The value as a float, accepting the non-finite string spellings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => n.as_f64(),
            Scalar::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            Scalar::Bool(_) => None,
        }
    }

    /// The value as an exact integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Encodes a float, using the shortest decimal that reads back to the same `f32`.
    pub fn from_f32(x: f32) -> Scalar {
        if x.is_finite() {
            let shortest: f64 = x.to_string().parse().unwrap_or(x as f64);
            match serde_json::Number::from_f64(shortest) {
                Some(n) => Scalar::Number(n),
                None => Scalar::String("NaN".into()),
            }
        } else {
            Scalar::from_f64(x as f64)
        }
    }

    /// Encodes a double.
    pub fn from_f64(x: f64) -> Scalar {
        match serde_json::Number::from_f64(x) {
            Some(n) => Scalar::Number(n),
            None if x.is_nan() => Scalar::String("NaN".into()),
            None if x > 0.0 => Scalar::String("Infinity".into()),
            None => Scalar::String("-Infinity".into()),
        }
    }
}

/// A tensor in JSON form, flattened row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Element type name (`float32`, `int64`, …) when known; inputs may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Elements in row-major order; `len == product(shape)`.
    pub data: Vec<Scalar>,
}

/// Why a JSON value is not a tensor. Each variant names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorJsonError {
    /// Sub-arrays of one level have different lengths.
    #[error("input \"{name}\": ragged array at {path}: expected length {expected}, found {found}")]
    Ragged {
        /// Input name.
        name: String,
        /// JSON path of the offending array, e.g. `[3]`.
        path: String,
        /// Length of the first sibling.
        expected: usize,
        /// Length found here.
        found: usize,
    },
    /// An element is not a number, boolean or string.
    #[error("input \"{name}\": element at {path} is not a number, boolean or string")]
    BadElement {
        /// Input name.
        name: String,
        /// JSON path.
        path: String,
    },
    /// Mixed nesting depth, or too deep.
    #[error("input \"{name}\": {reason}")]
    BadNesting {
        /// Input name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `{"shape","data"}` where the element count does not match the shape.
    #[error("input \"{name}\": shape {shape:?} needs {expected} elements but data has {found}")]
    CountMismatch {
        /// Input name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// More elements than [`MAX_ELEMENTS`].
    #[error("input \"{name}\": more than {MAX_ELEMENTS} elements")]
    TooManyElements {
        /// Input name.
        name: String,
    },
    /// The document is not an object of named inputs.
    #[error("inputs must be a JSON object mapping input names to tensors: {0}")]
    NotAnObject(String),
}

impl WireTensor {
    /// Number of elements the shape calls for, or `None` on overflow.
    pub fn element_count(shape: &[usize]) -> Option<usize> {
        shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Checks that `data` matches `shape`.
    pub fn validate(&self, name: &str) -> Result<(), TensorJsonError> {
        let expected =
            Self::element_count(&self.shape).ok_or_else(|| TensorJsonError::TooManyElements {
                name: name.to_string(),
            })?;
        if expected > MAX_ELEMENTS {
            return Err(TensorJsonError::TooManyElements {
                name: name.to_string(),
            });
        }
        if expected != self.data.len() {
            return Err(TensorJsonError::CountMismatch {
                name: name.to_string(),
                shape: self.shape.clone(),
                expected,
                found: self.data.len(),
            });
        }
        Ok(())
    }

    /// Parses either accepted form.
    pub fn from_json(name: &str, value: &Value) -> Result<WireTensor, TensorJsonError> {
        match value {
            Value::Object(_) => {
                let t: WireTensor = serde_json::from_value(value.clone()).map_err(|e| {
                    TensorJsonError::BadNesting {
                        name: name.to_string(),
                        reason: format!("expected {{\"shape\": [...], \"data\": [...]}}: {e}"),
                    }
                })?;
                t.validate(name)?;
                Ok(t)
            }
            Value::Array(_) => {
                let mut shape = Vec::new();
                let mut probe = value;
                while let Value::Array(items) = probe {
                    shape.push(items.len());
                    if shape.len() > MAX_RANK {
                        return Err(TensorJsonError::BadNesting {
                            name: name.to_string(),
                            reason: format!("nesting deeper than {MAX_RANK}"),
                        });
                    }
                    match items.first() {
                        Some(first) => probe = first,
                        None => break,
                    }
                }
                let count = Self::element_count(&shape).unwrap_or(usize::MAX);
                if count > MAX_ELEMENTS {
                    return Err(TensorJsonError::TooManyElements {
                        name: name.to_string(),
                    });
                }
                let mut data = Vec::with_capacity(count);
                flatten(name, value, &shape, 0, &mut String::new(), &mut data)?;
                Ok(WireTensor {
                    shape,
                    dtype: None,
                    data,
                })
            }
            other => {
                let s = scalar(other).ok_or_else(|| TensorJsonError::BadElement {
                    name: name.to_string(),
                    path: "(root)".into(),
                })?;
                Ok(WireTensor {
                    shape: vec![],
                    dtype: None,
                    data: vec![s],
                })
            }
        }
    }

    /// Renders as nested arrays (the readable form).
    pub fn to_nested_json(&self) -> Value {
        fn build(shape: &[usize], data: &[Scalar]) -> Value {
            match shape.split_first() {
                None => data
                    .first()
                    .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null),
                Some((&n, rest)) => {
                    let stride: usize = rest.iter().product();
                    Value::Array(
                        (0..n)
                            .map(|i| build(rest, &data[i * stride..(i + 1) * stride]))
                            .collect(),
                    )
                }
            }
        }
        build(&self.shape, &self.data)
    }
}

fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => Some(Scalar::Number(n.clone())),
        Value::String(s) => Some(Scalar::String(s.clone())),
        _ => None,
    }
}

fn flatten(
    name: &str,
    v: &Value,
    shape: &[usize],
    depth: usize,
    path: &mut String,
    out: &mut Vec<Scalar>,
) -> Result<(), TensorJsonError> {
    if depth == shape.len() {
        let s = scalar(v).ok_or_else(|| {
            if v.is_array() {
                TensorJsonError::BadNesting {
                    name: name.to_string(),
                    reason: format!("array at {path} is nested deeper than its siblings"),
                }
            } else {
                TensorJsonError::BadElement {
                    name: name.to_string(),
                    path: path.clone(),
                }
            }
        })?;
        out.push(s);
        return Ok(());
    }
    let Value::Array(items) = v else {
        return Err(TensorJsonError::BadNesting {
            name: name.to_string(),
            reason: format!("expected an array at {path}, found a scalar"),
        });
    };
    if items.len() != shape[depth] {
        return Err(TensorJsonError::Ragged {
            name: name.to_string(),
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.clone()
            },
            expected: shape[depth],
            found: items.len(),
        });
    }
    for (i, item) in items.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        flatten(name, item, shape, depth + 1, path, out)?;
        path.truncate(len);
    }
    Ok(())
}

/// Parses an input document `{"name": tensor, ...}` into named tensors.
pub fn parse_inputs(doc: &Value) -> Result<BTreeMap<String, WireTensor>, TensorJsonError> {
    let Value::Object(map) = doc else {
        return Err(TensorJsonError::NotAnObject(format!(
            "found {}",
            match doc {
                Value::Array(_) => "an array",
                Value::Null => "null",
                _ => "a scalar",
            }
        )));
    };
    map.iter()
        .map(|(k, v)| Ok((k.clone(), WireTensor::from_json(k, v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_arrays_give_shape_and_row_major_data() {
        let t = WireTensor::from_json("x", &json!([[1, 2, 3], [4, 5, 6]])).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        let vals: Vec<i64> = t.data.iter().map(|s| s.as_i64().unwrap()).collect();
        assert_eq!(vals, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(t.to_nested_json(), json!([[1, 2, 3], [4, 5, 6]]));
    }

    #[test]
    fn object_form_checks_count() {
        let t = WireTensor::from_json("x", &json!({"shape": [2, 2], "data": [1, 2, 3, 4]}));
        assert_eq!(t.unwrap().shape, vec![2, 2]);
        let e = WireTensor::from_json("x", &json!({"shape": [2, 2], "data": [1, 2, 3]}));
        assert!(matches!(
            e,
            Err(TensorJsonError::CountMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
        let e = WireTensor::from_json("x", &json!({"shape": [2], "data": [1, 2], "oops": 1}));
        assert!(matches!(e, Err(TensorJsonError::BadNesting { .. })));
    }

    #[test]
    fn ragged_and_bad_elements_name_the_place() {
        let e = WireTensor::from_json("x", &json!([[1, 2], [3]])).unwrap_err();
        assert_eq!(
            e,
            TensorJsonError::Ragged {
                name: "x".into(),
                path: "[1]".into(),
                expected: 2,
                found: 1
            }
        );
        let e = WireTensor::from_json("x", &json!([[1, null]])).unwrap_err();
        assert!(e.to_string().contains("[0][1]"), "{e}");
        let e = WireTensor::from_json("x", &json!([1, [2]])).unwrap_err();
        assert!(matches!(e, TensorJsonError::BadNesting { .. }));
        let e = parse_inputs(&json!([1, 2])).unwrap_err();
        assert!(matches!(e, TensorJsonError::NotAnObject(_)));
    }

    #[test]
    fn floats_print_shortest_and_non_finite_as_strings() {
        assert_eq!(
            serde_json::to_string(&Scalar::from_f32(0.1)).unwrap(),
            "0.1"
        );
        assert_eq!(
            serde_json::to_string(&Scalar::from_f32(f32::NAN)).unwrap(),
            "\"NaN\""
        );
        assert!(Scalar::from_f32(f32::NEG_INFINITY)
            .as_f64()
            .unwrap()
            .is_infinite());
    }
}
