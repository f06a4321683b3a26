//! Post-training quantization of a float chain into candidate integer programs, and the
//! search that keeps the best candidate `Program::analyse` accepts.
//!
//! Why a search: TFHE fixes the budgets (bootstrap input noise, score decryption noise, score
//! range) and they trade against each other — wider output weights resolve the logits better
//! but need more score bits, and bits plus `log2 ||W_c||₂` are bounded by the bootstrap noise.
//! No closed form picks the best point, so every candidate is built, proved by the same
//! `Program::analyse` the server runs, and scored on the calibration rows: agreement with the
//! float model's class first, then label accuracy when labels are given.
//!
//! One candidate, for a chain of layers `l`:
//!
//! * **inputs**: per feature, `q = clamp(round((x - min) / step), 0, 2^input_bits - 1)` with
//!   `step = (max - min) / (2^input_bits - 1)` from the calibration min/max; the zero point and
//!   any ONNX scaler fold into the first layer's bias and weights;
//! * **hidden layer** (followed by Relu): the bootstrap reads 16 boxes of `2^w` integers over
//!   `-2^(w+3)..2^(w+3)` (`w = low_bits`: 5 for the first layer, whose fresh inputs leave noise
//!   room for it, 0 after a bootstrap). Each neuron's integer weights are its float weights
//!   times `a_j = 2^(w+3) / R_j`, where `R_j` is a percentile of `|z_j|` on the calibration rows
//!   (per neuron, or one for the layer), capped so `|W| <= 2^(weight_bits-1) - 1`. Its table
//!   is ReLU at each box's midpoint, requantized to `0..=levels` with step `s_j` (a percentile
//!   of the neuron's positive calibrated pre-activations over `levels`); `s_j` folds into the
//!   next layer's float weights. Values past the window wrap negacyclically, which for a
//!   ReLU table saturates (to `levels` above, `0` below) for the first 8 boxes;
//! * **last layer**: one scale `β` for all classes (argmax compares scores), so the largest
//!   integer weight is `V` (`2^(weight_bits-1) - 1` after fresh inputs; searched `1..` after
//!   a bootstrap, where the noise budget binds); `output.bits` the fewest that hold every
//!   score's range.

use crate::error::ProgramError;
use crate::program::{
    Activation, Analysis, Decision, InputSpec, Layer, OutputSpec, Program, Rounding, FORMAT,
    TABLE_LEN,
};

use super::graph::FloatModel;
use super::Calibration;

/// The knobs of one candidate (reported for the chosen one).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Params {
    /// Bits of each quantized input (`0..2^input_bits - 1`).
    pub input_bits: u32,
    /// Largest integer weight is `2^(weight_bits-1) - 1`.
    pub weight_bits: u32,
    /// Percentile of `|z|` a hidden layer's bootstrap window covers.
    pub window_percentile: f64,
    /// Window and requantization step per neuron (else one per layer).
    pub per_neuron: bool,
    /// Hidden activations take values `0..=levels`.
    pub levels: i64,
    /// Percentile of positive pre-activations mapped to `levels`.
    pub level_percentile: f64,
    /// Largest |weight| of the last layer.
    pub output_weight_max: i64,
    /// Score bits (`output.bits`).
    pub output_bits: u32,
}

/// What the search found.
pub struct Found {
    pub program: Program,
    pub analysis: Analysis,
    pub params: Params,
    pub tried: usize,
    pub accepted: usize,
}

/// Hidden-layer settings searched (one tuple per candidate family).
#[derive(Debug, Clone, Copy)]
struct Hidden {
    window_percentile: f64,
    per_neuron: bool,
    levels: i64,
    level_percentile: f64,
}

const WINDOW_PERCENTILES: [f64; 3] = [99.0, 99.9, 100.0];
const LEVEL_PERCENTILES: [f64; 4] = [90.0, 95.0, 99.0, 100.0];
const MAX_LEVELS: i64 = 7;
/// Largest last-layer weight tried after a bootstrap (the noise budget binds long before).
const MAX_OUTPUT_WEIGHT_AFTER_PBS: i64 = 15;

/// Everything the search needs that does not change between candidates.
pub struct Search<'a> {
    pub model: &'a FloatModel,
    pub calibration: &'a Calibration,
    pub name: String,
    pub description: String,
    pub classes: Vec<String>,
    pub decision: Decision,
    pub weight_bits: u32,
    pub input_bits: Vec<u32>,
}

