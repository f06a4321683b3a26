//! The server side: evaluate a [`Program`] on ciphertexts with the server key alone.
//!
//! Linear layers cost **no bootstrap**: clear integer weights act on LWE ciphertexts as plain
//! wrapping integer vector arithmetic (`Σ w_i · ct_i`, a constant added to the body), a few
//! microseconds per term. Only activations bootstrap, through TFHE-rs's own keyswitch and
//! programmable bootstrap (`shortint::ServerKey::apply_lookup_table`, default parameters,
//! including its modulus-switch noise reduction) with lookup tables built here.
//!
//! A bootstrap reads 5 bits of the torus (bits 59..64): 32 boxes, negacyclic (a value in the
//! upper half gives the negated table entry). A pre-activation `y = z + 2^(w+3)` encoded as
//! `Y = y · 2^(59-w)` is wider than that when `w = low_bits > 0`; its low `w` bits are
//! cleared *exactly* first (all neurons of a stage in parallel on rayon):
//!
//! 1. `L = 32·Y` puts `y mod 2^w` on the top bits. Bootstrap **1a** (constant table ±2^62)
//!    and **1b** (±2^57) read its top bit `b`, the sign of the negacyclic box.
//! 2. `L' = L + s1a - 2^62` removes that bit, so `L'` holds `y mod 2^(w-1)` with a clean
//!    padding bit; bootstrap **2** returns it at `Y`'s scale (`w >= 2` only).
//! 3. `Y_hi = Y - p2 - 2^57 + s1b = (y >> w) · 2^59`; bootstrap **3** applies the neuron's
//!    table. Its output is encoded at the next layer's scale, centred so that the negacyclic
//!    reflection stays within the table's range (see [`crate::program`]).
//!
//! No PBS output is ever multiplied before another bootstrap except by the next layer's
//! weights, so the noise stays within what [`crate::noise`] checks at load.

use std::time::Instant;

use rayon::prelude::*;
use tfhe::conformance::ParameterSetConformant;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::{
    generate_programmable_bootstrap_glwe_lut, CiphertextModulus, LweCiphertext, LweCiphertextCount,
    SeededLweCiphertextList,
};
use tfhe::shortint::ciphertext::MaxDegree;
use tfhe::shortint::server_key::LookupTableOwned;
use tfhe::shortint::{AtomicPatternParameters, Ciphertext, CompressedServerKey, ServerKey};

use crate::client::{big_lwe_dimension, key_id_of, EncryptedInput, KeyId, SERVER_KEY_TAG};
use crate::error::HeError;
use crate::program::{pbs_per_neuron, Program, TABLE_LEN};
use crate::{wire, MAX_LWE_DIMENSION, MAX_SERVER_KEY_BYTES, PARAMETERS};

/// Tag at the start of serialised encrypted scores.
pub const SCORES_TAG: &[u8] = b"cloister-he/lwe-scores/v2\n";

/// Encrypted scores: one big-key LWE ciphertext (`lwe_dimension + 1` words) per score.
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptedScores {
    pub key_id: KeyId,
    pub lwe_dimension: usize,
    pub ciphertexts: Vec<Vec<u64>>,
    /// Programmable bootstraps spent.
    pub pbs_count: usize,
}

impl EncryptedScores {
    /// `SCORES_TAG || key id || u32 lwe_dimension || u32 count || u32 pbs_count ||
    /// count × (lwe_dimension + 1) × u64`, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SCORES_TAG.len() + 44 + 8 * self.ciphertexts.len() * (self.lwe_dimension + 1),
        );
        out.extend_from_slice(SCORES_TAG);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&(self.lwe_dimension as u32).to_le_bytes());
        out.extend_from_slice(&(self.ciphertexts.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.pbs_count as u32).to_le_bytes());
        for ct in &self.ciphertexts {
            for w in ct {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Inverse of [`EncryptedScores::to_bytes`], bounded before allocation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        const WHAT: &str = "encrypted scores";
        let mut r = wire::Reader::new(WHAT, SCORES_TAG, bytes)?;
        let key_id = r.array::<32>()?;
        let lwe_dimension = wire::bounded(WHAT, r.u32()?, MAX_LWE_DIMENSION)?;
        let count = wire::bounded(WHAT, r.u32()?, crate::program::MAX_NEURONS)?;
        let pbs_count = r.u32()? as usize;
        let mut ciphertexts = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            ciphertexts.push(r.words(lwe_dimension + 1)?);
        }
        r.finish()?;
        Ok(Self {
            key_id,
            lwe_dimension,
            ciphertexts,
            pbs_count,
        })
    }
}

