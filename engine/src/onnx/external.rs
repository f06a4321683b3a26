//! ONNX external data: tensor bytes kept in files beside the model (`data_location = EXTERNAL`,
//! `external_data` keys `location`, `offset`, `length`, `checksum`), as
//! `onnx.save_model(..., save_as_external_data=True)` writes them — the way models beyond
//! protobuf's 2 GiB limit are stored.
//!
//! Why a module of its own: the file names come from the untrusted model, so this is where a
//! model could reach outside its directory. Every location is checked before anything is
//! opened: relative, no `..` component, and — after symlinks are resolved — still inside the
//! model's directory; a regular file; the byte range inside the file and exactly the size the
//! tensor's shape and dtype need; the file's SHA-1 when the model declares one. Each failure is
//! an [`ExternalDataError`], wrapped by the loader in
//! [`EngineError::Tensor`](crate::EngineError::Tensor) naming the tensor. Keys other than the
//! four above (`basepath`, which `onnx` may write) are ignored, as `onnx` itself does.
//!
//! Memory-mapped weights: each file is mapped read-only with memmap2, once per load. A tensor
//! of at least [`MAP_MIN_BYTES`] whose offset is aligned for its dtype is used in place from the
//! mapping — a shared [`Tensor`] holding an `Arc` to the map, so its pages are read from the
//! page cache on first use and stay file-backed, reclaimable memory. Smaller tensors, misaligned
//! ones (the copy is the price of an offset the dtype cannot be read at) and dtypes that cannot
//! be viewed in place (`bool`, sub-byte types) are copied out. `onnx` (1.23) writes tensors back
//! to back from offset 0, so `float32` weights are 4-byte aligned — and map — whenever the
//! tensors before them in the file have sizes that are multiples of 4. A file nothing maps is
//! unmapped after the load. A mapped file must not be modified or truncated while the model is loaded: changes
//! would show through, and reading a truncated page raises `SIGBUS`.
//!
//! Where the directory comes from: [`Model::load`](crate::Model::load) resolves locations
//! against the model file's directory, [`Model::from_bytes_in_dir`](crate::Model) against a
//! given one. Plain [`Model::from_bytes`](crate::Model::from_bytes) — what the enclave's worker
//! uses, since it receives models as bytes — has none and refuses external tensors
//! ([`ExternalDataError::NoBaseDirectory`]). The graph builder converts tensors deep inside
//! (initializers, tensor attributes, subgraph bodies) through one function; rather than thread
//! a directory through every builder signature, the loader installs it on the loading thread for
//! the duration of one load ([`with_base_dir`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use memmap2::Mmap;
use sha1::{Digest, Sha1};

use super::proto::{StringStringEntryProto, TensorProto};
use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::shape::{dims_from_i64, numel};
use crate::tensor::{SharedBytes, Tensor, TensorData};

/// External tensors of at least this many bytes are used in place from the mapped file when
/// their dtype and alignment allow; smaller ones are copied.
pub const MAP_MIN_BYTES: usize = 1 << 20;

