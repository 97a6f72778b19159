//! Streams (issue 14): append-only, replayable queues. Many consumers read one log, each from its own offset;
//! reading removes nothing, and retention drops whole segments from the oldest, by size or age.
//!
//! - [`log::StreamLog`]: segments of records in the durable store's format, an append at the tail (buffered, written
//!   by the syncer thread), reads and seeks from any offset or time with no lock held, retention.
//! - [`index`]: each segment's sparse offset and time index and its filter summary (pure).
//! - [`offsets`]: named consumers' stored offsets.
//! - [`args`]: RabbitMQ's declare and consume arguments (pure).
//! - [`state`]: a stream queue's state under its queue's lock: the log, the tail in memory, consumers' positions.
//!
//! `queue/stream.rs` joins this to `Queue` (`x-queue-type: stream`): publish, dispatch, acks, reads on the read
//! threads.

pub mod args;
pub mod index;
pub mod log;
pub mod offsets;
pub mod state;

#[cfg(test)]
mod tests;
