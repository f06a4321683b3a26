//! Byte encodings of keys: a fixed tag naming the object and format version, then TFHE-rs's
//! serde form in bincode with a hard size limit, so a hostile or truncated file is a typed
//! error with bounded memory, never a panic or an unbounded allocation.
//!
//! (TFHE-rs's own `safe_serialization` is only implemented for its high-level key types; the
//! shortint keys used here are plain serde.)

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HeError;

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit)
}

/// `tag || bincode(value)`, refusing to produce more than `limit` bytes.
pub(crate) fn encode<T: Serialize>(
    what: &'static str,
    tag: &[u8],
    value: &T,
    limit: u64,
) -> Result<Vec<u8>, HeError> {
    let mut out = tag.to_vec();
    options(limit)
        .serialize_into(&mut out, value)
        .map_err(|e| HeError::Serialize {
            what,
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Inverse of [`encode`]: checks the tag, reads at most `limit` bytes' worth, and refuses
/// trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    tag: &[u8],
    bytes: &[u8],
    limit: u64,
) -> Result<T, HeError> {
    let body = bytes
        .strip_prefix(tag)
        .ok_or_else(|| HeError::Deserialize {
            what,
            reason: format!("does not start with {:?}", String::from_utf8_lossy(tag)),
        })?;
    options(limit)
        .reject_trailing_bytes()
        .deserialize(body)
        .map_err(|e| HeError::Deserialize {
            what,
            reason: e.to_string(),
        })
}
