//! The operator's settings for the anomaly response ladder (issue 7): which alerts count,
//! how high the ladder may climb, how long each rung holds, and when it resets. The
//! ladder itself (`LadderResponder`) lives in the engine; this is only what a
//! [`crate::WorkloadPolicy`] says about it, so a policy file carries it.

use std::fmt;
use std::str::FromStr;

use presage_core::{Alert, AlertKind, Severity};
use serde::{Deserialize, Serialize};

use crate::policy::PolicyError;

/// One rung of the response ladder, lowest first. The order is the escalation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// Keep the response in the audit trail only.
    #[default]
    Record,
    /// Also POST the alert to the configured webhook.
    Webhook,
    /// Lower the CPU quota.
    Throttle,
    /// Freeze every process of the workload.
    Freeze,
    /// Kill every process of the workload.
    Kill,
}

impl Rung {
    /// Every rung, lowest first.
    pub const ALL: [Rung; 5] = [
        Rung::Record,
        Rung::Webhook,
        Rung::Throttle,
        Rung::Freeze,
        Rung::Kill,
    ];

    /// The rung above this one (the top stays the top).
    pub fn next(self) -> Rung {
        match self {
            Rung::Record => Rung::Webhook,
            Rung::Webhook => Rung::Throttle,
            Rung::Throttle => Rung::Freeze,
            Rung::Freeze | Rung::Kill => Rung::Kill,
        }
    }

    /// The name used in configs, on the command line and in the audit table.
    pub fn as_str(self) -> &'static str {
        match self {
            Rung::Record => "record",
            Rung::Webhook => "webhook",
            Rung::Throttle => "throttle",
            Rung::Freeze => "freeze",
            Rung::Kill => "kill",
        }
    }

    /// 0 for record up to 4 for kill (the audit table's `rung` column).
    pub fn level(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rung {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rung::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown rung {s:?} (expected record, webhook, throttle, freeze or kill)")
            })
    }
}

/// Seconds after an action at each rung before the ladder acts again (climbs, or repeats
/// its top rung).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cooldowns {
    /// After a record.
    pub record: u32,
    /// After a webhook.
    pub webhook: u32,
    /// After a throttle.
    pub throttle: u32,
    /// After a freeze.
    pub freeze: u32,
    /// After a kill.
    pub kill: u32,
}

impl Default for Cooldowns {
    /// Short at the bottom (a record costs nothing, but one stray alert should not page
    /// anyone), longer where the action hurts: a throttle or freeze needs time to show
    /// whether it helped before the next, harsher step.
    fn default() -> Self {
        Cooldowns {
            record: 10,
            webhook: 60,
            throttle: 60,
            freeze: 120,
            kill: 300,
        }
    }
}

impl Cooldowns {
    /// Every rung set to `s` seconds (`presage run --response-cooldown-s`).
    pub fn all(s: u32) -> Cooldowns {
        Cooldowns {
            record: s,
            webhook: s,
            throttle: s,
            freeze: s,
            kill: s,
        }
    }

    /// The cooldown after an action at `rung`, in seconds.
    pub fn after(&self, rung: Rung) -> u32 {
        match rung {
            Rung::Record => self.record,
            Rung::Webhook => self.webhook,
            Rung::Throttle => self.throttle,
            Rung::Freeze => self.freeze,
            Rung::Kill => self.kill,
        }
    }
}

/// How the responder treats one workload's alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponsePolicy {
    /// The highest rung the ladder may reach. Webhook by default: nothing is throttled,
    /// frozen or killed unless the operator opts in. A protected workload stops at
    /// throttle whatever this says.
    pub max_rung: Rung,
    /// The rung the first counted alert (or the first after a reset) acts at. Record by
    /// default, so one stray alert costs nothing; an operator who wants a sustained
    /// anomaly handled at once starts higher (never above `max_rung`).
    pub start_rung: Rung,
    /// Alert kinds that never move the ladder. Every other kind counts, so a new kind of
    /// anomaly alert is acted on without a config change; the defaults are the kinds
    /// that say something about the host or presage, not about the workload misbehaving.
    pub ignore_kinds: Vec<AlertKind>,
    /// Alerts below this severity are left to the audit trail.
    pub min_severity: Severity,
    /// Seconds each rung holds before the next action.
    pub cooldown_s: Cooldowns,
    /// Seconds without a counted alert after which the ladder drops back to the bottom
    /// (and a throttle the ladder set is lifted).
    pub reset_after_s: u32,
    /// The throttle rung sets the CPU quota to this fraction of the workload's current
    /// CPU usage (or of its quota, when lower or when usage is unknown).
    pub throttle_fraction: f64,
}