/// Why a tensor's external data cannot be used. Every variant reaches the caller wrapped in
/// [`EngineError::Tensor`](crate::EngineError::Tensor), which names the tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalDataError {
    /// The model was given as bytes, with no directory to find its external files in.
    #[error("the data is in an external file, but the model was loaded from bytes without a directory (load it from its path)")]
    NoBaseDirectory,
    /// `external_data` entries on a tensor whose `data_location` is not `EXTERNAL`.
    #[error("external_data entries given but data_location is not EXTERNAL")]
    NotMarkedExternal,
    /// No (or an empty) `location` key.
    #[error("external_data has no \"location\"")]
    MissingLocation,
    /// A key given twice.
    #[error("external_data key {key:?} is given twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// `offset` or `length` that is not a non-negative decimal integer.
    #[error("external_data {key:?} is not a non-negative integer: {value:?}")]
    BadNumber {
        /// `offset` or `length`.
        key: String,
        /// The value given.
        value: String,
    },
    /// An absolute location (or one with a root or drive prefix).
    #[error("location {location:?} is absolute; external data must be relative to the model's directory")]
    AbsolutePath {
        /// The location given.
        location: String,
    },
    /// A location with a `..` component.
    #[error("location {location:?} has a \"..\" component")]
    ParentComponent {
        /// The location given.
        location: String,
    },
    /// A location that resolves (through a symlink) outside the model's directory.
    #[error("location {location:?} resolves to {resolved:?}, outside the model's directory")]
    EscapesDirectory {
        /// The location given.
        location: String,
        /// Where it leads.
        resolved: String,
    },
    /// A location that is a directory, device, FIFO or socket.
    #[error("location {location:?} is not a regular file")]
    NotAFile {
        /// The location given.
        location: String,
    },
    /// The file cannot be found, opened, mapped or read.
    #[error("cannot read {location:?}: {source}")]
    Io {
        /// The location given.
        location: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `offset` (+ `length`) beyond the end of the file.
    #[error(
        "bytes {offset}..{offset}+{length} are beyond the end of {location:?} ({file_len} bytes)"
    )]
    OutOfRange {
        /// The location given.
        location: String,
        /// The declared offset.
        offset: u64,
        /// The declared length (0 when not declared).
        length: u64,
        /// The file's size.
        file_len: u64,
    },
    /// The byte count (declared, or the rest of the file) is not what the shape and dtype need.
    #[error("{got} bytes of data, but shape {shape:?} of {dtype} needs {expected}")]
    LengthMismatch {
        /// The tensor's declared shape.
        shape: Vec<usize>,
        /// The tensor's dtype.
        dtype: DType,
        /// Bytes the shape and dtype need.
        expected: u64,
        /// Bytes the external data holds.
        got: u64,
    },
    /// The file's SHA-1 differs from the declared `checksum`.
    #[error("SHA-1 of {location:?} is {actual}, the model declares {declared}")]
    ChecksumMismatch {
        /// The location given.
        location: String,
        /// The declared checksum.
        declared: String,
        /// The file's actual SHA-1, hex.
        actual: String,
    },
    /// A `string` tensor marked external (ONNX stores strings only inline).
    #[error("string tensors cannot have external data")]
    StringTensor,
}

/// The `external_data` of one tensor, parsed.
struct Reference {
    location: String,
    offset: u64,
    length: Option<u64>,
    checksum: Option<String>,
}

fn parse_reference(entries: &[StringStringEntryProto]) -> Result<Reference, ExternalDataError> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut location, mut offset, mut length, mut checksum) = (None, 0, None, None);
    for e in entries {
        let key = e.key.as_deref().unwrap_or_default();
        let value = e.value.as_deref().unwrap_or_default();
        if seen.contains(&key) {
            return Err(ExternalDataError::DuplicateKey { key: key.into() });
        }
        seen.push(key);
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| ExternalDataError::BadNumber {
                    key: key.into(),
                    value: value.into(),
                })
        };
        match key {
            "location" => location = Some(value.to_string()),
            "offset" => offset = number()?,
            "length" => length = Some(number()?),
            "checksum" => checksum = Some(value.to_string()),
            _ => {}
        }
    }
    let location = location
        .filter(|l| !l.is_empty())
        .ok_or(ExternalDataError::MissingLocation)?;
    Ok(Reference {
        location,
        offset,
        length,
        checksum,
    })
}

/// Refuses locations that are not plain relative paths below the model's directory.
fn check_location(location: &str) -> Result<&Path, ExternalDataError> {
    let path = Path::new(location);
    if path.is_absolute() || path.has_root() {
        return Err(ExternalDataError::AbsolutePath {
            location: location.into(),
        });
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(ExternalDataError::ParentComponent {
                    location: location.into(),
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ExternalDataError::AbsolutePath {
                    location: location.into(),
                })
            }
        }
    }
    Ok(path)
}

