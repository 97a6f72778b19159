//! A producer connection: one task that publishes on one or more channels in a tight loop.
//!
//! Each turn of the loop reads whatever confirms have arrived (without waiting), appends as many messages to the
//! write buffer as the confirm window, the rate, the count and a batch size allow (each message is a copy of the
//! channel's [`PublishTemplate`] with its [`Stamp`] patched in), and writes what the socket takes. Only when none
//! of that made progress does the task wait: for the socket, the pacer, or the stop signal.
//!
//! Confirms: delivery tags count from 1 per channel; the outstanding ones sit in a ring of flags, so single and
//! `multiple` acks and nacks, in or out of order, cost O(1) per message.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Inbound, PublishTemplate, Stamp};
use super::conn::{self, Conn};
use super::pacer::Pacer;
use super::{PerfError, Shared};

/// Bytes appended to the write buffer per turn: one write call carries thousands of small messages.
const BATCH_BYTES: usize = 128 * 1024;

/// One publishing channel and its place in the run.
pub struct ProducerChannel {
    /// The producer's number in the run (also stamped into its bodies).
    pub id: u16,
    pub channel: u16,
    /// Which queue its routing key names (`--queues`), for the integrity check.
    pub queue: usize,
    pub template: PublishTemplate,
    sent: u64,
    confirms: Confirms,
}

impl ProducerChannel {
    pub fn new(id: u16, channel: u16, queue: usize, template: PublishTemplate) -> Self {
        ProducerChannel {
            id,
            channel,
            queue,
            template,
            sent: 0,
            confirms: Confirms::default(),
        }
    }
}

/// How every producer behaves.
#[derive(Clone)]
pub struct ProducerOptions {
    /// Most unconfirmed messages per channel; 0 = no confirms.
    pub confirm: usize,
    /// Messages per second per channel (open loop: each message is stamped with the time it was due).
    pub rate: Option<f64>,
    /// Stop after this many messages per channel.
    pub count: Option<u64>,
    /// How long to wait for the last confirms after stopping.
    pub confirm_timeout: Duration,
    /// The run's shared time origin for stamps.
    pub epoch: Instant,
}

/// What one channel did.
#[derive(Debug, Clone)]
pub struct ProducerResult {
    pub id: u16,
    pub queue: usize,
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
}

/// Publishes until `stop` (or the count), then waits for outstanding confirms and closes the connection.
pub async fn run(
    mut conn: Conn,
    mut channels: Vec<ProducerChannel>,
    opts: ProducerOptions,
    shared: Arc<Shared>,
    pacer: Option<Arc<Pacer>>,
    stop: CancellationToken,
) -> Result<Vec<ProducerResult>, PerfError> {
    let counters = &shared.counters;
    let start_ns = opts.epoch.elapsed().as_nanos() as u64;
    let ns_per_msg = opts.rate.map(|r| 1e9 / r);
    let per_turn = |t: &PublishTemplate, n_channels: usize| (BATCH_BYTES / t.len().max(1) / n_channels).max(1) as u64;
    let mut stopping = false;
    let mut confirm_deadline: Option<tokio::time::Instant> = None;
    loop {
        let mut progress = false;

        // Confirms and whatever else the broker says.
        if conn::try_read(&conn.stream, &mut conn.rbuf)? {
            progress = true;
            let (mut acked, mut nacked) = (0u64, 0u64);
            let mut pos = 0;
            while let Some((frame, n)) = codec::decode(&conn.rbuf[pos..], conn.frame_max)? {
                pos += n;
                match frame {
                    Inbound::Confirm {
                        channel,
                        delivery_tag,
                        multiple,
                        nack,
                    } => {
                        if let Some(ch) = find(&mut channels, channel) {
                            let n = ch.confirms.resolve(delivery_tag, multiple);
                            if nack {
                                ch.confirms.nacked += n;
                                nacked += n;
                            } else {
                                ch.confirms.confirmed += n;
                                acked += n;
                            }
                        }
                    }
                    Inbound::Method(ch, m) => conn::answer_control(&mut conn.wbuf, ch, &m)?,
                    _ => {}
                }
            }
            conn.rbuf.advance(pos);
            if acked > 0 {
                counters.confirmed.fetch_add(acked, Ordering::Relaxed);
            }
            if nacked > 0 {
                counters.nacked.fetch_add(nacked, Ordering::Relaxed);
            }
        }

        if !stopping && stop.is_cancelled() {
            stopping = true;
        }

        // New messages.
        if !stopping && conn.wbuf.len() < BATCH_BYTES {
            let now_ns = opts.epoch.elapsed().as_nanos() as u64;
            let n_channels = channels.len();
            let mut added = 0u64;
            let mut done = 0;
            for ch in channels.iter_mut() {
                let mut n = per_turn(&ch.template, n_channels);
                if opts.confirm > 0 {
                    n = n.min(opts.confirm.saturating_sub(ch.confirms.outstanding()) as u64);
                }
                if let Some(limit) = opts.count {
                    n = n.min(limit - ch.sent);
                    if ch.sent == limit {
                        done += 1;
                    }
                }
                if let Some(ns) = ns_per_msg {
                    let due = ((now_ns.saturating_sub(start_ns)) as f64 / ns) as u64 + 1;
                    n = n.min(due.saturating_sub(ch.sent));
                }
                for _ in 0..n {
                    let sent_ns = match ns_per_msg {
                        Some(ns) => start_ns + (ch.sent as f64 * ns) as u64,
                        None => now_ns,
                    };
                    let stamp = Stamp {
                        sent_ns,
                        producer: ch.id,
                        seq: ch.sent,
                    };
                    ch.template.encode(&mut conn.wbuf, &stamp);
                    ch.sent += 1;
                }
                if opts.confirm > 0 {
                    ch.confirms.publish(n);
                }
                added += n;
            }
            if added > 0 {
                counters.sent.fetch_add(added, Ordering::Relaxed);
                progress = true;
            }
            if done == n_channels {
                stopping = true;
            }
        }

        if conn::try_write(&conn.stream, &mut conn.wbuf)? {
            progress = true;
        }

        if stopping && conn.wbuf.is_empty() {
            if opts.confirm == 0 || channels.iter().all(|c| c.confirms.outstanding() == 0) {
                break;
            }
            let deadline = *confirm_deadline.get_or_insert_with(|| tokio::time::Instant::now() + opts.confirm_timeout);
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }

        if progress {
            // A producer that can always write must still let the other tasks on its worker run.
            tokio::task::consume_budget().await;
            continue;
        }
        let interest = if conn.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let paced = pacer.as_ref().filter(|_| !stopping);
        tokio::select! {
            r = conn.stream.ready(interest) => { r.map_err(|e| PerfError::Io("poll".into(), e))?; }
            _ = async { if let Some(p) = paced { p.tick().await } }, if paced.is_some() => {}
            _ = stop.cancelled(), if !stopping => { stopping = true; }
            _ = async {
                if let Some(d) = confirm_deadline { tokio::time::sleep_until(d).await }
            }, if confirm_deadline.is_some() => {}
        }
    }
    let results = channels
        .iter()
        .map(|c| ProducerResult {
            id: c.id,
            queue: c.queue,
            sent: c.sent,
            confirmed: c.confirms.confirmed,
            nacked: c.confirms.nacked,
        })
        .collect();
    conn.close(Duration::from_secs(2)).await;
    Ok(results)
}