/// Evaluates programs with one tenant's server key.
pub struct Evaluator {
    sks: ServerKey,
    key_id: KeyId,
    /// Sign tables (constant ±2^62 and ±2^57) and the low-bits identity table.
    sign_top: LookupTableOwned,
    sign_mid: LookupTableOwned,
    low_identity: LookupTableOwned,
}

/// One LWE ciphertext under the big key: `n` mask words then the body.
type Lwe = Vec<u64>;

impl Evaluator {
    /// Deserialise (size-limited), check against the parameter set, and decompress a
    /// compressed server key.
    pub fn from_compressed_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        let t = Instant::now();
        let compressed: CompressedServerKey = wire::decode(
            "compressed server key",
            SERVER_KEY_TAG,
            bytes,
            MAX_SERVER_KEY_BYTES,
        )?;
        let expected = (
            AtomicPatternParameters::from(PARAMETERS),
            MaxDegree::from_msg_carry_modulus(PARAMETERS.message_modulus, PARAMETERS.carry_modulus),
        );
        if !compressed.is_conformant(&expected) {
            return Err(HeError::Deserialize {
                what: "compressed server key",
                reason: "parameters are not PARAM_MESSAGE_2_CARRY_2_KS_PBS".into(),
            });
        }
        let sks = compressed.decompress();
        tracing::info!(
            "server key decompressed in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let sign_top = lut(|_| 1u64 << 62);
        let sign_mid = lut(|_| 1u64 << 57);
        // L' holds v = (y mod 2^(w-1)) · 2^(5-w) in box v; Y's scale is 2^(59-w), so the
        // value at Y's scale is v · 2^54 whatever w is.
        let low_identity = lut(|v| v << 54);
        Ok(Self {
            sks,
            key_id: key_id_of(bytes),
            sign_top,
            sign_mid,
            low_identity,
        })
    }

