use serde::{Deserialize, Serialize};

use crate::{CoreError, Resource, ResourceMap, check_quantity};

/// The limits a workload runs under. Every limit is optional: absent means "not limited
/// by presage" (the kernel's `max`).
///
/// Each resource has one *hard* limit, the one usage is judged against: the CPU quota in
/// cores (`cpu.max`), the memory hard limit in bytes (`memory.max`, exceeding it is an
/// OOM kill), and bytes/s ceilings for I/O and network. Besides those: the CPU weight
/// (`cpu.weight`, 1–10000, a share under contention) and the memory soft limit
/// (`memory.high`, above which the kernel reclaims and throttles), which must not exceed
/// the hard limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "RawLimits", into = "RawLimits")]
pub struct Limits {
    // NaN means "no limit" (validated limits are positive and finite): half the size of
    // `Option<f64>`s on a type copied into every decision.
    hard: [f64; Resource::COUNT],
    cpu_weight: Option<u32>,
    memory_high_bytes: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hard: [f64::NAN; Resource::COUNT],
            cpu_weight: None,
            memory_high_bytes: None,
        }
    }
}

impl PartialEq for Limits {
    fn eq(&self, other: &Self) -> bool {
        // Bitwise on the hard limits: "no limit" is always the same NaN.
        self.hard.map(f64::to_bits) == other.hard.map(f64::to_bits)
            && self.cpu_weight == other.cpu_weight
            && self.memory_high_bytes == other.memory_high_bytes
    }
}

/// The serialised shape: one field per limit, units in the names.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_quota_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_high_bytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_max_bytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    io_read_bps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    io_write_bps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net_rx_bps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net_tx_bps: Option<f64>,
}

impl TryFrom<RawLimits> for Limits {
    type Error = CoreError;
    fn try_from(r: RawLimits) -> Result<Self, Self::Error> {
        let mut l = Limits::unlimited();
        let hard = [
            (Resource::Cpu, r.cpu_quota_cores),
            (Resource::Memory, r.memory_max_bytes),
            (Resource::IoRead, r.io_read_bps),
            (Resource::IoWrite, r.io_write_bps),
            (Resource::NetRx, r.net_rx_bps),
            (Resource::NetTx, r.net_tx_bps),
        ];
        for (resource, value) in hard {
            if let Some(v) = value {
                l.set_hard(resource, v)?;
            }
        }
        if let Some(w) = r.cpu_weight {
            l.set_cpu_weight(w)?;
        }
        if let Some(h) = r.memory_high_bytes {
            l.set_memory_high_bytes(h)?;
        }
        Ok(l)
    }
}

impl From<Limits> for RawLimits {
    fn from(l: Limits) -> Self {
        RawLimits {
            cpu_quota_cores: l.hard(Resource::Cpu),
            cpu_weight: l.cpu_weight,
            memory_high_bytes: l.memory_high_bytes,
            memory_max_bytes: l.hard(Resource::Memory),
            io_read_bps: l.hard(Resource::IoRead),
            io_write_bps: l.hard(Resource::IoWrite),
            net_rx_bps: l.hard(Resource::NetRx),
            net_tx_bps: l.hard(Resource::NetTx),
        }
    }
}

impl Limits {
    /// No limits at all.
    pub fn unlimited() -> Self {
        Limits::default()
    }

    /// The hard limit for `resource`, in its unit.
    pub fn hard(&self, resource: Resource) -> Option<f64> {
        let v = self.hard[resource.index()];
        (!v.is_nan()).then_some(v)
    }

    /// Sets the hard limit for `resource`. It must be finite and positive; a memory hard
    /// limit below the current soft limit lowers the soft limit with it.
    pub fn set_hard(&mut self, resource: Resource, value: f64) -> Result<(), CoreError> {
        let value = check_quantity(resource.name(), value)?;
        if value == 0.0 {
            return Err(CoreError::OutOfRange {
                what: resource.name(),
                range: "(0, ∞)",
                value,
            });
        }
        self.hard[resource.index()] = value;
        if resource == Resource::Memory {
            self.memory_high_bytes = self.memory_high_bytes.map(|h| h.min(value));
        }
        Ok(())
    }

    /// Builder form of [`Limits::set_hard`].
    pub fn with_hard(mut self, resource: Resource, value: f64) -> Result<Self, CoreError> {
        self.set_hard(resource, value)?;
        Ok(self)
    }

