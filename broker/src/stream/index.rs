//! A stream segment's sparse index: pure, no I/O.
//!
//! One entry every [`SPACING`] bytes of segment (and one for the first record) says where a record starts: its offset,
//! its byte position in the segment file and its timestamp. Seeking to an offset or a time is a binary search here,
//! then a short forward scan of at most `SPACING` bytes in the segment, so a seek never reads a stream from its start.
//!
//! The index of a sealed segment is saved beside it (`<first>.idx`, an [`IndexFile`]) with what the segment holds
//! ([`Seal`]: its end, size, time span and filter summary), so opening a stream reads no sealed segment; the active
//! segment's index lives only in memory and is rebuilt from the segment when the broker starts. A saved index that
//! does not decode (torn, damaged, another version) or does not match its segment's size is rebuilt from the
//! segment: it holds nothing the segment does not.
//!
//! ```text
//! "WSIX" u8 version=1, u8 reserved[3]
//! u64 next_offset, u64 size, u64 first_timestamp_ms, u64 last_timestamp_ms
//! u8 filters (0: exact set, 1: too many values to keep), u8 has_unfiltered, u16 n, n × (u8 len, value)
//! u64 count, count × (u64 offset, u64 position, u64 timestamp_ms)
//! u32 crc32c of everything before it
//! ```
//!
//! Invariants: entries are in increasing offset and position order, and in non-decreasing timestamp order (a
//! stream's timestamps never go back: the log stamps each message with the later of the clock and the last stamp).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of segment between index entries.
pub const SPACING: u64 = 64 * 1024;
const MAGIC: &[u8; 4] = b"WSIX";
const VERSION: u8 = 1;
/// Entries an index file may declare: more than a segment of the largest size could hold.
const MAX_ENTRIES: u64 = 1 << 24;

/// Where one record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub position: u64,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseIndex {
    entries: Vec<Entry>,
}

impl SparseIndex {
    /// Notes a record appended at `entry.position`; keeps it when it is the first or `SPACING` bytes past the last
    /// entry.
    pub fn observe(&mut self, entry: Entry) {
        match self.entries.last() {
            Some(last) if entry.position < last.position + SPACING => {}
            _ => self.entries.push(entry),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The position to start scanning from for `offset`: the last entry at or before it (0 when none is).
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        i.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// The position to start scanning from for the first record stamped at or after `timestamp_ms`: the last entry
    /// stamped before it (0 when none is), since records between two entries may be the first.
    pub fn position_for_time(&self, timestamp_ms: u64) -> u64 {
        let i = self.entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
        i.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }
}

/// Most distinct filter values a segment's summary keeps; past it the summary says "any value may be here".
pub const MAX_FILTER_VALUES: usize = 255;

/// Which `x-stream-filter-value`s a segment holds, so a filtered reader can skip it without reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSummary {
    /// The distinct values; `None` when there were more than [`MAX_FILTER_VALUES`].
    pub values: Option<std::collections::BTreeSet<Vec<u8>>>,
    /// Whether it holds messages without a filter value.
    pub has_unfiltered: bool,
}

impl FilterSummary {
    pub fn exact() -> Self {
        FilterSummary {
            values: Some(Default::default()),
            has_unfiltered: false,
        }
    }

    pub fn observe(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.has_unfiltered = true,
            Some(v) => {
                if let Some(set) = &mut self.values {
                    if !set.contains(v) {
                        if set.len() >= MAX_FILTER_VALUES || v.len() > 255 {
                            self.values = None;
                        } else {
                            set.insert(v.to_vec());
                        }
                    }
                }
            }
        }
    }

    /// Whether a reader asking for `wanted` (and for messages without a value when `match_unfiltered`) may find
    /// something here.
    pub fn may_match(&self, wanted: &[Vec<u8>], match_unfiltered: bool) -> bool {
        (match_unfiltered && self.has_unfiltered)
            || match &self.values {
                None => true,
                Some(set) => wanted.iter().any(|w| set.contains(w)),
            }
    }
}

/// What a sealed segment holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seal {
    /// One past its last offset.
    pub next_offset: u64,
    /// Its file's size in bytes.
    pub size: u64,
    pub first_timestamp_ms: u64,
    pub last_timestamp_ms: u64,
    pub filters: FilterSummary,
}

/// A sealed segment's `.idx` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub seal: Seal,
    pub index: SparseIndex,
}

