//! A consumer connection: one task that reads deliveries on one or more channels in a tight loop.
//!
//! Each read takes in whatever the socket holds (up to 256 KiB); the frames are walked in place (deliver, content
//! header, body frames) without copying a body, the clock is read once per read, each message's latency is the
//! time since its stamp, and acks are appended to the write buffer (one per message, or one `multiple` ack every
//! N) and written once per read.
//!
//! Integrity (`--integrity`, one consumer per queue): per producer, sequence numbers must arrive as 0, 1, 2, ...;
//! a lower one is a duplicate, a higher one means the ones between were lost (or reordered). What never arrived at
//! all is found at the end, against what the producers sent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use hdrhistogram::Histogram;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Inbound, Stamp};
use super::conn::{self, Conn};
use super::stats::new_histogram;
use super::{PerfError, Shared};

/// How often a consumer hands its latencies to the reporter.
const MERGE_EVERY_NS: u64 = 100_000_000;

/// How a consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// `no_ack` consume: the broker forgets a message once sent.
    Auto,
    /// basic.ack per message.
    Each,
    /// basic.ack with `multiple` every N messages.
    Multiple(u32),
}

/// One consuming channel.
pub struct ConsumerChannel {
    pub channel: u16,
    pub queue: usize,
    state: FrameState,
    /// Delivery tag of the message being read.
    tag: u64,
    /// Delivered but not yet acked (multiple-ack mode).
    unacked: u32,
    received: u64,
    /// How much of `received` has been added to the per-queue counters.
    reported: u64,
    redelivered: u64,
    integrity: Option<Integrity>,
}

