//! The integer program: what a float model was compiled to, and the only thing the server
//! evaluates. It is at once the plaintext reference ([`crate::plaintext`]) and the recipe for
//! encrypted evaluation ([`crate::server`]); validation proves, before any ciphertext exists,
//! that the encrypted result equals the reference bit for bit (ranges and noise, see
//! [`crate::noise`]).
//!
//! A program is a chain of layers over integers:
//!
//! * **input**: `q_i = clamp(round((x_i - offset_i) / scale_i), min, max)` (or `floor`);
//! * **layer**: `z_j = b_j + Σ_i W_ji · x_i`, exact;
//! * **activation** (every layer but the last), one table `F_j` of 16 integers per neuron and
//!   `low_bits = w` (0..=5): `u = floor((z + 2^(w+3)) / 2^w) mod 32`, and
//!   `h = F_j[u]` if `u < 16`, else `min F_j + max F_j - F_j[u - 16]`. For
//!   `-2^(w+3) <= z < 2^(w+3)` this is simply `F_j[floor(z / 2^w) + 8]`: a ReLU and
//!   requantisation when the table says so. The wrap-around for larger |z| is what one
//!   negacyclic bootstrap computes, so the definition is exact for *every* input.
//! * **output**: the last layer's `z` are the scores, decoded by the client; `argmax` over
//!   classes, or `threshold` (one score, class 1 if `score > 0`).
//!
//! Version 1 files (a single linear layer over 2-bit inputs, session 1's digits-he) are read
//! and converted.

use serde::{Deserialize, Serialize};

use crate::error::{HeError, ProgramError};
use crate::noise;

/// The current format tag.
pub const FORMAT: &str = "cloister-he-program/v2";
/// The first format (one linear layer), still accepted.
pub const FORMAT_V1: &str = "cloister-he-program/v1";

/// Limits that keep every interval computation far inside i128 and every allocation small.
pub const MAX_FEATURES: usize = 4096;
pub const MAX_NEURONS: usize = 4096;
pub const MAX_LAYERS: usize = 8;
pub const MAX_ABS_WEIGHT: i64 = 1 << 20;
pub const MAX_ABS_BIAS: i64 = 1 << 40;
pub const MAX_ABS_INPUT: i64 = 1 << 20;
/// Entries of an activation table (16 boxes over half the torus).
pub const TABLE_LEN: usize = 16;
/// Largest `low_bits` (the low window is 5 bits wide at most: 32 boxes over the torus).
pub const MAX_LOW_BITS: u32 = 5;

/// Rounding of the input quantizer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Round half to even (numpy's `np.round`).
    Nearest,
    /// Round towards minus infinity (`np.floor`).
    Floor,
}

/// How raw features become the integers that are encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub features: usize,
    /// Smallest and largest quantized value.
    pub min: i64,
    pub max: i64,
    /// One value for all features, or one per feature.
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
    pub rounding: Rounding,
}

/// Activation after a layer: one bootstrap table per neuron.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    pub low_bits: u32,
    pub tables: Vec<Vec<i64>>,
}

/// `z = biases + weights · x`, then the activation, if any.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub weights: Vec<Vec<i64>>,
    pub biases: Vec<i64>,
    #[serde(default)]
    pub activation: Option<Activation>,
}

/// How the client turns decrypted scores into a class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Argmax,
    Threshold,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Scores are encrypted with step 2^-bits of the torus and decoded as `bits`-bit two's
    /// complement around a per-class centre (see [`Program::score_offsets`]).
    pub bits: u32,
    pub classes: Vec<String>,
    pub decision: Decision,
    /// `score / scale` approximates the float model's logit.
    pub scale: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub format: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input: InputSpec,
    pub layers: Vec<Layer>,
    pub output: OutputSpec,
}

/// Session 1's format: one linear layer over `bits`-bit inputs, `floor(x / step)`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramV1 {
    format: String,
    name: String,
    #[serde(default)]
    description: String,
    input: InputV1,
    classes: Vec<String>,
    weights: Vec<Vec<i64>>,
    biases: Vec<i64>,
    weight_scale: f64,
    score_bits: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputV1 {
    features: usize,
    bits: u32,
    step: f64,
    #[serde(default)]
    #[allow(dead_code)]
    max_value: Option<f64>,
}

/// Closed integer interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub lo: i128,
    pub hi: i128,
}