impl Default for ResponsePolicy {
    fn default() -> Self {
        ResponsePolicy {
            max_rung: Rung::Webhook,
            start_rung: Rung::Record,
            ignore_kinds: vec![
                AlertKind::OomKill,
                AlertKind::CapacityShortfall,
                AlertKind::ActuationFailed,
            ],
            min_severity: Severity::Warning,
            cooldown_s: Cooldowns::default(),
            reset_after_s: 600,
            throttle_fraction: 0.5,
        }
    }
}

impl ResponsePolicy {
    /// Whether `alert` moves the ladder.
    pub fn counts(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity && !self.ignore_kinds.contains(&alert.kind)
    }

    /// The highest rung for a workload that is (or is not) protected: a protected
    /// workload is never frozen or killed, so its ladder tops out at throttle.
    pub fn top(&self, protected: bool) -> Rung {
        if protected {
            self.max_rung.min(Rung::Throttle)
        } else {
            self.max_rung
        }
    }

    /// The rung of the first action on a fresh ladder.
    pub fn first(&self, protected: bool) -> Rung {
        self.start_rung.min(self.top(protected))
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let f = self.throttle_fraction;
        if !(f.is_finite() && f > 0.0 && f < 1.0) {
            return Err(PolicyError {
                field: "response.throttle_fraction".into(),
                value: f.to_string(),
                reason: "must be in (0, 1): a throttle lowers the quota",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use presage_core::{Timestamp, WorkloadId};

    fn alert(kind: AlertKind, severity: Severity) -> Alert {
        Alert {
            workload: WorkloadId::new("w").unwrap(),
            at: Timestamp::from_unix_ms(0),
            kind,
            severity,
            score: 90.0,
            message: String::new(),
        }
    }

    #[test]
    fn default_counts_misbehaviour_not_operations() {
        let p = ResponsePolicy::default();
        for kind in [
            AlertKind::Anomaly,
            AlertKind::MemoryLeak,
            AlertKind::OutsideEnvelope,
        ] {
            assert!(p.counts(&alert(kind, Severity::Warning)), "{kind:?}");
            assert!(!p.counts(&alert(kind, Severity::Info)), "{kind:?} info");
        }
        for kind in [
            AlertKind::OomKill,
            AlertKind::CapacityShortfall,
            AlertKind::ActuationFailed,
        ] {
            assert!(!p.counts(&alert(kind, Severity::Critical)), "{kind:?}");
        }
    }

    #[test]
    fn protected_tops_out_at_throttle() {
        let p = ResponsePolicy {
            max_rung: Rung::Kill,
            ..ResponsePolicy::default()
        };
        assert_eq!(p.top(false), Rung::Kill);
        assert_eq!(p.top(true), Rung::Throttle);
        assert_eq!(ResponsePolicy::default().top(true), Rung::Webhook);
        let eager = ResponsePolicy {
            start_rung: Rung::Kill,
            ..p
        };
        assert_eq!(eager.first(false), Rung::Kill);
        assert_eq!(eager.first(true), Rung::Throttle);
        assert_eq!(ResponsePolicy::default().first(false), Rung::Record);
    }

    #[test]
    fn rungs_parse_and_order() {
        for r in Rung::ALL {
            assert_eq!(r.as_str().parse::<Rung>(), Ok(r));
        }
        assert!("nuke".parse::<Rung>().unwrap_err().contains("nuke"));
        assert!(Rung::Record < Rung::Webhook && Rung::Freeze < Rung::Kill);
        assert_eq!(Rung::Kill.next(), Rung::Kill);
    }

    #[test]
    fn old_policies_parse_and_fields_override() {
        let p: ResponsePolicy =
            serde_json::from_str(r#"{"max_rung":"freeze","cooldown_s":{"throttle":5}}"#).unwrap();
        assert_eq!(p.max_rung, Rung::Freeze);
        assert_eq!(p.cooldown_s.throttle, 5);
        assert_eq!(p.cooldown_s.freeze, Cooldowns::default().freeze);
        assert!(
            serde_json::from_str::<ResponsePolicy>(r#"{"max":"kill"}"#)
                .unwrap_err()
                .to_string()
                .contains("max")
        );
    }

    #[test]
    fn throttle_fraction_is_checked() {
        let p = ResponsePolicy {
            throttle_fraction: 1.5,
            ..ResponsePolicy::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("throttle_fraction")
        );
    }
}