fn find(channels: &mut [ProducerChannel], channel: u16) -> Option<&mut ProducerChannel> {
    conn::by_channel(channels, channel, |c| c.channel)
}

/// The unconfirmed delivery tags of one channel.
#[derive(Debug)]
struct Confirms {
    /// The tag of `pending[0]`.
    base: u64,
    /// Whether each tag from `base` on has been resolved (acked or nacked) out of order already.
    pending: VecDeque<bool>,
    /// Resolved by basic.ack.
    confirmed: u64,
    nacked: u64,
}

impl Default for Confirms {
    fn default() -> Self {
        Confirms {
            base: 1,
            pending: VecDeque::with_capacity(1024),
            confirmed: 0,
            nacked: 0,
        }
    }
}

impl Confirms {
    fn outstanding(&self) -> usize {
        self.pending.len()
    }

    fn publish(&mut self, n: u64) {
        for _ in 0..n {
            self.pending.push_back(false);
        }
    }

    /// Resolves `tag` (and every tag below it when `multiple`); returns how many were newly resolved, which the
    /// caller counts as confirmed or nacked.
    fn resolve(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag < self.base {
            return 0;
        }
        let idx = (tag - self.base) as usize;
        let mut newly = 0;
        if multiple {
            let upto = (idx + 1).min(self.pending.len());
            for done in self.pending.drain(..upto) {
                newly += u64::from(!done);
            }
            self.base += upto as u64;
        } else if let Some(slot) = self.pending.get_mut(idx) {
            if !*slot {
                *slot = true;
                newly = 1;
            }
        }
        while self.pending.front() == Some(&true) {
            self.pending.pop_front();
            self.base += 1;
        }
        newly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_in_and_out_of_order() {
        let mut c = Confirms::default();
        c.publish(10);
        assert_eq!(c.resolve(3, false), 1);
        assert_eq!(c.outstanding(), 10, "tag 1 still holds the front");
        assert_eq!(c.resolve(3, false), 0, "a repeated ack counts once");
        assert_eq!(c.resolve(5, true), 4, "1, 2, 4, 5: 3 was already in");
        assert_eq!(c.outstanding(), 5);
        assert_eq!(c.resolve(7, false), 1);
        assert_eq!(c.resolve(6, false), 1);
        assert_eq!(c.outstanding(), 3, "6 and 7 leave with the front");
        assert_eq!(c.resolve(100, true), 3, "a tag past the end resolves what there is");
        assert_eq!(c.outstanding(), 0);
        c.publish(2);
        assert_eq!(c.resolve(11, true), 1);
        assert_eq!(c.resolve(12, false), 1);
        assert_eq!(c.outstanding(), 0);
    }
}