impl Search<'_> {
    /// Build and prove every candidate; keep the best one on the calibration rows.
    pub fn run(&self) -> Result<Found, super::CompileError> {
        let rows = &self.calibration.input;
        let float_z: Vec<Vec<Vec<f64>>> =
            rows.iter().map(|r| self.model.pre_activations(r)).collect();
        let float_class: Vec<usize> = float_z
            .iter()
            .map(|z| float_decision(self.decision, z.last().map_or(&[][..], Vec::as_slice)))
            .collect();
        let hidden_layers = self.model.layers.len() - 1;
        let families: Vec<Hidden> = if hidden_layers == 0 {
            vec![Hidden {
                window_percentile: 100.0,
                per_neuron: false,
                levels: 1,
                level_percentile: 100.0,
            }]
        } else {
            let mut v = Vec::new();
            for &window_percentile in &WINDOW_PERCENTILES {
                for per_neuron in [false, true] {
                    for levels in 1..=MAX_LEVELS {
                        for &level_percentile in &LEVEL_PERCENTILES {
                            v.push(Hidden {
                                window_percentile,
                                per_neuron,
                                levels,
                                level_percentile,
                            });
                        }
                    }
                }
            }
            v
        };
        // Percentile tables of the float pre-activations, per hidden layer.
        let stats: Vec<LayerStats> = (0..hidden_layers)
            .map(|l| LayerStats::new(&float_z, l))
            .collect();

        let cap = (1i64 << (self.weight_bits - 1)) - 1;
        let mut best: Option<((usize, usize, u32), Found)> = None;
        let mut tried = 0;
        let mut accepted = 0;
        let mut first_failure: Option<String> = None;
        for &input_bits in &self.input_bits {
            let input = self.input_spec(input_bits);
            let probe = self.program(input.clone(), Vec::new(), 32, 1.0);
            let q: Vec<Vec<i64>> = rows
                .iter()
                .map(|r| {
                    probe
                        .quantize(r)
                        .expect("calibration rows are finite and sized")
                })
                .collect();
            for hidden in &families {
                let (layers, w_eff, b_eff) = self.hidden_layers(&input, hidden, &stats, cap);
                let h: Vec<Vec<i64>> = q.iter().map(|x| forward_hidden(&layers, x)).collect();
                let max_abs = w_eff.iter().flatten().fold(0.0f64, |m, w| m.max(w.abs()));
                let vs: Vec<i64> = if hidden_layers == 0 {
                    vec![cap]
                } else {
                    (1..=cap.min(MAX_OUTPUT_WEIGHT_AFTER_PBS)).collect()
                };
                for v in vs {
                    tried += 1;
                    let beta = if max_abs > 0.0 {
                        v as f64 / max_abs
                    } else {
                        1.0
                    };
                    let last = Layer {
                        weights: w_eff
                            .iter()
                            .map(|row| row.iter().map(|w| (w * beta).round() as i64).collect())
                            .collect(),
                        biases: b_eff.iter().map(|b| (b * beta).round() as i64).collect(),
                        activation: None,
                    };
                    let mut all = layers.clone();
                    all.push(last.clone());
                    let mut program = self.program(input.clone(), all, 2, beta);
                    let analysis = match fewest_bits(&mut program) {
                        Ok(a) => a,
                        Err(e) => {
                            first_failure.get_or_insert(e);
                            // Larger weights only add noise and range.
                            break;
                        }
                    };
                    accepted += 1;
                    let mut correct = 0;
                    let mut agree = 0;
                    for (r, hr) in h.iter().enumerate() {
                        let scores = dense(&last, hr);
                        let class = program.decide(&scores).unwrap_or(0);
                        agree += usize::from(class == float_class[r]);
                        if let Some(labels) = &self.calibration.labels {
                            correct += usize::from(class as i64 == labels[r]);
                        }
                    }
                    // Fidelity to the float model first (the quantization error itself; label
                    // accuracy on the calibration rows alone overfits them), then labels; ties
                    // keep the earlier candidate (more input bits, smaller weights).
                    let key = (agree, correct, input_bits);
                    if best.as_ref().is_none_or(|(k, _)| key > *k) {
                        let params = Params {
                            input_bits,
                            weight_bits: self.weight_bits,
                            window_percentile: hidden.window_percentile,
                            per_neuron: hidden.per_neuron,
                            levels: hidden.levels,
                            level_percentile: hidden.level_percentile,
                            output_weight_max: v,
                            output_bits: program.output.bits,
                        };
                        best = Some((
                            key,
                            Found {
                                program,
                                analysis,
                                params,
                                tried: 0,
                                accepted: 0,
                            },
                        ));
                    }
                }
            }
        }
        match best {
            Some((_, mut found)) => {
                found.tried = tried;
                found.accepted = accepted;
                Ok(found)
            }
            None => Err(super::CompileError::NoFit {
                tried,
                constraint: first_failure.unwrap_or_else(|| "none was built".into()),
            }),
        }
    }

    fn program(&self, input: InputSpec, layers: Vec<Layer>, bits: u32, scale: f64) -> Program {
        Program {
            format: FORMAT.into(),
            name: self.name.clone(),
            description: self.description.clone(),
            input,
            layers,
            output: OutputSpec {
                bits,
                classes: self.classes.clone(),
                decision: self.decision,
                scale,
            },
        }
    }

    /// Per-feature min/max quantizer over the calibration rows.
    fn input_spec(&self, bits: u32) -> InputSpec {
        let n = self.model.features;
        let levels = (1i64 << bits) - 1;
        let mut lo = vec![f64::INFINITY; n];
        let mut hi = vec![f64::NEG_INFINITY; n];
        for row in &self.calibration.input {
            for (i, &v) in row.iter().enumerate() {
                lo[i] = lo[i].min(v);
                hi[i] = hi[i].max(v);
            }
        }
        let scale = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| {
                let s = (h - l) / levels as f64;
                if s.is_finite() && s > 0.0 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        InputSpec {
            features: n,
            min: 0,
            max: levels,
            offset: lo,
            scale,
            rounding: Rounding::Nearest,
        }
    }

    /// The integer hidden layers of one family, and the last layer's float weights and biases
    /// in units of the last hidden layer's integer outputs (or of the quantized inputs).
    fn hidden_layers(
        &self,
        input: &InputSpec,
        hidden: &Hidden,
        stats: &[LayerStats],
        cap: i64,
    ) -> (Vec<Layer>, Vec<Vec<f64>>, Vec<f64>) {
        let model = self.model;
        // First layer in units of the quantized inputs: x = a·(offset + scale·q) + c.
        let first = &model.layers[0];
        let mut w_eff: Vec<Vec<f64>> = first
            .weights
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, w)| w * model.input_scale[i] * input.scale[i])
                    .collect()
            })
            .collect();
        let mut b_eff: Vec<f64> = first
            .weights
            .iter()
            .zip(&first.biases)
            .map(|(row, b)| {
                b + row
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        w * (model.input_scale[i] * input.offset[i] + model.input_shift[i])
                    })
                    .sum::<f64>()
            })
            .collect();
        let mut layers = Vec::new();
        for (l, st) in stats.iter().enumerate() {
            let low_bits: u32 = if l == 0 { 5 } else { 0 };
            let half = f64::from(1u32 << (low_bits + 3));
            let n = w_eff.len();
            let mut weights = Vec::with_capacity(n);
            let mut biases = Vec::with_capacity(n);
            let mut tables = Vec::with_capacity(n);
            let mut steps = Vec::with_capacity(n);
            for j in 0..n {
                let r = st.window(j, hidden);
                let m = w_eff[j].iter().fold(0.0f64, |m, w| m.max(w.abs()));
                let mut a = half / r;
                if m * a > cap as f64 + 0.5 {
                    a = cap as f64 / m;
                }
                weights.push(w_eff[j].iter().map(|w| (w * a).round() as i64).collect());
                biases.push((b_eff[j] * a).round() as i64);
                let s = st.level_step(j, hidden, r);
                let width = f64::from(1u32 << low_bits);
                let table: Vec<i64> = (0..TABLE_LEN)
                    .map(|k| {
                        let mid = (k as f64 - 8.0) * width + (width - 1.0) / 2.0;
                        let y = (mid / a).max(0.0) / s;
                        (y.round() as i64).clamp(0, hidden.levels)
                    })
                    .collect();
                tables.push(table);
                steps.push(s);
            }
            layers.push(Layer {
                weights,
                biases,
                activation: Some(Activation { low_bits, tables }),
            });
            // Next layer's float weights, in units of these integer activations.
            let next = &model.layers[l + 1];
            w_eff = next
                .weights
                .iter()
                .map(|row| row.iter().zip(&steps).map(|(w, s)| w * s).collect())
                .collect();
            b_eff = next.biases.clone();
        }
        (layers, w_eff, b_eff)
    }
}

