//! Data-movement operators: `Identity`, `Reshape`, `Flatten`, `Transpose`, `Concat`.
//!
//! Why together: none of them compute on element values, so each is written once for every
//! dtype (via `dispatch_all!`), and their interest lies entirely in shape rules.

use super::{check_arity, dispatch_all, same_dtype, OpRegistry, Operator};
use crate::broadcast::for_each_offset;
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, numel, strides};
use crate::tensor::{Element, Tensor};
use crate::types::{Dim, TypeShape};
use crate::DType;

/// `Identity`: returns its input.
#[derive(Debug, Clone, Default)]
pub struct Identity;

impl Operator for Identity {
    fn op_type(&self) -> &str {
        "Identity"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Identity", inputs.len(), 1, 1)?;
        Ok(vec![inputs[0].clone()])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Identity", inputs.len(), 1, 1)?;
        Ok(vec![inputs[0].clone()])
    }
}

/// `Reshape` (opset >= 5: shape as an `int64` input; `0` copies a dim unless `allowzero`).
#[derive(Debug, Clone, Default)]
pub struct Reshape {
    allow_zero: bool,
}

impl Reshape {
    /// Builds the operator.
    pub fn new(allow_zero: bool) -> Reshape {
        Reshape { allow_zero }
    }

    /// Resolves the requested `spec` against a concrete input shape.
    fn resolve(&self, input: &[usize], spec: &[i64]) -> Result<Vec<usize>> {
        let op = "Reshape";
        let mut out = Vec::with_capacity(spec.len());
        let mut infer_at = None;
        for (i, &s) in spec.iter().enumerate() {
            match s {
                -1 if infer_at.is_none() => {
                    infer_at = Some(i);
                    out.push(1);
                }
                -1 => return Err(EngineError::operand(op, "more than one -1 in shape")),
                0 if !self.allow_zero => out.push(*input.get(i).ok_or_else(|| {
                    EngineError::operand(
                        op,
                        format!("0 at axis {i} but input has rank {}", input.len()),
                    )
                })?),
                s if s >= 0 => out.push(
                    usize::try_from(s)
                        .map_err(|_| EngineError::operand(op, "dimension too large"))?,
                ),
                s => return Err(EngineError::operand(op, format!("invalid dimension {s}"))),
            }
        }
        let total = numel(input)?;
        if let Some(at) = infer_at {
            let known = numel(&out)?;
            if known == 0 || total % known != 0 {
                return Err(EngineError::operand(
                    op,
                    format!("cannot infer -1 reshaping {input:?} to {spec:?}"),
                ));
            }
            out[at] = total / known;
        }
        if numel(&out)? != total {
            return Err(EngineError::operand(
                op,
                format!("cannot reshape {input:?} to {spec:?}"),
            ));
        }
        Ok(out)
    }
}

fn shape_spec<'a>(op: &str, t: &'a Tensor) -> Result<&'a [i64]> {
    if t.rank() != 1 {
        return Err(EngineError::operand(op, "shape input must be 1-D"));
    }
    t.as_i64()
        .ok_or_else(|| EngineError::operand(op, "shape input must be int64"))
}

impl Operator for Reshape {
    fn op_type(&self) -> &str {
        "Reshape"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Reshape", inputs.len(), 2, 2)?;
        let (x, s) = (&inputs[0], &inputs[1]);
        if s.dtype != DType::I64 || s.rank() != 1 {
            return Err(EngineError::operand(
                "Reshape",
                "shape input must be 1-D int64",
            ));
        }
        let shape = match (&s.value, x.concrete_shape()) {
            (Some(spec), Some(xs)) => self
                .resolve(&xs, shape_spec("Reshape", spec)?)?
                .into_iter()
                .map(Dim::Fixed)
                .collect(),
            (Some(spec), None) => shape_spec("Reshape", spec)?
                .iter()
                .enumerate()
                .map(|(i, &d)| match d {
                    0 if !self.allow_zero => x.shape.get(i).cloned().unwrap_or_else(Dim::unknown),
                    d if d > 0 => Dim::Fixed(d as usize),
                    _ => Dim::unknown(),
                })
                .collect(),
            (None, _) => match s.shape[0] {
                Dim::Fixed(r) => vec![Dim::unknown(); r],
                Dim::Symbolic(_) => {
                    return Err(EngineError::UnsupportedFeature(
                        "Reshape to a shape of unknown rank".into(),
                    ))
                }
            },
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Reshape", inputs.len(), 2, 2)?;
        let shape = self.resolve(inputs[0].shape(), shape_spec("Reshape", inputs[1])?)?;
        Ok(vec![inputs[0].clone().reshaped(shape)?])
    }
}

/// `Flatten`: reshapes to 2-D `[prod(shape[..axis]), prod(shape[axis..])]`.
#[derive(Debug, Clone)]
pub struct Flatten {
    axis: i64,
}

impl Flatten {
    /// Builds the operator (`axis` in `[-rank, rank]`).
    pub fn new(axis: i64) -> Flatten {
        Flatten { axis }
    }

