//! Fuzzes the decoder of stream segment index files (`warren_broker::stream::index::IndexFile`): arbitrary bytes as
//! an `.idx` file. What must hold, besides never panicking: an index that decodes encodes back to the same bytes, so
//! nothing but a whole, checksummed index whose entries keep their order is ever trusted. The seeds in
//! `corpus/stream_index/` are real index files.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_broker::stream::index::IndexFile;

fuzz_target!(|data: &[u8]| {
    if let Some(file) = IndexFile::decode(data) {
        assert_eq!(file.encode(), data, "an index file that decodes must be exactly its own encoding");
    }
});
