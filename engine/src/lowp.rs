//! Sub-byte and 8-bit storage formats: `float8` (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0),
//! `float4` (E2M1) and the 4- and 2-bit integers.
//!
//! Why a separate representation: these formats exist to store and move weights compactly, and
//! ONNX computes on them only through `Cast`/`CastLike` (and the quantisation operators). The
//! engine keeps one code per element in a byte ([`TensorData::Bits`](crate::TensorData::Bits)),
//! unpacked from ONNX's packed `raw_data` on load; `Cast` decodes them to numbers and encodes
//! numbers into them here, bit-exact with the reference (`ml_dtypes`): round to nearest even,
//! optional saturation, and each format's NaN/infinity/negative-zero rules.

use crate::dtype::DType;

/// A number on its way through a cast: floats as `f64`, integers as `i128` (both exact).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    /// A floating-point value.
    F(f64),
    /// An integer value.
    I(i128),
}

/// How `Cast` to E8M0 rounds (`round_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundMode {
    /// Up to the next power of two (the default).
    Up,
    /// Down (truncate the mantissa).
    Down,
    /// To nearest.
    Nearest,
}

/// Whether `d` is stored as [`TensorData::Bits`](crate::TensorData::Bits).
pub fn is_lowp(d: DType) -> bool {
    bits(d).is_some()
}

/// Bits per element in ONNX's packed layout, for the low-precision dtypes.
pub fn bits(d: DType) -> Option<usize> {
    match d {
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => {
            Some(8)
        }
        DType::F4E2M1 | DType::I4 | DType::U4 => Some(4),
        DType::I2 | DType::U2 => Some(2),
        _ => None,
    }
}

/// Unpacks `n` codes from packed bytes (low bits first).
pub(crate) fn unpack(d: DType, raw: &[u8], n: usize) -> Vec<u8> {
    let b = bits(d).unwrap_or(8);
    let per = 8 / b;
    let mask = ((1u16 << b) - 1) as u8;
    (0..n)
        .map(|i| {
            let byte = raw.get(i / per).copied().unwrap_or(0);
            (byte >> ((i % per) * b)) & mask
        })
        .collect()
}

/// Bytes needed to pack `n` elements of `d`.
pub(crate) fn packed_len(d: DType, n: usize) -> usize {
    let b = bits(d).unwrap_or(8);
    (n * b).div_ceil(8)
}

/// A minifloat layout.
struct Layout {
    man: u32,
    bias: i32,
    /// Largest finite code (magnitude bits).
    max_code: u8,
    kind: Kind,
}

#[derive(PartialEq)]
enum Kind {
    /// No infinities; NaN is S.1111.111 (E4M3FN).
    Fn,
    /// No infinities, no negative zero; NaN is 0x80 (…FNUZ).
    Fnuz,
    /// IEEE-like with infinities (E5M2).
    Ieee,
    /// No NaN, no infinities; always saturates (E2M1).
    Fp4,
}

fn layout(d: DType) -> Option<Layout> {
    Some(match d {
        DType::F8E4M3FN => Layout {
            man: 3,
            bias: 7,
            max_code: 0x7E,
            kind: Kind::Fn,
        },
        DType::F8E4M3FNUZ => Layout {
            man: 3,
            bias: 8,
            max_code: 0x7F,
            kind: Kind::Fnuz,
        },
        DType::F8E5M2 => Layout {
            man: 2,
            bias: 15,
            max_code: 0x7B,
            kind: Kind::Ieee,
        },
        DType::F8E5M2FNUZ => Layout {
            man: 2,
            bias: 16,
            max_code: 0x7F,
            kind: Kind::Fnuz,
        },
        DType::F4E2M1 => Layout {
            man: 1,
            bias: 1,
            max_code: 0x7,
            kind: Kind::Fp4,
        },
        _ => return None,
    })
}

fn sign_bit(l: &Layout) -> u8 {
    if l.kind == Kind::Fp4 {
        0x8
    } else {
        0x80
    }
}

