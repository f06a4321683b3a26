//! Calibration data: representative raw input rows (and, optionally, their labels) that fix
//! the input quantizer (per-feature min/max), the range each hidden neuron's bootstrap table
//! must cover, and which candidate quantization is kept. Same JSON form as the models'
//! `heldout.json`: `{"input": [[f64, ...], ...], "labels": [i64, ...]}` (`labels` optional).
//! Use training rows, never the rows accuracy is reported on.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::error::CalibrationError;

/// Largest calibration file read (bounded memory).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Most rows accepted.
pub const MAX_ROWS: usize = 200_000;

/// Validated calibration rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub input: Vec<Vec<f64>>,
    pub labels: Option<Vec<i64>>,
}

/// Other fields (e.g. `heldout.json`'s reference outputs) are ignored.
#[derive(Deserialize)]
struct Raw {
    input: Vec<Vec<f64>>,
    #[serde(default)]
    labels: Option<Vec<i64>>,
}

impl Calibration {
    /// Parse JSON text and check it is rectangular, finite, and labelled consistently.
    pub fn from_json(text: &str) -> Result<Self, CalibrationError> {
        let raw: Raw = serde_json::from_str(text)?;
        if raw.input.is_empty() {
            return Err(CalibrationError::NoRows);
        }
        if raw.input.len() > MAX_ROWS {
            return Err(CalibrationError::TooManyRows(raw.input.len()));
        }
        let width = raw.input[0].len();
        for (row, values) in raw.input.iter().enumerate() {
            if values.len() != width || width == 0 {
                return Err(CalibrationError::RowLength {
                    row,
                    found: values.len(),
                    expected: width,
                });
            }
            if let Some(col) = values.iter().position(|v| !v.is_finite()) {
                return Err(CalibrationError::NotFinite { row, col });
            }
        }
        if let Some(labels) = &raw.labels {
            if labels.len() != raw.input.len() {
                return Err(CalibrationError::LabelCount {
                    labels: labels.len(),
                    rows: raw.input.len(),
                });
            }
        }
        Ok(Calibration {
            input: raw.input,
            labels: raw.labels,
        })
    }

    /// Read a calibration file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, CalibrationError> {
        let io = |e: std::io::Error| CalibrationError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_FILE_BYTES {
            return Err(CalibrationError::TooLarge {
                size,
                max: MAX_FILE_BYTES,
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        Self::from_json(&text)
    }

    /// Check the rows fit a model with `features` inputs and labels are class indices.
    pub fn check(&self, features: usize, classes: usize) -> Result<(), CalibrationError> {
        if self.input[0].len() != features {
            return Err(CalibrationError::RowLength {
                row: 0,
                found: self.input[0].len(),
                expected: features,
            });
        }
        if let Some(labels) = &self.labels {
            if let Some((row, &label)) = labels
                .iter()
                .enumerate()
                .find(|(_, &l)| l < 0 || l as u64 >= classes as u64)
            {
                return Err(CalibrationError::Label {
                    row,
                    label,
                    classes,
                });
            }
        }
        Ok(())
    }
}