    fn split(&self, rank: usize) -> Result<usize> {
        // Unlike most ops, axis == rank is valid; negative axes count from `rank`.
        if self.axis < 0 {
            normalize_axis("Flatten", self.axis, rank)
        } else {
            normalize_axis("Flatten", self.axis, rank + 1)
        }
    }
}

fn product_dims(dims: &[Dim]) -> Dim {
    let mut n = 1usize;
    for d in dims {
        match d {
            Dim::Fixed(v) => n = n.saturating_mul(*v),
            Dim::Symbolic(_) => {
                return if dims.len() == 1 {
                    d.clone()
                } else {
                    Dim::unknown()
                }
            }
        }
    }
    Dim::Fixed(n)
}

impl Operator for Flatten {
    fn op_type(&self) -> &str {
        "Flatten"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Flatten", inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let a = self.split(x.rank())?;
        Ok(vec![TypeShape::new(
            x.dtype,
            vec![product_dims(&x.shape[..a]), product_dims(&x.shape[a..])],
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Flatten", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let a = self.split(x.rank())?;
        let shape = vec![numel(&x.shape()[..a])?, numel(&x.shape()[a..])?];
        Ok(vec![x.clone().reshaped(shape)?])
    }
}

/// `Transpose`: permutes axes (`perm` defaults to reversing them).
#[derive(Debug, Clone)]
pub struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Transpose {
    /// Builds the operator.
    pub fn new(perm: Option<Vec<i64>>) -> Transpose {
        Transpose { perm }
    }

    fn perm(&self, rank: usize) -> Result<Vec<usize>> {
        let Some(p) = &self.perm else {
            return Ok((0..rank).rev().collect());
        };
        if p.len() != rank {
            return Err(EngineError::operand(
                "Transpose",
                format!("perm {p:?} has wrong length for rank {rank}"),
            ));
        }
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(rank);
        for &a in p {
            let a = normalize_axis("Transpose", a, rank)?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(EngineError::operand(
                    "Transpose",
                    format!("perm {p:?} is not a permutation"),
                ));
            }
            out.push(a);
        }
        Ok(out)
    }
}

fn permute<T: Element>(v: &[T], shape: &[usize], perm: &[usize]) -> Result<Tensor> {
    let src = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let s: Vec<usize> = perm.iter().map(|&p| src[p]).collect();
    let mut out = Vec::with_capacity(v.len());
    for_each_offset(&out_shape, &s, |o| out.push(v[o]));
    Tensor::from_vec(out_shape, out)
}

impl Operator for Transpose {
    fn op_type(&self) -> &str {
        "Transpose"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Transpose", inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let perm = self.perm(x.rank())?;
        Ok(vec![TypeShape::new(
            x.dtype,
            perm.iter().map(|&p| x.shape[p].clone()).collect(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Transpose", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let perm = self.perm(x.rank())?;
        let out = dispatch_all!(x.dtype(), T => {
            let v = x.as_slice::<T>().ok_or_else(|| EngineError::operand("Transpose", "dtype"))?;
            permute(v, x.shape(), &perm)?
        });
        Ok(vec![out])
    }
}

/// `Concat`: joins inputs along `axis`.
#[derive(Debug, Clone)]
pub struct Concat {
    axis: i64,
}

impl Concat {
    /// Builds the operator.
    pub fn new(axis: i64) -> Concat {
        Concat { axis }
    }
}

fn concat<T: Element>(inputs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = inputs[0].shape();
    let mut out_shape = first.to_vec();
    out_shape[axis] = 0;
    for t in inputs {
        let s = t.shape();
        if s.len() != first.len()
            || s.iter()
                .zip(first)
                .enumerate()
                .any(|(i, (a, b))| i != axis && a != b)
        {
            return Err(EngineError::operand(
                "Concat",
                format!("shapes {first:?} and {s:?} differ off axis {axis}"),
            ));
        }
        out_shape[axis] = out_shape[axis]
            .checked_add(s[axis])
            .ok_or_else(|| EngineError::operand("Concat", "size overflow"))?;
    }
    let total = numel(&out_shape)?;
    let outer: usize = first[..axis].iter().product();
    let inner: usize = first[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for t in inputs {
            let v = t
                .as_slice::<T>()
                .ok_or_else(|| EngineError::operand("Concat", "operands have different dtypes"))?;
            let chunk = t.shape()[axis] * inner;
            out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor::from_vec(out_shape, out)
}

impl Operator for Concat {
    fn op_type(&self) -> &str {
        "Concat"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Concat", inputs.len(), 1, usize::MAX)?;
        let dtype = same_dtype("Concat", inputs)?;
        let rank = inputs[0].rank();
        if inputs.iter().any(|t| t.rank() != rank) {
            return Err(EngineError::operand(
                "Concat",
                "operands have different ranks",
            ));
        }
        let axis = normalize_axis("Concat", self.axis, rank)?;
        let mut shape = inputs[0].shape.clone();
        shape[axis] = product_sum(inputs.iter().map(|t| &t.shape[axis]));
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Concat", inputs.len(), 1, usize::MAX)?;
        let axis = normalize_axis("Concat", self.axis, inputs[0].rank())?;
        let out = dispatch_all!(inputs[0].dtype(), T => concat::<T>(inputs, axis)?);
        Ok(vec![out])
    }
}

/// Sum of dims when all are fixed, else unknown.
fn product_sum<'a>(dims: impl Iterator<Item = &'a Dim>) -> Dim {
    let mut n = 0usize;
    for d in dims {
        match d {
            Dim::Fixed(v) => n = n.saturating_add(*v),
            Dim::Symbolic(_) => return Dim::unknown(),
        }
    }
    Dim::Fixed(n)
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Identity", |_| Ok(Box::new(Identity)));
    r.register("", "Reshape", |ctx| {
        if ctx.opset < 5 {
            return Err(EngineError::UnsupportedFeature(
                "Reshape before opset 5 (shape attribute)".into(),
            ));
        }
        Ok(Box::new(Reshape::new(
            ctx.attributes.int_or("allowzero", 0)? != 0,
        )))
    });
    r.register("", "Flatten", |ctx| {
        Ok(Box::new(Flatten::new(ctx.attributes.int_or("axis", 1)?)))
    });
    r.register("", "Transpose", |ctx| {
        let perm = ctx.attributes.ints("perm")?.map(<[i64]>::to_vec);
        Ok(Box::new(Transpose::new(perm)))
    });
    r.register("", "Concat", |ctx| {
        Ok(Box::new(Concat::new(ctx.attributes.required_int("axis")?)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t23() -> Tensor {
        Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap()
    }

    #[test]
    fn reshape_rules() {
        let r = Reshape::new(false);
        let spec = |v: Vec<i64>| Tensor::from_i64(vec![v.len()], v).unwrap();
        let y = r.eval(&[&t23(), &spec(vec![3, -1])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_f32().unwrap(), t23().as_f32().unwrap());
        let y = r.eval(&[&t23(), &spec(vec![0, 3])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2, 3]);
        assert!(r.eval(&[&t23(), &spec(vec![4, -1])]).is_err());
        assert!(r.eval(&[&t23(), &spec(vec![-1, -1])]).is_err());
        assert!(r.eval(&[&t23(), &spec(vec![-2, 3])]).is_err());
        assert!(r.eval(&[&t23(), &spec(vec![5])]).is_err());
    }

    #[test]
    fn flatten_axes() {
        let x = Tensor::from_i64(vec![2, 3, 4], (0..24).collect()).unwrap();
        let f = |a| Flatten::new(a).eval(&[&x]).unwrap().remove(0);
        assert_eq!(f(1).shape(), &[2, 12]);
        assert_eq!(f(0).shape(), &[1, 24]);
        assert_eq!(f(3).shape(), &[24, 1]);
        assert_eq!(f(-1).shape(), &[6, 4]);
        assert!(Flatten::new(4).eval(&[&x]).is_err());
    }

    #[test]
    fn transpose_default_and_perm() {
        let y = Transpose::new(None).eval(&[&t23()]).unwrap().remove(0);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_f32().unwrap(), &[1., 4., 2., 5., 3., 6.]);
        let x = Tensor::from_i64(vec![2, 3, 4], (0..24).collect()).unwrap();
        let y = Transpose::new(Some(vec![1, 0, 2]))
            .eval(&[&x])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), &[3, 2, 4]);
        assert_eq!(&y.as_i64().unwrap()[..8], &[0, 1, 2, 3, 12, 13, 14, 15]);
        assert!(Transpose::new(Some(vec![0, 0, 1])).eval(&[&x]).is_err());
    }

    #[test]
    fn concat_axes() {
        let a = t23();
        let b = Tensor::from_f32(vec![1, 3], vec![7., 8., 9.]).unwrap();
        let y = Concat::new(0).eval(&[&a, &b]).unwrap().remove(0);
        assert_eq!(y.shape(), &[3, 3]);
        assert_eq!(y.as_f32().unwrap()[6..], [7., 8., 9.]);
        let c = Tensor::from_f32(vec![2, 1], vec![0., -1.]).unwrap();
        let y = Concat::new(-1).eval(&[&a, &c]).unwrap().remove(0);
        assert_eq!(y.as_f32().unwrap(), &[1., 2., 3., 0., 4., 5., 6., -1.]);
        assert!(Concat::new(1).eval(&[&a, &b]).is_err());
        let i = Tensor::from_i64(vec![1, 3], vec![1, 2, 3]).unwrap();
        assert!(Concat::new(0).eval(&[&a, &i]).is_err());
    }
}
