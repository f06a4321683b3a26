//! `cloister-he`: models evaluated on TFHE ciphertexts that the evaluating party cannot read.
//!
//! Some clients will not trust even an attested enclave with certain inputs. For them the model
//! is compiled to a small *integer program* ([`Program`]) and evaluated on data encrypted under
//! the client's own TFHE key (Zama's TFHE-rs, default 128-bit-security parameters only):
//!
//! * [`client`] generates the client key (which never leaves the client) and the compressed
//!   server key (evaluation key, uploaded once), encrypts quantized inputs, decrypts scores;
//! * [`server`] evaluates the program on ciphertexts with the server key alone;
//! * [`plaintext`] is the reference: the same integer program in the clear. Encrypted results
//!   must equal it bit for bit, which the tests check.
//!
//! No cryptographic primitive is implemented here: encryption, keyswitching and bootstrapping
//! are TFHE-rs calls (`core_crypto` seeded LWE encryption under the parameter set's big key,
//! `shortint` keyswitch + programmable bootstrap). Linear layers are wrapping integer vector
//! arithmetic on LWE ciphertexts, which is exactly what LWE is homomorphic for. [`noise`]
//! proves, per program, that every bootstrap input and every decrypted score stays within
//! the noise the default parameter set was designed for. See `he/README.md`.

pub mod client;
pub mod compile;
pub mod error;
pub mod noise;
pub mod plaintext;
pub mod program;
pub mod server;
mod wire;

pub use error::{HeError, ProgramError};
pub use program::Program;

use tfhe::shortint::parameters::ClassicPBSParameters;

/// The one parameter set used: TFHE-rs's default `PARAM_MESSAGE_2_CARRY_2_KS_PBS`
/// (128-bit security, bootstrap failure probability 2^-129.6): small LWE dimension 918,
/// GLWE 1 × 2048, TUniform noise. Inputs and outputs live under its big (2048) key.
pub const PARAMETERS: ClassicPBSParameters =
    tfhe::shortint::parameters::PARAM_MESSAGE_2_CARRY_2_KS_PBS;

/// Largest LWE dimension a serialised ciphertext may announce (bounded memory).
pub const MAX_LWE_DIMENSION: usize = 1 << 14;

/// Size limit when deserialising a compressed server key (bounded memory on bad input).
pub const MAX_SERVER_KEY_BYTES: u64 = 1 << 30;
/// Size limit when deserialising a client key.
pub const MAX_CLIENT_KEY_BYTES: u64 = 1 << 24;
/// Size limit when deserialising an encrypted input or encrypted scores.
pub const MAX_CIPHERTEXT_BYTES: u64 = 1 << 28;