/// Sorted float statistics of one hidden layer's calibrated pre-activations.
struct LayerStats {
    /// Per neuron: sorted |z|, sorted positive z.
    abs: Vec<Vec<f64>>,
    pos: Vec<Vec<f64>>,
    /// The same over the whole layer.
    abs_all: Vec<f64>,
    pos_all: Vec<f64>,
}

impl LayerStats {
    fn new(float_z: &[Vec<Vec<f64>>], l: usize) -> Self {
        let n = float_z.first().map_or(0, |z| z[l].len());
        let mut abs = vec![Vec::new(); n];
        let mut pos = vec![Vec::new(); n];
        for z in float_z {
            for (j, &v) in z[l].iter().enumerate() {
                abs[j].push(v.abs());
                if v > 0.0 {
                    pos[j].push(v);
                }
            }
        }
        let sort = |v: &mut Vec<f64>| v.sort_by(f64::total_cmp);
        let mut abs_all: Vec<f64> = abs.iter().flatten().copied().collect();
        let mut pos_all: Vec<f64> = pos.iter().flatten().copied().collect();
        abs.iter_mut().for_each(sort);
        pos.iter_mut().for_each(sort);
        sort(&mut abs_all);
        sort(&mut pos_all);
        LayerStats {
            abs,
            pos,
            abs_all,
            pos_all,
        }
    }

