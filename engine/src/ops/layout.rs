//! Layout and generator operators: `DepthToSpace`, `SpaceToDepth`, `EyeLike`, `TopK`,
//! `Hardmax`.
//!
//! Why together: each is a fixed permutation or selection of elements computed from shapes and
//! attributes alone (no arithmetic on values beyond comparisons), built as an index list and
//! applied with [`take`].

use super::tensor_ops::{int_list, take};
use super::{check_arity, dispatch_all, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::{normalize_axis, numel};
use crate::tensor::{Element, Tensor};
use crate::types::{Dim, TypeShape};
use crate::DType;

/// `DepthToSpace` and `SpaceToDepth`, modes DCR and CRD.
#[derive(Debug, Clone)]
pub struct DepthSpace {
    to_space: bool,
    block: usize,
    crd: bool,
}

impl DepthSpace {
    fn name(&self) -> &'static str {
        if self.to_space {
            "DepthToSpace"
        } else {
            "SpaceToDepth"
        }
    }

    fn out_shape(&self, s: &[usize]) -> Result<Vec<usize>> {
        let b = self.block;
        if s.len() != 4 || b == 0 {
            return Err(EngineError::operand(
                self.name(),
                "input must be N x C x H x W",
            ));
        }
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        if self.to_space {
            if c % (b * b) != 0 {
                return Err(EngineError::operand(
                    self.name(),
                    "C not divisible by blocksize^2",
                ));
            }
            Ok(vec![n, c / (b * b), h * b, w * b])
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(EngineError::operand(
                    self.name(),
                    "H/W not divisible by blocksize",
                ));
            }
            Ok(vec![n, c * b * b, h / b, w / b])
        }
    }
}

