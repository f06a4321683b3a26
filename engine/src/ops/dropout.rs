//! `Dropout`: the identity at inference; with `training_mode` true, zeroes elements with
//! probability `ratio` and scales the rest by `1 / (1 - ratio)`.
//!
//! Why a bit-exact generator: with a `seed` attribute the mask is defined by numpy's legacy
//! `RandomState(seed).uniform(0, 1, shape) >= ratio` (that is how the reference produces it),
//! so the mask comes from the same MT19937 stream and the same 53-bit double construction.
//! Without a seed, the stream is seeded from the clock.

use super::cast::Cast;
use super::{check_arity, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::tensor::Tensor;
use crate::types::TypeShape;
use crate::DType;

/// MT19937 as seeded by numpy's `RandomState(seed)` for an integer seed.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_sample`: 53 random bits in [0, 1).
    fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// The `Dropout` operator.
#[derive(Debug, Clone)]
pub struct Dropout {
    /// `ratio` from the attribute (opset < 12); later it is input 1.
    attr_ratio: Option<f32>,
    seed: Option<i64>,
}

impl Operator for Dropout {
    fn op_type(&self) -> &str {
        "Dropout"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Dropout", inputs.len(), 1, 3)?;
        let x = &inputs[0];
        if !x.dtype.is_float() {
            return Err(super::unsupported_dtype("Dropout", x.dtype));
        }
        Ok(vec![
            TypeShape::new(x.dtype, x.shape.clone()),
            TypeShape::new(DType::Bool, x.shape.clone()),
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Dropout", inputs.len(), 1, 3)?;
        let x = inputs[0];
        let scalar = |t: &Tensor| -> Result<f64> {
            let v = Cast::new(DType::F64).eval(&[t])?.remove(0);
            v.as_f64()
                .and_then(|v| v.first().copied())
                .ok_or_else(|| EngineError::operand("Dropout", "expected a scalar"))
        };
        let ratio = match (self.attr_ratio, inputs.get(1)) {
            (Some(r), _) => f64::from(r),
            (None, Some(t)) if !super::is_absent_tensor(t) => scalar(t)?,
            _ => 0.5,
        };
        let training = match inputs.get(2) {
            Some(t) => scalar(t)? != 0.0,
            None => false,
        };
        if !training || ratio == 0.0 {
            let mask = Tensor::from_bool(x.shape().to_vec(), vec![true; x.len()])?;
            return Ok(vec![x.clone(), mask]);
        }
        if !(0.0..1.0).contains(&ratio) {
            return Err(EngineError::operand(
                "Dropout",
                format!("ratio {ratio} not in [0, 1)"),
            ));
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::from(d.subsec_nanos()))
        });
        let mut rng = Mt19937::new(seed as u32);
        let mask: Vec<bool> = (0..x.len()).map(|_| rng.next_f64() >= ratio).collect();
        let xv = Cast::new(DType::F64).eval(&[x])?.remove(0);
        let xv = xv.as_f64().unwrap_or_default();
        let f32_math = x.dtype() == DType::F32;
        let scale = 1.0 / (1.0 - ratio);
        let y: Vec<f64> = xv
            .iter()
            .zip(&mask)
            .map(|(&v, &m)| match (m, f32_math) {
                (false, _) => 0.0,
                (true, true) => f64::from(v as f32 * scale as f32),
                (true, false) => v * scale,
            })
            .collect();
        let y = Cast::new(x.dtype())
            .eval(&[&Tensor::from_f64(x.shape().to_vec(), y)?])?
            .remove(0);
        Ok(vec![y, Tensor::from_bool(x.shape().to_vec(), mask)?])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Dropout", |ctx| {
        let a = ctx.attributes;
        if ctx.opset < 10 && ctx.num_outputs > 1 {
            return Err(EngineError::UnsupportedFeature(
                "Dropout mask output before opset 10 (mask had X's dtype)".into(),
            ));
        }
        Ok(Box::new(Dropout {
            attr_ratio: if ctx.opset < 12 {
                Some(a.float_or("ratio", 0.5)?)
            } else {
                None
            },
            seed: a.int("seed")?,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_numpy() {
        // numpy: np.random.seed(0); np.random.random_sample(2)
        let mut r = Mt19937::new(0);
        assert!((r.next_f64() - 0.548_813_503_927_325).abs() < 1e-15);
        assert!((r.next_f64() - 0.715_189_366_372_419_6).abs() < 1e-15);
    }
}
