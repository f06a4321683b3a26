//! Framing between the gateway and the enclave over a byte stream (a Unix
//! socket on one machine; vsock or TCP when the enclave runs in a CVM).
//!
//! A frame is `u32` big-endian payload length, one kind byte, then the payload.
//! The transport carries only opaque sealed bytes, evidence and error codes; it
//! is the same for every transport so the enclave stays transport-agnostic.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload either side accepts (16 MiB). Larger frames are refused
/// before any allocation.
pub const MAX_FRAME_PAYLOAD: usize = 16 * 1024 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Gateway → enclave: fresh evidence please; payload = the client's nonce.
    AttestRequest = 0x01,
    /// Gateway → enclave: an OHTTP encapsulated request, opaque to the gateway.
    SealedRequest = 0x02,
    /// Gateway → enclave: are you alive? Empty payload.
    Health = 0x03,
    /// Enclave → gateway: the evidence bundle, JSON.
    Evidence = 0x81,
    /// Enclave → gateway: an OHTTP encapsulated response, opaque to the gateway.
    SealedResponse = 0x82,
    /// Enclave → gateway: alive; payload = JSON status.
    HealthOk = 0x83,
    /// Enclave → gateway: a typed error that could not be sealed (for example
    /// the request itself could not be opened); payload = JSON error body.
    Error = 0x8F,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            0x01 => FrameKind::AttestRequest,
            0x02 => FrameKind::SealedRequest,
            0x03 => FrameKind::Health,
            0x81 => FrameKind::Evidence,
            0x82 => FrameKind::SealedResponse,
            0x83 => FrameKind::HealthOk,
            0x8F => FrameKind::Error,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a payload larger than [`MAX_FRAME_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the {MAX_FRAME_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// The kind byte is not one this build knows.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The stream ended cleanly before a frame started.
    #[error("connection closed")]
    Closed,
    /// IO failed, including a stream that ended inside a frame.
    #[error("frame transport failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Frame {
    /// Builds a frame.
    pub fn new(kind: FrameKind, payload: Vec<u8>) -> Frame {
        Frame { kind, payload }
    }

    /// Writes the frame and flushes.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> Result<(), FrameError> {
        if self.payload.len() > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLarge(self.payload.len()));
        }
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
        header[4] = self.kind as u8;
        w.write_all(&header).await?;
        w.write_all(&self.payload).await?;
        w.flush().await?;
        Ok(())
    }

    /// Reads one frame. Returns [`FrameError::Closed`] on a clean end of stream
    /// before the first header byte.
    pub async fn read_from<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
        let mut header = [0u8; 5];
        let mut got = 0;
        while got < header.len() {
            let n = r.read(&mut header[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Err(FrameError::Closed);
                }
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            got += n;
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        let kind = FrameKind::from_byte(header[4]).ok_or(FrameError::UnknownKind(header[4]))?;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        Ok(Frame { kind, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_errors() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let f = Frame::new(FrameKind::SealedRequest, vec![1, 2, 3]);
        f.write_to(&mut a).await.unwrap();
        assert_eq!(Frame::read_from(&mut b).await.unwrap(), f);

        // Oversized announcement is refused without allocating.
        a.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 0x02]).await.unwrap();
        assert!(matches!(
            Frame::read_from(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 1, 0x55, 0]).await.unwrap();
        assert!(matches!(
            Frame::read_from(&mut b).await,
            Err(FrameError::UnknownKind(0x55))
        ));

        // Truncated frame.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 9, 0x02, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            Frame::read_from(&mut b).await,
            Err(FrameError::Io(_))
        ));
        let (a, mut b) = tokio::io::duplex(1024);
        drop(a);
        assert!(matches!(
            Frame::read_from(&mut b).await,
            Err(FrameError::Closed)
        ));
    }
}
