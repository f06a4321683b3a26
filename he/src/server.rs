//! The server side: evaluate a [`Program`] on ciphertexts with the server key alone.
//!
//! Why not the high-level `FheInt` API: a dot product of 64 encrypted 2-bit pixels with clear
//! weights would then cost 64 full radix multiplications and additions per class, each with
//! its own carry propagation. Here every class score is built at the `shortint` block level
//! as a column-wise (carry-save) sum, and carries are resolved only when TFHE-rs's own degree
//! and noise bookkeeping says a block is full:
//!
//! 1. Each weight `w` is split into base-4 digits; digit `d` at position `k` puts the term
//!    `d * x` into column `k` (weight 4^k). A negative weight uses `-x = (z - x) - z`, where
//!    `z - x` is TFHE-rs's linear negation and the clear `-z*|w|` joins the bias. All linear,
//!    no bootstrap.
//! 2. Terms of a column are packed into blocks while `is_scalar_mul_possible` /
//!    `is_add_possible` allow (at most 15 in a 4-bit block, noise within the parameter set's
//!    maximum).
//! 3. Each full block is bootstrapped twice (message and carry lookup tables); the message
//!    stays in its column, the carry moves to the next one. All bootstraps of a round, over
//!    all classes, run in parallel on rayon. Repeat until each column is one clean block.
//!
//! Carries out of the top column are dropped: arithmetic is modulo 2^score_bits, which is
//! exact because [`Program::validate`] proved no score reaches 2^(score_bits-1) in magnitude.
//! The result is the little-endian two's complement digits of each class score, encrypted.

use std::borrow::Cow;
use std::time::Instant;

use rayon::prelude::*;
use tfhe::conformance::ParameterSetConformant;
use tfhe::shortint::ciphertext::{MaxDegree, NoiseLevel};
use tfhe::shortint::AtomicPatternParameters;
use tfhe::shortint::{Ciphertext, CompressedServerKey, ServerKey};

use crate::client::{key_id_of, EncryptedInput, KeyId, SERVER_KEY_TAG};
use crate::error::HeError;
use crate::program::Program;
use crate::{wire, BLOCK_BITS, MAX_SERVER_KEY_BYTES, PARAMETERS};

/// Encrypted class scores: for each class, `score_bits / 2` blocks, least significant first.
pub struct EncryptedScores {
    pub key_id: KeyId,
    pub classes: Vec<Vec<Ciphertext>>,
    /// Programmable bootstraps spent.
    pub pbs_count: usize,
}

/// Evaluates programs with one tenant's server key.
pub struct Evaluator {
    sks: ServerKey,
    key_id: KeyId,
}