impl ConsumerChannel {
    /// `integrity_for`: how many producer ids to track when checking integrity (None: no check).
    pub fn new(channel: u16, queue: usize, integrity_for: Option<usize>) -> Self {
        ConsumerChannel {
            channel,
            queue,
            state: FrameState::Method,
            tag: 0,
            unacked: 0,
            received: 0,
            reported: 0,
            redelivered: 0,
            integrity: integrity_for.map(Integrity::new),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum FrameState {
    /// Waiting for basic.deliver.
    Method,
    Header,
    /// Body bytes still to come; `first` until the first body frame (which holds the stamp) is in.
    Body {
        left: u64,
        first: bool,
    },
}

/// What one consumer saw, for the integrity check.
#[derive(Debug, Clone, Default)]
pub struct Integrity {
    /// Per producer id: the sequence number expected next.
    pub next: Vec<u64>,
    pub duplicates: u64,
    /// Sequence numbers skipped over (lost, or to arrive later out of order).
    pub gaps: u64,
    /// Messages without a readable stamp.
    pub unstamped: u64,
    /// The first few problems, described.
    pub examples: Vec<String>,
}

impl Integrity {
    fn new(producers: usize) -> Self {
        Integrity {
            next: vec![0; producers],
            ..Default::default()
        }
    }

    fn check(&mut self, stamp: Option<Stamp>) {
        let Some(s) = stamp else {
            self.unstamped += 1;
            return;
        };
        let Some(next) = self.next.get_mut(s.producer as usize) else {
            self.unstamped += 1;
            return;
        };
        if s.seq == *next {
            *next += 1;
        } else if s.seq < *next {
            self.duplicates += 1;
            if self.examples.len() < 10 {
                self.examples.push(format!(
                    "duplicate or reordered: producer {} seq {} after seq {}",
                    s.producer,
                    s.seq,
                    *next - 1
                ));
            }
        } else {
            self.gaps += s.seq - *next;
            if self.examples.len() < 10 {
                self.examples.push(format!(
                    "gap: producer {} seq {} when {} was expected",
                    s.producer, s.seq, *next
                ));
            }
            *next = s.seq + 1;
        }
    }
}

/// What one channel did.
#[derive(Debug, Clone)]
pub struct ConsumerResult {
    pub channel: u16,
    pub queue: usize,
    pub received: u64,
    pub redelivered: u64,
    pub integrity: Option<Integrity>,
}

pub struct ConsumerOptions {
    pub ack: AckMode,
    pub epoch: Instant,
}

/// Consumes until `stop`, then sends the last acks and closes the connection.
pub async fn run(
    mut conn: Conn,
    mut channels: Vec<ConsumerChannel>,
    opts: ConsumerOptions,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<Vec<ConsumerResult>, PerfError> {
    let mut hist: Histogram<u64> = new_histogram();
    let mut next_merge_ns = 0u64;
    while !stop.is_cancelled() {
        if !conn::try_read(&conn.stream, &mut conn.rbuf)? {
            let interest = if conn.wbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            tokio::select! {
                r = conn.stream.ready(interest) => { r.map_err(|e| PerfError::Io("poll".into(), e))?; }
                _ = stop.cancelled() => break,
            }
            conn::try_write(&conn.stream, &mut conn.wbuf)?;
            continue;
        }
        let now_ns = opts.epoch.elapsed().as_nanos() as u64;
        let now_us = now_ns / 1000;
        let mut got = 0u64;
        let mut pos = 0;
        while let Some((frame, n)) = codec::decode(&conn.rbuf[pos..], conn.frame_max)? {
            pos += n;
            let (channel, complete, stamp) = match frame {
                Inbound::Deliver {
                    channel,
                    delivery_tag,
                    redelivered,
                } => {
                    let ch = find(&mut channels, channel)?;
                    ch.state = FrameState::Header;
                    ch.tag = delivery_tag;
                    ch.redelivered += u64::from(redelivered);
                    continue;
                }
                Inbound::Header { channel, body_size } => {
                    let ch = find(&mut channels, channel)?;
                    if body_size == 0 {
                        (channel, true, None)
                    } else {
                        ch.state = FrameState::Body {
                            left: body_size,
                            first: true,
                        };
                        continue;
                    }
                }
                Inbound::Body { channel, payload } => {
                    let ch = find(&mut channels, channel)?;
                    let FrameState::Body { left, first } = ch.state else {
                        return Err(PerfError::Protocol(format!(
                            "a body frame out of place on channel {channel}"
                        )));
                    };
                    let stamp = if first { Stamp::read(payload) } else { None };
                    let left = left.saturating_sub(payload.len() as u64);
                    if left > 0 {
                        ch.state = FrameState::Body { left, first: false };
                        continue;
                    }
                    (channel, true, stamp)
                }
                Inbound::Method(ch, m) => {
                    conn::answer_control(&mut conn.wbuf, ch, &m)?;
                    continue;
                }
                _ => continue,
            };
            if !complete {
                continue;
            }
            got += 1;
            let ch = find(&mut channels, channel)?;
            ch.state = FrameState::Method;
            ch.received += 1;
            if let Some(s) = stamp {
                hist.saturating_record(now_us.saturating_sub(s.sent_ns / 1000).max(1));
            }
            if let Some(i) = ch.integrity.as_mut() {
                i.check(stamp);
            }
            match opts.ack {
                AckMode::Auto => {}
                AckMode::Each => codec::encode_ack(&mut conn.wbuf, channel, ch.tag, false),
                AckMode::Multiple(every) => {
                    ch.unacked += 1;
                    if ch.unacked >= every {
                        codec::encode_ack(&mut conn.wbuf, channel, ch.tag, true);
                        ch.unacked = 0;
                    }
                }
            }
        }
        conn.rbuf.advance(pos);
        if got > 0 {
            shared.counters.received.fetch_add(got, Ordering::Relaxed);
            for ch in channels.iter_mut() {
                // Per queue, for the drain at the end; one add per channel and read, not per message.
                if ch.received > ch.reported {
                    shared.note_received(ch.queue, ch.received - ch.reported);
                    ch.reported = ch.received;
                }
            }
            shared.progress.notify_one();
        }
        if now_ns >= next_merge_ns {
            shared.latencies.merge(&mut hist);
            next_merge_ns = now_ns + MERGE_EVERY_NS;
        }
        conn::try_write(&conn.stream, &mut conn.wbuf)?;
    }
    shared.latencies.merge(&mut hist);
    // The last partial batch of multiple acks.
    for ch in &mut channels {
        if ch.unacked > 0 {
            codec::encode_ack(&mut conn.wbuf, ch.channel, ch.tag, true);
            ch.unacked = 0;
        }
    }
    let results = channels
        .into_iter()
        .map(|c| ConsumerResult {
            channel: c.channel,
            queue: c.queue,
            received: c.received,
            redelivered: c.redelivered,
            integrity: c.integrity,
        })
        .collect();
    conn.close(Duration::from_secs(2)).await;
    Ok(results)
}

fn find(channels: &mut [ConsumerChannel], channel: u16) -> Result<&mut ConsumerChannel, PerfError> {
    conn::by_channel(channels, channel, |c| c.channel)
        .ok_or_else(|| PerfError::Protocol(format!("a delivery on channel {channel}, which does not consume")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(producer: u16, seq: u64) -> Option<Stamp> {
        Some(Stamp {
            sent_ns: 0,
            producer,
            seq,
        })
    }

    #[test]
    fn integrity_finds_duplicates_and_gaps() {
        let mut i = Integrity::new(2);
        for s in [0, 1, 2] {
            i.check(stamp(0, s));
        }
        i.check(stamp(1, 0));
        assert_eq!((i.duplicates, i.gaps), (0, 0));
        i.check(stamp(0, 2));
        assert_eq!(i.duplicates, 1);
        i.check(stamp(0, 5));
        assert_eq!(i.gaps, 2);
        assert_eq!(i.next, vec![6, 1]);
        i.check(stamp(9, 0));
        i.check(None);
        assert_eq!(i.unstamped, 2);
        assert_eq!(i.examples.len(), 2);
    }
}