    /// Half-width of neuron `j`'s window in float units (never 0).
    fn window(&self, j: usize, h: &Hidden) -> f64 {
        let v = if h.per_neuron {
            &self.abs[j]
        } else {
            &self.abs_all
        };
        percentile(v, h.window_percentile).max(1e-9)
    }

    /// Float value of one activation level of neuron `j` (never 0).
    fn level_step(&self, j: usize, h: &Hidden, window: f64) -> f64 {
        let v = if h.per_neuron {
            &self.pos[j]
        } else {
            &self.pos_all
        };
        let top = if v.is_empty() {
            window
        } else {
            percentile(v, h.level_percentile)
        };
        (top / h.levels as f64).max(1e-12)
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `b + W x` exactly (scores fit i64: the program was proved).
fn dense(layer: &Layer, x: &[i64]) -> Vec<i64> {
    layer
        .weights
        .iter()
        .zip(&layer.biases)
        .map(|(row, &b)| {
            let z = i128::from(b)
                + row
                    .iter()
                    .zip(x)
                    .map(|(&w, &v)| i128::from(w) * i128::from(v))
                    .sum::<i128>();
            z as i64
        })
        .collect()
}

/// The hidden layers of a candidate on one quantized input (the plaintext reference's
/// arithmetic: exact sums, then `Activation::apply`).
fn forward_hidden(layers: &[Layer], q: &[i64]) -> Vec<i64> {
    let mut x = q.to_vec();
    for layer in layers {
        let act = layer.activation.as_ref().expect("hidden layers have one");
        x = layer
            .weights
            .iter()
            .zip(&layer.biases)
            .enumerate()
            .map(|(j, (row, &b))| {
                let z = i128::from(b)
                    + row
                        .iter()
                        .zip(&x)
                        .map(|(&w, &v)| i128::from(w) * i128::from(v))
                        .sum::<i128>();
                act.apply(j, z)
            })
            .collect();
    }
    x
}

/// Set `output.bits` to the fewest that hold every score's range, and prove the program.
/// A failure names the constraint (more bits would only shrink the decryption budget).
fn fewest_bits(program: &mut Program) -> Result<Analysis, String> {
    let mut last = String::new();
    for bits in 2..=32 {
        program.output.bits = bits;
        match program.analyse() {
            Ok(a) => return Ok(a),
            Err(e @ ProgramError::MayOverflow { .. }) => last = e.to_string(),
            Err(e @ ProgramError::Noise { .. }) if bits > 2 => {
                return Err(format!(
                    "the scores need more than {} bits, and at {bits}: {e}",
                    bits - 1
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

/// The float model's class for its logits.
pub fn float_decision(decision: Decision, logits: &[f64]) -> usize {
    match decision {
        Decision::Threshold => usize::from(logits.first().is_some_and(|&v| v > 0.0)),
        Decision::Argmax => {
            let mut best = 0;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            best
        }
    }
}
