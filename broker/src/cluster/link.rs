//! One replication connection's framing, over TCP or TLS (`--cluster-tls`): buffered reads of whole [`Frame`]s and
//! writes of encoded ones.
//! Invariant: the read buffer never grows past one frame's limit plus one read (the decoder refuses a frame
//! header over [`super::wire::MAX_FRAME`] before its body is buffered).

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    #[error("TLS: {0}")]
    Tls(String),
}

/// Either half of a connection, plain or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection's reading and writing ends.
pub fn split<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) -> (Reader, Writer) {
    let (rd, wr) = tokio::io::split(stream);
    (
        Reader {
            rd: Box::new(rd),
            buf: BytesMut::with_capacity(64 << 10),
        },
        Writer {
            wr: Box::new(wr),
            buf: BytesMut::new(),
        },
    )
}

pub struct Reader {
    rd: ReadHalf,
    buf: BytesMut,
}

impl Reader {
    /// The next frame if it has already arrived (buffered, or readable without waiting); None otherwise.
    pub fn try_next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some((frame, used)) = wire::decode(&self.buf)? {
                let _ = self.buf.split_to(used);
                return Ok(Some(frame));
            }
            self.buf.reserve(64 << 10);
            // One poll: `read_buf` is cancel-safe (dropped while pending, it has read nothing), and a TLS stream
            // keeps whatever it took off the socket for the next read.
            match self.rd.read_buf(&mut self.buf).now_or_never() {
                None => return Ok(None),
                Some(Ok(0)) => return Err(LinkError::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
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
    wr: WriteHalf,
    buf: BytesMut,
}

impl Writer {
    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.buf.clear();
        wire::encode(frame, &mut self.buf);
        self.wr.write_all(&self.buf).await?;
        // A TLS stream holds written records until flushed.
        self.wr.flush().await?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (heartbeats carry the leader's clock, for lag in time).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
