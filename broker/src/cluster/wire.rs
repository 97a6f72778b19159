//! The replication protocol's frames (issue 17): a pure codec, no I/O. A follower connects to the leader's
//! `--cluster-listen` port and says `Hello` with a fresh nonce; the leader answers `Challenge` (its own nonce, and
//! its proof that it holds the cluster's secret), the follower `Auth` (its proof; see `auth.rs`); then the leader sends the list of its files with their checksums, the
//! follower asks for the ones it lacks or holds differently (`Want`), the leader sends them (`FileData`), then
//! `SyncDone` with the log position the copy was taken at, then `Ops` from there on. The follower answers with
//! `Ack`s of what it applied and synced. Both sides send `Heartbeat`s when idle.
//!
//! Frame: `u32 BE len | u8 kind | payload` (len counts kind and payload). Invariants of the decoder: a frame is
//! at most [`MAX_FRAME`] bytes, checked on its header before anything is buffered; an `Ops` body decompresses to at
//! most [`MAX_OPS_RAW`] bytes, checked before allocating; every count is bounded by the bytes that carry it; every
//! path is a plain relative path ([`crate::store::repl::is_safe_relative`]). Nothing recurses.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::store::repl::{is_safe_relative, Op};

pub const MAGIC: &[u8; 8] = b"WRNREPL2";
pub const MAX_FRAME: usize = 16 << 20;
pub const MAX_OPS_RAW: usize = 64 << 20;
/// File contents travel in pieces of at most this.
pub const FILE_CHUNK: usize = 1 << 20;

/// One file of the leader's data directory, as the full sync compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub len: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        node: String,
        nonce: [u8; 32],
    },
    /// The leader's nonce, and its proof of the secret over both nonces.
    Challenge {
        nonce: [u8; 32],
        proof: [u8; 32],
    },
    /// The follower's proof of the secret.
    Auth {
        proof: [u8; 32],
    },
    FileList {
        files: Vec<FileEntry>,
    },
    Want {
        paths: Vec<String>,
    },
    FileData {
        path: String,
        offset: u64,
        data: Bytes,
        last: bool,
    },
    SyncDone {
        lsn: u64,
    },
    /// Ops `first..first + ops.len()`.
    Ops {
        first: u64,
        ops: Vec<Op>,
    },
    /// The follower applied and synced every op before `lsn`.
    Ack {
        lsn: u64,
    },
    Heartbeat {
        head: u64,
        time_ms: u64,
    },
    /// The leader will not serve this follower (and why).
    Refused {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("unsafe path in a frame")]
    Path,
    #[error("not a Warren replication peer")]
    Magic,
}

const HELLO: u8 = 1;
const FILE_LIST: u8 = 2;
const WANT: u8 = 3;
const FILE_DATA: u8 = 4;
const SYNC_DONE: u8 = 5;
const OPS: u8 = 6;
const ACK: u8 = 7;
const HEARTBEAT: u8 = 8;
const REFUSED: u8 = 9;
const CHALLENGE: u8 = 10;
const AUTH: u8 = 11;

