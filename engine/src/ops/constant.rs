//! `Constant`: a node whose output is fixed by its attributes.
//!
//! Why an operator and not an initializer: ONNX exporters emit both; treating `Constant` as an
//! ordinary node keeps the loader simple, and a later constant-folding pass can turn it into an
//! initializer.

use std::sync::Arc;

use super::{check_arity, OpRegistry, Operator};
use crate::attributes::AttrValue;
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::TypeShape;

/// The `Constant` operator.
#[derive(Debug, Clone)]
pub struct Constant {
    value: Arc<Tensor>,
}

impl Constant {
    /// A constant producing `value`.
    pub fn new(value: Arc<Tensor>) -> Constant {
        Constant { value }
    }
}

impl Operator for Constant {
    fn op_type(&self) -> &str {
        "Constant"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Constant", inputs.len(), 0, 0)?;
        Ok(vec![TypeShape::of_constant(self.value.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Constant", inputs.len(), 0, 0)?;
        Ok(vec![(*self.value).clone()])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Constant", |ctx| {
        let a = ctx.attributes;
        let mut names = a.names();
        let (Some(name), None) = (names.next(), names.next()) else {
            return Err(EngineError::InvalidModel(format!(
                "Constant node {:?} must have exactly one attribute",
                ctx.name
            )));
        };
        let t = match (name, a.get(name)) {
            ("value", _) => a
                .tensor("value")?
                .cloned()
                .ok_or_else(|| a.invalid("value", "missing"))?,
            ("value_float", Some(AttrValue::Float(v))) => Arc::new(Tensor::scalar(*v)),
            ("value_int", Some(AttrValue::Int(v))) => Arc::new(Tensor::scalar(*v)),
            ("value_floats", Some(AttrValue::Floats(v))) => {
                Arc::new(Tensor::from_f32(vec![v.len()], v.clone())?)
            }
            ("value_ints", Some(AttrValue::Ints(v))) => {
                Arc::new(Tensor::from_i64(vec![v.len()], v.clone())?)
            }
            (other, _) => {
                return Err(EngineError::UnsupportedFeature(format!(
                    "Constant attribute {other:?}"
                )))
            }
        };
        Ok(Box::new(Constant::new(t)))
    });
}
