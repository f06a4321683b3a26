//! The dense tensor value that flows between operators.
//!
//! Why this shape: a first, reference representation — contiguous row-major storage owned by
//! the tensor, one `Vec` per element type. Views, strides, arenas and memory-mapped weights come
//! later behind the same accessors, so operators should use [`Tensor::as_slice`] and
//! constructors rather than matching on [`TensorData`] where they can.

use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::shape::numel;

/// Contiguous row-major element storage, one variant per [`DType`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float64` elements.
    F64(Vec<f64>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `int8` elements.
    I8(Vec<i8>),
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// `float16` elements.
    F16(Vec<half::f16>),
    /// `bfloat16` elements.
    BF16(Vec<half::bf16>),
    /// `int16` elements.
    I16(Vec<i16>),
    /// `uint16` elements.
    U16(Vec<u16>),
    /// `uint32` elements.
    U32(Vec<u32>),
    /// `uint64` elements.
    U64(Vec<u64>),
    /// `string` elements (not an [`Element`]: kernels that copy elements reject it).
    String(Vec<String>),
    /// Low-precision elements (`float8*`, `float4e2m1`, `int4`/`uint4`, `int2`/`uint2`), one
    /// code per byte, unpacked (see [`crate::lowp`]).
    Bits {
        /// Which low-precision dtype the codes are.
        dtype: DType,
        /// One code per element, in the format's low bits.
        codes: Vec<u8>,
    },
}

/// Applies an expression to the vector inside any [`TensorData`] variant.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::Bool($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::String($v) => $body,
            TensorData::Bits { codes: $v, .. } => $body,
        }
    };
}

impl TensorData {
    /// The element type stored.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I16(_) => DType::I16,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::String(_) => DType::String,
            TensorData::Bits { dtype, .. } => *dtype,
        }
    }

    /// Number of elements stored.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether no elements are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Rust type that is the storage of one [`DType`]; lets operators be written generically.
pub trait Element: Copy + PartialEq + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    /// The dtype this type stores.
    const DTYPE: DType;
    /// Borrows the elements if `data` holds this type.
    fn slice(data: &TensorData) -> Option<&[Self]>;
    /// Wraps a vector of this type.
    fn wrap(v: Vec<Self>) -> TensorData;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$variant(v)
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(i64, I64);
element!(i32, I32);
element!(i8, I8);
element!(u8, U8);
element!(bool, Bool);
element!(half::f16, F16);
element!(half::bf16, BF16);
element!(i16, I16);
element!(u16, U16);
element!(u32, U32);
element!(u64, U64);

/// A dense, row-major, owned tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape's element count equals the data length.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor> {
        let expected = numel(&shape)?;
        if expected != data.len() {
            return Err(EngineError::DataLength {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// Builds a tensor from a vector of any [`Element`] type.
    pub fn from_vec<T: Element>(shape: Vec<usize>, data: Vec<T>) -> Result<Tensor> {
        Tensor::new(shape, T::wrap(data))
    }

    /// Builds a `float32` tensor.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::from_vec(shape, data)
    }

    /// Builds a `float64` tensor.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Tensor> {
        Tensor::from_vec(shape, data)
    }

    /// Builds an `int64` tensor.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Tensor::from_vec(shape, data)
    }

    /// Builds an `int32` tensor.
    pub fn from_i32(shape: Vec<usize>, data: Vec<i32>) -> Result<Tensor> {
        Tensor::from_vec(shape, data)
    }

    /// Builds a `bool` tensor.
    pub fn from_bool(shape: Vec<usize>, data: Vec<bool>) -> Result<Tensor> {
        Tensor::from_vec(shape, data)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: T::wrap(vec![value]),
        }
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Consumes the tensor, returning shape and storage.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Borrows the elements as `T`, or `None` if the dtype differs.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    /// Borrows `float32` elements.
    pub fn as_f32(&self) -> Option<&[f32]> {
        self.as_slice()
    }

    /// Borrows `float64` elements.
    pub fn as_f64(&self) -> Option<&[f64]> {
        self.as_slice()
    }

    /// Borrows `int64` elements.
    pub fn as_i64(&self) -> Option<&[i64]> {
        self.as_slice()
    }

    /// Borrows `int32` elements.
    pub fn as_i32(&self) -> Option<&[i32]> {
        self.as_slice()
    }

    /// Borrows `bool` elements.
    pub fn as_bool(&self) -> Option<&[bool]> {
        self.as_slice()
    }

    /// Same data, new shape (same element count).
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks_length() {
        let t = Tensor::from_f32(vec![2, 3], vec![0.0; 6]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.as_f32().unwrap().len(), 6);
        assert!(t.as_i64().is_none());
        let err = Tensor::from_f32(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert!(matches!(
            err,
            EngineError::DataLength {
                expected: 6,
                got: 5,
                ..
            }
        ));
        assert!(Tensor::from_i64(vec![usize::MAX, 2], vec![]).is_err());
    }

    #[test]
    fn scalar_has_rank_zero() {
        let t = Tensor::scalar(3i64);
        assert_eq!(t.rank(), 0);
        assert_eq!(t.len(), 1);
    }
}
