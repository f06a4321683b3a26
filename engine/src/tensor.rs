//! The dense tensor value that flows between operators.
//!
//! Why this shape: contiguous row-major storage, one `Vec` per element type ([`TensorData`]),
//! plus one second kind of storage for weights: [`SharedBytes`], a read-only window into bytes
//! owned elsewhere — in practice a memory-mapped external-data file
//! ([`crate::onnx::external`]). A shared tensor is used in place (zero-copy) by everything that
//! reads through [`Tensor::as_slice`]; code that needs the [`TensorData`] enum
//! ([`Tensor::data`]) gets a decoded copy made once and cached, and code that mutates
//! ([`Tensor::into_parts`], [`Tensor::data_mut`], [`Tensor::as_mut_slice`]) copies first
//! (copy-on-write), so nothing ever writes to the mapping — which is read-only anyway. Only
//! fixed-width numeric dtypes whose bytes are suitably aligned are shared, and only on
//! little-endian hosts (the ONNX byte order); everything else is decoded into owned storage.
//! Operators should use [`Tensor::as_slice`] and constructors rather than matching on
//! [`TensorData`] where they can.

use std::fmt;
use std::sync::{Arc, OnceLock};

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
    /// Borrows the elements mutably if `data` holds this type.
    fn slice_mut(data: &mut TensorData) -> Option<&mut [Self]>;
    /// Views little-endian ONNX bytes as elements in place: `None` unless every bit pattern is
    /// a valid value (not `bool`), the host is little-endian, `bytes` is aligned for `Self`
    /// and its length a multiple of the width.
    fn view_le_bytes(bytes: &[u8]) -> Option<&[Self]> {
        let _ = bytes;
        None
    }
}

macro_rules! element {
    ($t:ty, $variant:ident $(, { $($extra:tt)* })?) => {
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
            fn slice_mut(data: &mut TensorData) -> Option<&mut [Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            $($($extra)*)?
        }
    };
}

/// An [`Element`] whose every bit pattern is a valid value, so bytes can be viewed in place.
macro_rules! plain_element {
    ($t:ty, $variant:ident) => {
        element!($t, $variant, {
            fn view_le_bytes(bytes: &[u8]) -> Option<&[Self]> {
                if cfg!(target_endian = "little") {
                    bytemuck::try_cast_slice(bytes).ok()
                } else {
                    None
                }
            }
        });
    };
}
plain_element!(f32, F32);
plain_element!(f64, F64);
plain_element!(i64, I64);
plain_element!(i32, I32);
plain_element!(i8, I8);
plain_element!(u8, U8);
element!(bool, Bool);
plain_element!(half::f16, F16);
plain_element!(half::bf16, BF16);
plain_element!(i16, I16);
plain_element!(u16, U16);
plain_element!(u32, U32);
plain_element!(u64, U64);

/// Runs `$body` with `$t` bound to the Rust type of a plain (every bit pattern valid,
/// fixed-width) dtype, or evaluates `$other` for any other dtype.
macro_rules! with_plain_type {
    ($dtype:expr, $t:ident => $body:expr, $other:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            DType::I64 => {
                type $t = i64;
                $body
            }
            DType::I32 => {
                type $t = i32;
                $body
            }
            DType::I8 => {
                type $t = i8;
                $body
            }
            DType::U8 => {
                type $t = u8;
                $body
            }
            DType::F16 => {
                type $t = half::f16;
                $body
            }
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            DType::I16 => {
                type $t = i16;
                $body
            }
            DType::U16 => {
                type $t = u16;
                $body
            }
            DType::U32 => {
                type $t = u32;
                $body
            }
            DType::U64 => {
                type $t = u64;
                $body
            }
            _ => $other,
        }
    };
}