/// A term `mul * ct` waiting to be packed into a column block.
struct Term<'a> {
    ct: Cow<'a, Ciphertext>,
    mul: u8,
}

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
        Ok(Self {
            sks,
            key_id: key_id_of(bytes),
        })
    }

    /// The id (SHA-256 of the compressed key bytes) this evaluator accepts.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Evaluate `program` on an encrypted input. Refuses ciphertexts for another key id or
    /// that are not fresh encryptions under the server key's parameters.
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
        if input.blocks.len() != program.input.features {
            return Err(HeError::InputLength {
                found: input.blocks.len(),
                expected: program.input.features,
            });
        }
        let conformance = self.sks.conformance_params();
        if let Some(index) = input
            .blocks
            .iter()
            .position(|ct| !ct.is_conformant(&conformance))
        {
            return Err(HeError::NonConformantCiphertext { index });
        }

        // Linear negations, shared by all classes: (z - x, z).
        let negated: Vec<(Ciphertext, u64)> = input
            .blocks
            .par_iter()
            .map(|ct| self.sks.unchecked_neg_with_correcting_term(ct))
            .collect();

        let n_blocks = program.score_blocks();
        let modulus = 1u128 << program.score_bits;
        // state[class][column] = terms
        let mut state: Vec<Vec<Vec<Term<'_>>>> = Vec::with_capacity(program.classes.len());
        for (row, &bias) in program.weights.iter().zip(&program.biases) {
            let mut columns: Vec<Vec<Term<'_>>> = (0..n_blocks).map(|_| Vec::new()).collect();
            let mut constant = i128::from(bias);
            for (i, &w) in row.iter().enumerate() {
                if w == 0 {
                    continue;
                }
                let (ct, magnitude) = if w > 0 {
                    (&input.blocks[i], w.unsigned_abs())
                } else {
                    let (neg, z) = &negated[i];
                    constant -= i128::from(*z) * i128::from(w.unsigned_abs());
                    (neg, w.unsigned_abs())
                };
                push_digits(&mut columns, magnitude as u128, |digit| Term {
                    ct: Cow::Borrowed(ct),
                    mul: digit,
                });
            }
            let constant = constant.rem_euclid(modulus as i128) as u128;
            push_digits(&mut columns, constant, |digit| Term {
                ct: Cow::Owned(self.sks.create_trivial(u64::from(digit))),
                mul: 1,
            });
            state.push(columns);
        }

        let msg_mod = self.sks.message_modulus.0;
        let mut pbs_count = 0usize;
        loop {
            // Pack terms into blocks (linear only), all classes in parallel.
            let packed: Vec<Vec<Vec<Ciphertext>>> = state
                .into_par_iter()
                .map(|columns| columns.into_iter().map(|terms| self.pack(terms)).collect())
                .collect::<Result<_, _>>()?;

            let clean = |col: &Vec<Ciphertext>| {
                col.len() <= 1 && col.iter().all(|ct| ct.degree.get() < msg_mod)
            };
            if packed.iter().all(|columns| columns.iter().all(clean)) {
                let classes = packed
                    .into_iter()
                    .map(|columns| {
                        columns
                            .into_iter()
                            .map(|mut col| col.pop().unwrap_or_else(|| self.sks.create_trivial(0)))
                            .collect()
                    })
                    .collect();
                return Ok(EncryptedScores {
                    key_id: self.key_id,
                    classes,
                    pbs_count,
                });
            }

            // Bootstrap jobs for this round: (class, column, block, want_carry).
            let mut next: Vec<Vec<Vec<Term<'_>>>> = packed
                .iter()
                .map(|columns| columns.iter().map(|_| Vec::new()).collect())
                .collect();
            let mut jobs = Vec::new();
            for (c, columns) in packed.into_iter().enumerate() {
                for (k, col) in columns.into_iter().enumerate() {
                    let settled = clean(&col);
                    for ct in col {
                        let full = ct.degree.get() >= msg_mod;
                        let noisy = ct.noise_level() > NoiseLevel::NOMINAL;
                        if settled || (!full && !noisy) {
                            next[c][k].push(Term {
                                ct: Cow::Owned(ct),
                                mul: 1,
                            });
                        } else {
                            jobs.push((c, k, ct, full && k + 1 < n_blocks));
                        }
                    }
                }
            }
            let results: Vec<(usize, usize, Ciphertext, Option<Ciphertext>)> = jobs
                .into_par_iter()
                .map(|(c, k, ct, want_carry)| {
                    let carry = want_carry.then(|| self.sks.carry_extract(&ct));
                    (c, k, self.sks.message_extract(&ct), carry)
                })
                .collect();
            for (c, k, msg, carry) in results {
                pbs_count += 1 + usize::from(carry.is_some());
                next[c][k].push(Term {
                    ct: Cow::Owned(msg),
                    mul: 1,
                });
                if let Some(carry) = carry {
                    next[c][k + 1].push(Term {
                        ct: Cow::Owned(carry),
                        mul: 1,
                    });
                }
            }
            state = next;
        }
    }

    /// Pack a column's terms into as few blocks as the library's degree and noise checks
    /// allow (first fit, largest terms first).
    fn pack(&self, mut terms: Vec<Term<'_>>) -> Result<Vec<Ciphertext>, HeError> {
        terms.sort_by_key(|t| std::cmp::Reverse(t.ct.degree.get() * u64::from(t.mul)));
        let mut blocks: Vec<Ciphertext> = Vec::new();
        for term in terms {
            let ct = if term.mul == 1 {
                term.ct.into_owned()
            } else {
                self.sks
                    .is_scalar_mul_possible(term.ct.noise_degree(), term.mul)
                    .map_err(|e| HeError::Internal(format!("scalar multiplication: {e:?}")))?;
                self.sks.unchecked_scalar_mul(&term.ct, term.mul)
            };
            match blocks.iter_mut().find(|b| {
                self.sks
                    .is_add_possible(b.noise_degree(), ct.noise_degree())
                    .is_ok()
            }) {
                Some(block) => self.sks.unchecked_add_assign(block, &ct),
                None => blocks.push(ct),
            }
        }
        Ok(blocks)
    }
}

/// Push `make(digit)` into column k for each nonzero base-4 digit of `value` below the top.
fn push_digits<'a>(columns: &mut [Vec<Term<'a>>], mut value: u128, make: impl Fn(u8) -> Term<'a>) {
    let base_bits = BLOCK_BITS;
    for column in columns.iter_mut() {
        if value == 0 {
            break;
        }
        let digit = (value & ((1 << base_bits) - 1)) as u8;
        if digit != 0 {
            column.push(make(digit));
        }
        value >>= base_bits;
    }
}