impl IndexFile {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.index.entries.len() * 24);
        out.put_slice(MAGIC);
        out.put_u8(VERSION);
        out.put_slice(&[0, 0, 0]);
        let seal = &self.seal;
        out.put_u64(seal.next_offset);
        out.put_u64(seal.size);
        out.put_u64(seal.first_timestamp_ms);
        out.put_u64(seal.last_timestamp_ms);
        let values: Vec<&Vec<u8>> = seal.filters.values.iter().flatten().collect();
        out.put_u8(u8::from(seal.filters.values.is_none()));
        out.put_u8(u8::from(seal.filters.has_unfiltered));
        out.put_u16(values.len() as u16);
        for v in values {
            out.put_u8(v.len() as u8);
            out.put_slice(v);
        }
        out.put_u64(self.index.entries.len() as u64);
        for e in &self.index.entries {
            out.put_u64(e.offset);
            out.put_u64(e.position);
            out.put_u64(e.timestamp_ms);
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        out.freeze()
    }

    /// The index file `data` holds; `None` when it is not a whole, intact index file of this version, or breaks the
    /// ordering invariants (the caller rebuilds it from the segment).
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (body, crc) = data.split_at(data.len().checked_sub(4)?);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut b = body;
        if b.len() < 8 + 32 + 4 || &b[..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        b.advance(8);
        let mut seal = Seal {
            next_offset: b.get_u64(),
            size: b.get_u64(),
            first_timestamp_ms: b.get_u64(),
            last_timestamp_ms: b.get_u64(),
            filters: FilterSummary::default(),
        };
        let too_many = b.get_u8() != 0;
        seal.filters.has_unfiltered = b.get_u8() != 0;
        let n = b.get_u16() as usize;
        let mut values = std::collections::BTreeSet::new();
        for _ in 0..n {
            let len = *b.first()? as usize;
            b.advance(1);
            values.insert(b.get(..len)?.to_vec());
            b.advance(len);
        }
        seal.filters.values = (!too_many).then_some(values);
        if b.len() < 8 {
            return None;
        }
        let count = b.get_u64();
        if count > MAX_ENTRIES || b.len() as u64 != count * 24 {
            return None;
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let e = Entry {
                offset: b.get_u64(),
                position: b.get_u64(),
                timestamp_ms: b.get_u64(),
            };
            if let Some(last) = entries.last() {
                if e.offset <= last.offset || e.position <= last.position || e.timestamp_ms < last.timestamp_ms {
                    return None;
                }
            }
            entries.push(e);
        }
        Some(IndexFile {
            seal,
            index: SparseIndex { entries },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(n: u64) -> SparseIndex {
        let mut ix = SparseIndex::default();
        for i in 0..n {
            // 1 KiB records, one millisecond apart: an entry every 64 records.
            ix.observe(Entry {
                offset: 100 + i,
                position: i * 1024,
                timestamp_ms: 5_000 + i,
            });
        }
        ix
    }

    #[test]
    fn keeps_an_entry_every_spacing_bytes() {
        let ix = index(1000);
        assert_eq!(ix.entries().len(), 16);
        assert_eq!(ix.entries()[1].offset, 164);
    }

    #[test]
    fn seeks_to_the_entry_at_or_before() {
        let ix = index(1000);
        assert_eq!(ix.position_for_offset(0), 0, "before the segment");
        assert_eq!(ix.position_for_offset(100), 0);
        assert_eq!(ix.position_for_offset(163), 0);
        assert_eq!(ix.position_for_offset(164), 64 * 1024);
        assert_eq!(
            ix.position_for_offset(999_999),
            15 * 64 * 1024,
            "past the end: the last entry"
        );
        assert_eq!(
            ix.position_for_time(5_064),
            0,
            "the entry stamped 5064 may have equals before it"
        );
        assert_eq!(ix.position_for_time(5_065), 64 * 1024);
        assert_eq!(ix.position_for_time(1), 0);
    }

    fn file(n: u64) -> IndexFile {
        let mut filters = FilterSummary::exact();
        filters.observe(Some(b"eu"));
        filters.observe(Some(b"us"));
        filters.observe(None);
        IndexFile {
            seal: Seal {
                next_offset: 100 + n,
                size: n * 1024,
                first_timestamp_ms: 5_000,
                last_timestamp_ms: 5_000 + n - 1,
                filters,
            },
            index: index(n),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let f = file(1000);
        let data = f.encode();
        assert_eq!(IndexFile::decode(&data), Some(f.clone()));
        assert_eq!(
            IndexFile::decode(&IndexFile::default().encode()),
            Some(IndexFile::default())
        );
        for cut in [0, 3, 4, 20, 60, data.len() - 1] {
            assert_eq!(IndexFile::decode(&data[..cut]), None, "torn at {cut}");
        }
        for at in [0, 4, 9, 30, 50, data.len() - 2] {
            let mut bad = data.to_vec();
            bad[at] ^= 0x40;
            assert_eq!(IndexFile::decode(&bad), None, "flipped at {at}");
        }
    }

    /// A file whose checksum holds but whose contents lie (written by a bug, or crafted) is refused, not trusted.
    #[test]
    fn refuses_an_index_that_breaks_its_order_or_its_count() {
        let with_crc = |mut data: Vec<u8>| {
            let len = data.len();
            let crc = crc32c::crc32c(&data[..len - 4]);
            data[len - 4..].copy_from_slice(&crc.to_be_bytes());
            data
        };
        let mut f = file(200);
        f.index.entries.swap(0, 1);
        assert_eq!(IndexFile::decode(&f.encode()), None);
        let data = file(200).encode().to_vec();
        let count_at = data.len() - 4 - 4 * 24 - 8;
        let mut bad = data.clone();
        bad[count_at + 7] += 1;
        assert_eq!(
            IndexFile::decode(&with_crc(bad)),
            None,
            "a count that does not match the bytes"
        );
        let mut bad = data;
        bad[count_at + 7] = 0xff;
        bad[count_at] = 0xff;
        assert_eq!(IndexFile::decode(&with_crc(bad)), None, "an absurd count");
    }

    #[test]
    fn a_filter_summary_says_what_a_segment_may_hold() {
        let mut f = FilterSummary::exact();
        assert!(!f.may_match(&[b"eu".to_vec()], true), "empty");
        f.observe(Some(b"eu"));
        assert!(f.may_match(&[b"eu".to_vec()], false));
        assert!(!f.may_match(&[b"us".to_vec()], true), "no unfiltered messages");
        f.observe(None);
        assert!(f.may_match(&[b"us".to_vec()], true));
        assert!(!f.may_match(&[b"us".to_vec()], false));
        for i in 0..MAX_FILTER_VALUES {
            f.observe(Some(format!("v{i}").as_bytes()));
        }
        assert_eq!(f.values, None, "too many values: anything may be here");
        assert!(f.may_match(&[b"anything".to_vec()], false));
    }
}