fn decode_mini(l: &Layout, code: u8) -> f64 {
    let sb = sign_bit(l);
    let mag = code & (sb - 1);
    let neg = code & sb != 0;
    match l.kind {
        Kind::Fn if mag == 0x7F => return f64::NAN,
        Kind::Fnuz if code == 0x80 => return f64::NAN,
        Kind::Ieee if mag > 0x7B => {
            return if mag == 0x7C {
                if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            } else {
                f64::NAN
            }
        }
        _ => {}
    }
    let e = i32::from(mag >> l.man);
    let m = f64::from(mag & ((1 << l.man) - 1));
    let scale = f64::from(1u32 << l.man);
    let v = if e == 0 {
        m / scale * 2f64.powi(1 - l.bias)
    } else {
        (1.0 + m / scale) * 2f64.powi(e - l.bias)
    };
    if neg {
        -v
    } else {
        v
    }
}

fn encode_mini(l: &Layout, x: f64, saturate: bool) -> u8 {
    let sb = sign_bit(l);
    let neg = x.is_sign_negative();
    let sign = if neg { sb } else { 0 };
    if x.is_nan() {
        return match l.kind {
            Kind::Fn => 0x7F | sign,
            Kind::Fnuz => 0x80,
            Kind::Ieee => 0x7E | sign,
            Kind::Fp4 => sb,
        };
    }
    let max = decode_mini(l, l.max_code);
    let mut a = x.abs();
    if (saturate || l.kind == Kind::Fp4) && a > max {
        a = max;
    }
    let overflow = || match l.kind {
        Kind::Fn => 0x7F | sign,
        Kind::Fnuz => 0x80,
        Kind::Ieee => 0x7C | sign,
        Kind::Fp4 => l.max_code | sign,
    };
    if a.is_infinite() {
        return overflow();
    }
    let emin = 1 - l.bias;
    let scale = f64::from(1u32 << l.man);
    let code: u64 = if a < 2f64.powi(emin) {
        // Subnormal (or zero): multiples of 2^(emin - man).
        (a / 2f64.powi(emin) * scale).round_ties_even() as u64
    } else {
        let mut e = a.log2().floor() as i32;
        // Guard against log2 rounding at exact powers of two.
        if 2f64.powi(e) > a {
            e -= 1;
        } else if 2f64.powi(e + 1) <= a {
            e += 1;
        }
        let mut m = ((a / 2f64.powi(e) - 1.0) * scale).round_ties_even() as u64;
        if m == 1 << l.man {
            m = 0;
            e += 1;
        }
        let field = (e + l.bias) as u64;
        (field << l.man) | m
    };
    if code > u64::from(l.max_code) {
        return overflow();
    }
    let code = code as u8;
    if code == 0 && l.kind == Kind::Fnuz {
        return 0;
    }
    code | sign
}

fn decode_e8m0(code: u8) -> f64 {
    if code == 0xFF {
        f64::NAN
    } else {
        2f64.powi(i32::from(code) - 127)
    }
}

/// The reference's `to_float8e8m0` on the `float32` bits of `x`.
fn encode_e8m0(x: f64, saturate: bool, mode: RoundMode) -> u8 {
    let f = (x as f32).to_bits();
    let mut exponent = ((f >> 23) & 0xFF) as u16;
    if exponent == 0xFF {
        return 0xFF;
    }
    let round_up = match mode {
        RoundMode::Down => false,
        RoundMode::Up => f & 0x7F_FFFF != 0,
        RoundMode::Nearest => {
            let g = f & 0x40_0000 != 0;
            let r = f & 0x20_0000 != 0;
            let s = f & 0x1F_FFFF != 0;
            let lsb = exponent > 0;
            g && (r || s || lsb)
        }
    };
    if round_up && !(saturate && exponent == 0xFE) {
        exponent += 1;
    }
    exponent as u8
}

/// Decodes one code of a low-precision dtype.
pub(crate) fn decode(d: DType, code: u8) -> Num {
    match d {
        DType::I4 => Num::I(i128::from(((code << 4) as i8) >> 4)),
        DType::U4 => Num::I(i128::from(code & 0xF)),
        DType::I2 => Num::I(i128::from(((code << 6) as i8) >> 6)),
        DType::U2 => Num::I(i128::from(code & 0x3)),
        DType::F8E8M0 => Num::F(decode_e8m0(code)),
        _ => Num::F(layout(d).map_or(f64::NAN, |l| decode_mini(&l, code))),
    }
}

