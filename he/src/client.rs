//! The client side: key generation, encryption of quantized inputs, decryption of scores.
//!
//! The client key never leaves the client. The compressed server key (evaluation key) is what
//! the tenant uploads; its SHA-256 is the key id that every encrypted input carries, so a
//! server can refuse ciphertexts made for another key before spending any work on them.
//!
//! Inputs are encrypted as LWE ciphertexts under the *big* key of the parameter set (its GLWE
//! key read as an LWE key, dimension k·N = 2048, GLWE noise), each integer `q` as
//! `q · 2^d` on the torus with the program's input step `2^d`. They are *seeded*: the masks
//! come from a public 128-bit seed through TFHE-rs's CSPRNG, so only one 8-byte body per
//! feature travels (TFHE-rs's own compressed-ciphertext technique).

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tfhe::core_crypto::commons::math::random::CompressionSeed;
use tfhe::core_crypto::prelude::{
    decrypt_lwe_ciphertext, encrypt_seeded_lwe_ciphertext_list, new_seeder, CiphertextModulus,
    LweCiphertext, PlaintextList, SeededLweCiphertextList,
};
use tfhe::shortint::{ClientKey, CompressedServerKey};

use crate::error::HeError;
use crate::program::Program;
use crate::server::EncryptedScores;
use crate::{wire, MAX_CLIENT_KEY_BYTES, MAX_SERVER_KEY_BYTES, PARAMETERS};

/// Tag at the start of a serialised compressed server key.
pub const SERVER_KEY_TAG: &[u8] = b"cloister-he/shortint-compressed-server-key/v1\n";
/// Tag at the start of a serialised client key (after the 32-byte key id).
pub const CLIENT_KEY_TAG: &[u8] = b"cloister-he/shortint-client-key/v1\n";
/// Tag at the start of a serialised encrypted input.
pub const INPUT_TAG: &[u8] = b"cloister-he/seeded-lwe-input/v2\n";

/// SHA-256 of the serialised compressed server key.
pub type KeyId = [u8; 32];

/// Key id of serialised compressed server key bytes.
pub fn key_id_of(server_key_bytes: &[u8]) -> KeyId {
    Sha256::digest(server_key_bytes).into()
}

/// LWE dimension of the big key, k·N.
pub fn big_lwe_dimension() -> usize {
    PARAMETERS.glwe_dimension.0 * PARAMETERS.polynomial_size.0
}

/// The client's secret: the TFHE client key and the id of its server key.
pub struct HeClient {
    key: ClientKey,
    key_id: KeyId,
}

/// Wall-clock timings of key generation.
#[derive(Debug, Clone, Copy)]
pub struct KeygenTimings {
    pub client_key: Duration,
    pub compressed_server_key: Duration,
    pub serialize: Duration,
}

/// Everything key generation produces.
pub struct GeneratedKeys {
    pub client: HeClient,
    /// The compressed server key, serialised (tagged, size-limited on read). This is what is
    /// uploaded.
    pub server_key_bytes: Vec<u8>,
    pub timings: KeygenTimings,
}

/// Quantized inputs encrypted as seeded LWE ciphertexts, bound to a server key id.
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptedInput {
    pub key_id: KeyId,
    /// LWE dimension the ciphertexts were made for.
    pub lwe_dimension: usize,
    /// Public seed of the masks.
    pub seed: u128,
    /// One body per feature.
    pub bodies: Vec<u64>,
}

