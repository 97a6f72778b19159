//! An alert rule: which queues it watches (a vhost and a name pattern, like a policy), the one condition it checks,
//! how long the condition must hold before the alert fires (`for`, as in Prometheus), and a severity.
//!
//! Invariants: a rule that passed [`Rule::validate`] has a pattern that compiles, a non-empty name and a finite,
//! non-negative threshold; serde names follow the admin API (`kebab-case` conditions, `for_s` in seconds).

use serde::{Deserialize, Serialize};

/// What a rule checks on each queue it watches, once per metrics tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Condition {
    /// Ready messages (with `unacked`: ready plus unacked) above `above`.
    Depth {
        above: f64,
        #[serde(default)]
        unacked: bool,
    },
    /// The head message has waited longer than `above_s` seconds.
    TimeBehind { above_s: f64 },
    /// At the current rates the backlog takes longer than `above_s` seconds to drain (or never drains).
    TimeToDrain { above_s: f64 },
    /// No consumer at all (the `for` duration says for how long).
    NoConsumers,
    /// Consumer utilisation below `below` (0 to 1), while there are consumers.
    UtilisationBelow { below: f64 },
    /// A per-second rate above `above`.
    RateAbove { rate: RateKind, above: f64 },
    /// The broker's memory or disk alarm is on.
    Alarm { resource: AlarmKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateKind {
    Reject,
    DeadLetter,
    Redelivery,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    Memory,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One rule, as the admin API and the definitions hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub vhost: String,
    /// A regular expression on queue names, as a policy's pattern.
    pub pattern: String,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (seconds; 0: at once).
    #[serde(default)]
    pub for_s: u64,
    pub severity: Severity,
    /// A disabled rule is kept but never evaluated (the sample config ships its defaults so).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("an alert rule needs a name")]
    NoName,
    #[error("alert rule '{0}': invalid pattern: {1}")]
    Pattern(String, String),
    #[error("alert rule '{0}': the threshold must be a finite number of at least 0")]
    Threshold(String),
    #[error("alert rule '{0}': utilisation is between 0 and 1")]
    Utilisation(String),
}

impl Condition {
    /// Whether `value` (what [`Condition`] measures, in its unit) breaks the condition.
    pub fn holds(&self, value: f64) -> bool {
        match self {
            Condition::Depth { above, .. } => value > *above,
            Condition::TimeBehind { above_s } | Condition::TimeToDrain { above_s } => value > *above_s,
            // The value is the number of consumers, or whether the alarm is on (1) or off (0).
            Condition::NoConsumers => value == 0.0,
            Condition::Alarm { .. } => value >= 1.0,
            Condition::UtilisationBelow { below } => value < *below,
            Condition::RateAbove { above, .. } => value > *above,
        }
    }

    fn threshold(&self) -> Option<f64> {
        match self {
            Condition::Depth { above, .. } | Condition::RateAbove { above, .. } => Some(*above),
            Condition::TimeBehind { above_s } | Condition::TimeToDrain { above_s } => Some(*above_s),
            Condition::UtilisationBelow { below } => Some(*below),
            Condition::NoConsumers | Condition::Alarm { .. } => None,
        }
    }
}

impl Rule {
    /// Checks what serde cannot: the name, the pattern, the threshold.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.name.trim().is_empty() {
            return Err(RuleError::NoName);
        }
        regex::Regex::new(&self.pattern).map_err(|e| RuleError::Pattern(self.name.clone(), e.to_string()))?;
        if let Some(t) = self.condition.threshold() {
            if !t.is_finite() || t < 0.0 {
                return Err(RuleError::Threshold(self.name.clone()));
            }
        }
        if let Condition::UtilisationBelow { below } = self.condition {
            if below > 1.0 {
                return Err(RuleError::Utilisation(self.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(condition: Condition) -> Rule {
        Rule {
            name: "dlq-growing".into(),
            vhost: "/".into(),
            pattern: "^dlq\\.".into(),
            condition,
            for_s: 300,
            severity: Severity::Warning,
            enabled: true,
        }
    }

    #[test]
    fn rules_read_from_the_apis_json_and_are_validated() {
        let r: Rule = serde_json::from_value(serde_json::json!({
            "name": "no-consumers", "vhost": "/", "pattern": ".*",
            "condition": {"kind": "no-consumers"}, "for_s": 300, "severity": "critical"
        }))
        .expect("parses");
        assert_eq!((r.condition.clone(), r.enabled), (Condition::NoConsumers, true));
        assert_eq!(r.validate(), Ok(()));
        let back: Rule = serde_json::from_value(serde_json::to_value(&r).expect("serialises")).expect("parses");
        assert_eq!(back, r);
        let rate: Condition =
            serde_json::from_value(serde_json::json!({"kind": "rate-above", "rate": "dead-letter", "above": 5.0}))
                .expect("parses");
        assert_eq!(
            rate,
            Condition::RateAbove {
                rate: RateKind::DeadLetter,
                above: 5.0
            }
        );

        assert_eq!(
            rule(Condition::Depth {
                above: -1.0,
                unacked: false
            })
            .validate(),
            Err(RuleError::Threshold("dlq-growing".into()))
        );
        assert_eq!(
            rule(Condition::TimeBehind { above_s: f64::NAN }).validate(),
            Err(RuleError::Threshold("dlq-growing".into()))
        );
        assert_eq!(
            rule(Condition::UtilisationBelow { below: 2.0 }).validate(),
            Err(RuleError::Utilisation("dlq-growing".into()))
        );
        let bad = Rule {
            pattern: "(".into(),
            ..rule(Condition::NoConsumers)
        };
        assert!(matches!(bad.validate(), Err(RuleError::Pattern(..))));
        let unnamed = Rule {
            name: " ".into(),
            ..rule(Condition::NoConsumers)
        };
        assert_eq!(unnamed.validate(), Err(RuleError::NoName));
    }

    #[test]
    fn each_condition_says_when_a_value_breaks_it() {
        assert!(Condition::Depth {
            above: 10.0,
            unacked: false
        }
        .holds(11.0));
        assert!(!Condition::Depth {
            above: 10.0,
            unacked: false
        }
        .holds(10.0));
        assert!(
            Condition::TimeToDrain { above_s: 3600.0 }.holds(f64::INFINITY),
            "never drains"
        );
        assert!(Condition::NoConsumers.holds(0.0));
        assert!(!Condition::NoConsumers.holds(2.0));
        assert!(Condition::UtilisationBelow { below: 0.5 }.holds(0.2));
        assert!(Condition::Alarm {
            resource: AlarmKind::Disk
        }
        .holds(1.0));
        assert!(!Condition::RateAbove {
            rate: RateKind::Reject,
            above: 1.0
        }
        .holds(0.5));
    }
}
