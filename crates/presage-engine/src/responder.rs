//! The anomaly response ladder (issue 7): record → webhook → throttle → freeze → kill,
//! one rung per counted alert, each rung held for its cooldown, back to the bottom after
//! a quiet spell. Pure logic over alert times: no clock, no I/O, so hand-built alert
//! sequences test it exactly.

use std::collections::HashMap;

use presage_core::{Resource, Timestamp, WorkloadId};
use presage_policy::{MIN_CPU_CORES, ResponsePolicy, Rung};

use crate::{Responder, Response, ResponseInput};

/// Where one workload stands on its ladder.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ladder {
    /// The rung of the last action.
    rung: Rung,
    /// When that action was taken (cooldowns count from here).
    acted_at: Timestamp,
    /// The last counted alert, acted on or not (quiet counts from here).
    last_alert: Timestamp,
}

/// The responder of [`presage_policy::ResponsePolicy`]: each workload climbs its own
/// ladder, as its policy allows.
///
/// - An alert that does not count (its kind ignored, its severity too low) changes
///   nothing and gets no response: the alert itself is already in the audit trail.
/// - The first counted alert (or the first after `reset_after_s` without one) acts at
///   the policy's `start_rung` (record by default).
/// - A later one acts one rung higher than the last action, but only once the last
///   rung's cooldown has passed; within it, the alert gets no response (and keeps the
///   ladder from resetting).
/// - The ladder never goes above the policy's `max_rung`, nor above throttle for a
///   protected workload; at the top it repeats the top rung, once per cooldown.
#[derive(Debug, Default)]
pub struct LadderResponder {
    ladders: HashMap<WorkloadId, Ladder>,
}

impl LadderResponder {
    /// A responder with every ladder at the bottom.
    pub fn new() -> LadderResponder {
        LadderResponder::default()
    }

    /// The rung of `workload`'s last action, while its ladder has not reset as of `now`.
    pub fn rung_of(
        &self,
        workload: &WorkloadId,
        now: Timestamp,
        policy: &ResponsePolicy,
    ) -> Option<Rung> {
        self.ladders
            .get(workload)
            .filter(|l| !quiet_since(l, now, policy))
            .map(|l| l.rung)
    }
}

fn quiet_since(ladder: &Ladder, now: Timestamp, policy: &ResponsePolicy) -> bool {
    now.secs_since(ladder.last_alert) >= f64::from(policy.reset_after_s)
}

impl Responder for LadderResponder {
    fn respond(&mut self, input: &ResponseInput<'_>) -> Vec<Response> {
        let alert = input.alert;
        let policy = &input.policy.response;
        if !policy.counts(alert) {
            return Vec::new();
        }
        let now = alert.at;
        let top = policy.top(input.policy.protected);
        let current = self
            .ladders
            .get(&alert.workload)
            .copied()
            .filter(|l| !quiet_since(l, now, policy));
        let rung = match current {
            None => policy.first(input.policy.protected),
            Some(l) if now.secs_since(l.acted_at) < f64::from(policy.cooldown_s.after(l.rung)) => {
                self.ladders.insert(
                    alert.workload.clone(),
                    Ladder {
                        last_alert: now,
                        ..l
                    },
                );
                return Vec::new();
            }
            Some(l) => l.rung.next(),
        }
        .min(top);
        self.ladders.insert(
            alert.workload.clone(),
            Ladder {
                rung,
                acted_at: now,
                last_alert: now,
            },
        );
        vec![match rung {
            Rung::Record => Response::Record,
            Rung::Webhook => Response::Webhook,
            Rung::Throttle => Response::Throttle {
                cpu_cores: throttle_target(input),
            },
            Rung::Freeze => Response::Freeze,
            Rung::Kill => Response::Kill,
        }]
    }

    fn forget(&mut self, workload: &WorkloadId) {
        self.ladders.remove(workload);
    }
}