/// Encodes a number as a low-precision code. Integers truncate toward zero (NaN and infinities
/// become 0) and wrap to the width; floats round to nearest even.
pub(crate) fn encode(d: DType, v: Num, saturate: bool, mode: RoundMode) -> u8 {
    let int = |v: Num| -> i128 {
        match v {
            Num::I(i) => i,
            Num::F(f) if f.is_finite() => f.trunc() as i128,
            Num::F(_) => 0,
        }
    };
    let float = |v: Num| -> f64 {
        match v {
            Num::F(f) => f,
            Num::I(i) => i as f64,
        }
    };
    match d {
        DType::I4 | DType::U4 => (int(v) & 0xF) as u8,
        DType::I2 | DType::U2 => (int(v) & 0x3) as u8,
        DType::F8E8M0 => encode_e8m0(float(v), saturate, mode),
        _ => layout(d).map_or(0, |l| encode_mini(&l, float(v), saturate)),
    }
}

/// Decodes codes to `f64` (integers exactly).
pub(crate) fn to_f64(d: DType, codes: &[u8]) -> Vec<f64> {
    codes
        .iter()
        .map(|&c| match decode(d, c) {
            Num::F(f) => f,
            Num::I(i) => i as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(d: DType, x: f64, saturate: bool) -> f64 {
        match decode(d, encode(d, Num::F(x), saturate, RoundMode::Up)) {
            Num::F(f) => f,
            Num::I(i) => i as f64,
        }
    }

    #[test]
    fn float8_matches_ml_dtypes() {
        // Values and expectations from ml_dtypes 0.6 `astype` (saturate = false).
        assert_eq!(
            encode(DType::F8E4M3FN, Num::F(464.0), false, RoundMode::Up),
            126
        );
        assert!(round_trip(DType::F8E4M3FN, 480.0, false).is_nan());
        assert_eq!(round_trip(DType::F8E4M3FN, 1e6, true), 448.0);
        assert_eq!(
            encode(DType::F8E4M3FN, Num::F(-0.0), false, RoundMode::Up),
            0x80
        );
        assert_eq!(
            encode(DType::F8E4M3FNUZ, Num::F(-0.0), false, RoundMode::Up),
            0
        );
        assert_eq!(
            encode(DType::F8E4M3FNUZ, Num::F(448.0), false, RoundMode::Up),
            0x80
        );
        assert_eq!(
            encode(DType::F8E5M2, Num::F(448.0), false, RoundMode::Up),
            95
        );
        assert_eq!(
            encode(DType::F8E5M2, Num::F(500.0), false, RoundMode::Up),
            96
        );
        assert_eq!(
            encode(DType::F8E5M2, Num::F(f64::NAN), false, RoundMode::Up),
            126
        );
        assert_eq!(
            round_trip(DType::F8E5M2, f64::INFINITY, false),
            f64::INFINITY
        );
        assert_eq!(
            encode(DType::F8E5M2FNUZ, Num::F(448.0), false, RoundMode::Up),
            99
        );
        assert_eq!(round_trip(DType::F8E4M3FN, 1e-7, false), 0.0);
    }

    #[test]
    fn float4_and_small_ints() {
        let f4 = |x: f64| encode(DType::F4E2M1, Num::F(x), true, RoundMode::Up);
        let want = [1, 0, 2, 14, 15, 7, 7, 0, 8, 7, 7, 15, 14, 0, 8, 2, 4, 6];
        let xs = [
            0.48,
            0.25,
            1.05,
            -3.5,
            -8.0,
            9.0,
            1e6,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -4.0,
            0.01,
            -0.0,
            0.75,
            2.5,
            5.0,
        ];
        for (x, w) in xs.iter().zip(want) {
            assert_eq!(f4(*x), w, "float4 of {x}");
        }
        let i4 = |x: f64| decode(DType::I4, encode(DType::I4, Num::F(x), true, RoundMode::Up));
        assert_eq!(i4(-9.0), Num::I(7));
        assert_eq!(i4(8.0), Num::I(-8));
        assert_eq!(i4(-1.5), Num::I(-1));
        let u2 = decode(
            DType::U2,
            encode(DType::U2, Num::F(-1.0), true, RoundMode::Up),
        );
        assert_eq!(u2, Num::I(3));
        assert_eq!(unpack(DType::I4, &[0x21, 0x03], 3), vec![1, 2, 3]);
        assert_eq!(unpack(DType::U2, &[0b11_10_01_00], 4), vec![0, 1, 2, 3]);
    }
}
