//! `Einsum` (explicit or implicit output, `...` ellipsis with broadcasting) and
//! `RotaryEmbedding` (rotary position embeddings, halves or interleaved pairs).
//!
//! Why a direct loop for `Einsum`: a reference must be obviously right; it visits every
//! combination of index values once and sums products in `f64` (16-bit floats round after each
//! multiply and add, as numpy's einsum does for them). Contractions that matter for speed
//! (matmul-shaped) will be rewritten to `MatMul` by a graph pass, not made fast here.

use std::collections::BTreeMap;

use super::cast::Cast;
use super::{check_arity, OpRegistry, Operator};
use crate::error::{EngineError, Result};
use crate::shape::{numel, strides};
use crate::tensor::Tensor;
use crate::types::{Dim, TypeShape};
use crate::DType;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    let c = Cast::new(DType::F64).eval(&[t])?.remove(0);
    Ok(c.as_f64().unwrap_or_default().to_vec())
}

fn back(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
    Cast::new(dtype)
        .eval(&[&Tensor::from_f64(shape, v)?])
        .map(|mut r| r.remove(0))
}

/// The `Einsum` operator.
#[derive(Debug, Clone)]
pub struct Einsum {
    inputs: Vec<String>,
    output: Option<String>,
}

/// Letters standing in for ellipsis dimensions (never valid einsum subscripts).
const ELLIPSIS: &[char] = &['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

impl Einsum {
    fn parse(eq: &str) -> Result<Einsum> {
        let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let inputs: Vec<String> = lhs.split(',').map(str::to_string).collect();
        let valid = |s: &str| {
            s.replace("...", "")
                .chars()
                .all(|c| c.is_ascii_alphabetic())
        };
        if !inputs.iter().all(|s| valid(s)) || !rhs.as_deref().is_none_or(valid) {
            return Err(EngineError::operand(
                "Einsum",
                format!("bad equation {eq:?}"),
            ));
        }
        Ok(Einsum {
            inputs,
            output: rhs,
        })
    }

    /// Expands `...` for an operand of `rank`, returning its subscripts and ellipsis rank.
    fn expand(term: &str, rank: usize) -> Result<(Vec<char>, usize)> {
        let letters = term.replace("...", "").chars().count();
        if !term.contains("...") {
            if letters != rank {
                return Err(EngineError::operand(
                    "Einsum",
                    format!("term {term:?} does not match rank {rank}"),
                ));
            }
            return Ok((term.chars().collect(), 0));
        }
        let e = rank
            .checked_sub(letters)
            .filter(|e| *e <= ELLIPSIS.len())
            .ok_or_else(|| EngineError::operand("Einsum", "ellipsis rank mismatch"))?;
        let (pre, post) = term.split_once("...").unwrap_or((term, ""));
        let mut v: Vec<char> = pre.chars().collect();
        // Ellipsis dims are right-aligned, numpy style.
        v.extend(ELLIPSIS[ELLIPSIS.len() - e..].iter());
        v.extend(post.chars());
        Ok((v, e))
    }

    /// Subscripts per operand, output subscripts, and the size of every subscript.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        shapes: &[&[usize]],
    ) -> Result<(Vec<Vec<char>>, Vec<char>, BTreeMap<char, usize>)> {
        if shapes.len() != self.inputs.len() {
            return Err(EngineError::operand(
                "Einsum",
                "operand count does not match equation",
            ));
        }
        let mut subs = Vec::new();
        let mut sizes: BTreeMap<char, usize> = BTreeMap::new();
        let mut max_e = 0;
        for (term, shape) in self.inputs.iter().zip(shapes) {
            let (s, e) = Einsum::expand(term, shape.len())?;
            max_e = max_e.max(e);
            for (&c, &d) in s.iter().zip(shape.iter()) {
                let cur = sizes.entry(c).or_insert(d);
                if *cur != d {
                    let is_ell = ELLIPSIS.contains(&c);
                    if is_ell && (*cur == 1 || d == 1) {
                        *cur = (*cur).max(d);
                    } else {
                        return Err(EngineError::operand(
                            "Einsum",
                            format!("subscript {c} has sizes {cur} and {d}"),
                        ));
                    }
                }
            }
            subs.push(s);
        }
        let ell: Vec<char> = ELLIPSIS[ELLIPSIS.len() - max_e..].to_vec();
        let out: Vec<char> = match &self.output {
            Some(o) => {
                let (pre, post) = o.split_once("...").unwrap_or((o.as_str(), ""));
                let mut v: Vec<char> = pre.chars().collect();
                if o.contains("...") {
                    v.extend(ell.iter());
                }
                v.extend(post.chars());
                v
            }
            None => {
                let mut count: BTreeMap<char, usize> = BTreeMap::new();
                for s in &subs {
                    for &c in s {
                        *count.entry(c).or_default() += 1;
                    }
                }
                let mut v = ell.clone();
                v.extend(
                    count
                        .iter()
                        .filter(|(c, &n)| n == 1 && !ELLIPSIS.contains(c))
                        .map(|(&c, _)| c),
                );
                v
            }
        };
        if let Some(c) = out.iter().find(|c| !sizes.contains_key(c)) {
            return Err(EngineError::operand(
                "Einsum",
                format!("output subscript {c} unknown"),
            ));
        }
        Ok((subs, out, sizes))
    }
}

