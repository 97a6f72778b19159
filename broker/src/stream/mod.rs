//! Streams (issue 14): append-only, replayable queues. Many consumers read one log, each from its own offset;
//! reading removes nothing, and retention drops whole segments from the oldest, by size or age.
//!
//! This module holds the storage so far: [`log::StreamLog`] (segments of records in the durable store's format, an
//! append at the tail, reads and seeks from any offset or time, retention) and [`index`] (each segment's sparse
//! offset and time index and its filter summary, pure). The queue type over AMQP (`x-queue-type: stream`), consumer
//! offsets and the admin API build on it.

pub mod index;
pub mod log;

#[cfg(test)]
mod tests;