/// What validation derives once: score ranges and centres, bootstraps per inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Worst-case range of each final score over all inputs.
    pub score_ranges: Vec<Interval>,
    /// Centre subtracted by the server and added back by the client.
    pub score_offsets: Vec<i64>,
    /// Programmable bootstraps one inference costs.
    pub pbs_count: usize,
    /// Largest noise variance before a bootstrap, as a fraction of the allowed one.
    pub worst_pbs_noise_ratio: f64,
    /// Largest noise variance of a score, as a fraction of the allowed one.
    pub worst_output_noise_ratio: f64,
}

/// Bootstraps per neuron for a given `low_bits`.
pub fn pbs_per_neuron(low_bits: u32) -> usize {
    match low_bits {
        0 => 1,
        1 => 2,
        _ => 4,
    }
}

impl Activation {
    /// `min F + max F` of neuron `j`'s table: the wrap-around reflection constant.
    pub fn reflect(&self, j: usize) -> i64 {
        let t = &self.tables[j];
        t.iter().min().copied().unwrap_or(0) + t.iter().max().copied().unwrap_or(0)
    }

    /// The activation of neuron `j` on the exact pre-activation `z`.
    pub fn apply(&self, j: usize, z: i128) -> i64 {
        let w = self.low_bits;
        let u = (z + (1i128 << (w + 3)))
            .div_euclid(1i128 << w)
            .rem_euclid(32) as usize;
        if u < TABLE_LEN {
            self.tables[j][u]
        } else {
            self.reflect(j) - self.tables[j][u - TABLE_LEN]
        }
    }
}

