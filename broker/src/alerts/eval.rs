//! The alert state machine, as Prometheus's: each (rule, queue) pair is inactive, pending (the condition holds, for
//! less than the rule's `for`), or firing; a firing alert whose condition stops holding resolves (and is inactive
//! again). [`step`] takes one tick's measured value and the time, and says what changed, if anything.
//!
//! Invariants: pure (no I/O, no clock: `now_ms` is the caller's); a transition is returned only when the state
//! changed, so a notifier sees each firing and each resolution once; `since_ms` is when the current state began,
//! and a pending alert fires at the first tick at or after `since_ms + for`. A tick without a value (the queue has
//! no figure for it yet, e.g. no rate before two samples) leaves the state as it is.

use serde::{Deserialize, Serialize};

use super::rule::Rule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// What one (rule, queue) pair is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub phase: Phase,
    /// When the current phase began (unix ms).
    pub since_ms: u64,
    /// The value at the last tick that had one.
    pub value: Option<f64>,
}

impl AlertState {
    pub fn new(now_ms: u64) -> Self {
        AlertState {
            phase: Phase::Inactive,
            since_ms: now_ms,
            value: None,
        }
    }
}

/// A change worth recording (and, for `Fired` and `Resolved`, notifying).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Transition {
    /// The condition began to hold; the alert fires if it still holds after the rule's `for`.
    Pending { value: f64, at_ms: u64 },
    /// The condition held for the rule's `for`.
    Fired { value: f64, at_ms: u64 },
    /// A firing alert's condition stopped holding.
    Resolved { value: f64, at_ms: u64 },
    /// A pending alert's condition stopped holding before it fired.
    Cleared { value: f64, at_ms: u64 },
}

/// One tick for one (rule, queue): updates `state` and returns the transition, if the phase changed.
pub fn step(rule: &Rule, state: &mut AlertState, value: Option<f64>, now_ms: u64) -> Option<Transition> {
    let value = value?;
    state.value = Some(value);
    let holds = rule.condition.holds(value);
    let for_ms = rule.for_s.saturating_mul(1000);
    let (phase, transition) = match (state.phase, holds) {
        (Phase::Inactive, true) if for_ms == 0 => (Phase::Firing, Transition::Fired { value, at_ms: now_ms }),
        (Phase::Inactive, true) => (Phase::Pending, Transition::Pending { value, at_ms: now_ms }),
        (Phase::Pending, true) if now_ms >= state.since_ms.saturating_add(for_ms) => {
            (Phase::Firing, Transition::Fired { value, at_ms: now_ms })
        }
        (Phase::Pending, false) => (Phase::Inactive, Transition::Cleared { value, at_ms: now_ms }),
        (Phase::Firing, false) => (Phase::Inactive, Transition::Resolved { value, at_ms: now_ms }),
        _ => return None,
    };
    state.phase = phase;
    state.since_ms = now_ms;
    Some(transition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{Condition, Severity};

    fn rule(for_s: u64) -> Rule {
        Rule {
            name: "deep".into(),
            vhost: "/".into(),
            pattern: ".*".into(),
            condition: Condition::Depth {
                above: 100.0,
                unacked: false,
            },
            for_s,
            severity: Severity::Warning,
            enabled: true,
        }
    }

    /// Feeds one value per second from t = 0; returns each transition with the second it came at.
    fn run(rule: &Rule, values: &[Option<f64>]) -> Vec<(u64, Transition)> {
        let mut state = AlertState::new(0);
        values
            .iter()
            .enumerate()
            .filter_map(|(s, v)| step(rule, &mut state, *v, s as u64 * 1000).map(|t| (s as u64, t)))
            .collect()
    }

    #[test]
    fn an_alert_fires_only_after_its_condition_held_for_its_for_duration_and_resolves_once() {
        let r = rule(3);
        let v = |x: f64| Some(x);
        let got = run(
            &r,
            &[
                v(50.0),
                v(150.0),
                v(160.0),
                v(170.0),
                v(180.0),
                v(190.0),
                v(20.0),
                v(10.0),
            ],
        );
        assert_eq!(
            got,
            vec![
                (
                    1,
                    Transition::Pending {
                        value: 150.0,
                        at_ms: 1000
                    }
                ),
                (
                    4,
                    Transition::Fired {
                        value: 180.0,
                        at_ms: 4000
                    }
                ),
                (
                    6,
                    Transition::Resolved {
                        value: 20.0,
                        at_ms: 6000
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_blip_shorter_than_for_clears_without_firing_and_the_clock_starts_again() {
        let r = rule(3);
        let v = |x: f64| Some(x);
        let got = run(
            &r,
            &[v(150.0), v(150.0), v(50.0), v(150.0), v(150.0), v(150.0), v(150.0)],
        );
        assert_eq!(
            got,
            vec![
                (0, Transition::Pending { value: 150.0, at_ms: 0 }),
                (
                    2,
                    Transition::Cleared {
                        value: 50.0,
                        at_ms: 2000
                    }
                ),
                (
                    3,
                    Transition::Pending {
                        value: 150.0,
                        at_ms: 3000
                    }
                ),
                (
                    6,
                    Transition::Fired {
                        value: 150.0,
                        at_ms: 6000
                    }
                ),
            ]
        );
    }

    #[test]
    fn without_a_for_it_fires_at_once_and_ticks_without_a_value_change_nothing() {
        let r = rule(0);
        let got = run(&r, &[None, Some(200.0), None, None, Some(200.0), Some(0.0)]);
        assert_eq!(
            got,
            vec![
                (
                    1,
                    Transition::Fired {
                        value: 200.0,
                        at_ms: 1000
                    }
                ),
                (
                    5,
                    Transition::Resolved {
                        value: 0.0,
                        at_ms: 5000
                    }
                ),
            ]
        );
        // A pending alert's time runs on across ticks without a value.
        let r = rule(2);
        let got = run(&r, &[Some(200.0), None, None, Some(200.0)]);
        assert_eq!(
            got.last(),
            Some(&(
                3,
                Transition::Fired {
                    value: 200.0,
                    at_ms: 3000
                }
            ))
        );
    }
}
