use serde::{Deserialize, Serialize};

use crate::{CoreError, Resource, ResourceMap, Timestamp, WorkloadId, check_quantity};

/// What a workload consumed over one interval, per resource, in each resource's unit
/// (see [`Resource::unit`]). A resource that was not measured is absent, never zero.
//
// Stored as plain floats with NaN for "absent" (validated values are never NaN): half the
// size of `Option<f64>`s, and a sample is copied a few times per tick on the replay path.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(
    try_from = "ResourceMap<Option<f64>>",
    into = "ResourceMap<Option<f64>>"
)]
pub struct Usage([f64; Resource::COUNT]);

impl PartialEq for Usage {
    fn eq(&self, other: &Self) -> bool {
        // Bitwise: "absent" is always the same NaN, and `set` turns −0 into +0.
        self.0.map(f64::to_bits) == other.0.map(f64::to_bits)
    }
}

impl Default for Usage {
    fn default() -> Self {
        Usage::empty()
    }
}

impl Usage {
    /// Nothing measured yet.
    pub fn empty() -> Self {
        Usage([f64::NAN; Resource::COUNT])
    }

    /// Records `value` for `resource`; NaN, infinite and negative values are rejected.
    pub fn set(&mut self, resource: Resource, value: f64) -> Result<(), CoreError> {
        // `+ 0.0` turns −0 into +0, so equal values compare equal bitwise.
        self.0[resource.index()] = check_quantity(resource.name(), value)? + 0.0;
        Ok(())
    }

    /// Builder form of [`Usage::set`].
    pub fn with(mut self, resource: Resource, value: f64) -> Result<Self, CoreError> {
        self.set(resource, value)?;
        Ok(self)
    }

    /// Forgets the value for `resource`.
    pub fn clear(&mut self, resource: Resource) {
        self.0[resource.index()] = f64::NAN;
    }

    /// The measured value, if any.
    pub fn get(&self, resource: Resource) -> Option<f64> {
        let v = self.0[resource.index()];
        (!v.is_nan()).then_some(v)
    }

    /// CPU in cores.
    pub fn cpu_cores(&self) -> Option<f64> {
        self.get(Resource::Cpu)
    }

    /// Memory working set in bytes.
    pub fn memory_bytes(&self) -> Option<f64> {
        self.get(Resource::Memory)
    }

    /// The measured resources and their values.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, f64)> + '_ {
        Resource::ALL
            .into_iter()
            .zip(self.0)
            .filter(|(_, v)| !v.is_nan())
    }
}

impl TryFrom<ResourceMap<Option<f64>>> for Usage {
    type Error = CoreError;
    fn try_from(map: ResourceMap<Option<f64>>) -> Result<Self, Self::Error> {
        let mut usage = Usage::empty();
        for (resource, value) in map.present() {
            usage.set(resource, *value)?;
        }
        Ok(usage)
    }
}

impl From<Usage> for ResourceMap<Option<f64>> {
    fn from(u: Usage) -> Self {
        ResourceMap::from_fn(|r| u.get(r))
    }
}

/// Pressure-stall information for one resource over the sample's interval: the fraction
/// of wall time (0–1) in which some / all non-idle tasks were stalled on it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawStall", into = "RawStall")]
pub struct PressureStall {
    // Fractions in [0, 1]: single precision is ample and keeps samples small.
    some: f32,
    full: f32,
}

#[derive(Serialize, Deserialize)]
struct RawStall {
    some: f64,
    #[serde(default)]
    full: f64,
}

impl From<PressureStall> for RawStall {
    fn from(p: PressureStall) -> Self {
        RawStall {
            some: p.some(),
            full: p.full(),
        }
    }
}

impl TryFrom<RawStall> for PressureStall {
    type Error = CoreError;
    fn try_from(raw: RawStall) -> Result<Self, Self::Error> {
        PressureStall::new(raw.some, raw.full)
    }
}

impl PressureStall {
    /// A stall reading; both fractions must be in [0, 1] and `full` ≤ `some`.
    pub fn new(some: f64, full: f64) -> Result<Self, CoreError> {
        for (what, v) in [("pressure some", some), ("pressure full", full)] {
            check_quantity(what, v)?;
            if v > 1.0 {
                return Err(CoreError::OutOfRange {
                    what,
                    range: "[0, 1]",
                    value: v,
                });
            }
        }
        if full > some {
            return Err(CoreError::Inconsistent(format!(
                "pressure full {full} exceeds some {some}"
            )));
        }
        Ok(PressureStall {
            some: some as f32,
            full: full as f32,
        })
    }

    /// Fraction of time some tasks stalled.
    pub fn some(&self) -> f64 {
        f64::from(self.some)
    }

    /// Fraction of time all non-idle tasks stalled.
    pub fn full(&self) -> f64 {
        f64::from(self.full)
    }
}

/// PSI for the three resources the kernel reports it for.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pressure {
    /// CPU pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<PressureStall>,
    /// Memory pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<PressureStall>,
    /// I/O pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<PressureStall>,
}

/// Things that happened to the workload during the interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Events {
    /// Processes killed by the OOM killer inside the workload.
    #[serde(default)]
    pub oom_kills: u32,
    /// CFS periods in which the workload was throttled.
    #[serde(default)]
    pub cpu_throttled_periods: u64,
    /// Time the workload spent throttled, in seconds.
    #[serde(default)]
    pub cpu_throttled_s: f64,
    /// Number of processes in the workload at the end of the interval, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
}

