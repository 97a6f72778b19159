//! The two halves of a client's byte stream as the connection task uses them: plain TCP (`TcpStream::into_split`,
//! no lock between the halves) or TLS (`tokio::io::split` over a `tokio_rustls` stream).
//!
//! Invariants: `try_read_buf` never waits (it returns `WouldBlock` when nothing is ready), so the connection's
//! busy-poll window works on both. A half whose `BUFFERS` is true may keep written bytes in user space after
//! `write` returns (rustls holds encrypted records when the socket is full): the connection flushes it whenever its
//! own output buffer runs empty, or those bytes would wait for the next write. Plain TCP does not buffer, so its hot
//! path has no flush at all.

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The read half of a client connection.
pub trait ReadHalf: AsyncRead + Unpin + Send {
    /// Reads what is ready now into `buf`; `WouldBlock` if nothing is.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;
}

/// The write half of a client connection.
pub trait WriteHalf: AsyncWrite + Unpin + Send {
    /// Whether written bytes may stay buffered until a flush.
    const BUFFERS: bool;
}

impl ReadHalf for OwnedReadHalf {
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        OwnedReadHalf::try_read_buf(self, buf)
    }
}

impl WriteHalf for OwnedWriteHalf {
    const BUFFERS: bool = false;
}

impl ReadHalf for tokio::io::ReadHalf<TlsStream<TcpStream>> {
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        // One poll: decrypted bytes already held by rustls, or what the socket has now. Pending registers no
        // waker that matters; the next real read registers the task's own (readiness is kept by the reactor).
        self.read_buf(buf)
            .now_or_never()
            .unwrap_or_else(|| Err(std::io::ErrorKind::WouldBlock.into()))
    }
}

impl WriteHalf for tokio::io::WriteHalf<TlsStream<TcpStream>> {
    const BUFFERS: bool = true;
}
