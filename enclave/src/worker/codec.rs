//! The messages between the broker, the engine zygote and each engine worker, and their byte
//! form: a small, bounded, hand-checked binary codec (every length is checked against the bytes
//! left and against a fixed cap before anything is allocated), so a compromised worker's reply
//! can make the broker return an error, never allocate without bound or panic.
//!
//! Two channels:
//! - control (broker ↔ zygote), one `SOCK_SEQPACKET` message per [`Control`]/[`ControlReply`],
//!   at most [`MAX_CONTROL`] bytes; model memfds and worker channels travel as `SCM_RIGHTS`;
//! - job (broker ↔ one worker), a stream carrying one [`Job`] and one [`JobReply`], each framed
//!   as `u64` little-endian length + payload, at most [`MAX_JOB`] bytes.
//!
//! Tensors travel as name, ONNX dtype code, shape and the elements' little-endian bytes.

use std::io::{Read, Write};

use cloister_engine::{DType, Tensor, TensorData};

/// Largest control message.
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest job or reply frame (inputs or outputs of one request).
pub const MAX_JOB: u64 = 1 << 30;
/// Most tensors in one job or reply.
pub const MAX_TENSORS: u64 = 4096;
/// Highest rank of a tensor.
pub const MAX_RANK: u64 = 64;
/// Longest name or message, in bytes.
pub const MAX_TEXT: u64 = 64 * 1024;

/// A message that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than the message announces.
    #[error("truncated message")]
    Truncated,
    /// A length above its cap.
    #[error("{what} is {len}, above the limit of {max}")]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// The length announced.
        len: u64,
        /// Its cap.
        max: u64,
    },
    /// An unknown message or value tag.
    #[error("unknown {what} tag {tag}")]
    BadTag {
        /// Which kind of tag.
        what: &'static str,
        /// The tag.
        tag: u8,
    },
    /// A name or message that is not UTF-8.
    #[error("text is not UTF-8")]
    BadUtf8,
    /// A tensor that does not hold together (dtype, shape and data).
    #[error("bad tensor: {0}")]
    Tensor(String),
    /// Bytes after the end of the message.
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
}

/// Appends values to a message.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads values from a message, refusing anything past its end or above a cap.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self, what: &'static str, max: u64) -> Result<usize, CodecError> {
        let len = self.u64()?;
        if len > max {
            return Err(CodecError::TooLarge { what, len, max });
        }
        // Never more than the bytes that are left: no allocation beyond the message's size.
        if len > self.buf.len() as u64 {
            return Err(CodecError::Truncated);
        }
        Ok(len as usize)
    }
    fn bytes(&mut self, what: &'static str, max: u64) -> Result<&'a [u8], CodecError> {
        let n = self.len(what, max)?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, CodecError> {
        let b = self.bytes("text length", MAX_TEXT)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::BadUtf8)
    }
    /// Refuses trailing bytes.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.buf.len()))
        }
    }
}

fn is_bits(d: DType) -> bool {
    matches!(
        d,
        DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::U4
            | DType::I4
            | DType::F4E2M1
            | DType::F8E8M0
            | DType::U2
            | DType::I2
    )
}

macro_rules! le_bytes {
    ($v:expr) => {
        $v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
    };
}

macro_rules! from_le {
    ($raw:expr, $t:ty, $n:expr) => {
        $raw.chunks_exact($n)
            .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
            .collect::<Vec<$t>>()
    };
}

fn put_tensor(w: &mut Writer, name: &str, t: &Tensor) {
    w.str(name);
    w.u32(t.dtype().onnx_code() as u32);
    w.u64(t.shape().len() as u64);
    for &d in t.shape() {
        w.u64(d as u64);
    }
    match t.data() {
        TensorData::String(v) => {
            w.u64(v.len() as u64);
            for s in v {
                w.str(s);
            }
        }
        data => {
            let raw = match data {
                TensorData::F32(v) => le_bytes!(v),
                TensorData::F64(v) => le_bytes!(v),
                TensorData::I64(v) => le_bytes!(v),
                TensorData::I32(v) => le_bytes!(v),
                TensorData::I8(v) => le_bytes!(v),
                TensorData::U8(v) => v.clone(),
                TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
                TensorData::F16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
                TensorData::BF16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
                TensorData::I16(v) => le_bytes!(v),
                TensorData::U16(v) => le_bytes!(v),
                TensorData::U32(v) => le_bytes!(v),
                TensorData::U64(v) => le_bytes!(v),
                TensorData::Bits { codes, .. } => codes.clone(),
                // Unreachable for the dtypes above; an unknown future variant is sent empty and
                // refused by the reader's length check.
                _ => Vec::new(),
            };
            w.bytes(&raw);
        }
    }
}