impl Program {
    /// Parse (v2, or v1 converted) and validate a program from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ProgramError> {
        #[derive(Deserialize)]
        struct Tag {
            format: String,
        }
        let tag: Tag = serde_json::from_str(text)?;
        let program = match tag.format.as_str() {
            FORMAT => serde_json::from_str::<Program>(text)?,
            FORMAT_V1 => Self::from_v1(serde_json::from_str(text)?)?,
            other => {
                return Err(ProgramError::Format {
                    found: other.to_string(),
                    expected: FORMAT,
                })
            }
        };
        program.validate()?;
        Ok(program)
    }

    fn from_v1(v1: ProgramV1) -> Result<Self, ProgramError> {
        if v1.input.bits == 0 || v1.input.bits > 16 {
            return Err(ProgramError::InputBits(v1.input.bits));
        }
        let _ = v1.format;
        Ok(Program {
            format: FORMAT.into(),
            name: v1.name,
            description: v1.description,
            input: InputSpec {
                features: v1.input.features,
                min: 0,
                max: (1i64 << v1.input.bits) - 1,
                offset: vec![0.0],
                scale: vec![v1.input.step],
                rounding: Rounding::Floor,
            },
            layers: vec![Layer {
                weights: v1.weights,
                biases: v1.biases,
                activation: None,
            }],
            output: OutputSpec {
                bits: v1.score_bits,
                classes: v1.classes,
                decision: Decision::Argmax,
                scale: v1.weight_scale,
            },
        })
    }

    /// Read, parse and validate a program file.
    pub fn load(path: &std::path::Path) -> Result<Self, HeError> {
        let text = std::fs::read_to_string(path).map_err(|e| HeError::Deserialize {
            what: "program file",
            reason: format!("{}: {e}", path.display()),
        })?;
        Ok(Self::from_json(&text)?)
    }

    /// Check shapes and bounds, and prove exactness (ranges and noise).
    pub fn validate(&self) -> Result<(), ProgramError> {
        self.analyse().map(|_| ())
    }

    /// Number of final scores.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.biases.len())
    }

    /// log2 of the torus step at which layer `l`'s inputs and pre-activations are encoded:
    /// `59 - low_bits` for a layer with an activation (the bootstrap reads bits 59..64), and
    /// `64 - output.bits` for the last layer.
    pub fn layer_scale_log2(&self, l: usize) -> u32 {
        match &self.layers[l].activation {
            Some(a) => 59 - a.low_bits,
            None => 64 - self.output.bits,
        }
    }

    /// Validate everything and derive ranges, offsets, bootstrap count and noise margins.
    pub fn analyse(&self) -> Result<Analysis, ProgramError> {
        self.check_shapes()?;
        let input = &self.input;
        let mut ranges = vec![
            Interval {
                lo: i128::from(input.min),
                hi: i128::from(input.max),
            };
            input.features
        ];
        let mut variances = vec![noise::fresh_variance(); input.features];
        let var_pbs = noise::pbs_variance();
        let budget = noise::pbs_input_budget();
        let mut pbs_count = 0;
        let mut worst_pbs: f64 = 0.0;
        let mut worst_out: f64 = 0.0;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut next_ranges = Vec::with_capacity(layer.biases.len());
            let mut next_var = Vec::with_capacity(layer.biases.len());
            for (j, (row, &bias)) in layer.weights.iter().zip(&layer.biases).enumerate() {
                let mut z = Interval {
                    lo: i128::from(bias),
                    hi: i128::from(bias),
                };
                let mut var = 0.0;
                for ((&w, r), v) in row.iter().zip(&ranges).zip(&variances) {
                    let (a, b) = (i128::from(w) * r.lo, i128::from(w) * r.hi);
                    z.lo += a.min(b);
                    z.hi += a.max(b);
                    var += (w as f64) * (w as f64) * v;
                }
                match &layer.activation {
                    Some(act) => {
                        let w = act.low_bits;
                        // Noise reaching each bootstrap (see server.rs for the pipeline).
                        let worst = match w {
                            0 => var,
                            1 => (1024.0 * var).max(var + var_pbs),
                            _ => (1024.0 * var + var_pbs).max(var + 2.0 * var_pbs),
                        };
                        let ratio = worst / budget;
                        worst_pbs = worst_pbs.max(ratio);
                        if ratio > 1.0 {
                            return Err(ProgramError::Noise {
                                layer: l,
                                neuron: j,
                                what: "bootstrap input",
                                ratio,
                            });
                        }
                        pbs_count += pbs_per_neuron(w);
                        let t = &act.tables[j];
                        next_ranges.push(Interval {
                            lo: i128::from(*t.iter().min().unwrap_or(&0)),
                            hi: i128::from(*t.iter().max().unwrap_or(&0)),
                        });
                        next_var.push(var_pbs);
                    }
                    None => {
                        let ratio = var / noise::decrypt_budget(self.output.bits);
                        worst_out = worst_out.max(ratio);
                        if ratio > 1.0 {
                            return Err(ProgramError::Noise {
                                layer: l,
                                neuron: j,
                                what: "score decryption",
                                ratio,
                            });
                        }
                        next_ranges.push(z);
                    }
                }
            }
            if l == last {
                let limit = 1i128 << (self.output.bits - 1);
                let mut offsets = Vec::with_capacity(next_ranges.len());
                for (class, r) in next_ranges.iter().enumerate() {
                    let off = (r.lo + r.hi).div_euclid(2);
                    if r.hi - off >= limit || r.lo - off < -limit {
                        return Err(ProgramError::MayOverflow {
                            class,
                            span: (r.hi - r.lo) as i64,
                            bits: self.output.bits,
                        });
                    }
                    offsets.push(off as i64);
                }
                return Ok(Analysis {
                    score_ranges: next_ranges,
                    score_offsets: offsets,
                    pbs_count,
                    worst_pbs_noise_ratio: worst_pbs,
                    worst_output_noise_ratio: worst_out,
                });
            }
            ranges = next_ranges;
            variances = next_var;
        }
        Err(ProgramError::NoLayers)
    }

    fn check_shapes(&self) -> Result<(), ProgramError> {
        if self.format != FORMAT {
            return Err(ProgramError::Format {
                found: self.format.clone(),
                expected: FORMAT,
            });
        }
        let input = &self.input;
        if input.features == 0 || input.features > MAX_FEATURES {
            return Err(ProgramError::Features(input.features));
        }
        if input.min > input.max
            || input.min.abs() > MAX_ABS_INPUT
            || input.max.abs() > MAX_ABS_INPUT
        {
            return Err(ProgramError::InputRange {
                min: input.min,
                max: input.max,
            });
        }
        for (name, v) in [("offset", &input.offset), ("scale", &input.scale)] {
            if v.len() != 1 && v.len() != input.features {
                return Err(ProgramError::QuantizerLength {
                    name,
                    len: v.len(),
                    features: input.features,
                });
            }
        }
        if let Some(&bad) = input
            .offset
            .iter()
            .find(|x| !x.is_finite())
            .or_else(|| input.scale.iter().find(|x| !(x.is_finite() && **x > 0.0)))
        {
            return Err(ProgramError::Step(bad));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_LAYERS {
            return Err(ProgramError::LayerCount(self.layers.len()));
        }
        if !(2..=32).contains(&self.output.bits) {
            return Err(ProgramError::ScoreBits(self.output.bits));
        }
        let mut width = input.features;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let neurons = layer.biases.len();
            if neurons == 0 || neurons > MAX_NEURONS {
                return Err(ProgramError::Neurons { layer: l, neurons });
            }
            if layer.weights.len() != neurons {
                return Err(ProgramError::WeightRows {
                    layer: l,
                    rows: layer.weights.len(),
                    neurons,
                });
            }
            for (row, weights) in layer.weights.iter().enumerate() {
                if weights.len() != width {
                    return Err(ProgramError::WeightCols {
                        layer: l,
                        row,
                        len: weights.len(),
                        expected: width,
                    });
                }
                if let Some((col, &value)) = weights
                    .iter()
                    .enumerate()
                    .find(|(_, w)| w.abs() > MAX_ABS_WEIGHT)
                {
                    return Err(ProgramError::WeightRange {
                        layer: l,
                        row,
                        col,
                        value,
                        max: MAX_ABS_WEIGHT,
                    });
                }
            }
            if let Some(&value) = layer.biases.iter().find(|b| b.abs() > MAX_ABS_BIAS) {
                return Err(ProgramError::BiasRange { layer: l, value });
            }
            match (&layer.activation, l == last) {
                (Some(_), true) => return Err(ProgramError::ActivationPlacement { layer: l }),
                (None, false) => return Err(ProgramError::ActivationPlacement { layer: l }),
                (Some(act), false) => {
                    if act.low_bits > MAX_LOW_BITS {
                        return Err(ProgramError::LowBits(act.low_bits));
                    }
                    if act.tables.len() != neurons
                        || act.tables.iter().any(|t| t.len() != TABLE_LEN)
                    {
                        return Err(ProgramError::Tables { layer: l });
                    }
                    if act.tables.iter().flatten().any(|v| v.abs() > MAX_ABS_INPUT) {
                        return Err(ProgramError::Tables { layer: l });
                    }
                }
                (None, true) => {}
            }
            width = neurons;
        }
        let classes = self.output.classes.len();
        let ok = match self.output.decision {
            Decision::Argmax => classes >= 2 && classes == width,
            Decision::Threshold => classes == 2 && width == 1,
        };
        if !ok {
            return Err(ProgramError::Classes {
                classes,
                scores: width,
            });
        }
        Ok(())
    }

    /// Quantize raw features.
    pub fn quantize(&self, raw: &[f64]) -> Result<Vec<i64>, HeError> {
        let input = &self.input;
        if raw.len() != input.features {
            return Err(HeError::InputLength {
                found: raw.len(),
                expected: input.features,
            });
        }
        let pick = |v: &Vec<f64>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
        raw.iter()
            .enumerate()
            .map(|(index, &x)| {
                if !x.is_finite() {
                    return Err(HeError::InputNotFinite { index });
                }
                let t = (x - pick(&input.offset, index)) / pick(&input.scale, index);
                let r = match input.rounding {
                    Rounding::Nearest => t.round_ties_even(),
                    Rounding::Floor => t.floor(),
                };
                Ok(r.clamp(input.min as f64, input.max as f64) as i64)
            })
            .collect()
    }

    /// Check a quantized input against the program.
    pub fn check_input(&self, input: &[i64]) -> Result<(), HeError> {
        if input.len() != self.input.features {
            return Err(HeError::InputLength {
                found: input.len(),
                expected: self.input.features,
            });
        }
        if let Some((index, &value)) = input
            .iter()
            .enumerate()
            .find(|(_, &v)| v < self.input.min || v > self.input.max)
        {
            return Err(HeError::InputRange {
                index,
                value,
                min: self.input.min,
                max: self.input.max,
            });
        }
        Ok(())
    }

    /// The class the decision rule picks from exact scores.
    pub fn decide(&self, scores: &[i64]) -> Option<usize> {
        match self.output.decision {
            Decision::Argmax => argmax(scores),
            Decision::Threshold => scores.first().map(|&s| usize::from(s > 0)),
        }
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
