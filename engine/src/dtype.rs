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
    /// IEEE-754 binary16 (`TensorProto.FLOAT16`, code 10).
    F16,
    /// bfloat16 (`TensorProto.BFLOAT16`, code 16).
    BF16,
    /// Signed 16-bit integer (`TensorProto.INT16`, code 5).
    I16,
    /// Unsigned 16-bit integer (`TensorProto.UINT16`, code 4).
    U16,
    /// Unsigned 32-bit integer (`TensorProto.UINT32`, code 12).
    U32,
    /// Unsigned 64-bit integer (`TensorProto.UINT64`, code 13).
    U64,
    /// UTF-8 string (`TensorProto.STRING`, code 8); only data-movement ops and `Equal`.
    String,
    /// `float8e4m3fn` (code 17). This and the following low-precision types are stored one
    /// code per byte and computed on only through `Cast` (see [`crate::lowp`]).
    F8E4M3FN,
    /// `float8e4m3fnuz` (code 18).
    F8E4M3FNUZ,
    /// `float8e5m2` (code 19).
    F8E5M2,
    /// `float8e5m2fnuz` (code 20).
    F8E5M2FNUZ,
    /// `uint4` (code 21).
    U4,
    /// `int4` (code 22).
    I4,
    /// `float4e2m1` (code 23).
    F4E2M1,
    /// `float8e8m0` (code 24).
    F8E8M0,
    /// `uint2` (code 25).
    U2,
    /// `int2` (code 26).
    I2,
}

impl DType {
    /// Every supported dtype, for tests and exhaustive tables.
    pub const ALL: [DType; 24] = [
        DType::F32,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
        DType::F16,
        DType::BF16,
        DType::I16,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::String,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::U4,
        DType::I4,
        DType::F4E2M1,
        DType::F8E8M0,
        DType::U2,
        DType::I2,
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
            DType::F16 => 10,
            DType::BF16 => 16,
            DType::I16 => 5,
            DType::U16 => 4,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::String => 8,
            DType::F8E4M3FN => 17,
            DType::F8E4M3FNUZ => 18,
            DType::F8E5M2 => 19,
            DType::F8E5M2FNUZ => 20,
            DType::U4 => 21,
            DType::I4 => 22,
            DType::F4E2M1 => 23,
            DType::F8E8M0 => 24,
            DType::U2 => 25,
            DType::I2 => 26,
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
            10 => DType::F16,
            16 => DType::BF16,
            5 => DType::I16,
            4 => DType::U16,
            12 => DType::U32,
            13 => DType::U64,
            8 => DType::String,
            17 => DType::F8E4M3FN,
            18 => DType::F8E4M3FNUZ,
            19 => DType::F8E5M2,
            20 => DType::F8E5M2FNUZ,
            21 => DType::U4,
            22 => DType::I4,
            23 => DType::F4E2M1,
            24 => DType::F8E8M0,
            25 => DType::U2,
            26 => DType::I2,
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
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::String => "string",
            DType::F8E4M3FN => "float8e4m3fn",
            DType::F8E4M3FNUZ => "float8e4m3fnuz",
            DType::F8E5M2 => "float8e5m2",
            DType::F8E5M2FNUZ => "float8e5m2fnuz",
            DType::U4 => "uint4",
            DType::I4 => "int4",
            DType::F4E2M1 => "float4e2m1",
            DType::F8E8M0 => "float8e8m0",
            DType::U2 => "uint2",
            DType::I2 => "int2",
        }
    }

    /// Parses a name produced by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in ONNX `raw_data` (little-endian); 0 for strings, which are never
    /// raw.
    pub fn size_of(self) -> usize {
        match self {
            DType::String => 0,
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::U4
            | DType::I4
            | DType::F4E2M1
            | DType::U2
            | DType::I2 => 1,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// Whether this is a signed or unsigned integer type (not bool).
    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::I64
                | DType::I32
                | DType::I16
                | DType::I8
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
        )
    }

    /// Whether this is a number type (float or integer; not bool or string).
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }

    /// Whether this is an unsigned integer type.
    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64)
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
            DType::from_onnx(27),
            Err(EngineError::UnsupportedDtype(27))
        ));
        assert_eq!(DType::F32.name(), "float32");
        assert_eq!(DType::I64.name(), "int64");
    }
}