/// A read-only byte range shared between tensors, kept alive by an [`Arc`] to its owner — in
/// practice a window of a memory-mapped external-data file (`Arc<memmap2::Mmap>`). Cloning is
/// cheap and never copies the bytes.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl SharedBytes {
    /// The bytes `start..start + len` of `owner`; `None` when that range is not inside it.
    pub fn new(
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        len: usize,
    ) -> Option<SharedBytes> {
        let end = start.checked_add(len)?;
        if end > (*owner).as_ref().len() {
            return None;
        }
        Some(SharedBytes { owner, start, len })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBytes({} bytes at {})", self.len, self.start)
    }
}

/// Where a tensor's elements live.
enum Storage {
    /// Owned, decoded elements.
    Owned(TensorData),
    /// Little-endian elements of a plain dtype in shared bytes, aligned for the dtype (checked
    /// by [`Tensor::try_from_shared`]).
    Shared {
        dtype: DType,
        bytes: SharedBytes,
        /// The owned copy [`Tensor::data`] hands out, made on its first call.
        decoded: OnceLock<TensorData>,
    },
}

impl Clone for Storage {
    fn clone(&self) -> Self {
        match self {
            Storage::Owned(d) => Storage::Owned(d.clone()),
            // Shares the bytes again; the decoded cache is not copied (it is rarely needed).
            Storage::Shared { dtype, bytes, .. } => Storage::Shared {
                dtype: *dtype,
                bytes: bytes.clone(),
                decoded: OnceLock::new(),
            },
        }
    }
}

/// Copies shared little-endian bytes of a plain dtype into owned storage.
fn decode_shared(dtype: DType, bytes: &[u8]) -> TensorData {
    with_plain_type!(
        dtype,
        T => {
            let mut v: Vec<T> = vec![bytemuck::Zeroable::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
            T::wrap(v)
        },
        // Unreachable: only plain dtypes are ever shared (`try_from_shared`).
        TensorData::U8(bytes.to_vec())
    )
}

/// A dense, row-major tensor: owned elements, or (weights) a shared read-only byte range.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.storage {
            Storage::Owned(data) => f
                .debug_struct("Tensor")
                .field("shape", &self.shape)
                .field("data", data)
                .finish(),
            Storage::Shared { dtype, bytes, .. } => f
                .debug_struct("Tensor")
                .field("shape", &self.shape)
                .field("dtype", dtype)
                .field("shared", bytes)
                .finish(),
        }
    }
}