/// The quota the throttle rung sets: a fraction of what the workload uses now, or of its
/// quota when that is lower (a workload already held at its quota uses about the quota).
/// With neither known the base is one core — the unit of CPU — so the rung still bites.
fn throttle_target(input: &ResponseInput<'_>) -> f64 {
    let usage = input.usage.get(Resource::Cpu).filter(|u| *u > 0.0);
    let quota = input.limits.cpu_quota_cores();
    let base = match (usage, quota) {
        (Some(u), Some(q)) => u.min(q),
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => 1.0,
    };
    (base * input.policy.response.throttle_fraction).max(MIN_CPU_CORES)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use presage_core::{Alert, AlertKind, Limits, Severity, Usage};
    use presage_policy::{Cooldowns, WorkloadPolicy};

    use super::*;

    fn id(name: &str) -> WorkloadId {
        WorkloadId::new(name).unwrap()
    }

    fn alert_at(w: &str, s: i64, kind: AlertKind) -> Alert {
        Alert {
            workload: id(w),
            at: Timestamp::from_unix_ms(1_700_000_000_000 + s * 1000),
            kind,
            severity: Severity::Warning,
            score: 95.0,
            message: "test".into(),
        }
    }

    /// A policy that may climb to `top`, 10 s cooldown at every rung, reset after 100 s.
    fn policy(top: Rung) -> WorkloadPolicy {
        WorkloadPolicy {
            response: ResponsePolicy {
                max_rung: top,
                cooldown_s: Cooldowns::all(10),
                reset_after_s: 100,
                ..ResponsePolicy::default()
            },
            ..WorkloadPolicy::default()
        }
    }

    struct Bench {
        ladder: LadderResponder,
        limits: Limits,
        usage: Usage,
    }

    impl Bench {
        fn new() -> Bench {
            Bench {
                ladder: LadderResponder::new(),
                limits: Limits::unlimited().with_hard(Resource::Cpu, 2.0).unwrap(),
                usage: Usage::default().with(Resource::Cpu, 1.6).unwrap(),
            }
        }

        fn at(&mut self, s: i64, policy: &WorkloadPolicy) -> Vec<Response> {
            self.alert(&alert_at("w", s, AlertKind::Anomaly), policy)
        }

        fn alert(&mut self, alert: &Alert, policy: &WorkloadPolicy) -> Vec<Response> {
            self.ladder.respond(&ResponseInput {
                alert,
                policy,
                limits: &self.limits,
                usage: &self.usage,
                behavior_score: 80.0,
            })
        }
    }

    fn rungs(out: &[Response]) -> Vec<Rung> {
        out.iter().map(Response::rung).collect()
    }

    #[test]
    fn climbs_one_rung_per_alert_after_each_cooldown() {
        let p = policy(Rung::Kill);
        let mut b = Bench::new();
        let mut seen = Vec::new();
        for s in [0, 10, 20, 30, 40] {
            seen.extend(rungs(&b.at(s, &p)));
        }
        assert_eq!(seen, Rung::ALL.to_vec());
        // At the top it repeats the top rung once per cooldown.
        assert_eq!(rungs(&b.at(50, &p)), vec![Rung::Kill]);
    }

    #[test]
    fn cooldown_holds_the_rung() {
        let p = policy(Rung::Kill);
        let mut b = Bench::new();
        assert_eq!(rungs(&b.at(0, &p)), vec![Rung::Record]);
        assert_eq!(rungs(&b.at(10, &p)), vec![Rung::Webhook]);
        // 1 s, 5 s and 9.999 s after the webhook: still cooling down.
        for s in [11, 15, 19] {
            assert!(
                b.at(s, &p).is_empty(),
                "alert at {s} s acted within the cooldown"
            );
        }
        assert_eq!(rungs(&b.at(20, &p)), vec![Rung::Throttle]);
    }

    #[test]
    fn each_rung_has_its_own_cooldown() {
        let mut p = policy(Rung::Freeze);
        p.response.cooldown_s = Cooldowns {
            record: 0,
            webhook: 5,
            throttle: 60,
            freeze: 10,
            kill: 10,
        };
        let mut b = Bench::new();
        assert_eq!(rungs(&b.at(0, &p)), vec![Rung::Record]);
        assert_eq!(rungs(&b.at(1, &p)), vec![Rung::Webhook]);
        assert!(b.at(5, &p).is_empty());
        assert_eq!(rungs(&b.at(6, &p)), vec![Rung::Throttle]);
        assert!(b.at(65, &p).is_empty(), "throttle holds for 60 s");
        assert_eq!(rungs(&b.at(66, &p)), vec![Rung::Freeze]);
    }

    #[test]
    fn quiet_resets_to_the_bottom_but_alerts_in_cooldown_keep_it_up() {
        let p = policy(Rung::Kill);
        let mut b = Bench::new();
        b.at(0, &p);
        b.at(10, &p);
        assert_eq!(rungs(&b.at(20, &p)), vec![Rung::Throttle]);
        // Alerts held by the cooldown still count as "not quiet"…
        b.at(25, &p);
        assert_eq!(rungs(&b.at(124, &p)), vec![Rung::Freeze], "99 s after 25 s");
        // …and 100 s without any alert drops the ladder to the bottom.
        assert_eq!(
            b.ladder.rung_of(
                &id("w"),
                Timestamp::from_unix_ms(1_700_000_224_000),
                &p.response
            ),
            None
        );
        assert_eq!(rungs(&b.at(224, &p)), vec![Rung::Record]);
        assert_eq!(rungs(&b.at(234, &p)), vec![Rung::Webhook]);
    }

    #[test]
    fn max_rung_caps_the_ladder_and_default_stops_at_webhook() {
        let p = policy(Rung::Throttle);
        let mut b = Bench::new();
        let mut seen = Vec::new();
        for s in (0..80).step_by(10) {
            seen.extend(rungs(&b.at(s, &p)));
        }
        assert_eq!(
            seen,
            [
                Rung::Record,
                Rung::Webhook,
                Rung::Throttle,
                Rung::Throttle,
                Rung::Throttle,
                Rung::Throttle,
                Rung::Throttle,
                Rung::Throttle
            ]
        );
        let default = WorkloadPolicy::default();
        let mut b = Bench::new();
        let mut top = Rung::Record;
        for s in (0..3600).step_by(30) {
            for r in rungs(&b.at(s, &default)) {
                top = top.max(r);
            }
        }
        assert_eq!(
            top,
            Rung::Webhook,
            "no throttle, freeze or kill unless opted in"
        );
    }

    #[test]
    fn protected_workloads_stop_at_throttle() {
        let mut p = policy(Rung::Kill);
        p.protected = true;
        let mut b = Bench::new();
        let mut seen = Vec::new();
        for s in (0..100).step_by(10) {
            seen.extend(rungs(&b.at(s, &p)));
        }
        assert_eq!(seen.iter().max(), Some(&Rung::Throttle));
        assert!(!seen.contains(&Rung::Freeze) && !seen.contains(&Rung::Kill));
    }

    #[test]
    fn ignored_kinds_and_low_severities_do_not_move_the_ladder() {
        let p = policy(Rung::Kill);
        let mut b = Bench::new();
        for (s, kind) in [
            (0, AlertKind::OomKill),
            (10, AlertKind::CapacityShortfall),
            (20, AlertKind::ActuationFailed),
        ] {
            assert!(b.alert(&alert_at("w", s, kind), &p).is_empty(), "{kind:?}");
        }
        let mut info = alert_at("w", 30, AlertKind::Anomaly);
        info.severity = Severity::Info;
        assert!(b.alert(&info, &p).is_empty());
        // The first counted alert still starts at the bottom.
        let leak = alert_at("w", 40, AlertKind::MemoryLeak);
        assert_eq!(rungs(&b.alert(&leak, &p)), vec![Rung::Record]);
        let envelope = alert_at("w", 50, AlertKind::OutsideEnvelope);
        assert_eq!(rungs(&b.alert(&envelope, &p)), vec![Rung::Webhook]);
    }

    #[test]
    fn workloads_climb_their_own_ladders_and_forget_resets_one() {
        let p = policy(Rung::Kill);
        let mut b = Bench::new();
        b.at(0, &p);
        b.at(10, &p);
        let other = alert_at("v", 12, AlertKind::Anomaly);
        assert_eq!(rungs(&b.alert(&other, &p)), vec![Rung::Record]);
        assert_eq!(rungs(&b.at(20, &p)), vec![Rung::Throttle]);
        b.ladder.forget(&id("w"));
        assert_eq!(rungs(&b.at(21, &p)), vec![Rung::Record]);
    }

    #[test]
    fn a_higher_start_rung_acts_at_once_and_resets_to_it() {
        let mut p = policy(Rung::Kill);
        p.response.start_rung = Rung::Freeze;
        let mut b = Bench::new();
        assert_eq!(rungs(&b.at(0, &p)), vec![Rung::Freeze]);
        assert_eq!(rungs(&b.at(10, &p)), vec![Rung::Kill]);
        assert_eq!(rungs(&b.at(500, &p)), vec![Rung::Freeze], "after a reset");
        p.protected = true;
        b.ladder.forget(&id("w"));
        assert_eq!(rungs(&b.at(600, &p)), vec![Rung::Throttle]);
    }

    #[test]
    fn throttle_takes_a_fraction_of_usage_or_quota() {
        let mut p = policy(Rung::Throttle);
        p.response.throttle_fraction = 0.25;
        let mut b = Bench::new();
        b.at(0, &p);
        b.at(10, &p);
        // Usage 1.6 under a 2-core quota: a quarter of the usage.
        assert_eq!(b.at(20, &p), vec![Response::Throttle { cpu_cores: 0.4 }]);
        // Usage at the quota of 1 core (held there already): a quarter of the quota.
        b.limits = Limits::unlimited().with_hard(Resource::Cpu, 1.0).unwrap();
        b.usage = Usage::default().with(Resource::Cpu, 1.2).unwrap();
        assert_eq!(b.at(30, &p), vec![Response::Throttle { cpu_cores: 0.25 }]);
        // Idle and unlimited: a quarter of one core, never below the kernel's minimum.
        b.limits = Limits::unlimited();
        b.usage = Usage::default();
        assert_eq!(b.at(40, &p), vec![Response::Throttle { cpu_cores: 0.25 }]);
        p.response.throttle_fraction = 0.001;
        assert_eq!(
            b.at(50, &p),
            vec![Response::Throttle {
                cpu_cores: MIN_CPU_CORES
            }]
        );
    }
}