fn get_tensor(r: &mut Reader<'_>) -> Result<(String, Tensor), CodecError> {
    let name = r.str()?;
    let code = r.u32()? as i32;
    let dtype = DType::from_onnx(code).map_err(|e| CodecError::Tensor(e.to_string()))?;
    let rank = r.u64()?;
    if rank > MAX_RANK {
        return Err(CodecError::TooLarge {
            what: "rank",
            len: rank,
            max: MAX_RANK,
        });
    }
    let mut shape = Vec::with_capacity(rank as usize);
    let mut numel: u64 = 1;
    for _ in 0..rank {
        let d = r.u64()?;
        numel = numel.checked_mul(d).ok_or_else(|| {
            CodecError::Tensor(format!("tensor \"{name}\": element count overflows"))
        })?;
        shape.push(usize::try_from(d).map_err(|_| CodecError::Tensor("dimension".into()))?);
    }
    let bad_len = |got: usize| {
        CodecError::Tensor(format!(
            "tensor \"{name}\" ({}) of shape {shape:?} has {got} data bytes",
            dtype.name()
        ))
    };
    let data = if dtype == DType::String {
        let n = r.u64()?;
        if n != numel {
            return Err(CodecError::Tensor(format!(
                "tensor \"{name}\": {n} strings for {numel} elements"
            )));
        }
        // Each string takes at least its 8-byte length: bound the count by the bytes left.
        if n > (r.buf.len() / 8) as u64 {
            return Err(CodecError::Truncated);
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(r.str()?);
        }
        TensorData::String(v)
    } else {
        let size = if is_bits(dtype) { 1 } else { dtype.size_of() } as u64;
        let expected = numel
            .checked_mul(size)
            .filter(|&b| b <= MAX_JOB)
            .ok_or_else(|| bad_len(usize::MAX))?;
        let raw = r.bytes("tensor data", MAX_JOB)?;
        if raw.len() as u64 != expected {
            return Err(bad_len(raw.len()));
        }
        match dtype {
            DType::F32 => TensorData::F32(from_le!(raw, f32, 4)),
            DType::F64 => TensorData::F64(from_le!(raw, f64, 8)),
            DType::I64 => TensorData::I64(from_le!(raw, i64, 8)),
            DType::I32 => TensorData::I32(from_le!(raw, i32, 4)),
            DType::I8 => TensorData::I8(from_le!(raw, i8, 1)),
            DType::U8 => TensorData::U8(raw.to_vec()),
            DType::Bool => TensorData::Bool(
                raw.iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        _ => Err(CodecError::Tensor(format!(
                            "tensor \"{name}\": bool byte {b}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DType::F16 => TensorData::F16(
                from_le!(raw, u16, 2)
                    .into_iter()
                    .map(half::f16::from_bits)
                    .collect(),
            ),
            DType::BF16 => TensorData::BF16(
                from_le!(raw, u16, 2)
                    .into_iter()
                    .map(half::bf16::from_bits)
                    .collect(),
            ),
            DType::I16 => TensorData::I16(from_le!(raw, i16, 2)),
            DType::U16 => TensorData::U16(from_le!(raw, u16, 2)),
            DType::U32 => TensorData::U32(from_le!(raw, u32, 4)),
            DType::U64 => TensorData::U64(from_le!(raw, u64, 8)),
            d if is_bits(d) => TensorData::Bits {
                dtype: d,
                codes: raw.to_vec(),
            },
            other => {
                return Err(CodecError::Tensor(format!(
                    "tensor \"{name}\": dtype {} cannot travel",
                    other.name()
                )))
            }
        }
    };
    let t = Tensor::new(shape, data).map_err(|e| CodecError::Tensor(e.to_string()))?;
    Ok((name, t))
}

fn put_tensors(w: &mut Writer, ts: &[(String, Tensor)]) {
    w.u64(ts.len() as u64);
    for (name, t) in ts {
        put_tensor(w, name, t);
    }
}

fn get_tensors(r: &mut Reader<'_>) -> Result<Vec<(String, Tensor)>, CodecError> {
    let n = r.u64()?;
    if n > MAX_TENSORS {
        return Err(CodecError::TooLarge {
            what: "tensor count",
            len: n,
            max: MAX_TENSORS,
        });
    }
    (0..n).map(|_| get_tensor(r)).collect()
}

/// Broker → worker: the one job of this worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Run `model` on `inputs` (already checked by the broker against the model's inputs).
    Run {
        /// The model id.
        model: String,
        /// The named inputs.
        inputs: Vec<(String, Tensor)>,
    },
    /// Test builds only (feature `attack-hooks`): attempt the named sandbox crossing.
    #[cfg(feature = "attack-hooks")]
    Attack {
        /// Which crossing ([`super::attack`]).
        name: String,
        /// Its argument (a port, a pid, a path).
        arg: String,
    },
}

/// Worker → broker: how the job went.
#[derive(Debug, Clone, PartialEq)]
pub enum JobReply {
    /// The model's outputs, in graph order.
    Outputs(Vec<(String, Tensor)>),
    /// The engine refused or failed (a typed engine error, as text).
    Failed(String),
    /// Test builds only: the crossing returned (`ok` or `errno N`) instead of killing the worker.
    #[cfg(feature = "attack-hooks")]
    Attacked(String),
}

impl Job {
    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Job::Run { model, inputs } => {
                w.u8(1);
                w.str(model);
                put_tensors(&mut w, inputs);
            }
            #[cfg(feature = "attack-hooks")]
            Job::Attack { name, arg } => {
                w.u8(0xA0);
                w.str(name);
                w.str(arg);
            }
        }
        w.0
    }

    /// Parses the byte form.
    pub fn decode(buf: &[u8]) -> Result<Job, CodecError> {
        let mut r = Reader::new(buf);
        let job = match r.u8()? {
            1 => Job::Run {
                model: r.str()?,
                inputs: get_tensors(&mut r)?,
            },
            #[cfg(feature = "attack-hooks")]
            0xA0 => Job::Attack {
                name: r.str()?,
                arg: r.str()?,
            },
            tag => return Err(CodecError::BadTag { what: "job", tag }),
        };
        r.finish()?;
        Ok(job)
    }
}

