//! The on-disk message record: pure encode/decode, no I/O.
//!
//! Layout (big-endian):
//! ```text
//! u32 len            bytes after the crc field
//! u32 crc32c         of those `len` bytes
//! u64 seq            the message's stable id within its queue
//! u64 enqueued_ms    unix time when the queue accepted it (for TTL across restarts)
//! u64 tx             the transaction that published it (0: none); such a record counts only once its transaction's
//!                    commit record is in the transaction log
//! u8  exchange_len, exchange
//! u8  routing_key_len, routing_key
//! u32 properties_len, properties (as encoded on the wire)
//! ...body            the rest
//! ```
//! A record that is cut short (a crash mid-write) decodes as `Torn`; one whose checksum does not match decodes as
//! `Corrupt` with its declared length, so a reader can skip it and go on.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before the checksummed part.
pub const PREFIX: usize = 8;
/// The smallest possible checksummed part: seq, time, tx, two empty strings, empty properties.
const MIN_BODY: usize = 8 + 8 + 8 + 1 + 1 + 4;
/// Records larger than this are not believed (a corrupted length field).
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// A decoded record; `Bytes` fields share the buffer they were read into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub enqueued_ms: u64,
    pub tx: u64,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body: Bytes,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A good record and its total size on disk.
    Ok(Record, usize),
    /// Fewer bytes than the record needs: the tail of a write that did not finish.
    Torn,
    /// The checksum does not match; `usize` is the declared total size (0 when the length itself is implausible).
    Corrupt(usize),
}

/// The fixed fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub seq: u64,
    pub enqueued_ms: u64,
    /// The transaction that wrote it (0: none).
    pub tx: u64,
}

