//! The ledger: what happened to every message the soak published, so the end of the run can prove that none was
//! lost.
//!
//! Every message carries `<publisher>:<seq>:` at the start of its body; `seq` counts from 0 per publisher, so a
//! publisher's history is a plain vector indexed by `seq` (two bytes per message: an hour at a few thousand msg/s is
//! a few tens of MB, where a hash set of ids would be ten times that).
//!
//! Invariants:
//! - a slot exists before its message is published (`sent` hands out the seq), so a consumer can never receive an
//!   id the ledger has not seen unless the body is not ours or was damaged (`Ack::Unknown`);
//! - the outcome of a publish is recorded once (confirm or nack); acks are counted, saturating at 255;
//! - each publisher's vector has its own mutex, held only for an index or a push (never across `.await`).

use std::sync::{Mutex, MutexGuard};

/// The publish outcome of one message.
const SENT: u8 = 0;
const CONFIRMED: u8 = 1;
const NACKED: u8 = 2;

#[derive(Default)]
struct Track {
    /// SENT, CONFIRMED or NACKED, by seq.
    outcome: Vec<u8>,
    /// Times a consumer acked it (or the final sweep took it), by seq.
    acks: Vec<u8>,
}

pub struct Ledger {
    publishers: Vec<Mutex<Track>>,
    /// Body size: an acked body must be exactly what was published.
    size: usize,
}

/// What an ack found in the ledger.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack {
    /// The first ack of this message.
    First,
    /// Acked before: the message came back (at-least-once).
    Again,
    /// The body does not name a message the soak published, or is not what was published.
    Unknown,
}

/// The accounting at the end of the run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Audit {
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    /// Published, but the connection failed before the broker confirmed or nacked.
    pub unconfirmed: u64,
    /// Confirmed messages acked (or swept) at least once.
    pub confirmed_acked: u64,
    /// Confirmed and never acked: the broker lost them.
    pub lost: u64,
    /// The first few lost ids (`publisher:seq`).
    pub lost_examples: Vec<String>,
    /// Messages acked more than once.
    pub duplicated: u64,
    /// Acks beyond the first, over all messages.
    pub extra_acks: u64,
    /// Unconfirmed or nacked messages that arrived anyway (allowed: the confirm was lost, not the message).
    pub unconfirmed_delivered: u64,
}

impl Ledger {
    pub fn new(publishers: usize, size: usize) -> Self {
        Ledger {
            publishers: (0..publishers).map(|_| Mutex::new(Track::default())).collect(),
            size,
        }
    }

    fn track(&self, publisher: usize) -> Option<MutexGuard<'_, Track>> {
        let m = self.publishers.get(publisher)?;
        Some(m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new message of `publisher`: returns its seq.
    pub fn sent(&self, publisher: usize) -> u64 {
        let Some(mut t) = self.track(publisher) else {
            return 0;
        };
        t.outcome.push(SENT);
        t.acks.push(0);
        (t.outcome.len() - 1) as u64
    }

    fn set_outcome(&self, publisher: usize, seq: u64, outcome: u8) {
        if let Some(mut t) = self.track(publisher) {
            if let Some(slot) = t.outcome.get_mut(seq as usize) {
                *slot = outcome;
            }
        }
    }

    pub fn confirmed(&self, publisher: usize, seq: u64) {
        self.set_outcome(publisher, seq, CONFIRMED);
    }

    pub fn nacked(&self, publisher: usize, seq: u64) {
        self.set_outcome(publisher, seq, NACKED);
    }

    /// A consumer acked the message with this body.
    pub fn acked(&self, received: &[u8]) -> Ack {
        let Some((publisher, seq)) = parse_id(received) else {
            return Ack::Unknown;
        };
        if received != body(publisher, seq, self.size) {
            return Ack::Unknown;
        }
        let Some(mut t) = self.track(publisher) else {
            return Ack::Unknown;
        };
        let Some(n) = t.acks.get_mut(seq as usize) else {
            return Ack::Unknown;
        };
        *n = n.saturating_add(1);
        if *n == 1 {
            Ack::First
        } else {
            Ack::Again
        }
    }

    /// Every message, counted. Runs once, at the end, when nothing publishes or consumes any more.
    pub fn audit(&self) -> Audit {
        let mut a = Audit::default();
        for (p, track) in self.publishers.iter().enumerate() {
            let t = track.lock().unwrap_or_else(|e| e.into_inner());
            for (seq, (&outcome, &acks)) in t.outcome.iter().zip(&t.acks).enumerate() {
                a.sent += 1;
                if acks > 1 {
                    a.duplicated += 1;
                    a.extra_acks += u64::from(acks - 1);
                }
                match outcome {
                    CONFIRMED if acks > 0 => {
                        a.confirmed += 1;
                        a.confirmed_acked += 1;
                    }
                    CONFIRMED => {
                        a.confirmed += 1;
                        a.lost += 1;
                        if a.lost_examples.len() < 20 {
                            a.lost_examples.push(format!("{p}:{seq}"));
                        }
                    }
                    other => {
                        if other == NACKED {
                            a.nacked += 1;
                        } else {
                            a.unconfirmed += 1;
                        }
                        if acks > 0 {
                            a.unconfirmed_delivered += 1;
                        }
                    }
                }
            }
        }
        a
    }
}

/// The body of message `seq` of `publisher`: the id, then `x` up to `size` bytes.
pub fn body(publisher: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut b = format!("{publisher}:{seq}:").into_bytes();
    if b.len() < size {
        b.resize(size, b'x');
    }
    b
}

/// The id at the start of a body, if it is one of ours.
pub fn parse_id(body: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(body.get(..body.len().min(48))?).ok()?;
    let mut parts = text.splitn(3, ':');
    let publisher = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((publisher, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_their_id() {
        let b = body(17, 123_456, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_id(&b), Some((17, 123_456)));
        assert_eq!(parse_id(b"hello"), None);
        assert_eq!(parse_id(&body(3, 9, 0)), Some((3, 9)));
    }

    #[test]
    fn audit_finds_lost_and_duplicated_messages() {
        let l = Ledger::new(2, 16);
        for _ in 0..3 {
            l.sent(0);
        }
        l.sent(1);
        l.confirmed(0, 0);
        l.confirmed(0, 1);
        l.nacked(0, 2);
        assert_eq!(l.acked(&body(0, 0, 16)), Ack::First);
        assert_eq!(l.acked(&body(0, 0, 16)), Ack::Again);
        assert_eq!(l.acked(&body(1, 0, 16)), Ack::First);
        assert_eq!(l.acked(&body(1, 5, 16)), Ack::Unknown);
        assert_eq!(l.acked(&body(9, 0, 16)), Ack::Unknown);
        assert_eq!(
            l.acked(&body(0, 1, 17)),
            Ack::Unknown,
            "a body of the wrong size is damaged"
        );
        let a = l.audit();
        assert_eq!((a.sent, a.confirmed, a.nacked, a.unconfirmed), (4, 2, 1, 1));
        assert_eq!((a.lost, a.lost_examples.clone()), (1, vec!["0:1".to_string()]));
        assert_eq!((a.duplicated, a.extra_acks, a.unconfirmed_delivered), (1, 1, 1));
    }
}