impl JobReply {
    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            JobReply::Outputs(ts) => {
                w.u8(1);
                put_tensors(&mut w, ts);
            }
            JobReply::Failed(m) => {
                w.u8(2);
                w.str(m);
            }
            #[cfg(feature = "attack-hooks")]
            JobReply::Attacked(m) => {
                w.u8(0xA0);
                w.str(m);
            }
        }
        w.0
    }

    /// Parses the byte form.
    pub fn decode(buf: &[u8]) -> Result<JobReply, CodecError> {
        let mut r = Reader::new(buf);
        let reply = match r.u8()? {
            1 => JobReply::Outputs(get_tensors(&mut r)?),
            2 => JobReply::Failed(r.str()?),
            #[cfg(feature = "attack-hooks")]
            0xA0 => JobReply::Attacked(r.str()?),
            tag => return Err(CodecError::BadTag { what: "reply", tag }),
        };
        r.finish()?;
        Ok(reply)
    }
}

/// Writes one job-channel frame (`u64` LE length + payload).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8 + payload.len());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one job-channel frame of at most `max` bytes. A length above `max` is refused before
/// anything is allocated; the payload is read in bounded chunks, so a peer that announces a big
/// frame and sends little makes us hold only what it sent.
pub fn read_frame(r: &mut impl Read, max: u64) -> Result<Vec<u8>, FrameReadError> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).map_err(FrameReadError::Io)?;
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(FrameReadError::Codec(CodecError::TooLarge {
            what: "frame length",
            len,
            max,
        }));
    }
    let mut out = Vec::new();
    r.take(len)
        .read_to_end(&mut out)
        .map_err(FrameReadError::Io)?;
    if out.len() as u64 != len {
        return Err(FrameReadError::Codec(CodecError::Truncated));
    }
    Ok(out)
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The channel failed or closed.
    #[error("channel: {0}")]
    Io(std::io::Error),
    /// The frame is malformed.
    #[error("{0}")]
    Codec(CodecError),
}