/// Maps a whole file read-only.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> io::Result<Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the file could be changed or truncated by another
    // process while mapped, which would break the immutability of the `&[u8]` it hands out.
    // The mapping is read-only (PROT_READ) and the engine never writes through it; keeping a
    // loaded model's files unchanged is the documented contract of external data (module
    // docs). A truncation makes reads of the lost pages fault (SIGBUS), never read other memory.
    unsafe { Mmap::map(file) }
}

/// One opened external file.
struct Opened {
    /// The whole file (mapped; an empty buffer for an empty file, which cannot be mapped).
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// The file's SHA-1 (hex), once a tensor declared a checksum and it was computed.
    sha1: Option<String>,
}

/// Resolves and maps external files for one model load.
struct Loader {
    /// The model's directory, canonical (symlinks resolved).
    dir: PathBuf,
    /// Files opened so far, by canonical path.
    files: RefCell<HashMap<PathBuf, Opened>>,
}

thread_local! {
    /// The loader of the load in progress on this thread, if any ([`with_base_dir`]).
    static CURRENT: RefCell<Option<Rc<Loader>>> = const { RefCell::new(None) };
}

/// Restores the previous loader when a load ends (also on unwind).
struct Restore(Option<Rc<Loader>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs `load` with external data resolved against `dir` on this thread.
pub(crate) fn with_base_dir<R>(dir: &Path, load: impl FnOnce() -> Result<R>) -> Result<R> {
    let dir = dir.canonicalize().map_err(|source| EngineError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let loader = Rc::new(Loader {
        dir,
        files: RefCell::new(HashMap::new()),
    });
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(loader))));
    load()
}

/// Converts a tensor whose `data_location` is `EXTERNAL`; errors are [`ExternalDataError`]s
/// (or shape/dtype errors) for the caller to wrap with the tensor's name.
pub(crate) fn tensor_from_external(t: &TensorProto) -> Result<Tensor> {
    let loader = CURRENT
        .with(|c| c.borrow().clone())
        .ok_or(ExternalDataError::NoBaseDirectory)?;
    loader.tensor(t)
}

