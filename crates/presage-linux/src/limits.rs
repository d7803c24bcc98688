//! Values presage writes to the kernel, validated before they reach it.

use crate::error::LinuxError;

/// A CPU bandwidth limit: `quota_us` of CPU time per `period_us` (v2 `cpu.max`, v1
/// `cpu.cfs_quota_us`/`cpu.cfs_period_us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    quota_us: Option<u64>,
    period_us: u64,
}

impl CpuMax {
    /// Kernel bounds for the period and minimum quota (kernel/sched/core.c).
    const MIN_US: u64 = 1_000;
    const MAX_PERIOD_US: u64 = 1_000_000;

    /// A quota (`None` = unlimited) per period, both in microseconds.
    pub fn new(quota_us: Option<u64>, period_us: u64) -> Result<CpuMax, LinuxError> {
        if !(Self::MIN_US..=Self::MAX_PERIOD_US).contains(&period_us) {
            return Err(LinuxError::InvalidValue {
                what: "CPU period",
                reason: format!("{period_us} µs is outside 1000..=1000000"),
            });
        }
        if let Some(q) = quota_us
            && q < Self::MIN_US
        {
            return Err(LinuxError::InvalidValue {
                what: "CPU quota",
                reason: format!("{q} µs is below the kernel minimum of 1000"),
            });
        }
        Ok(CpuMax {
            quota_us,
            period_us,
        })
    }

    /// A limit of `cores` CPUs per `period_us`.
    pub fn from_cores(cores: f64, period_us: u64) -> Result<CpuMax, LinuxError> {
        if !cores.is_finite() || cores <= 0.0 {
            return Err(LinuxError::InvalidValue {
                what: "CPU cores",
                reason: format!("{cores} is not a positive number"),
            });
        }
        // Rounding up: a limit a hair above the request is harmless, one below throttles.
        let quota = (cores * period_us as f64).ceil();
        if quota > u64::MAX as f64 {
            return Err(LinuxError::InvalidValue {
                what: "CPU cores",
                reason: format!("{cores} cores overflow the quota"),
            });
        }
        CpuMax::new(Some((quota as u64).max(Self::MIN_US)), period_us)
    }

    /// No bandwidth limit.
    pub fn unlimited(period_us: u64) -> Result<CpuMax, LinuxError> {
        CpuMax::new(None, period_us)
    }

    /// The quota in microseconds, `None` when unlimited.
    pub fn quota_us(&self) -> Option<u64> {
        self.quota_us
    }

    /// The period in microseconds.
    pub fn period_us(&self) -> u64 {
        self.period_us
    }
}

/// A relative CPU weight on v2's scale (1..=10000, default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuWeight(u16);

impl CpuWeight {
    /// Validates a v2 weight.
    pub fn new(weight: u16) -> Result<CpuWeight, LinuxError> {
        if (1..=10_000).contains(&weight) {
            Ok(CpuWeight(weight))
        } else {
            Err(LinuxError::InvalidValue {
                what: "CPU weight",
                reason: format!("{weight} is outside 1..=10000"),
            })
        }
    }

    /// The v2 value.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The equivalent v1 `cpu.shares` (default 100 ↔ 1024, the mapping systemd uses),
    /// clamped to v1's 2..=262144.
    pub fn to_v1_shares(self) -> u64 {
        (u64::from(self.0) * 1024 / 100).clamp(2, 262_144)
    }

    /// The v2 weight a v1 `cpu.shares` value stands for: the inverse of
    /// [`CpuWeight::to_v1_shares`], so every weight presage writes reads back unchanged;
    /// shares it could not have written map to the nearest weight above, within 1..=10000.
    pub fn from_v1_shares(shares: u64) -> CpuWeight {
        // to_v1_shares floors w·1024/100; the ceiling of shares·100/1024 is the one
        // integer w that floors back to `shares`, when one exists.
        let w = shares.saturating_mul(100).div_ceil(1024).clamp(1, 10_000);
        CpuWeight(u16::try_from(w).unwrap_or(10_000))
    }
}

/// Per-device I/O limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoMax {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Read bytes per second.
    pub rbps: Option<u64>,
    /// Write bytes per second.
    pub wbps: Option<u64>,
    /// Read operations per second.
    pub riops: Option<u64>,
    /// Write operations per second.
    pub wiops: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_bounds() {
        assert!(CpuMax::new(Some(50_000), 100_000).is_ok());
        assert!(CpuMax::new(Some(500), 100_000).is_err());
        assert!(CpuMax::new(None, 999).is_err());
        assert!(CpuMax::new(None, 1_000_001).is_err());
    }

    #[test]
    fn cores_round_up() {
        let m = CpuMax::from_cores(0.3, 100_000).unwrap();
        assert_eq!(m.quota_us(), Some(30_000));
        assert_eq!(
            CpuMax::from_cores(0.001, 100_000).unwrap().quota_us(),
            Some(1_000)
        );
        assert!(CpuMax::from_cores(f64::NAN, 100_000).is_err());
        assert!(CpuMax::from_cores(0.0, 100_000).is_err());
    }

    #[test]
    fn weight_maps_to_shares() {
        assert_eq!(CpuWeight::new(100).unwrap().to_v1_shares(), 1024);
        assert_eq!(CpuWeight::new(1).unwrap().to_v1_shares(), 10);
        assert_eq!(CpuWeight::new(10_000).unwrap().to_v1_shares(), 102_400);
        assert!(CpuWeight::new(0).is_err());
        assert_eq!(CpuWeight::from_v1_shares(2).get(), 1);
        assert_eq!(CpuWeight::from_v1_shares(262_144).get(), 10_000);
    }

    #[test]
    fn every_weight_round_trips_through_shares() {
        for w in 1..=10_000 {
            let weight = CpuWeight::new(w).unwrap();
            assert_eq!(CpuWeight::from_v1_shares(weight.to_v1_shares()), weight);
        }
        assert!(CpuWeight::new(10_001).is_err());
    }
}
