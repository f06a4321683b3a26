//! Window generators: `HannWindow`, `HammingWindow`, `BlackmanWindow`.
//!
//! Why a module: these are the signal-processing family's building blocks (STFT and DFT will
//! join them); each is a closed-form function of the index, computed in `f64`.

use std::f64::consts::PI;

use super::cast::Cast;
use super::tensor_ops::int_list;
use super::{check_arity, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

/// Which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hann,
    Hamming,
    Blackman,
}

/// A window-generating operator.
#[derive(Debug, Clone)]
pub struct Window {
    kind: Kind,
    dtype: DType,
    periodic: bool,
}

impl Window {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Hann => "HannWindow",
            Kind::Hamming => "HammingWindow",
            Kind::Blackman => "BlackmanWindow",
        }
    }
}

impl Operator for Window {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let len = match &inputs[0].value {
            Some(v) => Dim::Fixed(
                int_list(self.name(), v)?
                    .first()
                    .copied()
                    .unwrap_or(0)
                    .max(0) as usize,
            ),
            None => Dim::unknown(),
        };
        Ok(vec![TypeShape::new(self.dtype, vec![len])])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let size = *int_list(self.name(), inputs[0])?
            .first()
            .ok_or_else(|| EngineError::operand(self.name(), "size must be a scalar"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= 1 << 24)
            .ok_or_else(|| EngineError::operand(self.name(), "size out of range"))?;
        let n = if self.periodic {
            size
        } else {
            size.saturating_sub(1)
        } as f64;
        let v: Vec<f64> = (0..size)
            .map(|i| {
                let i = i as f64;
                match self.kind {
                    Kind::Hann => (PI * i / n).sin().powi(2),
                    Kind::Hamming => {
                        let alpha = 25.0 / 46.0;
                        alpha - (i * PI * 2.0 / n).cos() * (1.0 - alpha)
                    }
                    Kind::Blackman => {
                        0.42 - 0.5 * (2.0 * PI * i / n).cos() + 0.08 * (4.0 * PI * i / n).cos()
                    }
                }
            })
            .collect();
        Cast::new(self.dtype).eval(&[&Tensor::from_f64(vec![size], v)?])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for (name, kind) in [
        ("HannWindow", Kind::Hann),
        ("HammingWindow", Kind::Hamming),
        ("BlackmanWindow", Kind::Blackman),
    ] {
        r.register("", name, move |ctx| {
            let a = ctx.attributes;
            let code = a.int_or("output_datatype", 1)?;
            Ok(Box::new(Window {
                kind,
                dtype: DType::from_onnx(i32::try_from(code).unwrap_or(0))?,
                periodic: a.int_or("periodic", 1)? != 0,
            }))
        });
    }
}
