//! Element types.
//!
//! Why a separate module: the ONNX data-type codes, human-readable names and byte widths are
//! needed by the loader, the operators and the enclave's request validation alike; keeping the
//! mapping in one place means a new dtype is added once.

use std::fmt;

use crate::error::{EngineError, Result};

/// A tensor element type the engine can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE-754 binary32 (`TensorProto.FLOAT`, code 1).
    F32,
    /// IEEE-754 binary64 (`TensorProto.DOUBLE`, code 11).
    F64,
    /// Signed 64-bit integer (`TensorProto.INT64`, code 7).
    I64,
    /// Signed 32-bit integer (`TensorProto.INT32`, code 6).
    I32,
    /// Signed 8-bit integer (`TensorProto.INT8`, code 3).
    I8,
    /// Unsigned 8-bit integer (`TensorProto.UINT8`, code 2).
    U8,
    /// Boolean (`TensorProto.BOOL`, code 9), one byte per element on the wire.
    Bool,
}

impl DType {
    /// Every supported dtype, for tests and exhaustive tables.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F64 => 11,
        }
    }

    /// Maps an ONNX `TensorProto.DataType` code to a dtype.
    pub fn from_onnx(code: i32) -> Result<DType> {
        Ok(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            11 => DType::F64,
            other => return Err(EngineError::UnsupportedDtype(other)),
        })
    }

    /// The numpy-style name (`"float32"`, `"int64"`, ...), as used in the public API.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Parses a name produced by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in ONNX `raw_data` (little-endian).
    pub fn size_of(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_onnx(d.onnx_code()).unwrap(), d);
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert!(matches!(
            DType::from_onnx(10),
            Err(EngineError::UnsupportedDtype(10))
        ));
        assert_eq!(DType::F32.name(), "float32");
        assert_eq!(DType::I64.name(), "int64");
    }
}
