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

/// Little-endian reader over untrusted bytes: every read is bounds-checked.
pub(crate) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Start after `tag`, or refuse.
    pub(crate) fn new(what: &'static str, tag: &[u8], bytes: &'a [u8]) -> Result<Self, HeError> {
        let bytes = bytes
            .strip_prefix(tag)
            .ok_or_else(|| HeError::Deserialize {
                what,
                reason: format!("does not start with {:?}", String::from_utf8_lossy(tag)),
            })?;
        Ok(Self { what, bytes })
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], HeError> {
        if self.bytes.len() < n {
            return Err(HeError::Deserialize {
                what: self.what,
                reason: "truncated".into(),
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, HeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], HeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Exactly `count` u64 words, checking the length *before* allocating.
    pub(crate) fn words(&mut self, count: usize) -> Result<Vec<u64>, HeError> {
        let bytes = count
            .checked_mul(8)
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| HeError::Deserialize {
                what: self.what,
                reason: format!("truncated: {count} words announced"),
            })?;
        Ok(self
            .take(bytes)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Refuse trailing bytes.
    pub(crate) fn finish(self) -> Result<(), HeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(HeError::Deserialize {
                what: self.what,
                reason: format!("{} trailing bytes", self.bytes.len()),
            })
        }
    }
}

/// Check an announced count against a limit before anything is allocated.
pub(crate) fn bounded(what: &'static str, count: u32, max: usize) -> Result<usize, HeError> {
    let count = count as usize;
    if count > max {
        return Err(HeError::Deserialize {
            what,
            reason: format!("{count} exceeds the limit {max}"),
        });
    }
    Ok(count)
}