    /// The id (SHA-256 of the compressed key bytes) this evaluator accepts.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Evaluate `program` on an encrypted input. Refuses ciphertexts for another key id or
    /// another parameter set, and inputs of the wrong length, before any work.
    pub fn evaluate(
        &self,
        program: &Program,
        input: &EncryptedInput,
    ) -> Result<EncryptedScores, HeError> {
        if input.key_id != self.key_id {
            return Err(HeError::KeyMismatch {
                found: hex::encode(input.key_id),
                expected: hex::encode(self.key_id),
            });
        }
        let n = big_lwe_dimension();
        if input.lwe_dimension != n {
            return Err(HeError::ParameterMismatch {
                found: input.lwe_dimension,
                expected: n,
            });
        }
        if input.bodies.len() != program.input.features {
            return Err(HeError::InputLength {
                found: input.bodies.len(),
                expected: program.input.features,
            });
        }
        let analysis = program.analyse()?;

        // Expand the seeded masks (TFHE-rs's CSPRNG, AES-NI). Sequential: for tens of
        // ciphertexts it takes well under a millisecond, less than waking the thread pool.
        let seeded = SeededLweCiphertextList::from_container(
            input.bodies.clone(),
            tfhe::core_crypto::prelude::LweSize(n + 1),
            CompressionSeed::from(Seed(input.seed)),
            CiphertextModulus::new_native(),
        );
        debug_assert_eq!(
            seeded.lwe_ciphertext_count(),
            LweCiphertextCount(input.bodies.len())
        );
        let list = seeded.decompress_into_lwe_ciphertext_list();
        let mut x: Vec<Lwe> = list
            .into_container()
            .chunks_exact(n + 1)
            .map(<[u64]>::to_vec)
            .collect();

        let mut pbs_count = 0usize;
        let mut reflect_prev: Option<Vec<i64>> = None;
        let last = program.layers.len() - 1;
        for (l, layer) in program.layers.iter().enumerate() {
            let d = program.layer_scale_log2(l);
            let step = 1u64 << d;
            // Pre-activations (or scores): Σ w·x + constant, all neurons in parallel.
            let neuron = |(j, (row, &bias)): (usize, (&Vec<i64>, &i64))| {
                let mut acc = vec![0u64; n + 1];
                for (&w, ct) in row.iter().zip(&x) {
                    if w == 0 {
                        continue;
                    }
                    let w = w as u64;
                    for (a, &c) in acc.iter_mut().zip(ct) {
                        *a = a.wrapping_add(c.wrapping_mul(w));
                    }
                }
                // Constant, in units of step/2 (the previous table's centring).
                let mut half_units = 2 * i128::from(bias);
                if let Some(reflect) = &reflect_prev {
                    half_units += row
                        .iter()
                        .zip(reflect)
                        .map(|(&w, &r)| i128::from(w) * i128::from(r))
                        .sum::<i128>();
                }
                match &layer.activation {
                    Some(a) => half_units += 2 * (1i128 << (a.low_bits + 3)),
                    None => half_units -= 2 * i128::from(analysis.score_offsets[j]),
                }
                let constant = (half_units as u64).wrapping_mul(step >> 1);
                acc[n] = acc[n].wrapping_add(constant);
                acc
            };
            // One output (a logistic regression) is faster on the calling thread.
            let y: Vec<Lwe> = if layer.biases.len() == 1 {
                layer
                    .weights
                    .iter()
                    .zip(&layer.biases)
                    .enumerate()
                    .map(neuron)
                    .collect()
            } else {
                layer
                    .weights
                    .par_iter()
                    .zip(&layer.biases)
                    .enumerate()
                    .map(neuron)
                    .collect()
            };
            match &layer.activation {
                None => {
                    debug_assert_eq!(l, last);
                    return Ok(EncryptedScores {
                        key_id: self.key_id,
                        lwe_dimension: n,
                        ciphertexts: y,
                        pbs_count,
                    });
                }
                Some(act) => {
                    let next_d = program.layer_scale_log2(l + 1);
                    let tables: Vec<LookupTableOwned> = act
                        .tables
                        .iter()
                        .enumerate()
                        .map(|(j, t)| {
                            let reflect = act.reflect(j);
                            let half = 1u64 << (next_d - 1);
                            lut(|v| {
                                let centred = 2 * t[v as usize] - reflect;
                                (centred as u64).wrapping_mul(half)
                            })
                        })
                        .collect();
                    x = self.activate(act.low_bits, y, &tables);
                    pbs_count += pbs_per_neuron(act.low_bits) * layer.biases.len();
                    reflect_prev = Some((0..layer.biases.len()).map(|j| act.reflect(j)).collect());
                }
            }
        }
        Err(HeError::Program(crate::ProgramError::NoLayers))
    }