impl Operator for DepthSpace {
    fn op_type(&self) -> &str {
        self.name()
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = &inputs[0];
        let shape = match x.concrete_shape() {
            Some(s) => self.out_shape(&s)?.into_iter().map(Dim::Fixed).collect(),
            None if x.rank() == 4 => vec![Dim::unknown(); 4],
            None => return Err(EngineError::operand(self.name(), "input must be 4-D")),
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity(self.name(), inputs.len(), 1, 1)?;
        let x = inputs[0];
        let out = self.out_shape(x.shape())?;
        let b = self.block;
        let (c, h, w) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let mut idx = Vec::with_capacity(numel(&out)?);
        for n in 0..out[0] {
            for oc in 0..out[1] {
                for oh in 0..out[2] {
                    for ow in 0..out[3] {
                        let (ic, ih, iw) = if self.to_space {
                            let (bh, bw) = (oh % b, ow % b);
                            let cc = if self.crd {
                                oc * b * b + bh * b + bw
                            } else {
                                (bh * b + bw) * out[1] + oc
                            };
                            (cc, oh / b, ow / b)
                        } else {
                            let (k, ic) = if self.crd {
                                (oc % (b * b), oc / (b * b))
                            } else {
                                (oc / c, oc % c)
                            };
                            (ic, oh * b + k / b, ow * b + k % b)
                        };
                        idx.push(Some(((n * c + ic) * h + ih) * w + iw));
                    }
                }
            }
        }
        Ok(vec![take(x, out, &idx, None)?])
    }
}

/// `EyeLike`: a 2-D tensor of the input's shape with ones on diagonal `k`.
#[derive(Debug, Clone)]
pub struct EyeLike {
    dtype: Option<DType>,
    k: i64,
}

impl Operator for EyeLike {
    fn op_type(&self) -> &str {
        "EyeLike"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("EyeLike", inputs.len(), 1, 1)?;
        if inputs[0].rank() != 2 {
            return Err(EngineError::operand("EyeLike", "input must be 2-D"));
        }
        let d = self.dtype.unwrap_or(inputs[0].dtype);
        Ok(vec![TypeShape::new(d, inputs[0].shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("EyeLike", inputs.len(), 1, 1)?;
        let s = inputs[0].shape();
        if s.len() != 2 {
            return Err(EngineError::operand("EyeLike", "input must be 2-D"));
        }
        let v: Vec<i64> = (0..s[0] * s[1])
            .map(|o| i64::from((o % s[1]) as i64 - (o / s[1]) as i64 == self.k))
            .collect();
        let t = Tensor::from_i64(s.to_vec(), v)?;
        let d = self.dtype.unwrap_or(inputs[0].dtype());
        super::cast::Cast::new(d).eval(&[&t])
    }
}

/// `TopK(X, K)`: the `K` largest (or smallest) along `axis`, values and `int64` indices;
/// ties go to the lower index.
#[derive(Debug, Clone)]
pub struct TopK {
    axis: i64,
    largest: bool,
}

fn order<T: Element>(v: &[T], largest: bool, a: usize, b: usize) -> std::cmp::Ordering {
    let (x, y) = (v[a], v[b]);
    let ord = if largest {
        y.partial_cmp(&x)
    } else {
        x.partial_cmp(&y)
    };
    ord.unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
}

impl TopK {
    fn select<T: Element>(&self, x: &Tensor, k: usize, axis: usize) -> Result<Vec<Tensor>> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("TopK", "dtype"))?;
        let s = x.shape();
        let n = s[axis];
        if k > n {
            return Err(EngineError::operand(
                "TopK",
                format!("k {k} > axis size {n}"),
            ));
        }
        let outer: usize = s[..axis].iter().product();
        let inner: usize = s[axis + 1..].iter().product();
        let mut idx = Vec::with_capacity(outer * k * inner);
        let mut pos = vec![0i64; outer * k * inner];
        for o in 0..outer {
            for i in 0..inner {
                let mut cand: Vec<usize> = (0..n).map(|j| (o * n + j) * inner + i).collect();
                cand.sort_by(|&a, &b| order(v, self.largest, a, b));
                for (r, &c) in cand.iter().take(k).enumerate() {
                    pos[(o * k + r) * inner + i] = ((c / inner) % n) as i64;
                }
            }
        }
        for o in 0..outer {
            for r in 0..k {
                for i in 0..inner {
                    let j = pos[(o * k + r) * inner + i] as usize;
                    idx.push(Some((o * n + j) * inner + i));
                }
            }
        }
        let mut shape = s.to_vec();
        shape[axis] = k;
        Ok(vec![
            take(x, shape.clone(), &idx, None)?,
            Tensor::from_i64(shape, pos)?,
        ])
    }
}

impl Operator for TopK {
    fn op_type(&self) -> &str {
        "TopK"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("TopK", inputs.len(), 2, 2)?;
        let x = &inputs[0];
        let axis = normalize_axis("TopK", self.axis, x.rank())?;
        let mut shape = x.shape.clone();
        shape[axis] = match &inputs[1].value {
            Some(k) => {
                Dim::Fixed(int_list("TopK", k)?.first().copied().unwrap_or(0).max(0) as usize)
            }
            None => Dim::unknown(),
        };
        Ok(vec![
            TypeShape::new(x.dtype, shape.clone()),
            TypeShape::new(DType::I64, shape),
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("TopK", inputs.len(), 2, 2)?;
        let x = inputs[0];
        let axis = normalize_axis("TopK", self.axis, x.rank())?;
        let k = int_list("TopK", inputs[1])?;
        let k = usize::try_from(
            *k.first()
                .ok_or_else(|| EngineError::operand("TopK", "K is empty"))?,
        )
        .map_err(|_| EngineError::operand("TopK", "K is negative"))?;
        dispatch_all!(x.dtype(), T => self.select::<T>(x, k, axis))
    }
}

/// `Hardmax`: 1 at the first maximum along `axis` (opset < 13: of the flattened trailing
/// block), 0 elsewhere.
#[derive(Debug, Clone)]
pub struct Hardmax {
    axis: i64,
    legacy: bool,
}

impl Hardmax {
    fn run<T: Element>(&self, x: &Tensor) -> Result<Tensor> {
        let v = x
            .as_slice::<T>()
            .ok_or_else(|| EngineError::operand("Hardmax", "dtype"))?;
        let s = x.shape();
        let axis = normalize_axis("Hardmax", self.axis, s.len())?;
        let outer: usize = s[..axis].iter().product();
        let (n, inner) = if self.legacy {
            (s[axis..].iter().product(), 1)
        } else {
            (s[axis], s[axis + 1..].iter().product())
        };
        let mut out = vec![0i64; v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                if n == 0 {
                    continue;
                }
                let mut best = 0usize;
                for j in 1..n {
                    if v[at(j)] > v[at(best)] {
                        best = j;
                    }
                }
                out[at(best)] = 1;
            }
        }
        let t = Tensor::from_i64(s.to_vec(), out)?;
        super::cast::Cast::new(x.dtype())
            .eval(&[&t])
            .map(|mut r| r.remove(0))
    }
}

impl Operator for Hardmax {
    fn op_type(&self) -> &str {
        "Hardmax"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Hardmax", inputs.len(), 1, 1)?;
        normalize_axis("Hardmax", self.axis, inputs[0].rank())?;
        Ok(vec![TypeShape::new(
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Hardmax", inputs.len(), 1, 1)?;
        let x = inputs[0];
        let out = dispatch_all!(x.dtype(), T => self.run::<T>(x)?);
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    for to_space in [true, false] {
        r.register(
            "",
            if to_space {
                "DepthToSpace"
            } else {
                "SpaceToDepth"
            },
            move |ctx| {
                let a = ctx.attributes;
                let b = a.required_int("blocksize")?;
                let crd = match a.string("mode")?.unwrap_or("DCR") {
                    "DCR" => false,
                    "CRD" => true,
                    other => return Err(a.invalid("mode", format!("unsupported mode {other:?}"))),
                };
                Ok(Box::new(DepthSpace {
                    to_space,
                    block: usize::try_from(b).map_err(|_| a.invalid("blocksize", "must be > 0"))?,
                    crd,
                }))
            },
        );
    }
    r.register("", "EyeLike", |ctx| {
        let a = ctx.attributes;
        let dtype = match a.int("dtype")? {
            Some(c) => Some(DType::from_onnx(i32::try_from(c).unwrap_or(0))?),
            None => None,
        };
        Ok(Box::new(EyeLike {
            dtype,
            k: a.int_or("k", 0)?,
        }))
    });
    r.register("", "TopK", |ctx| {
        let a = ctx.attributes;
        if ctx.opset < 10 {
            return Err(EngineError::UnsupportedFeature(
                "TopK before opset 10 (k attribute)".into(),
            ));
        }
        // `sorted = 0` leaves the order implementation-defined; sorted output satisfies it.
        Ok(Box::new(TopK {
            axis: a.int_or("axis", -1)?,
            largest: a.int_or("largest", 1)? != 0,
        }))
    });
    r.register("", "Hardmax", |ctx| {
        let legacy = ctx.opset < 13;
        Ok(Box::new(Hardmax {
            axis: ctx.attributes.int_or("axis", if legacy { 1 } else { -1 })?,
            legacy,
        }))
    });
}
