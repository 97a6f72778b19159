//! Time to drain: how long a queue's ready backlog takes to empty at its current net rate. One definition, used by
//! the broker's API (`QueueInfo::drain_ms`) and by the console, so the two never disagree.
//!
//! The net rate is what leaves the ready backlog (first deliveries, expiries, drops) minus what joins it
//! (publishes), per second over the last ten seconds (RabbitMQ's sample window). Redeliveries are left out of what
//! leaves: a requeued message comes back to the backlog before it is delivered again.

use crate::QueueRates;

/// Milliseconds until `ready` messages are gone at the net rate of `rates`: `Some(0)` when nothing is ready, `None`
/// when the backlog does not shrink at this rate ("never at this rate").
pub fn time_to_drain_ms(ready: u64, rates: &QueueRates) -> Option<u64> {
    if ready == 0 {
        return Some(0);
    }
    let net = net_drain_rate(rates);
    if net <= 0.0 || !net.is_finite() {
        return None;
    }
    let ms = ready as f64 / net * 1000.0;
    // Beyond a year it might as well be never; and it keeps the conversion in range.
    (ms < 365.0 * 86_400_000.0).then_some(ms.ceil() as u64)
}

/// Messages per second leaving the ready backlog, net of those joining it (negative: it grows).
pub fn net_drain_rate(rates: &QueueRates) -> f64 {
    let out =
        (rates.deliver.last_10s - rates.redeliver.last_10s).max(0.0) + rates.expired.last_10s + rates.dropped.last_10s;
    out - rates.publish.last_10s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rate;

    fn rates(publish: f64, deliver: f64, redeliver: f64) -> QueueRates {
        let r = |x: f64| Rate {
            last_10s: x,
            ..Rate::default()
        };
        QueueRates {
            publish: r(publish),
            deliver: r(deliver),
            redeliver: r(redeliver),
            ..QueueRates::default()
        }
    }

    #[test]
    fn drain_time_is_the_backlog_over_the_net_rate() {
        // 1,000 ready, 30/s out and 20/s in: 100 s.
        assert_eq!(time_to_drain_ms(1000, &rates(20.0, 30.0, 0.0)), Some(100_000));
        assert_eq!(time_to_drain_ms(0, &rates(50.0, 0.0, 0.0)), Some(0), "nothing to drain");
        assert_eq!(
            time_to_drain_ms(10, &rates(30.0, 30.0, 0.0)),
            None,
            "steady: never at this rate"
        );
        assert_eq!(time_to_drain_ms(10, &rates(40.0, 30.0, 0.0)), None, "growing");
        // Redeliveries come back first: 30/s delivered of which 15/s redelivered is 15/s out.
        assert_eq!(time_to_drain_ms(150, &rates(5.0, 30.0, 15.0)), Some(15_000));
        let mut r = rates(0.0, 0.0, 0.0);
        r.expired.last_10s = 2.0;
        assert_eq!(time_to_drain_ms(10, &r), Some(5_000), "expiries drain too");
        assert_eq!(
            time_to_drain_ms(u64::MAX, &rates(0.0, 1e-9, 0.0)),
            None,
            "beyond a year"
        );
    }
}
