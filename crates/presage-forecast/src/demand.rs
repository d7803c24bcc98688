//! What a workload *wanted*, from what a host showed.
//!
//! Usage above a limit is never seen: CPU shows at the quota (with the throttled time as an
//! event) and memory at the hard limit (with an OOM kill). A model that learns from the
//! capped values learns that demand never exceeds the limit, and under-forecasts exactly
//! where it matters. Every model learns from [`observed_demand`] instead.

use presage_core::{Resource, Sample};

/// After an OOM kill, memory demand is taken as at least this multiple of what was seen
/// (VPA's ratio): the kill says demand was higher, not by how much.
pub const OOM_DEMAND_RATIO: f64 = 1.2;

/// The demand of `resource` in `sample`, de-censored where the sample says it was capped:
/// throttled CPU is scaled up by the throttled share of the interval (usage ran only
/// while not throttled), an OOM-killed workload's memory by [`OOM_DEMAND_RATIO`].
pub fn observed_demand(sample: &Sample, resource: Resource) -> Option<f64> {
    let used = sample.usage().get(resource)?;
    let events = sample.events();
    match resource {
        Resource::Cpu if events.cpu_throttled_s > 0.0 => {
            let interval_s = f64::from(sample.interval_ms()) / 1000.0;
            let running = (1.0 - events.cpu_throttled_s / interval_s).clamp(0.05, 1.0);
            Some(used / running)
        }
        Resource::Memory if events.oom_kills > 0 => Some(used * OOM_DEMAND_RATIO),
        _ => Some(used),
    }
}

#[cfg(test)]
mod tests {
    use presage_core::{Events, Timestamp, Usage, WorkloadId};

    use super::*;

    fn sample(cpu: f64, mem: f64, events: Events) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .and_then(|u| u.with(Resource::Memory, mem))
            .expect("usage");
        Sample::new(
            Timestamp::from_unix_secs(300),
            WorkloadId::new("w").expect("id"),
            300_000,
            usage,
        )
        .and_then(|s| s.with_events(events))
        .expect("sample")
    }

    #[test]
    fn capped_usage_is_scaled_back_to_demand() {
        // 4 cores shown, throttled 100 s of 300: it ran 2/3 of the time, so it wanted 6.
        let s = sample(
            4.0,
            1e9,
            Events {
                cpu_throttled_s: 100.0,
                cpu_throttled_periods: 1000,
                oom_kills: 1,
                ..Events::default()
            },
        );
        assert!((observed_demand(&s, Resource::Cpu).unwrap_or(0.0) - 6.0).abs() < 1e-9);
        assert_eq!(observed_demand(&s, Resource::Memory), Some(1.2e9));
        let calm = sample(4.0, 1e9, Events::default());
        assert_eq!(observed_demand(&calm, Resource::Cpu), Some(4.0));
        assert_eq!(observed_demand(&calm, Resource::IoRead), None);
    }
}
