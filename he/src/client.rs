//! The client side: key generation, encryption of quantized inputs, decryption of scores.
//!
//! The client key never leaves the client. The compressed server key (evaluation key) is what
//! the tenant uploads; its SHA-256 is the key id that every encrypted input carries, so a
//! server can refuse ciphertexts made for another key before spending any work on them.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tfhe::shortint::{Ciphertext, ClientKey, CompressedServerKey};

use crate::error::HeError;
use crate::program::Program;
use crate::server::EncryptedScores;
use crate::{wire, BLOCK_BITS, MAX_CLIENT_KEY_BYTES, MAX_SERVER_KEY_BYTES, PARAMETERS};

/// Tag at the start of a serialised compressed server key.
pub const SERVER_KEY_TAG: &[u8] = b"cloister-he/shortint-compressed-server-key/v1\n";
/// Tag at the start of a serialised client key (after the 32-byte key id).
pub const CLIENT_KEY_TAG: &[u8] = b"cloister-he/shortint-client-key/v1\n";

/// SHA-256 of the serialised compressed server key.
pub type KeyId = [u8; 32];

/// Key id of serialised compressed server key bytes.
pub fn key_id_of(server_key_bytes: &[u8]) -> KeyId {
    Sha256::digest(server_key_bytes).into()
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

/// Quantized inputs encrypted one 2-bit block per feature, bound to a server key id.
pub struct EncryptedInput {
    pub key_id: KeyId,
    pub blocks: Vec<Ciphertext>,
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

    /// Encrypt a quantized input (one block per feature).
    pub fn encrypt(&self, program: &Program, input: &[u8]) -> Result<EncryptedInput, HeError> {
        program.check_input(input)?;
        let blocks = input
            .iter()
            .map(|&q| self.key.encrypt(u64::from(q)))
            .collect();
        Ok(EncryptedInput {
            key_id: self.key_id,
            blocks,
        })
    }

    /// Decrypt encrypted class scores to the exact signed integers of the program.
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
        let blocks = program.score_blocks();
        if scores.classes.len() != program.classes.len() {
            return Err(HeError::ScoreShape {
                found: scores.classes.len(),
                expected: program.classes.len(),
            });
        }
        scores
            .classes
            .iter()
            .map(|class| {
                if class.len() != blocks {
                    return Err(HeError::ScoreShape {
                        found: class.len(),
                        expected: blocks,
                    });
                }
                // Little-endian 2-bit digits of a two's complement number of score_bits bits.
                let raw = class.iter().enumerate().fold(0u64, |acc, (k, block)| {
                    acc | (self.key.decrypt(block) << (BLOCK_BITS as usize * k))
                });
                Ok(to_signed(raw, program.score_bits))
            })
            .collect()
    }

    /// Serialise: the 32-byte key id, then the client key (TFHE-rs safe serialisation).
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