fn put_str(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn get_str(b: &mut &[u8], what: &'static str) -> Result<String, WireError> {
    if b.remaining() < 2 {
        return Err(WireError::Malformed(what));
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return Err(WireError::Malformed(what));
    }
    let s = std::str::from_utf8(&b[..n])
        .map_err(|_| WireError::Malformed(what))?
        .to_string();
    b.advance(n);
    Ok(s)
}

fn get_path(b: &mut &[u8], what: &'static str) -> Result<String, WireError> {
    let p = get_str(b, what)?;
    if !is_safe_relative(&p) {
        return Err(WireError::Path);
    }
    Ok(p)
}

fn get_u64(b: &mut &[u8], what: &'static str) -> Result<u64, WireError> {
    if b.remaining() < 8 {
        return Err(WireError::Malformed(what));
    }
    Ok(b.get_u64())
}

fn get_32(b: &mut &[u8], what: &'static str) -> Result<[u8; 32], WireError> {
    let mut v = [0u8; 32];
    if b.remaining() < v.len() {
        return Err(WireError::Malformed(what));
    }
    b.copy_to_slice(&mut v);
    Ok(v)
}

fn get_u32(b: &mut &[u8], what: &'static str) -> Result<u32, WireError> {
    if b.remaining() < 4 {
        return Err(WireError::Malformed(what));
    }
    Ok(b.get_u32())
}

/// Appends one op's encoding: `u8 kind | path | fields`.
pub fn encode_op(op: &Op, out: &mut BytesMut) {
    match op {
        Op::Create { path } => {
            out.put_u8(1);
            put_str(out, path);
        }
        Op::WriteAt { path, offset, data } => {
            out.put_u8(2);
            put_str(out, path);
            out.put_u64(*offset);
            out.put_u32(data.len() as u32);
            out.put_slice(data);
        }
        Op::SetLen { path, len } => {
            out.put_u8(3);
            put_str(out, path);
            out.put_u64(*len);
        }
        Op::Replace { path, data } => {
            out.put_u8(4);
            put_str(out, path);
            out.put_u32(data.len() as u32);
            out.put_slice(data);
        }
        Op::Remove { path } => {
            out.put_u8(5);
            put_str(out, path);
        }
        Op::RemoveDir { path } => {
            out.put_u8(6);
            put_str(out, path);
        }
    }
}

fn decode_op(b: &mut &[u8]) -> Result<Op, WireError> {
    const W: &str = "op";
    if !b.has_remaining() {
        return Err(WireError::Malformed(W));
    }
    let kind = b.get_u8();
    let path = get_path(b, W)?;
    let data = |b: &mut &[u8]| -> Result<Bytes, WireError> {
        let n = get_u32(b, W)? as usize;
        if b.remaining() < n {
            return Err(WireError::Malformed(W));
        }
        let d = Bytes::copy_from_slice(&b[..n]);
        b.advance(n);
        Ok(d)
    };
    Ok(match kind {
        1 => Op::Create { path },
        2 => {
            let offset = get_u64(b, W)?;
            Op::WriteAt {
                path,
                offset,
                data: data(b)?,
            }
        }
        3 => Op::SetLen {
            path,
            len: get_u64(b, W)?,
        },
        4 => Op::Replace { path, data: data(b)? },
        5 => Op::Remove { path },
        6 => Op::RemoveDir { path },
        _ => return Err(WireError::Malformed(W)),
    })
}

/// Appends `frame`, encoded, to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    match frame {
        Frame::Hello { node, nonce } => {
            out.put_u8(HELLO);
            out.put_slice(MAGIC);
            put_str(out, node);
            out.put_slice(nonce);
        }
        Frame::Challenge { nonce, proof } => {
            out.put_u8(CHALLENGE);
            out.put_slice(nonce);
            out.put_slice(proof);
        }
        Frame::Auth { proof } => {
            out.put_u8(AUTH);
            out.put_slice(proof);
        }
        Frame::FileList { files } => {
            out.put_u8(FILE_LIST);
            out.put_u32(files.len() as u32);
            for f in files {
                put_str(out, &f.path);
                out.put_u64(f.len);
                out.put_slice(&f.sha256);
            }
        }
        Frame::Want { paths } => {
            out.put_u8(WANT);
            out.put_u32(paths.len() as u32);
            for p in paths {
                put_str(out, p);
            }
        }
        Frame::FileData {
            path,
            offset,
            data,
            last,
        } => {
            out.put_u8(FILE_DATA);
            put_str(out, path);
            out.put_u64(*offset);
            out.put_u8(u8::from(*last));
            out.put_slice(data);
        }
        Frame::SyncDone { lsn } => {
            out.put_u8(SYNC_DONE);
            out.put_u64(*lsn);
        }
        Frame::Ops { first, ops } => {
            out.put_u8(OPS);
            out.put_u64(*first);
            out.put_u32(ops.len() as u32);
            let mut raw = BytesMut::new();
            for op in ops {
                encode_op(op, &mut raw);
            }
            out.put_slice(&lz4_flex::block::compress_prepend_size(&raw));
        }
        Frame::Ack { lsn } => {
            out.put_u8(ACK);
            out.put_u64(*lsn);
        }
        Frame::Heartbeat { head, time_ms } => {
            out.put_u8(HEARTBEAT);
            out.put_u64(*head);
            out.put_u64(*time_ms);
        }
        Frame::Refused { reason } => {
            out.put_u8(REFUSED);
            put_str(out, reason);
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes the frame at the start of `buf`: `Ok(None)` until it is whole; otherwise the frame and how many bytes
/// it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if len == 0 {
        return Err(WireError::Malformed("empty"));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let mut b = &body[1..];
    let frame = match body[0] {
        HELLO => {
            if b.remaining() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
                return Err(WireError::Magic);
            }
            b.advance(MAGIC.len());
            Frame::Hello {
                node: get_str(&mut b, "hello")?,
                nonce: get_32(&mut b, "hello")?,
            }
        }
        CHALLENGE => Frame::Challenge {
            nonce: get_32(&mut b, "challenge")?,
            proof: get_32(&mut b, "challenge")?,
        },
        AUTH => Frame::Auth {
            proof: get_32(&mut b, "auth")?,
        },
        FILE_LIST => {
            let n = get_u32(&mut b, "file list")? as usize;
            // Each entry takes at least 2 + 8 + 32 bytes.
            if n > b.remaining() / 42 {
                return Err(WireError::Malformed("file list"));
            }
            let mut files = Vec::with_capacity(n);
            for _ in 0..n {
                let path = get_path(&mut b, "file list")?;
                let len = get_u64(&mut b, "file list")?;
                if b.remaining() < 32 {
                    return Err(WireError::Malformed("file list"));
                }
                let mut sha256 = [0u8; 32];
                b.copy_to_slice(&mut sha256);
                files.push(FileEntry { path, len, sha256 });
            }
            Frame::FileList { files }
        }
        WANT => {
            let n = get_u32(&mut b, "want")? as usize;
            if n > b.remaining() / 2 {
                return Err(WireError::Malformed("want"));
            }
            let mut paths = Vec::with_capacity(n);
            for _ in 0..n {
                paths.push(get_path(&mut b, "want")?);
            }
            Frame::Want { paths }
        }
        FILE_DATA => {
            let path = get_path(&mut b, "file data")?;
            let offset = get_u64(&mut b, "file data")?;
            if !b.has_remaining() {
                return Err(WireError::Malformed("file data"));
            }
            let last = b.get_u8() != 0;
            let data = Bytes::copy_from_slice(b);
            b = &[];
            Frame::FileData {
                path,
                offset,
                data,
                last,
            }
        }
        SYNC_DONE => Frame::SyncDone {
            lsn: get_u64(&mut b, "sync done")?,
        },
        OPS => {
            let first = get_u64(&mut b, "ops")?;
            let n = get_u32(&mut b, "ops")? as usize;
            if b.remaining() < 4 {
                return Err(WireError::Malformed("ops"));
            }
            let raw_len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if raw_len > MAX_OPS_RAW || n > raw_len / 3 + 1 {
                return Err(WireError::Malformed("ops"));
            }
            let raw = lz4_flex::block::decompress_size_prepended(b).map_err(|_| WireError::Malformed("ops"))?;
            b = &[];
            let mut r = &raw[..];
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(decode_op(&mut r)?);
            }
            if r.has_remaining() {
                return Err(WireError::Malformed("ops"));
            }
            Frame::Ops { first, ops }
        }
        ACK => Frame::Ack {
            lsn: get_u64(&mut b, "ack")?,
        },
        HEARTBEAT => Frame::Heartbeat {
            head: get_u64(&mut b, "heartbeat")?,
            time_ms: get_u64(&mut b, "heartbeat")?,
        },
        REFUSED => Frame::Refused {
            reason: get_str(&mut b, "refused")?,
        },
        k => return Err(WireError::Kind(k)),
    };
    if b.has_remaining() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(Some((frame, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut out = BytesMut::new();
        encode(&f, &mut out);
        let (back, used) = decode(&out).expect("decodes").expect("whole");
        assert_eq!((back, used), (f, out.len()));
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Ok(None), "a prefix of {cut} bytes waits for more");
        }
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::Hello {
            node: "warren@a".into(),
            nonce: [3; 32],
        });
        round_trip(Frame::Challenge {
            nonce: [4; 32],
            proof: [5; 32],
        });
        round_trip(Frame::Auth { proof: [6; 32] });
        round_trip(Frame::FileList {
            files: vec![FileEntry {
                path: "queues/ab/00000001.seg".into(),
                len: 42,
                sha256: [7; 32],
            }],
        });
        round_trip(Frame::Want {
            paths: vec!["definitions.log".into(), "queues/ab/name".into()],
        });
        round_trip(Frame::FileData {
            path: "definitions.log".into(),
            offset: 1 << 20,
            data: Bytes::from_static(b"records"),
            last: true,
        });
        round_trip(Frame::SyncDone { lsn: 9 });
        round_trip(Frame::Ops {
            first: 100,
            ops: vec![
                Op::Create { path: "q/1.seg".into() },
                Op::WriteAt {
                    path: "q/1.seg".into(),
                    offset: 12,
                    data: Bytes::from(vec![1u8; 5000]),
                },
                Op::SetLen {
                    path: "q/1.seg".into(),
                    len: 3,
                },
                Op::Replace {
                    path: "q/name".into(),
                    data: Bytes::from_static(b"{}"),
                },
                Op::Remove { path: "q/1.ack".into() },
                Op::RemoveDir { path: "q".into() },
            ],
        });
        round_trip(Frame::Ops { first: 0, ops: vec![] });
        round_trip(Frame::Ack { lsn: 5 });
        round_trip(Frame::Heartbeat { head: 5, time_ms: 6 });
        round_trip(Frame::Refused {
            reason: "not the leader".into(),
        });
    }

    #[test]
    fn hostile_frames_are_refused_before_anything_is_buffered() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(WireError::TooLarge(0xffff_ffff)));
        assert_eq!(decode(&[0, 0, 0, 1, 99]), Err(WireError::Kind(99)));
        assert_eq!(
            decode(&[0, 0, 0, 9, HELLO, b'X', 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Magic)
        );
        // A path that climbs out of the data directory.
        let mut out = BytesMut::new();
        encode(
            &Frame::Want {
                paths: vec!["../etc".into()],
            },
            &mut out,
        );
        assert_eq!(decode(&out), Err(WireError::Path));
        // A count far larger than the bytes that follow.
        let mut out = BytesMut::new();
        out.put_u32(5);
        out.put_u8(FILE_LIST);
        out.put_u32(u32::MAX);
        assert_eq!(decode(&out), Err(WireError::Malformed("file list")));
        // An ops body that claims to decompress to 4 GiB.
        let mut out = BytesMut::new();
        out.put_u32(1 + 8 + 4 + 4);
        out.put_u8(OPS);
        out.put_u64(0);
        out.put_u32(1);
        out.put_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&out), Err(WireError::Malformed("ops")));
    }
}
