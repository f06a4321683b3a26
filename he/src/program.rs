//! The integer program: what the float model was compiled to, and the only thing the server
//! evaluates. Validation proves, before any ciphertext exists, that no score can overflow the
//! encrypted score width, so encrypted arithmetic modulo 2^score_bits is exact.

use serde::{Deserialize, Serialize};

use crate::error::{HeError, ProgramError};

/// The format tag every program file carries.
pub const FORMAT: &str = "cloister-he-program/v1";

/// How raw features become the small unsigned integers that are encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Number of features.
    pub features: usize,
    /// Bits per quantized feature.
    pub bits: u32,
    /// q = clamp(floor(x / step), 0, 2^bits - 1).
    pub step: f64,
    /// Largest raw value expected (documentation; raw values are clamped).
    #[serde(default)]
    pub max_value: Option<f64>,
}

/// A linear classifier over quantized inputs: `score[c] = biases[c] + sum_i weights[c][i] * q[i]`,
/// exact integers. `score / weight_scale` approximates the float model's logit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub format: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input: InputSpec,
    pub classes: Vec<String>,
    pub weights: Vec<Vec<i64>>,
    pub biases: Vec<i64>,
    pub weight_scale: f64,
    /// Width of the two's complement scores; a multiple of the 2-bit block.
    pub score_bits: u32,
}

/// Largest |weight| accepted (base-4 digits keep every encrypted term small).
pub const MAX_ABS_WEIGHT: i64 = 127;

impl Program {
    /// Parse and validate a program from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ProgramError> {
        let program: Program = serde_json::from_str(text)?;
        program.validate()?;
        Ok(program)
    }

    /// Read, parse and validate a program file.
    pub fn load(path: &std::path::Path) -> Result<Self, HeError> {
        let text = std::fs::read_to_string(path).map_err(|e| HeError::Deserialize {
            what: "program file",
            reason: format!("{}: {e}", path.display()),
        })?;
        Ok(Self::from_json(&text)?)
    }

    /// Check shapes, ranges and that no score can overflow `score_bits`.
    pub fn validate(&self) -> Result<(), ProgramError> {
        if self.format != FORMAT {
            return Err(ProgramError::Format {
                found: self.format.clone(),
                expected: FORMAT,
            });
        }
        if self.input.features == 0 {
            return Err(ProgramError::NoFeatures);
        }
        if self.input.bits == 0 || self.input.bits > crate::BLOCK_BITS {
            return Err(ProgramError::InputBits(self.input.bits));
        }
        if !(self.input.step.is_finite() && self.input.step > 0.0) {
            return Err(ProgramError::Step(self.input.step));
        }
        let classes = self.classes.len();
        if classes < 2 {
            return Err(ProgramError::TooFewClasses(classes));
        }
        if self.weights.len() != classes {
            return Err(ProgramError::WeightRows {
                rows: self.weights.len(),
                classes,
            });
        }
        if self.biases.len() != classes {
            return Err(ProgramError::Biases {
                len: self.biases.len(),
                classes,
            });
        }
        if self.score_bits % 2 != 0 || !(4..=32).contains(&self.score_bits) {
            return Err(ProgramError::ScoreBits(self.score_bits));
        }
        let limit = 1i64 << (self.score_bits - 1);
        let qmax = i64::from(self.max_input());
        for (row, weights) in self.weights.iter().enumerate() {
            if weights.len() != self.input.features {
                return Err(ProgramError::WeightCols {
                    row,
                    len: weights.len(),
                    features: self.input.features,
                });
            }
            for (col, &value) in weights.iter().enumerate() {
                if value.unsigned_abs() > MAX_ABS_WEIGHT.unsigned_abs() {
                    return Err(ProgramError::WeightRange {
                        row,
                        col,
                        value,
                        max: MAX_ABS_WEIGHT,
                    });
                }
            }
            // Worst case over all inputs: every |w| meets qmax, plus |bias|. Checked
            // arithmetic: a huge bias is an overflow error, not a wrap.
            let bound = self.biases[row].checked_abs().and_then(|bias| {
                weights
                    .iter()
                    .try_fold(bias, |acc, &w| acc.checked_add(w.abs() * qmax))
            });
            match bound {
                Some(bound) if bound < limit => {}
                _ => {
                    return Err(ProgramError::MayOverflow {
                        class: row,
                        bound: bound.unwrap_or(i64::MAX),
                        bits: self.score_bits,
                        limit,
                    })
                }
            }
        }
        Ok(())
    }

    /// Largest quantized input value, `2^bits - 1`.
    pub fn max_input(&self) -> u8 {
        ((1u32 << self.input.bits) - 1) as u8
    }

    /// Number of 2-bit blocks per encrypted score.
    pub fn score_blocks(&self) -> usize {
        (self.score_bits / crate::BLOCK_BITS) as usize
    }

    /// Quantize raw features: `clamp(floor(x / step), 0, 2^bits - 1)`.
    pub fn quantize(&self, raw: &[f64]) -> Result<Vec<u8>, HeError> {
        if raw.len() != self.input.features {
            return Err(HeError::InputLength {
                found: raw.len(),
                expected: self.input.features,
            });
        }
        let max = f64::from(self.max_input());
        raw.iter()
            .enumerate()
            .map(|(index, &x)| {
                if !x.is_finite() {
                    return Err(HeError::InputNotFinite { index });
                }
                Ok((x / self.input.step).floor().clamp(0.0, max) as u8)
            })
            .collect()
    }

    /// Check a quantized input against the program.
    pub fn check_input(&self, input: &[u8]) -> Result<(), HeError> {
        if input.len() != self.input.features {
            return Err(HeError::InputLength {
                found: input.len(),
                expected: self.input.features,
            });
        }
        let max = self.max_input();
        if let Some((index, &value)) = input.iter().enumerate().find(|(_, &v)| v > max) {
            return Err(HeError::InputRange { index, value, max });
        }
        Ok(())
    }
}

/// Index of the first maximum (ties go to the lower class, as numpy's `argmax`).
pub fn argmax(scores: &[i64]) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}