    /// Clear the low `w` bits exactly, then apply each neuron's table (module docs).
    fn activate(&self, w: u32, y: Vec<Lwe>, tables: &[LookupTableOwned]) -> Vec<Lwe> {
        let hi: Vec<Lwe> = if w == 0 {
            y
        } else {
            let n = y[0].len() - 1;
            let low: Vec<Lwe> = y.par_iter().map(|ct| scale(ct, 32)).collect();
            // Stage 1: sign of the low window, at two scales (w >= 2) or one (w == 1).
            let jobs: Vec<(usize, bool)> = (0..y.len())
                .flat_map(|j| [(j, false), (j, true)])
                .filter(|&(_, top)| !top || w >= 2)
                .collect();
            let signs: Vec<(usize, bool, Lwe)> = jobs
                .into_par_iter()
                .map(|(j, top)| {
                    let table = if top { &self.sign_top } else { &self.sign_mid };
                    (j, top, self.pbs(&low[j], table))
                })
                .collect();
            let mut s_top = vec![Vec::new(); y.len()];
            let mut s_mid = vec![Vec::new(); y.len()];
            for (j, top, ct) in signs {
                if top {
                    s_top[j] = ct;
                } else {
                    s_mid[j] = ct;
                }
            }
            // Stage 2: the remaining w-1 low bits, at Y's scale.
            let rest: Vec<Option<Lwe>> = if w >= 2 {
                low.par_iter()
                    .zip(&s_top)
                    .map(|(l, s)| {
                        let mut lp = add(l, s);
                        lp[n] = lp[n].wrapping_sub(1u64 << 62);
                        Some(self.pbs(&lp, &self.low_identity))
                    })
                    .collect()
            } else {
                vec![None; y.len()]
            };
            y.into_par_iter()
                .zip(s_mid)
                .zip(rest)
                .map(|((mut ct, s), r)| {
                    for (a, &b) in ct.iter_mut().zip(&s) {
                        *a = a.wrapping_add(b);
                    }
                    if let Some(r) = r {
                        for (a, &b) in ct.iter_mut().zip(&r) {
                            *a = a.wrapping_sub(b);
                        }
                    }
                    ct[n] = ct[n].wrapping_sub(1u64 << 57);
                    ct
                })
                .collect()
        };
        // Stage 3: the tables.
        hi.par_iter()
            .zip(tables)
            .map(|(ct, table)| self.pbs(ct, table))
            .collect()
    }

    /// Benchmark helper: `n` keyswitch + bootstraps of one ciphertext on the calling thread,
    /// exactly as [`Evaluator::evaluate`] runs them.
    #[doc(hidden)]
    pub fn time_pbs(&self, n: usize) -> std::time::Duration {
        // A dense pseudo-random ciphertext: a sparse one would keyswitch to a trivial
        // ciphertext, whose blind rotation TFHE-rs skips.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let ct: Lwe = (0..=big_lwe_dimension())
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                state
            })
            .collect();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(self.pbs(&ct, &self.sign_mid));
        }
        t.elapsed()
    }

    /// Keyswitch + programmable bootstrap of one big-key ciphertext through TFHE-rs.
    fn pbs(&self, ct: &[u64], table: &LookupTableOwned) -> Lwe {
        let mut c: Ciphertext = self.sks.create_trivial(0);
        c.ct = LweCiphertext::from_container(ct.to_vec(), CiphertextModulus::new_native());
        c.set_noise_level_to_nominal();
        self.sks.apply_lookup_table_assign(&mut c, table);
        c.ct.into_container()
    }
}

/// A lookup table over the 16 boxes of half the torus with raw torus outputs `f(box)`;
/// the upper half gives `-f`, the bootstrap being negacyclic.
fn lut(f: impl Fn(u64) -> u64) -> LookupTableOwned {
    let acc = generate_programmable_bootstrap_glwe_lut(
        PARAMETERS.polynomial_size,
        PARAMETERS.glwe_dimension.to_glwe_size(),
        TABLE_LEN,
        CiphertextModulus::new_native(),
        1u64,
        |v: u64| f(v),
    );
    LookupTableOwned {
        acc,
        degree: tfhe::shortint::ciphertext::Degree::new(0),
    }
}

fn scale(ct: &[u64], k: u64) -> Lwe {
    ct.iter().map(|&c| c.wrapping_mul(k)).collect()
}

fn add(a: &[u64], b: &[u64]) -> Lwe {
    a.iter().zip(b).map(|(&x, &y)| x.wrapping_add(y)).collect()
}