impl Operator for Einsum {
    fn op_type(&self) -> &str {
        "Einsum"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("Einsum", inputs.len(), 1, usize::MAX)?;
        let dtype = super::same_dtype("Einsum", inputs)?;
        let shapes: Option<Vec<Vec<usize>>> =
            inputs.iter().map(TypeShape::concrete_shape).collect();
        let shape = match shapes {
            Some(s) => {
                let refs: Vec<&[usize]> = s.iter().map(Vec::as_slice).collect();
                let (_, out, sizes) = self.plan(&refs)?;
                out.iter().map(|c| Dim::Fixed(sizes[c])).collect()
            }
            None => {
                return Err(EngineError::UnsupportedFeature(
                    "Einsum on operands of unknown shape".into(),
                ))
            }
        };
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        check_arity("Einsum", inputs.len(), 1, usize::MAX)?;
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let (subs, out, sizes) = self.plan(&shapes)?;
        let all: Vec<char> = sizes.keys().copied().collect();
        let dims: Vec<usize> = all.iter().map(|c| sizes[c]).collect();
        numel(&dims)?;
        let vals: Vec<Vec<f64>> = inputs.iter().map(|t| f64s(t)).collect::<Result<_>>()?;
        // Per operand: stride of each global subscript (0 when absent or broadcast).
        let op_strides: Vec<Vec<usize>> = subs
            .iter()
            .zip(&shapes)
            .map(|(s, shape)| {
                let st = strides(shape);
                all.iter()
                    .map(|c| {
                        s.iter()
                            .enumerate()
                            .filter(|(_, x)| *x == c)
                            .map(|(i, _)| if shape[i] == 1 { 0 } else { st[i] })
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let out_shape: Vec<usize> = out.iter().map(|c| sizes[c]).collect();
        let ost = strides(&out_shape);
        let out_strides: Vec<usize> = all
            .iter()
            .map(|c| out.iter().position(|x| x == c).map_or(0, |i| ost[i]))
            .collect();
        // Repeated subscripts within one operand (diagonals) need equal index values.
        let narrow = matches!(inputs[0].dtype(), DType::F16 | DType::BF16);
        let rt = |v: f64| -> f64 {
            match inputs[0].dtype() {
                DType::BF16 => half::bf16::from_f64(v).to_f64(),
                DType::F16 => half::f16::from_f64(v).to_f64(),
                _ => v,
            }
        };
        let mut acc = vec![0f64; numel(&out_shape)?];
        super::indexing::for_each_index(&dims, |pos| {
            let mut prod = 1.0;
            for (k, v) in vals.iter().enumerate() {
                let off: usize = pos.iter().zip(&op_strides[k]).map(|(p, s)| p * s).sum();
                prod *= v[off];
                if narrow {
                    prod = rt(prod);
                }
            }
            let o: usize = pos.iter().zip(&out_strides).map(|(p, s)| p * s).sum();
            acc[o] = if narrow {
                rt(acc[o] + prod)
            } else {
                acc[o] + prod
            };
            Ok(())
        })?;
        Ok(vec![back(inputs[0].dtype(), out_shape, acc)?])
    }
}

/// Flat offset of `(batch, head, position, channel)` in a rotary input's layout.
type OffsetFn = Box<dyn Fn(usize, usize, usize, usize) -> usize>;

/// `RotaryEmbedding(input, cos_cache, sin_cache, position_ids?)`.
#[derive(Debug, Clone)]
pub struct Rotary {
    interleaved: bool,
    num_heads: Option<usize>,
    rotary_dim: Option<usize>,
}

impl Operator for Rotary {
    fn op_type(&self) -> &str {
        "RotaryEmbedding"
    }

    fn infer(&self, inputs: &[TypeShape]) -> Result<Vec<TypeShape>> {
        check_arity("RotaryEmbedding", inputs.len(), 3, 4)?;
        let x = &inputs[0];
        if !x.dtype.is_float() || !(3..=4).contains(&x.rank()) {
            return Err(EngineError::operand(
                "RotaryEmbedding",
                "input must be 3-D or 4-D float",
            ));
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let op = "RotaryEmbedding";
        check_arity(op, inputs.len(), 3, 4)?;
        let x = inputs[0];
        let s = x.shape();
        // Work in [B, H, S, D] coordinates over the original layout.
        let (b, h, seq, d, idx): (usize, usize, usize, usize, OffsetFn) = if s.len() == 4 {
            let (b, h, q, d) = (s[0], s[1], s[2], s[3]);
            (
                b,
                h,
                q,
                d,
                Box::new(move |bi, hi, si, di| ((bi * h + hi) * q + si) * d + di),
            )
        } else if s.len() == 3 {
            let h = self
                .num_heads
                .filter(|&n| n > 0 && s[2] % n == 0)
                .ok_or_else(|| {
                    EngineError::operand(op, "3-D input needs num_heads dividing the hidden size")
                })?;
            let (b, q, d) = (s[0], s[1], s[2] / h);
            (
                b,
                h,
                q,
                d,
                Box::new(move |bi, hi, si, di| (bi * q + si) * h * d + hi * d + di),
            )
        } else {
            return Err(EngineError::operand(op, "input must be 3-D or 4-D"));
        };
        let rot = self.rotary_dim.filter(|&r| r > 0).unwrap_or(d);
        if rot > d || rot % 2 != 0 {
            return Err(EngineError::operand(
                op,
                "rotary_embedding_dim must be even and <= head size",
            ));
        }
        let half = rot / 2;
        let xv = f64s(x)?;
        let (cos, sin) = (f64s(inputs[1])?, f64s(inputs[2])?);
        let pos = inputs
            .get(3)
            .map(|p| super::tensor_ops::int_list(op, p))
            .transpose()?;
        // Cache row for (batch, position).
        let row = |bi: usize, si: usize| -> Result<usize> {
            let r = match &pos {
                Some(p) => {
                    let v = *p
                        .get(bi * seq + si)
                        .ok_or_else(|| EngineError::operand(op, "position_ids too short"))?;
                    usize::try_from(v).map_err(|_| EngineError::operand(op, "negative position"))?
                }
                None => bi * seq + si,
            };
            if (r + 1) * half > cos.len() || (r + 1) * half > sin.len() {
                return Err(EngineError::operand(
                    op,
                    "position beyond the cos/sin cache",
                ));
            }
            Ok(r)
        };
        let cache_width = inputs[1].shape().last().copied().unwrap_or(0);
        if cache_width != half {
            return Err(EngineError::operand(
                op,
                "cos/sin cache width must be rotary_dim / 2",
            ));
        }
        let mut y = xv.clone();
        for bi in 0..b {
            for si in 0..seq {
                let r = row(bi, si)?;
                for hi in 0..h {
                    for i in 0..half {
                        let (c, sn) = (cos[r * half + i], sin[r * half + i]);
                        let (a, bb) = if self.interleaved {
                            (idx(bi, hi, si, 2 * i), idx(bi, hi, si, 2 * i + 1))
                        } else {
                            (idx(bi, hi, si, i), idx(bi, hi, si, i + half))
                        };
                        let (x1, x2) = (xv[a], xv[bb]);
                        y[a] = x1 * c - x2 * sn;
                        y[bb] = x2 * c + x1 * sn;
                    }
                }
            }
        }
        Ok(vec![back(x.dtype(), s.to_vec(), y)?])
    }
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.register("", "Einsum", |ctx| {
        let a = ctx.attributes;
        let eq = a
            .string("equation")?
            .ok_or_else(|| a.invalid("equation", "required attribute is missing"))?;
        Ok(Box::new(Einsum::parse(eq)?))
    });
    r.register("", "RotaryEmbedding", |ctx| {
        let a = ctx.attributes;
        let pos = |name: &str| -> Result<Option<usize>> {
            a.int(name)?
                .map(|v| usize::try_from(v).map_err(|_| a.invalid(name, "must be >= 0")))
                .transpose()
        };
        Ok(Box::new(Rotary {
            interleaved: a.int_or("interleaved", 0)? != 0,
            num_heads: pos("num_heads")?,
            rotary_dim: pos("rotary_embedding_dim")?,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn einsum_matmul_trace_and_implicit_output() {
        let a = Tensor::from_f32(vec![2, 2], vec![1., 2., 3., 4.]).unwrap();
        let e = |eq: &str, ins: &[&Tensor]| Einsum::parse(eq).unwrap().eval(ins).unwrap().remove(0);
        assert_eq!(
            e("ij,jk->ik", &[&a, &a]).as_f32().unwrap(),
            &[7., 10., 15., 22.]
        );
        assert_eq!(e("ii->", &[&a]).as_f32().unwrap(), &[5.]);
        assert_eq!(e("ji", &[&a]).as_f32().unwrap(), &[1., 3., 2., 4.]);
        assert_eq!(e("...ii->...i", &[&a]).as_f32().unwrap(), &[1., 4.]);
    }
}
