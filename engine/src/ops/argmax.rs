//! `ArgMax` / `ArgMin`: index of the extreme value along an axis, as `int64`.
//!
//! Why its own module: the first reduction; `keepdims` and `select_last_index` handling here is
//! the template for the Reduce* family. Ties go to the first index unless `select_last_index`.

use super::{check_arity, dispatch_all, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::normalize_axis;
use crate::tensor::{Element, Tensor};
use crate::types::{Dim, TypeShape};
use crate::DType;

/// An arg-reduction operator.
#[derive(Debug, Clone)]
pub struct ArgReduce {
    max: bool,
    axis: i64,
    keepdims: bool,
    select_last: bool,
}

impl ArgReduce {
    /// `ArgMax` when `max`, else `ArgMin`.
    pub fn new(max: bool, axis: i64, keepdims: bool, select_last: bool) -> ArgReduce {
        ArgReduce {
            max,
            axis,
            keepdims,
            select_last,
        }
    }

    fn name(&self) -> &'static str {
        if self.max {
            "ArgMax"
        } else {
            "ArgMin"
        }
    }

    fn compute<T: Element>(&self, x: &Tensor, axis: usize) -> Result<Tensor> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand(self.name(), "dtype"))?;
        let shape = x.shape();
        let n = shape[axis];
        if n == 0 {
            return Err(EngineError::operand(self.name(), "reduced axis is empty"));
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| v[(o * n + k) * inner + i];
                let mut best = 0usize;
                for k in 1..n {
                    let (c, b) = (at(k), at(best));
                    let better = if self.max { c > b } else { c < b };
                    if better || (self.select_last && c == b) {
                        best = k;
                    }
                }
                out.push(best as i64);
            }
        }
        let mut out_shape = shape.to_vec();
        if self.keepdims {
            out_shape[axis] = 1;
        } else {
            out_shape.remove(axis);
        }
        Tensor::from_i64(out_shape, out)
    }
}

impl Operator for ArgReduce {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let axis = normalize_axis(self.name(), self.axis, x.rank())?;
        let mut shape = x.shape.clone();
        if self.keepdims {
            shape[axis] = Dim::Fixed(1);
        } else {
            shape.remove(axis);
        }
        Ok(vec![TypeShape::new(DType::I64, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        let axis = normalize_axis(self.name(), self.axis, x.rank())?;
        let out = dispatch_all!(x.dtype(), T => self.compute::<T>(x, axis)?);
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for max in [true, false] {
        r.register("", if max { "ArgMax" } else { "ArgMin" }, move |ctx| {
            let a = ctx.attributes;
            Ok(Box::new(ArgReduce::new(
                max,
                a.int_or("axis", 0)?,
                a.int_or("keepdims", 1)? != 0,
                a.int_or("select_last_index", 0)? != 0,
            )))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_axes_keepdims_and_ties() {
        let x = Tensor::from_f32(vec![2, 3], vec![1., 5., 5., 7., 0., 2.]).unwrap();
        let y = ArgReduce::new(true, 1, false, false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.as_i64().unwrap(), &[1, 0]);
        let y = ArgReduce::new(true, -1, true, true)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(y.as_i64().unwrap(), &[2, 0]);
        let y = ArgReduce::new(true, 0, true, false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[1, 3]);
        assert_eq!(y.as_i64().unwrap(), &[1, 0, 0]);
        let y = ArgReduce::new(false, 1, false, false)
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.as_i64().unwrap(), &[0, 1]);
        assert!(ArgReduce::new(true, 2, false, false).eval(&[&x]).is_err());
    }
}