    /// Removes the hard limit for `resource`.
    pub fn clear_hard(&mut self, resource: Resource) {
        self.hard[resource.index()] = f64::NAN;
    }

    /// CPU quota in cores.
    pub fn cpu_quota_cores(&self) -> Option<f64> {
        self.hard(Resource::Cpu)
    }

    /// Memory hard limit in bytes.
    pub fn memory_max_bytes(&self) -> Option<f64> {
        self.hard(Resource::Memory)
    }

    /// CPU weight (cgroup v2 scale, 1–10000; 100 is the kernel default).
    pub fn cpu_weight(&self) -> Option<u32> {
        self.cpu_weight
    }

    /// Sets the CPU weight; it must be in 1–10000.
    pub fn set_cpu_weight(&mut self, weight: u32) -> Result<(), CoreError> {
        if !(1..=10_000).contains(&weight) {
            return Err(CoreError::OutOfRange {
                what: "cpu_weight",
                range: "[1, 10000]",
                value: f64::from(weight),
            });
        }
        self.cpu_weight = Some(weight);
        Ok(())
    }

    /// Memory soft limit in bytes.
    pub fn memory_high_bytes(&self) -> Option<f64> {
        self.memory_high_bytes
    }

    /// Sets the memory soft limit; it must be positive and not above the hard limit.
    pub fn set_memory_high_bytes(&mut self, bytes: f64) -> Result<(), CoreError> {
        let bytes = check_quantity("memory_high_bytes", bytes)?;
        if bytes == 0.0 {
            return Err(CoreError::OutOfRange {
                what: "memory_high_bytes",
                range: "(0, ∞)",
                value: bytes,
            });
        }
        if let Some(max) = self.memory_max_bytes()
            && bytes > max
        {
            return Err(CoreError::Inconsistent(format!(
                "memory_high_bytes {bytes} is above memory_max_bytes {max}"
            )));
        }
        self.memory_high_bytes = Some(bytes);
        Ok(())
    }

    /// Removes the memory soft limit.
    pub fn clear_memory_high(&mut self) {
        self.memory_high_bytes = None;
    }

    /// The hard limits, per resource.
    pub fn hard_map(&self) -> ResourceMap<Option<f64>> {
        ResourceMap::from_fn(|r| self.hard(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_are_rejected() {
        let mut l = Limits::unlimited();
        assert!(matches!(
            l.set_hard(Resource::Cpu, -1.0),
            Err(CoreError::Negative { .. })
        ));
        assert!(matches!(
            l.set_hard(Resource::Cpu, 0.0),
            Err(CoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            l.set_hard(Resource::Memory, f64::NAN),
            Err(CoreError::NotFinite { .. })
        ));
        assert!(matches!(
            l.set_cpu_weight(0),
            Err(CoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            l.set_cpu_weight(10_001),
            Err(CoreError::OutOfRange { .. })
        ));
        assert_eq!(l, Limits::unlimited());
    }

    #[test]
    fn memory_high_stays_under_max() -> Result<(), CoreError> {
        let mut l = Limits::unlimited().with_hard(Resource::Memory, 1000.0)?;
        assert!(matches!(
            l.set_memory_high_bytes(2000.0),
            Err(CoreError::Inconsistent(_))
        ));
        l.set_memory_high_bytes(900.0)?;
        l.set_hard(Resource::Memory, 500.0)?;
        assert_eq!(l.memory_high_bytes(), Some(500.0));
        Ok(())
    }

    #[test]
    fn json_uses_unit_names_and_validates() -> Result<(), Box<dyn std::error::Error>> {
        let l = Limits::unlimited()
            .with_hard(Resource::Cpu, 1.5)?
            .with_hard(Resource::Memory, 2e9)?;
        let json = serde_json::to_string(&l)?;
        assert_eq!(
            json,
            r#"{"cpu_quota_cores":1.5,"memory_max_bytes":2000000000.0}"#
        );
        assert_eq!(serde_json::from_str::<Limits>(&json)?, l);
        assert!(serde_json::from_str::<Limits>(r#"{"cpu_quota_cores":-2}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"cpu_cores":2}"#).is_err());
        assert!(
            serde_json::from_str::<Limits>(r#"{"memory_max_bytes":10,"memory_high_bytes":20}"#)
                .is_err()
        );
        Ok(())
    }
}
