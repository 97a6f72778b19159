//! What the soak prints: a progress line while it runs, and at the end a summary (one line for people, one line of
//! JSON for tools) with the verdict.
//!
//! The verdict fails on: a confirmed message never acked (lost), a body that is not one we sent, a dead broker, a
//! failed final sweep, a failed connection, admin or redrive error, broker descriptors that did not come back to their level before the
//! load once every client had gone, or resident memory still climbing in the second half of the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ledger::Audit;
use crate::probe::{mb, Sample};
use crate::stats::Totals;
use crate::Ctx;

/// Samples the broker every second and prints a progress line every `every`, until `stop`.
pub async fn monitor(ctx: Arc<Ctx>, started: Instant, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_print = Instant::now();
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(s) = ctx.probe.sample(started.elapsed()) {
            ctx.samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
        if last_print.elapsed() + Duration::from_millis(500) < every {
            continue;
        }
        last_print = Instant::now();
        println!("{}", progress(&ctx, started.elapsed()));
        let error = ctx.stats.last_error();
        if error.is_some() && error != last_error {
            println!("         last error: {}", error.as_deref().unwrap_or_default());
            last_error = error;
        }
    }
}

fn progress(ctx: &Ctx, elapsed: Duration) -> String {
    let s = &ctx.stats;
    let (queued, unacked, dlq, broker_conns) = {
        let latest = ctx.latest.lock().unwrap_or_else(|e| e.into_inner());
        let work = latest.queues.iter().filter(|q| !q.name.ends_with(".dlq"));
        let (ready, unacked) = work.fold((0, 0), |(r, u), q| (r + q.messages_ready, u + q.messages_unacked));
        let dlq: u64 = latest
            .queues
            .iter()
            .filter(|q| q.name.ends_with(".dlq"))
            .map(|q| q.messages)
            .sum();
        let conns = latest.overview.as_ref().map(|o| o.totals.connections);
        (ready, unacked, dlq, conns)
    };
    let broker = match (ctx.probe.rss_kb(), ctx.probe.fds()) {
        (Some(rss), Some(fds)) => format!("rss {} fds {fds}", mb(rss)),
        _ if ctx.probe.watching() => "BROKER GONE".to_string(),
        _ => "rss ? fds ?".to_string(),
    };
    format!(
        "[{:>5} s] pub {} conf {} nack {} | deliv {} ack {} dl {} redriven {} | ready {queued} unacked {unacked} dlq {dlq} | \
         {broker} | conns {} (broker {}) | admin {} req {} err, sse {} ev",
        elapsed.as_secs(),
        s.published.get(),
        s.confirmed.get(),
        s.nacked.get(),
        s.delivered.get(),
        s.acked.get(),
        s.rejected.get(),
        s.redriven.get(),
        s.open.get(),
        broker_conns.map_or("?".to_string(), |c| c.to_string()),
        s.admin_requests.get(),
        s.admin_errors.get(),
        s.stream_events.get(),
    )
}

/// Start, peak and end of one broker measure, and the peaks of the two halves of the load (growth shows there).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measure {
    pub start: u64,
    pub peak: u64,
    pub end: u64,
    pub first_half_peak: u64,
    pub second_half_peak: u64,
}

