//! Length-prefixed CBOR frames over any async byte stream (QUIC streams in practice).

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { size: usize, max: usize },
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error("i/o on stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Api(crate::wire::protocol::ApiError),
    #[error("the server closed the stream without answering")]
    NoResponse,
    #[error("unexpected response from server: {0}")]
    Unexpected(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl WireError {
    /// The API error, if the server answered with one.
    pub fn api(&self) -> Option<&crate::wire::protocol::ApiError> {
        match self {
            WireError::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// Writes one frame: a big-endian u32 length, then the CBOR body.
pub async fn write_frame<W, T>(w: &mut W, value: &T) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    w.write_all(&encode_frame(value)?).await?;
    Ok(())
}

/// One frame as bytes, header included, so that it goes out in one write: a QUIC stream sends
/// a packet per write when its connection is idle, and a lone 4-byte header packet costs a
/// round of encryption and wake-ups on both sides.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut frame = Vec::with_capacity(256);
    frame.extend_from_slice(&[0; 4]);
    crate::codec::encode_into("frame", value, &mut frame)?;
    let size = frame.len() - 4;
    let len = u32::try_from(size).map_err(|_| WireError::FrameTooLarge {
        size,
        max: u32::MAX as usize,
    })?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames. A declared length above
/// `max` is refused before any allocation, so a peer cannot make us reserve memory.
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<Option<T>, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(len) as usize;
    if size > max {
        return Err(WireError::FrameTooLarge { size, max });
    }
    let mut body = vec![0u8; size];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            e.into()
        }
    })?;
    Ok(Some(crate::codec::decode("frame", &body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &("hello", 42u32)).await.unwrap();
        drop(a);
        let got: Option<(String, u32)> = read_frame(&mut b, 1024).await.unwrap();
        assert_eq!(got, Some(("hello".to_string(), 42)));
        let end: Option<(String, u32)> = read_frame(&mut b, 1024).await.unwrap();
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(10_000u32).to_be_bytes()).await.unwrap();
        let r: Result<Option<String>, _> = read_frame(&mut b, 100).await;
        assert!(matches!(
            r,
            Err(WireError::FrameTooLarge {
                size: 10_000,
                max: 100
            })
        ));

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(50u32).to_be_bytes()).await.unwrap();
        a.write_all(b"short").await.unwrap();
        drop(a);
        let r: Result<Option<String>, _> = read_frame(&mut b, 100).await;
        assert!(matches!(r, Err(WireError::Truncated)));
    }
}
