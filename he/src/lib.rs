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
//! No cryptography is implemented here: every operation on ciphertexts is a TFHE-rs `shortint`
//! call. This crate only decides *which* linear operations and bootstraps to run, within the
//! degree and noise budget that TFHE-rs itself tracks and checks.

pub mod client;
pub mod error;
pub mod plaintext;
pub mod program;
pub mod server;
mod wire;

pub use error::{HeError, ProgramError};
pub use program::Program;

use tfhe::shortint::parameters::ClassicPBSParameters;

/// The one parameter set used: TFHE-rs's default `PARAM_MESSAGE_2_CARRY_2_KS_PBS`
/// (128-bit security, failure probability 2^-128). A block holds a 2-bit message and 2 carry
/// bits, so a 2-bit quantized pixel is exactly one block.
pub const PARAMETERS: ClassicPBSParameters =
    tfhe::shortint::parameters::PARAM_MESSAGE_2_CARRY_2_KS_PBS;

/// Bits of message per block under [`PARAMETERS`].
pub const BLOCK_BITS: u32 = 2;

/// Size limit when deserialising a compressed server key (bounded memory on bad input).
pub const MAX_SERVER_KEY_BYTES: u64 = 1 << 30;
/// Size limit when deserialising a client key.
pub const MAX_CLIENT_KEY_BYTES: u64 = 1 << 24;
/// Size limit when deserialising an encrypted input or encrypted scores.
pub const MAX_CIPHERTEXT_BYTES: u64 = 1 << 28;
