//! One replication connection's framing over TCP: buffered reads of whole [`Frame`]s and writes of encoded ones.
//! Invariant: the read buffer never grows past one frame's limit plus one read (the decoder refuses a frame
//! header over [`super::wire::MAX_FRAME`] before its body is buffered).

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::wire::{self, Frame, WireError};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the peer closed the replication connection")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error("the peer said nothing in time")]
    Silent,
}

pub struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    pub fn new(rd: OwnedReadHalf) -> Self {
        Reader {
            rd,
            buf: BytesMut::with_capacity(64 << 10),
        }
    }

    /// The next frame if it has already arrived (buffered, or readable without waiting); None otherwise.
    pub fn try_next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some((frame, used)) = wire::decode(&self.buf)? {
                let _ = self.buf.split_to(used);
                return Ok(Some(frame));
            }
            self.buf.reserve(64 << 10);
            match self.rd.try_read_buf(&mut self.buf) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn next(&mut self) -> Result<Frame, LinkError> {
        loop {
            if let Some((frame, used)) = wire::decode(&self.buf)? {
                let _ = self.buf.split_to(used);
                return Ok(frame);
            }
            self.buf.reserve(64 << 10);
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(LinkError::Closed);
            }
        }
    }
}

pub struct Writer {
    wr: OwnedWriteHalf,
    buf: BytesMut,
}

impl Writer {
    pub fn new(wr: OwnedWriteHalf) -> Self {
        Writer {
            wr,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.buf.clear();
        wire::encode(frame, &mut self.buf);
        self.wr.write_all(&self.buf).await?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (heartbeats carry the leader's clock, for lag in time).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