impl Measure {
    /// From the samples taken between `from_s` and `to_s` (the load with every connection open).
    pub fn from_samples(samples: &[Sample], from_s: f64, to_s: f64, pick: impl Fn(&Sample) -> u64) -> Self {
        let mid = (from_s + to_s) / 2.0;
        let peak_in = |lo: f64, hi: f64| {
            samples
                .iter()
                .filter(|s| s.at_s >= lo && s.at_s <= hi)
                .map(&pick)
                .max()
                .unwrap_or(0)
        };
        Measure {
            start: 0,
            peak: samples.iter().map(&pick).max().unwrap_or(0),
            end: 0,
            first_half_peak: peak_in(from_s, mid),
            second_half_peak: peak_in(mid, to_s),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Broker {
    pub pid: Option<u32>,
    pub rss_kb: Measure,
    pub fds: Measure,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub result: &'static str,
    pub duration_s: u64,
    /// The load phase (publishers on), then the drain, in seconds.
    pub load_s: u64,
    pub drain_s: u64,
    pub connections: u64,
    pub publishers: u64,
    pub consumers: u64,
    pub idle: u64,
    pub target_rate: f64,
    pub totals: Totals,
    /// Messages found in the queues after the consumers had gone, taken with basic.get.
    pub swept: u64,
    /// Why the sweep could not take what was left, if it could not.
    pub sweep_error: Option<String>,
    /// The queues were empty before the consumers stopped.
    pub drained: bool,
    pub ledger: Audit,
    pub broker: Broker,
    pub failures: Vec<String>,
}

impl Summary {
    /// Fills in `failures` and `result`.
    pub fn judge(&mut self, ctx: &Ctx, broker_alive: bool) {
        let mut f = Vec::new();
        let a = &self.ledger;
        if a.lost > 0 {
            f.push(format!(
                "{} confirmed messages lost (e.g. {})",
                a.lost,
                a.lost_examples.join(", ")
            ));
        }
        if self.totals.unknown_bodies > 0 {
            f.push(format!(
                "{} deliveries with a body we never sent",
                self.totals.unknown_bodies
            ));
        }
        if let Some(e) = &self.sweep_error {
            f.push(format!("the final sweep failed: {e}"));
        }
        if !broker_alive {
            f.push("the broker process is gone".to_string());
        }
        for (n, what) in [
            (self.totals.connection_failures, "AMQP connection failures"),
            (self.totals.admin_errors, "admin API errors"),
            (self.totals.redrive_failures, "redrive failures"),
            (self.totals.stream_reconnects, "admin stream interruptions"),
        ] {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        }
        if a.unconfirmed > 0 && self.totals.connection_failures == 0 {
            f.push(format!("{} publishes never confirmed", a.unconfirmed));
        }
        let fds = &self.broker.fds;
        if self.broker.pid.is_some() && fds.end > fds.start + ctx.fd_margin {
            f.push(format!(
                "broker file descriptors did not come back: {} at the start, {} after every client left (margin {})",
                fds.start, fds.end, ctx.fd_margin
            ));
        }
        let rss = &self.broker.rss_kb;
        let allowed = (ctx.rss_growth_mb * 1024).max(rss.first_half_peak / 4);
        if self.broker.pid.is_some() && rss.second_half_peak > rss.first_half_peak + allowed {
            f.push(format!(
                "broker memory still growing: peak {} in the first half of the load, {} in the second (allowed +{})",
                mb(rss.first_half_peak),
                mb(rss.second_half_peak),
                mb(allowed)
            ));
        }
        self.result = if f.is_empty() { "pass" } else { "fail" };
        self.failures = f;
    }

    /// The line for people.
    pub fn line(&self) -> String {
        let t = &self.totals;
        let a = &self.ledger;
        let (rss, fds) = (&self.broker.rss_kb, &self.broker.fds);
        format!(
            "SOAK {}: {} s ({} s load, {} s drain), {} connections ({} publishers, {} consumers, {} idle): \
             published {}, confirmed {}, delivered {}, acked {}, dead-lettered {}, redriven {} in {} moves, swept {}; \
             lost {}, duplicated {} | broker RSS start {} peak {} end {} | fds start {} peak {} end {} | \
             admin {} requests ({} errors, slowest {} ms), {} stream events",
            self.result.to_uppercase(),
            self.duration_s,
            self.load_s,
            self.drain_s,
            self.connections,
            self.publishers,
            self.consumers,
            self.idle,
            t.published,
            a.confirmed,
            t.delivered,
            t.acked,
            t.dead_lettered,
            t.redriven,
            t.redrives,
            self.swept,
            a.lost,
            a.duplicated,
            mb(rss.start),
            mb(rss.peak),
            mb(rss.end),
            fds.start,
            fds.peak,
            fds.end,
            t.admin_requests,
            t.admin_errors,
            t.admin_slowest_ms,
            t.stream_events,
        )
    }
}