impl Events {
    /// Whether anything that signals starvation happened (an OOM kill or throttling).
    pub fn starved(&self) -> bool {
        self.oom_kills > 0 || self.cpu_throttled_periods > 0 || self.cpu_throttled_s > 0.0
    }
}

/// One observation of one workload over one interval ending at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSample")]
pub struct Sample {
    at: Timestamp,
    workload: WorkloadId,
    interval_ms: u32,
    usage: Usage,
    #[serde(default)]
    pressure: Pressure,
    #[serde(default)]
    events: Events,
}

#[derive(Deserialize)]
struct RawSample {
    at: Timestamp,
    workload: WorkloadId,
    interval_ms: u32,
    usage: Usage,
    #[serde(default)]
    pressure: Pressure,
    #[serde(default)]
    events: Events,
}

impl TryFrom<RawSample> for Sample {
    type Error = CoreError;
    fn try_from(r: RawSample) -> Result<Self, Self::Error> {
        Sample::new(r.at, r.workload, r.interval_ms, r.usage)?
            .with_pressure(r.pressure)
            .with_events(r.events)
    }
}

impl Sample {
    /// A sample of `usage` over the `interval_ms` milliseconds ending at `at`.
    /// The interval is explicit, never assumed, and must be positive.
    pub fn new(
        at: Timestamp,
        workload: WorkloadId,
        interval_ms: u32,
        usage: Usage,
    ) -> Result<Self, CoreError> {
        if interval_ms == 0 {
            return Err(CoreError::OutOfRange {
                what: "sample interval_ms",
                range: "[1, 2^32)",
                value: 0.0,
            });
        }
        Ok(Sample {
            at,
            workload,
            interval_ms,
            usage,
            pressure: Pressure::default(),
            events: Events::default(),
        })
    }

    /// Attaches PSI readings.
    pub fn with_pressure(mut self, pressure: Pressure) -> Self {
        self.pressure = pressure;
        self
    }

    /// Attaches events; a negative or non-finite throttled time is rejected.
    pub fn with_events(mut self, events: Events) -> Result<Self, CoreError> {
        self.set_events(events)?;
        Ok(self)
    }

    /// In-place form of [`Sample::with_events`].
    pub fn set_events(&mut self, events: Events) -> Result<(), CoreError> {
        check_quantity("events cpu_throttled_s", events.cpu_throttled_s)?;
        self.events = events;
        Ok(())
    }

    /// End of the interval.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// The workload instance.
    pub fn workload(&self) -> &WorkloadId {
        &self.workload
    }

    /// Length of the interval in milliseconds.
    pub fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    /// What was consumed.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// PSI readings.
    pub fn pressure(&self) -> &Pressure {
        &self.pressure
    }

    /// Events in the interval.
    pub fn events(&self) -> &Events {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> WorkloadId {
        WorkloadId::new("vm-1").expect("valid id")
    }

    #[test]
    fn usage_rejects_negative_and_nan() {
        let mut u = Usage::empty();
        assert!(matches!(
            u.set(Resource::Cpu, -0.1),
            Err(CoreError::Negative { what: "cpu", .. })
        ));
        assert!(matches!(
            u.set(Resource::Memory, f64::NAN),
            Err(CoreError::NotFinite { what: "memory", .. })
        ));
        assert!(matches!(
            u.set(Resource::NetRx, f64::INFINITY),
            Err(CoreError::NotFinite { .. })
        ));
        assert_eq!(u, Usage::empty(), "a rejected value leaves no trace");
        assert!(serde_json::from_str::<Usage>(r#"{"cpu":-1}"#).is_err());
    }

    #[test]
    fn sample_rejects_zero_interval_and_bad_events() -> Result<(), CoreError> {
        let usage = Usage::empty().with(Resource::Cpu, 0.5)?;
        assert!(matches!(
            Sample::new(Timestamp::from_unix_secs(1), id(), 0, usage),
            Err(CoreError::OutOfRange { .. })
        ));
        let s = Sample::new(Timestamp::from_unix_secs(1), id(), 1000, usage)?;
        let bad = Events {
            cpu_throttled_s: -1.0,
            ..Events::default()
        };
        assert!(matches!(
            s.with_events(bad),
            Err(CoreError::Negative { .. })
        ));
        Ok(())
    }

    #[test]
    fn pressure_must_be_a_fraction_with_full_below_some() {
        assert!(PressureStall::new(0.2, 0.1).is_ok());
        assert!(matches!(
            PressureStall::new(1.5, 0.0),
            Err(CoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            PressureStall::new(0.1, 0.2),
            Err(CoreError::Inconsistent(_))
        ));
        assert!(matches!(
            PressureStall::new(-0.1, 0.0),
            Err(CoreError::Negative { .. })
        ));
    }

    #[test]
    fn sample_json_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let usage = Usage::empty()
            .with(Resource::Cpu, 1.5)?
            .with(Resource::Memory, 1e9)?;
        let s = Sample::new(Timestamp::from_unix_secs(60), id(), 60_000, usage)?
            .with_pressure(Pressure {
                cpu: Some(PressureStall::new(0.1, 0.0)?),
                ..Pressure::default()
            })
            .with_events(Events {
                oom_kills: 1,
                ..Events::default()
            })?;
        let json = serde_json::to_string(&s)?;
        assert_eq!(serde_json::from_str::<Sample>(&json)?, s);
        Ok(())
    }
}
