//! Fuzzes the decoder of sealed-segment summaries (`warren_broker::store::summary`): arbitrary bytes as an `.idx`
//! file. What must hold, besides never panicking: a summary that decodes encodes back to the same bytes, so nothing
//! but a whole, checksummed summary is ever trusted. The first 8 bytes of the input name the segment size to check
//! against; the seeds in `corpus/segment_summary/` are real summaries with their sizes in front.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_broker::store::summary::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((size, idx)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_be_bytes(*size);
    if let Some(records) = decode(idx, size) {
        assert_eq!(encode(size, &records), idx, "a summary that decodes must be exactly its own encoding");
    }
});