/// Appends one record to `out`; returns its total size.
pub fn encode(
    out: &mut BytesMut,
    meta: Meta,
    exchange: &[u8],
    routing_key: &[u8],
    properties: &[u8],
    body: &[u8],
) -> usize {
    let exchange = &exchange[..exchange.len().min(255)];
    let routing_key = &routing_key[..routing_key.len().min(255)];
    let len = MIN_BODY + exchange.len() + routing_key.len() + properties.len() + body.len();
    let start = out.len();
    out.reserve(PREFIX + len);
    out.put_u32(len as u32);
    out.put_u32(0);
    out.put_u64(meta.seq);
    out.put_u64(meta.enqueued_ms);
    out.put_u64(meta.tx);
    out.put_u8(exchange.len() as u8);
    out.put_slice(exchange);
    out.put_u8(routing_key.len() as u8);
    out.put_slice(routing_key);
    out.put_u32(properties.len() as u32);
    out.put_slice(properties);
    out.put_slice(body);
    let crc = crc32c::crc32c(&out[start + PREFIX..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    PREFIX + len
}

/// The total size a record declares, from its first 4 bytes.
pub fn declared_size(prefix: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(prefix.get(..4)?.try_into().ok()?) as usize;
    Some(PREFIX + len)
}

/// The total size of the record `buf` starts with, when its length is plausible, it fits in `buf` and its header's
/// own lengths (exchange, routing key, properties) fit inside it: a cheap test, without the checksum, that every
/// record `decode` accepts passes. Resyncing past damage (`scan.rs`) computes checksums only where this holds, so
/// garbage costs a few byte reads per offset instead of a checksum over the rest of the file.
pub fn plausible_size(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if !(MIN_BODY..=MAX_RECORD).contains(&len) || buf.len() < PREFIX + len {
        return None;
    }
    // Offsets within the checksummed part, as `parse` reads them.
    let b = &buf[PREFIX..PREFIX + len];
    let xl = *b.get(24)? as usize;
    let rl = *b.get(25 + xl)? as usize;
    let pl = u32::from_be_bytes(b.get(26 + xl + rl..30 + xl + rl)?.try_into().ok()?) as usize;
    (30 + xl + rl + pl <= len).then_some(PREFIX + len)
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &Bytes) -> Decoded {
    if buf.len() < PREFIX {
        return Decoded::Torn;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(MIN_BODY..=MAX_RECORD).contains(&len) {
        return Decoded::Corrupt(0);
    }
    if buf.len() < PREFIX + len {
        return Decoded::Torn;
    }
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[PREFIX..PREFIX + len];
    if crc32c::crc32c(body) != crc {
        return Decoded::Corrupt(PREFIX + len);
    }
    match parse(buf.slice(PREFIX..PREFIX + len)) {
        Some(r) => Decoded::Ok(r, PREFIX + len),
        None => Decoded::Corrupt(PREFIX + len),
    }
}

fn parse(b: Bytes) -> Option<Record> {
    let mut at = 0usize;
    let u64_at = |at: usize| -> Option<u64> { Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?)) };
    let seq = u64_at(at)?;
    let enqueued_ms = u64_at(at + 8)?;
    let tx = u64_at(at + 16)?;
    at += 24;
    let xl = *b.get(at)? as usize;
    let exchange = b.slice(at + 1..(at + 1 + xl).min(b.len()));
    at += 1 + xl;
    let rl = *b.get(at)? as usize;
    let routing_key = b.slice((at + 1).min(b.len())..(at + 1 + rl).min(b.len()));
    at += 1 + rl;
    let pl = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    if at + pl > b.len() || exchange.len() != xl || routing_key.len() != rl {
        return None;
    }
    let properties = b.slice(at..at + pl);
    let body = b.slice(at + pl..);
    Some(Record {
        seq,
        enqueued_ms,
        tx,
        exchange,
        routing_key,
        properties,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (BytesMut, usize) {
        let mut out = BytesMut::new();
        let n = encode(
            &mut out,
            Meta {
                seq: 42,
                enqueued_ms: 1_700_000_000_000,
                tx: 7,
            },
            b"amq.direct",
            b"key",
            &[0x80, 0x00, 4, b't', b'e', b'x', b't'],
            b"hello",
        );
        (out, n)
    }

    #[test]
    fn roundtrip() {
        let (out, n) = sample();
        assert_eq!(n, out.len());
        match decode(&out.freeze()) {
            Decoded::Ok(r, size) => {
                assert_eq!(size, n);
                assert_eq!((r.seq, r.enqueued_ms, r.tx), (42, 1_700_000_000_000, 7));
                assert_eq!(&r.exchange[..], b"amq.direct");
                assert_eq!(&r.routing_key[..], b"key");
                assert_eq!(&r.body[..], b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_torn() {
        let (out, n) = sample();
        let full = out.freeze();
        for cut in 0..n {
            assert_eq!(decode(&full.slice(..cut)), Decoded::Torn, "cut at {cut}");
        }
    }

    #[test]
    fn every_good_record_is_plausible_and_short_or_bad_lengths_are_not() {
        let (out, n) = sample();
        assert_eq!(plausible_size(&out), Some(n));
        let mut longer = out.clone();
        longer.extend_from_slice(b"next record");
        assert_eq!(plausible_size(&longer), Some(n), "trailing bytes do not matter");
        for cut in 0..n {
            assert_eq!(plausible_size(&out[..cut]), None, "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[0] = 0xFF; // 4 GiB: beyond MAX_RECORD
        assert_eq!(plausible_size(&bad), None);
        let mut bad = out.clone();
        let pl_at = PREFIX + 24 + 1 + 10 + 1 + 3;
        bad[pl_at] = 0x7F; // properties longer than the record
        assert_eq!(plausible_size(&bad), None);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (out, n) = sample();
        for i in 4..n {
            let mut bad = out.clone();
            bad[i] ^= 0x5A;
            match decode(&bad.freeze()) {
                Decoded::Corrupt(size) => assert_eq!(size, n, "byte {i}"),
                other => panic!("byte {i}: {other:?}"),
            }
        }
        // A flipped length byte is either implausible, torn, or a checksum mismatch: never a good record.
        for i in 0..4 {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert!(!matches!(decode(&bad.freeze()), Decoded::Ok(..)), "length byte {i}");
        }
    }
}
