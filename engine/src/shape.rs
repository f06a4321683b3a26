//! Shape arithmetic shared by the loader and the operators.
//!
//! Why a module: every place that multiplies dimensions handles sizes that can come from
//! untrusted bytes, so the overflow-checked element count and the axis normalisation live here
//! once instead of being re-derived (and gotten subtly wrong) in each operator.

use crate::error::{EngineError, Result};

/// The largest element count a single tensor may have (2^31). Bounds memory use when shapes
/// come from untrusted model bytes or requests; an allocation failure would abort the process.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;

/// Product of `shape`, or [`EngineError::TensorTooLarge`] on overflow or above
/// [`MAX_TENSOR_ELEMENTS`].
pub fn numel(shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or_else(|| too_large(shape))?;
    }
    if n > MAX_TENSOR_ELEMENTS {
        return Err(too_large(shape));
    }
    Ok(n)
}

fn too_large(shape: &[usize]) -> EngineError {
    EngineError::TensorTooLarge(
        shape
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect(),
    )
}

/// Converts ONNX `int64` dims (from a `TensorProto` or a shape tensor) to sizes, rejecting
/// negatives and oversized tensors.
pub fn dims_from_i64(dims: &[i64]) -> Result<Vec<usize>> {
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| EngineError::TensorTooLarge(dims.to_vec())))
        .collect::<Result<Vec<_>>>()?;
    numel(&shape)?;
    Ok(shape)
}

/// Row-major strides (in elements) of a contiguous tensor of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Maps an ONNX axis in `[-rank, rank)` to `[0, rank)`.
pub fn normalize_axis(op: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = i64::try_from(rank).map_err(|_| EngineError::operand(op, "rank too large"))?;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(EngineError::operand(
            op,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numel_checks_overflow() {
        assert_eq!(numel(&[2, 3, 4]).unwrap(), 24);
        assert_eq!(numel(&[]).unwrap(), 1);
        assert_eq!(numel(&[0, 5]).unwrap(), 0);
        assert!(numel(&[usize::MAX, 2]).is_err());
        assert!(numel(&[1 << 20, 1 << 20]).is_err());
        assert!(dims_from_i64(&[-1, 3]).is_err());
    }

    #[test]
    fn axes_and_strides() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(normalize_axis("t", -1, 3).unwrap(), 2);
        assert_eq!(normalize_axis("t", 0, 3).unwrap(), 0);
        assert!(normalize_axis("t", 3, 3).is_err());
        assert!(normalize_axis("t", -4, 3).is_err());
    }
}