impl EncryptedInput {
    /// `INPUT_TAG || key id || u32 lwe_dimension || u32 count || u128 seed || count × u64`,
    /// little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INPUT_TAG.len() + 56 + 8 * self.bodies.len());
        out.extend_from_slice(INPUT_TAG);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&(self.lwe_dimension as u32).to_le_bytes());
        out.extend_from_slice(&(self.bodies.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        for b in &self.bodies {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// Inverse of [`EncryptedInput::to_bytes`]; counts are bounded before allocation and the
    /// length must match exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        const WHAT: &str = "encrypted input";
        let mut r = wire::Reader::new(WHAT, INPUT_TAG, bytes)?;
        let key_id = r.array::<32>()?;
        let lwe_dimension = wire::bounded(WHAT, r.u32()?, crate::MAX_LWE_DIMENSION)?;
        let count = wire::bounded(WHAT, r.u32()?, crate::program::MAX_FEATURES)?;
        let seed = u128::from_le_bytes(r.array::<16>()?);
        let bodies = r.words(count)?;
        r.finish()?;
        Ok(Self {
            key_id,
            lwe_dimension,
            seed,
            bodies,
        })
    }
}

/// Generate a fresh client key and its compressed server key. `progress` receives one line
/// per step (with timings) so a CLI can show them; they are also logged with `tracing`.
pub fn generate_keys(progress: &mut dyn FnMut(&str)) -> Result<GeneratedKeys, HeError> {
    let mut say = |line: String| {
        tracing::info!("{line}");
        progress(&line);
    };
    say("generating TFHE client key (PARAM_MESSAGE_2_CARRY_2_KS_PBS, 128-bit security)".into());
    let t = Instant::now();
    let key = ClientKey::new(PARAMETERS);
    let client_key = t.elapsed();
    say(format!("client key: {:.2} s", client_key.as_secs_f64()));

    say("generating compressed server key (bootstrapping + key-switching keys)".into());
    let t = Instant::now();
    let compressed = CompressedServerKey::new(&key);
    let compressed_server_key = t.elapsed();
    say(format!(
        "compressed server key: {:.2} s",
        compressed_server_key.as_secs_f64()
    ));

    let t = Instant::now();
    let server_key_bytes = wire::encode(
        "compressed server key",
        SERVER_KEY_TAG,
        &compressed,
        MAX_SERVER_KEY_BYTES,
    )?;
    let serialize = t.elapsed();
    let key_id = key_id_of(&server_key_bytes);
    say(format!(
        "serialised compressed server key: {:.1} MiB in {:.2} s, key id {}",
        server_key_bytes.len() as f64 / (1024.0 * 1024.0),
        serialize.as_secs_f64(),
        hex::encode(key_id)
    ));
    Ok(GeneratedKeys {
        client: HeClient { key, key_id },
        server_key_bytes,
        timings: KeygenTimings {
            client_key,
            compressed_server_key,
            serialize,
        },
    })
}

impl HeClient {
    /// The id of the server key that belongs to this client key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Encrypt a quantized input: `q_i · 2^d` under the big key, seeded.
    pub fn encrypt(&self, program: &Program, input: &[i64]) -> Result<EncryptedInput, HeError> {
        program.check_input(input)?;
        let d = program.layer_scale_log2(0);
        let plaintexts: Vec<u64> = input.iter().map(|&q| (q as u64).wrapping_shl(d)).collect();
        let (key, noise) = self.key.encryption_key_and_noise();
        let mut seeder = new_seeder();
        let seed = seeder.seed();
        let mut list = SeededLweCiphertextList::new(
            0u64,
            key.lwe_dimension().to_lwe_size(),
            tfhe::core_crypto::prelude::LweCiphertextCount(input.len()),
            CompressionSeed::from(seed),
            CiphertextModulus::new_native(),
        );
        encrypt_seeded_lwe_ciphertext_list(
            &key,
            &mut list,
            &PlaintextList::from_container(plaintexts),
            noise,
            seeder.as_mut(),
        );
        Ok(EncryptedInput {
            key_id: self.key_id,
            lwe_dimension: key.lwe_dimension().0,
            seed: seed.0,
            bodies: list.into_container(),
        })
    }

    /// Decrypt encrypted scores to the exact integers of the program.
    pub fn decrypt(
        &self,
        program: &Program,
        scores: &EncryptedScores,
    ) -> Result<Vec<i64>, HeError> {
        if scores.key_id != self.key_id {
            return Err(HeError::KeyMismatch {
                found: hex::encode(scores.key_id),
                expected: hex::encode(self.key_id),
            });
        }
        let key = self.key.encryption_key();
        let n = key.lwe_dimension().0;
        if scores.lwe_dimension != n {
            return Err(HeError::ParameterMismatch {
                found: scores.lwe_dimension,
                expected: n,
            });
        }
        let analysis = program.analyse()?;
        if scores.ciphertexts.len() != analysis.score_offsets.len() {
            return Err(HeError::ScoreShape {
                found: scores.ciphertexts.len(),
                expected: analysis.score_offsets.len(),
            });
        }
        let bits = program.output.bits;
        let d = 64 - bits;
        scores
            .ciphertexts
            .iter()
            .zip(&analysis.score_offsets)
            .map(|(ct, &off)| {
                if ct.len() != n + 1 {
                    return Err(HeError::ScoreShape {
                        found: ct.len(),
                        expected: n + 1,
                    });
                }
                let lwe =
                    LweCiphertext::from_container(ct.as_slice(), CiphertextModulus::new_native());
                let raw = decrypt_lwe_ciphertext(&key, &lwe).0;
                // Round to the nearest multiple of 2^d, then read `bits`-bit two's complement.
                let rounded = raw.wrapping_add(1u64 << (d - 1)) >> d;
                Ok(to_signed(rounded, bits) + off)
            })
            .collect()
    }

    /// Serialise: the 32-byte key id, then the client key.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HeError> {
        let mut out = self.key_id.to_vec();
        out.extend(wire::encode(
            "client key",
            CLIENT_KEY_TAG,
            &self.key,
            MAX_CLIENT_KEY_BYTES,
        )?);
        Ok(out)
    }

    /// Read what [`HeClient::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        if bytes.len() < 32 {
            return Err(HeError::Deserialize {
                what: "client key",
                reason: "truncated".into(),
            });
        }
        let (id, rest) = bytes.split_at(32);
        let key: ClientKey =
            wire::decode("client key", CLIENT_KEY_TAG, rest, MAX_CLIENT_KEY_BYTES)?;
        if key.parameters().lwe_dimension() != PARAMETERS.lwe_dimension
            || key.parameters().polynomial_size() != PARAMETERS.polynomial_size
        {
            return Err(HeError::Deserialize {
                what: "client key",
                reason: "parameters are not PARAM_MESSAGE_2_CARRY_2_KS_PBS".into(),
            });
        }
        let mut key_id = [0u8; 32];
        key_id.copy_from_slice(id);
        Ok(Self { key, key_id })
    }
}

/// Interpret the low `bits` bits of `raw` as two's complement.
pub(crate) fn to_signed(raw: u64, bits: u32) -> i64 {
    let modulus = 1i128 << bits;
    let v = i128::from(raw) & (modulus - 1);
    let v = if v >= modulus / 2 { v - modulus } else { v };
    v as i64
}

/// For tests of the noise model: the raw torus phase `body - <mask, key>` of a big-key
/// ciphertext (no decoding).
pub fn raw_phase(client: &HeClient, ct: &[u64]) -> u64 {
    let lwe = LweCiphertext::from_container(ct, CiphertextModulus::new_native());
    decrypt_lwe_ciphertext(&client.key.encryption_key(), &lwe).0
}