/// Broker → zygote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Load the model in the attached sealed memfd under this id.
    Load {
        /// The model id.
        id: String,
    },
    /// Lock down now (before the broker does): `best_effort` mirrors the policy's mode.
    LockDown {
        /// Start even if a barrier is missing.
        best_effort: bool,
        /// `RLIMIT_AS` of the zygote and so of every worker, MiB.
        address_space_mb: u64,
    },
    /// Fork a worker serving the attached stream socket.
    Spawn,
    /// SIGKILL a worker and report how it ended.
    Kill {
        /// Its pid (in the zygote's PID namespace).
        pid: i32,
    },
    /// Report how a worker ended (after its channel closed).
    Reap {
        /// Its pid.
        pid: i32,
    },
}

/// Zygote → broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Done (model loaded).
    Ok,
    /// Locked down; the worker's status line.
    LockedDown(String),
    /// A worker was forked.
    Spawned {
        /// Its pid in the zygote's PID namespace.
        pid: i32,
    },
    /// How a worker ended.
    Ended {
        /// `true`: by a signal; `false`: by exit.
        signaled: bool,
        /// The signal or exit code.
        value: i32,
    },
    /// The command failed.
    Failed(String),
}

impl Control {
    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Control::Load { id } => {
                w.u8(1);
                w.str(id);
            }
            Control::LockDown {
                best_effort,
                address_space_mb,
            } => {
                w.u8(2);
                w.u8(u8::from(*best_effort));
                w.u64(*address_space_mb);
            }
            Control::Spawn => w.u8(3),
            Control::Kill { pid } => {
                w.u8(4);
                w.u32(*pid as u32);
            }
            Control::Reap { pid } => {
                w.u8(5);
                w.u32(*pid as u32);
            }
        }
        w.0
    }

    /// Parses the byte form.
    pub fn decode(buf: &[u8]) -> Result<Control, CodecError> {
        let mut r = Reader::new(buf);
        let c = match r.u8()? {
            1 => Control::Load { id: r.str()? },
            2 => Control::LockDown {
                best_effort: r.u8()? != 0,
                address_space_mb: r.u64()?,
            },
            3 => Control::Spawn,
            4 => Control::Kill {
                pid: r.u32()? as i32,
            },
            5 => Control::Reap {
                pid: r.u32()? as i32,
            },
            tag => {
                return Err(CodecError::BadTag {
                    what: "control",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(c)
    }
}

impl ControlReply {
    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            ControlReply::Ok => w.u8(1),
            ControlReply::LockedDown(s) => {
                w.u8(2);
                w.str(s);
            }
            ControlReply::Spawned { pid } => {
                w.u8(3);
                w.u32(*pid as u32);
            }
            ControlReply::Ended { signaled, value } => {
                w.u8(4);
                w.u8(u8::from(*signaled));
                w.u32(*value as u32);
            }
            ControlReply::Failed(m) => {
                w.u8(5);
                // Keep every reply inside one control message.
                let mut m = m.clone();
                m.truncate(MAX_CONTROL / 2);
                while !m.is_empty() && std::str::from_utf8(m.as_bytes()).is_err() {
                    m.pop();
                }
                w.str(&m);
            }
        }
        w.0
    }

    /// Parses the byte form.
    pub fn decode(buf: &[u8]) -> Result<ControlReply, CodecError> {
        let mut r = Reader::new(buf);
        let c = match r.u8()? {
            1 => ControlReply::Ok,
            2 => ControlReply::LockedDown(r.str()?),
            3 => ControlReply::Spawned {
                pid: r.u32()? as i32,
            },
            4 => ControlReply::Ended {
                signaled: r.u8()? != 0,
                value: r.u32()? as i32,
            },
            5 => ControlReply::Failed(r.str()?),
            tag => {
                return Err(CodecError::BadTag {
                    what: "control reply",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        vec![
            (
                "x".into(),
                Tensor::from_f32(vec![2, 2], vec![1.0, -0.0, f32::NAN, 4.5]).unwrap(),
            ),
            (
                "i".into(),
                Tensor::from_i64(vec![3], vec![i64::MIN, 0, i64::MAX]).unwrap(),
            ),
            (
                "b".into(),
                Tensor::from_bool(vec![2], vec![true, false]).unwrap(),
            ),
            (
                "s".into(),
                Tensor::new(vec![2], TensorData::String(vec!["a".into(), "ü".into()])).unwrap(),
            ),
            (
                "h".into(),
                Tensor::new(vec![1], TensorData::F16(vec![half::f16::from_f32(1.5)])).unwrap(),
            ),
            (
                "q".into(),
                Tensor::new(
                    vec![2],
                    TensorData::Bits {
                        dtype: DType::I4,
                        codes: vec![1, 15],
                    },
                )
                .unwrap(),
            ),
            ("e".into(), Tensor::from_f32(vec![0, 3], vec![]).unwrap()),
        ]
    }

    #[test]
    fn jobs_and_replies_round_trip_bit_exactly() {
        let job = Job::Run {
            model: "digits".into(),
            inputs: sample(),
        };
        let back = Job::decode(&job.encode()).unwrap();
        // NaN != NaN: compare the byte forms.
        assert_eq!(back.encode(), job.encode());
        let reply = JobReply::Outputs(sample());
        assert_eq!(
            JobReply::decode(&reply.encode()).unwrap().encode(),
            reply.encode()
        );
        let failed = JobReply::Failed("node 3: shape".into());
        assert_eq!(JobReply::decode(&failed.encode()).unwrap(), failed);
        for c in [
            Control::Load { id: "m".into() },
            Control::LockDown {
                best_effort: true,
                address_space_mb: 512,
            },
            Control::Spawn,
            Control::Kill { pid: 7 },
            Control::Reap { pid: 8 },
        ] {
            assert_eq!(Control::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn every_truncation_and_every_trailing_byte_is_refused() {
        let bytes = JobReply::Outputs(sample()).encode();
        for cut in 0..bytes.len() {
            assert!(JobReply::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(JobReply::decode(&long), Err(CodecError::Trailing(1)));
    }

    #[test]
    fn lying_lengths_are_refused_without_allocating() {
        // A reply claiming 2^62 tensors, a huge shape, or more data than sent.
        let mut w = Writer::default();
        w.u8(1);
        w.u64(1 << 62);
        assert!(matches!(
            JobReply::decode(&w.0),
            Err(CodecError::TooLarge { .. })
        ));
        let mut w = Writer::default();
        w.u8(1);
        w.u64(1);
        w.str("y");
        w.u32(1);
        w.u64(2);
        w.u64(1 << 40);
        w.u64(1 << 40);
        w.bytes(&[0; 16]);
        assert!(JobReply::decode(&w.0).is_err());
        // Data length that does not match the shape.
        let mut w = Writer::default();
        w.u8(1);
        w.u64(1);
        w.str("y");
        w.u32(1);
        w.u64(1);
        w.u64(3);
        w.bytes(&[0; 8]);
        assert!(matches!(JobReply::decode(&w.0), Err(CodecError::Tensor(_))));
        // A bool byte that is neither 0 nor 1, and an unknown tag.
        let t = Tensor::from_bool(vec![1], vec![true]).unwrap();
        let mut bytes = JobReply::Outputs(vec![("b".into(), t)]).encode();
        *bytes.last_mut().unwrap() = 7;
        assert!(JobReply::decode(&bytes).is_err());
        assert!(matches!(
            JobReply::decode(&[9]),
            Err(CodecError::BadTag { .. })
        ));
        // A frame announcing more than the cap.
        let mut src: &[u8] = &(MAX_JOB + 1).to_le_bytes();
        assert!(matches!(
            read_frame(&mut src, MAX_JOB),
            Err(FrameReadError::Codec(CodecError::TooLarge { .. }))
        ));
        let mut short: &[u8] = &[5, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        assert!(read_frame(&mut short, MAX_JOB).is_err());
    }
}
