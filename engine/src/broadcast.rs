//! Numpy-style (multidirectional) broadcasting.
//!
//! Why a module: elementwise operators, Gemm's `C` and MatMul's batch dimensions all follow the
//! same rules; one tested implementation keeps them consistent. The general path walks output
//! indices with an odometer and per-input strides that are 0 on broadcast dimensions.

use crate::error::{EngineError, Result};
use crate::shape::{numel, strides};

/// The broadcast shape of `a` and `b` (right-aligned; a dimension of 1 stretches).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0usize; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(EngineError::Broadcast {
                    lhs: a.to_vec(),
                    rhs: b.to_vec(),
                })
            }
        };
    }
    numel(&out)?;
    Ok(out)
}

/// The `k`-th dimension counted from the right, or 1 beyond the rank.
fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// Strides for reading a tensor of `in_shape` as if it had `out_shape`: 0 on broadcast dims.
/// `in_shape` must be broadcastable to `out_shape`.
pub fn broadcast_strides(in_shape: &[usize], out_shape: &[usize]) -> Result<Vec<usize>> {
    if in_shape.len() > out_shape.len() {
        return Err(EngineError::Broadcast {
            lhs: in_shape.to_vec(),
            rhs: out_shape.to_vec(),
        });
    }
    let pad = out_shape.len() - in_shape.len();
    let own = strides(in_shape);
    let mut s = vec![0usize; out_shape.len()];
    for (i, &d) in in_shape.iter().enumerate() {
        if d == out_shape[pad + i] {
            s[pad + i] = if d == 1 { 0 } else { own[i] };
        } else if d != 1 {
            return Err(EngineError::Broadcast {
                lhs: in_shape.to_vec(),
                rhs: out_shape.to_vec(),
            });
        }
    }
    Ok(s)
}

/// Visits the flat input offset (for strides `s`) of every element of `out_shape`, row-major.
pub(crate) fn for_each_offset(out_shape: &[usize], s: &[usize], mut f: impl FnMut(usize)) {
    let total: usize = out_shape.iter().product();
    if total == 0 {
        return;
    }
    let rank = out_shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for _ in 0..total {
        f(off);
        // Odometer increment.
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            off += s[ax];
            if idx[ax] < out_shape[ax] {
                break;
            }
            off -= s[ax] * out_shape[ax];
            idx[ax] = 0;
        }
    }
}

/// Materialises `data` (of `in_shape`) broadcast to `out_shape`.
pub fn broadcast_to<T: Copy>(
    data: &[T],
    in_shape: &[usize],
    out_shape: &[usize],
) -> Result<Vec<T>> {
    let s = broadcast_strides(in_shape, out_shape)?;
    let mut out = Vec::with_capacity(numel(out_shape)?);
    for_each_offset(out_shape, &s, |o| out.push(data[o]));
    Ok(out)
}

/// Applies `f` elementwise over `a` and `b` broadcast together; returns the output shape and
/// values. Fast paths for equal shapes and scalar operands.
pub fn zip_broadcast<T: Copy, U>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    mut f: impl FnMut(T, T) -> U,
) -> Result<(Vec<usize>, Vec<U>)> {
    let out_shape = broadcast_shape(a_shape, b_shape)?;
    let n = numel(&out_shape)?;
    if a_shape == b_shape {
        return Ok((out_shape, a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()));
    }
    if b.len() == 1 && a.len() == n {
        let y = b[0];
        return Ok((out_shape, a.iter().map(|&x| f(x, y)).collect()));
    }
    if a.len() == 1 && b.len() == n {
        let x = a[0];
        return Ok((out_shape, b.iter().map(|&y| f(x, y)).collect()));
    }
    let sa = broadcast_strides(a_shape, &out_shape)?;
    let sb = broadcast_strides(b_shape, &out_shape)?;
    let mut ia = Vec::with_capacity(n);
    for_each_offset(&out_shape, &sa, |o| ia.push(o));
    let mut out = Vec::with_capacity(n);
    let mut k = 0usize;
    for_each_offset(&out_shape, &sb, |o| {
        out.push(f(a[ia[k]], b[o]));
        k += 1;
    });
    Ok((out_shape, out))
}

/// Broadcasts declared/inferred shapes. Fixed sizes follow numpy rules; a symbolic dim against
/// 1 stays symbolic, against a fixed size `n > 1` becomes `n` (it must be `n` or 1 at run time).
pub fn broadcast_dims(a: &[crate::Dim], b: &[crate::Dim]) -> Result<Vec<crate::Dim>> {
    use crate::Dim;
    let rank = a.len().max(b.len());
    let one = Dim::Fixed(1);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let k = rank - 1 - i;
        let da = if k < a.len() {
            &a[a.len() - 1 - k]
        } else {
            &one
        };
        let db = if k < b.len() {
            &b[b.len() - 1 - k]
        } else {
            &one
        };
        out.push(match (da, db) {
            (x, y) if x == y => x.clone(),
            (Dim::Fixed(1), y) => y.clone(),
            (x, Dim::Fixed(1)) => x.clone(),
            (Dim::Fixed(x), Dim::Fixed(y)) => {
                return Err(EngineError::Broadcast {
                    lhs: vec![*x],
                    rhs: vec![*y],
                })
            }
            (Dim::Fixed(x), Dim::Symbolic(_)) | (Dim::Symbolic(_), Dim::Fixed(x)) => Dim::Fixed(*x),
            (Dim::Symbolic(x), Dim::Symbolic(_)) => Dim::Symbolic(x.clone()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_broadcast_like_numpy() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shape(&[4, 1, 3], &[2, 1]).unwrap(), vec![4, 2, 3]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shape(&[0, 1], &[1, 3]).unwrap(), vec![0, 3]);
        assert!(matches!(
            broadcast_shape(&[2, 3], &[4]),
            Err(EngineError::Broadcast { .. })
        ));
    }

    #[test]
    fn symbolic_dims_broadcast() {
        use crate::Dim;
        let n = Dim::Symbolic("N".into());
        let out = broadcast_dims(&[n.clone(), Dim::Fixed(3)], &[Dim::Fixed(1), Dim::Fixed(3)]);
        assert_eq!(out.unwrap(), vec![n.clone(), Dim::Fixed(3)]);
        let out = broadcast_dims(&[n, Dim::Fixed(1)], &[Dim::Fixed(4)]).unwrap();
        assert_eq!(out[1], Dim::Fixed(4));
        assert!(broadcast_dims(&[Dim::Fixed(2)], &[Dim::Fixed(3)]).is_err());
    }

    #[test]
    fn materialise_and_zip() {
        // [2,1] + [3] -> [2,3]
        let v = broadcast_to(&[1, 2], &[2, 1], &[2, 3]).unwrap();
        assert_eq!(v, vec![1, 1, 1, 2, 2, 2]);
        let (s, v) = zip_broadcast(&[1, 2], &[2, 1], &[10, 20, 30], &[3], |x, y| x + y).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![11, 21, 31, 12, 22, 32]);
        assert!(broadcast_to(&[1, 2, 3], &[3], &[2, 2]).is_err());
    }
}