impl PartialEq for Tensor {
    /// Same shape, dtype and elements (floats compare by value: `NaN != NaN`, `-0.0 == 0.0`).
    fn eq(&self, other: &Tensor) -> bool {
        if self.shape != other.shape || self.dtype() != other.dtype() {
            return false;
        }
        match (&self.storage, &other.storage) {
            (Storage::Owned(a), Storage::Owned(b)) => a == b,
            _ => with_plain_type!(
                self.dtype(),
                T => self.as_slice::<T>() == other.as_slice::<T>(),
                self.data() == other.data()
            ),
        }
    }
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
        Ok(Tensor {
            shape,
            storage: Storage::Owned(data),
        })
    }

    /// A tensor whose elements are used in place from `bytes` (little-endian, as in ONNX
    /// `raw_data`), without copying. `Ok(None)` when that is not possible and the caller must
    /// decode a copy instead: a dtype that is not plain fixed-width numbers (bool, string,
    /// sub-byte types), bytes not aligned for the dtype, or a big-endian host. Errors when the
    /// byte count does not match the shape.
    pub fn try_from_shared(
        shape: Vec<usize>,
        dtype: DType,
        bytes: SharedBytes,
    ) -> Result<Option<Tensor>> {
        let expected = numel(&shape)?;
        let width = dtype.size_of();
        let got = bytes.len().checked_div(width).unwrap_or(0);
        if width == 0 || expected.checked_mul(width) != Some(bytes.len()) {
            return Err(EngineError::DataLength {
                shape,
                expected,
                got,
            });
        }
        let viewable = with_plain_type!(
            dtype,
            T => T::view_le_bytes(bytes.as_bytes()).is_some(),
            false
        );
        Ok(viewable.then(|| Tensor {
            shape,
            storage: Storage::Shared {
                dtype,
                bytes,
                decoded: OnceLock::new(),
            },
        }))
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
            storage: Storage::Owned(T::wrap(vec![value])),
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
        match &self.storage {
            Storage::Owned(d) => d.len(),
            Storage::Shared { dtype, bytes, .. } => bytes.len() / dtype.size_of().max(1),
        }
    }

    /// Whether the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::Owned(d) => d.dtype(),
            Storage::Shared { dtype, .. } => *dtype,
        }
    }

    /// Whether the elements are used in place from shared bytes (a memory-mapped weights
    /// file) rather than owned.
    pub fn is_shared(&self) -> bool {
        matches!(self.storage, Storage::Shared { .. })
    }

    /// The shared bytes the elements are read from, when [`Tensor::is_shared`].
    pub fn shared_bytes(&self) -> Option<&SharedBytes> {
        match &self.storage {
            Storage::Owned(_) => None,
            Storage::Shared { bytes, .. } => Some(bytes),
        }
    }

    /// The storage as the [`TensorData`] enum. For a shared tensor this is a decoded copy,
    /// made on the first call and kept with the tensor; prefer [`Tensor::as_slice`], which
    /// never copies.
    pub fn data(&self) -> &TensorData {
        match &self.storage {
            Storage::Owned(d) => d,
            Storage::Shared {
                dtype,
                bytes,
                decoded,
            } => decoded.get_or_init(|| decode_shared(*dtype, bytes.as_bytes())),
        }
    }

    /// The storage, mutably. A shared tensor is first copied into owned storage
    /// (copy-on-write): the shared bytes are never written.
    pub fn data_mut(&mut self) -> &mut TensorData {
        self.make_owned();
        match &mut self.storage {
            Storage::Owned(d) => d,
            Storage::Shared { .. } => unreachable!("make_owned replaced the shared storage"),
        }
    }

    /// Turns shared storage into owned storage (a copy); no-op for an owned tensor.
    pub fn make_owned(&mut self) {
        if let Storage::Shared {
            dtype,
            bytes,
            decoded,
        } = &mut self.storage
        {
            let data = decoded
                .take()
                .unwrap_or_else(|| decode_shared(*dtype, bytes.as_bytes()));
            self.storage = Storage::Owned(data);
        }
    }

    /// Consumes the tensor, returning shape and storage (a shared tensor is copied).
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        let data = match self.storage {
            Storage::Owned(d) => d,
            Storage::Shared {
                dtype,
                bytes,
                decoded,
            } => decoded
                .into_inner()
                .unwrap_or_else(|| decode_shared(dtype, bytes.as_bytes())),
        };
        (self.shape, data)
    }

    /// Borrows the elements as `T`, or `None` if the dtype differs. Never copies.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        match &self.storage {
            Storage::Owned(d) => T::slice(d),
            Storage::Shared { dtype, bytes, .. } if *dtype == T::DTYPE => {
                T::view_le_bytes(bytes.as_bytes())
            }
            Storage::Shared { .. } => None,
        }
    }

    /// Borrows the elements mutably as `T`, or `None` if the dtype differs. A shared tensor is
    /// first copied into owned storage (copy-on-write).
    pub fn as_mut_slice<T: Element>(&mut self) -> Option<&mut [T]> {
        T::slice_mut(self.data_mut())
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

    /// Same data, new shape (same element count). Shared storage stays shared.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor> {
        let got = self.len();
        match self.storage {
            Storage::Owned(data) => Tensor::new(shape, data),
            storage @ Storage::Shared { .. } => {
                let expected = numel(&shape)?;
                if expected != got {
                    return Err(EngineError::DataLength {
                        shape,
                        expected,
                        got,
                    });
                }
                Ok(Tensor { shape, storage })
            }
        }
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

    fn shared_f32(values: &[f32], pad: usize) -> SharedBytes {
        let mut bytes = vec![0u8; pad];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(bytes);
        SharedBytes::new(owner, pad, values.len() * 4).unwrap()
    }

    /// A `Vec<u8>`'s buffer is at least 4-aligned in practice only by luck; use a `Vec<u32>`
    /// viewed as bytes to get an aligned owner for the in-place cases.
    struct Aligned(Vec<u32>);
    impl AsRef<[u8]> for Aligned {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }

    fn aligned_f32(values: &[f32]) -> SharedBytes {
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> =
            Arc::new(Aligned(values.iter().map(|v| v.to_bits()).collect()));
        SharedBytes::new(owner, 0, values.len() * 4).unwrap()
    }

    #[test]
    fn shared_storage_is_read_in_place_and_copied_on_write() {
        let values = [1.0f32, -2.5, 3.0, f32::NAN, 0.0, 7.0];
        let bytes = aligned_f32(&values);
        let t = Tensor::try_from_shared(vec![2, 3], DType::F32, bytes.clone())
            .unwrap()
            .expect("aligned f32 bytes are viewed in place");
        assert!(t.is_shared());
        assert_eq!(t.len(), 6);
        assert_eq!(t.dtype(), DType::F32);
        // In place: the slice points into the shared bytes.
        assert_eq!(
            t.as_f32().unwrap().as_ptr() as *const u8,
            bytes.as_bytes().as_ptr()
        );
        assert!(t.as_i32().is_none());
        // The enum form is a decoded copy with the same values.
        match t.data() {
            TensorData::F32(v) => assert_eq!(v[..3], values[..3]),
            other => panic!("decoded as {other:?}"),
        }
        // Reshaping keeps it shared; a wrong element count is refused.
        let r = t.clone().reshaped(vec![3, 2]).unwrap();
        assert!(r.is_shared());
        assert!(t.clone().reshaped(vec![4, 2]).is_err());
        // Copy-on-write: the copy changes, the shared bytes do not.
        let mut w = t.clone();
        w.as_mut_slice::<f32>().unwrap()[0] = 42.0;
        assert!(!w.is_shared());
        assert_eq!(w.as_f32().unwrap()[0], 42.0);
        assert_eq!(t.as_f32().unwrap()[0], 1.0);
        assert_eq!(&bytes.as_bytes()[..4], &1.0f32.to_le_bytes());
        let (shape, data) = t.clone().into_parts();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data.len(), 6);
        // Equality is by value (NaN unequal, like the owned form).
        let owned = Tensor::from_f32(vec![2, 3], values.to_vec()).unwrap();
        assert_ne!(t, owned);
        let finite = [1.0f32, 2.0, 3.0];
        let a = Tensor::try_from_shared(vec![3], DType::F32, aligned_f32(&finite))
            .unwrap()
            .unwrap();
        assert_eq!(a, Tensor::from_f32(vec![3], finite.to_vec()).unwrap());
        assert_ne!(a, Tensor::from_f32(vec![3], vec![1.0, 2.0, 4.0]).unwrap());
    }

    #[test]
    fn shared_storage_refuses_what_cannot_be_viewed() {
        // Misaligned for f32: the caller must copy instead.
        let misaligned = shared_f32(&[1.0, 2.0], 1);
        assert!(Tensor::try_from_shared(vec![2], DType::F32, misaligned)
            .unwrap()
            .is_none());
        // Bool bytes are not all valid bools: never viewed in place.
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(vec![0u8, 1, 2]);
        let b = SharedBytes::new(owner.clone(), 0, 3).unwrap();
        assert!(Tensor::try_from_shared(vec![3], DType::Bool, b)
            .unwrap()
            .is_none());
        // Byte count must match the shape.
        let b = SharedBytes::new(owner.clone(), 0, 3).unwrap();
        assert!(matches!(
            Tensor::try_from_shared(vec![2], DType::U8, b),
            Err(EngineError::DataLength { .. })
        ));
        // Ranges outside the owner are refused.
        assert!(SharedBytes::new(owner.clone(), 2, 2).is_none());
        assert!(SharedBytes::new(owner, usize::MAX, 2).is_none());
    }

    #[test]
    fn scalar_has_rank_zero() {
        let t = Tensor::scalar(3i64);
        assert_eq!(t.rank(), 0);
        assert_eq!(t.len(), 1);
    }
}