impl Loader {
    fn tensor(&self, t: &TensorProto) -> Result<Tensor> {
        let dtype = DType::from_onnx(t.data_type.unwrap_or(0))?;
        if dtype == DType::String {
            return Err(ExternalDataError::StringTensor.into());
        }
        let shape = dims_from_i64(&t.dims)?;
        let n = numel(&shape)?;
        // `n` is capped at 2^31 elements by `numel`, so neither product overflows.
        let expected = if crate::lowp::bits(dtype).is_some() {
            crate::lowp::packed_len(dtype, n)
        } else {
            n * dtype.size_of()
        };
        let r = parse_reference(&t.external_data)?;
        let rel = check_location(&r.location)?;
        let real = self.resolve(&r.location, rel)?;
        let mut files = self.files.borrow_mut();
        let opened = match files.entry(real) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let opened = open(&r.location, e.key())?;
                e.insert(opened)
            }
        };
        if let Some(declared) = &r.checksum {
            let actual = match &opened.sha1 {
                Some(h) => h.clone(),
                None => {
                    let h = sha1_hex(opened.bytes.as_ref().as_ref());
                    opened.sha1 = Some(h.clone());
                    h
                }
            };
            if !actual.eq_ignore_ascii_case(declared.trim()) {
                return Err(ExternalDataError::ChecksumMismatch {
                    location: r.location,
                    declared: declared.clone(),
                    actual,
                }
                .into());
            }
        }
        let all: &[u8] = opened.bytes.as_ref().as_ref();
        let file_len = all.len() as u64;
        let out_of_range = || ExternalDataError::OutOfRange {
            location: r.location.clone(),
            offset: r.offset,
            length: r.length.unwrap_or(0),
            file_len,
        };
        let length = match r.length {
            Some(l) => l,
            None => file_len.checked_sub(r.offset).ok_or_else(out_of_range)?,
        };
        if r.offset
            .checked_add(length)
            .is_none_or(|end| end > file_len)
        {
            return Err(out_of_range().into());
        }
        if length != expected as u64 {
            return Err(ExternalDataError::LengthMismatch {
                shape,
                dtype,
                expected: expected as u64,
                got: length,
            }
            .into());
        }
        // Both fit: they are within a mapped (hence addressable) file.
        let (start, len) = (r.offset as usize, expected);
        if len >= MAP_MIN_BYTES {
            if let Some(bytes) = SharedBytes::new(opened.bytes.clone(), start, len) {
                if let Some(t) = Tensor::try_from_shared(shape.clone(), dtype, bytes)? {
                    return Ok(t);
                }
            }
        }
        let raw = &all[start..start + len];
        let data = if crate::lowp::bits(dtype).is_some() {
            TensorData::Bits {
                dtype,
                codes: crate::lowp::unpack(dtype, raw, n),
            }
        } else {
            super::decode_raw(dtype, raw)
        };
        Tensor::new(shape, data)
    }

    /// The canonical path of `rel` below the model's directory, refusing escapes.
    fn resolve(&self, location: &str, rel: &Path) -> Result<PathBuf, ExternalDataError> {
        let real = self
            .dir
            .join(rel)
            .canonicalize()
            .map_err(|source| ExternalDataError::Io {
                location: location.into(),
                source,
            })?;
        if !real.starts_with(&self.dir) {
            return Err(ExternalDataError::EscapesDirectory {
                location: location.into(),
                resolved: real.display().to_string(),
            });
        }
        // Checked before opening: opening a FIFO for reading would block.
        let meta = std::fs::metadata(&real).map_err(|source| ExternalDataError::Io {
            location: location.into(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ExternalDataError::NotAFile {
                location: location.into(),
            });
        }
        Ok(real)
    }
}

/// Opens and maps a resolved external file.
fn open(location: &str, real: &Path) -> Result<Opened, ExternalDataError> {
    let io_err = |source| ExternalDataError::Io {
        location: location.into(),
        source,
    };
    let file = File::open(real).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(ExternalDataError::NotAFile {
            location: location.into(),
        });
    }
    let bytes: Arc<dyn AsRef<[u8]> + Send + Sync> = if meta.len() == 0 {
        Arc::new(Vec::<u8>::new())
    } else {
        Arc::new(map_read_only(&file).map_err(io_err)?)
    };
    Ok(Opened { bytes, sha1: None })
}

/// SHA-1 of a whole file, hex (read through the mapping).
fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, v: &str) -> StringStringEntryProto {
        StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn references_parse_strictly() {
        let r = parse_reference(&[
            entry("location", "w.bin"),
            entry("offset", "4096"),
            entry("length", "16"),
            entry("basepath", "ignored"),
        ])
        .unwrap();
        assert_eq!(
            (r.location.as_str(), r.offset, r.length),
            ("w.bin", 4096, Some(16))
        );
        assert!(matches!(
            parse_reference(&[entry("offset", "0")]),
            Err(ExternalDataError::MissingLocation)
        ));
        assert!(matches!(
            parse_reference(&[entry("location", "a"), entry("offset", "-1")]),
            Err(ExternalDataError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_reference(&[entry("location", "a"), entry("location", "b")]),
            Err(ExternalDataError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn locations_must_stay_relative() {
        assert!(check_location("weights/w.bin").is_ok());
        assert!(check_location("./w.bin").is_ok());
        assert!(matches!(
            check_location("/etc/passwd"),
            Err(ExternalDataError::AbsolutePath { .. })
        ));
        assert!(matches!(
            check_location("a/../../w.bin"),
            Err(ExternalDataError::ParentComponent { .. })
        ));
    }

    #[test]
    fn sha1_matches_a_known_digest() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
