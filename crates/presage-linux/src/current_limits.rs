//! Reading back the limits a cgroup runs under, as presage-core [`Limits`].
//!
//! An agent adopting a running workload must start from what the kernel enforces now, not
//! from "unlimited": otherwise its first decision could widen a limit someone set on
//! purpose, or take an already-throttled workload's usage for its demand.

use std::path::Path;

use presage_core::{CoreError, Limits, Resource};

use crate::error::LinuxError;
use crate::fsio::read_parsed;
use crate::layout::Controller;
use crate::limits::{CpuMax, CpuWeight};
use crate::parse::{
    self, parse_blkio_throttle_device, parse_cfs_quota, parse_cpu_max, parse_io_max,
    parse_max_or_u64, parse_v1_bytes_limit,
};
use crate::v1::V1Cgroup;
use crate::v2::V2Cgroup;

/// Collects readings into a [`Limits`], naming the file in any value it refuses.
#[derive(Debug, Default)]
struct Builder {
    limits: Limits,
    // memory.high is applied last: Limits refuses a soft limit above the hard one, and
    // the hard one may be read after it.
    memory_high: Option<(u64, std::path::PathBuf)>,
}

fn limit_err(path: &Path, value: impl ToString) -> impl FnOnce(CoreError) -> LinuxError {
    let (path, value) = (path.to_path_buf(), value.to_string());
    move |source| LinuxError::Limit {
        path,
        value,
        source,
    }
}

impl Builder {
    fn cpu(&mut self, path: &Path, max: CpuMax) -> Result<(), LinuxError> {
        if let Some(q) = max.quota_us() {
            let cores = q as f64 / max.period_us() as f64;
            let text = format!("{q} {}", max.period_us());
            self.limits
                .set_hard(Resource::Cpu, cores)
                .map_err(limit_err(path, text))?;
        }
        Ok(())
    }

    fn weight(&mut self, path: &Path, weight: u64) -> Result<(), LinuxError> {
        // A value beyond u32 still goes through set_cpu_weight so the error says why.
        let w = u32::try_from(weight).unwrap_or(u32::MAX);
        self.limits
            .set_cpu_weight(w)
            .map_err(limit_err(path, weight))
    }

    fn memory_max(&mut self, path: &Path, bytes: Option<u64>) -> Result<(), LinuxError> {
        match bytes {
            Some(b) => self
                .limits
                .set_hard(Resource::Memory, b as f64)
                .map_err(limit_err(path, b)),
            None => Ok(()),
        }
    }

    fn memory_high(&mut self, path: &Path, bytes: Option<u64>) {
        self.memory_high = bytes.map(|b| (b, path.to_path_buf()));
    }

    fn io(
        &mut self,
        path: &Path,
        resource: Resource,
        rates: impl IntoIterator<Item = u64>,
    ) -> Result<(), LinuxError> {
        let rates: Vec<u64> = rates.into_iter().collect();
        match exact_sum(&rates) {
            Some(sum) => self
                .limits
                .set_hard(resource, sum)
                .map_err(limit_err(path, format!("{rates:?}"))),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<Limits, LinuxError> {
        if let Some((high, path)) = self.memory_high {
            // With high above max the kernel never gets to throttle: max governs, and
            // that is what the workload actually runs under.
            let above_max = self
                .limits
                .memory_max_bytes()
                .is_some_and(|max| high as f64 > max);
            if !above_max {
                self.limits
                    .set_memory_high_bytes(high as f64)
                    .map_err(limit_err(&path, high))?;
            }
        }
        Ok(self.limits)
    }
}

/// The total of per-device rates, when there are any and the total is exact in `f64`.
///
/// [`Limits`] holds one figure per direction for the whole workload; the sum of the
/// per-device ceilings is the most the workload can move across the limited devices.
/// A total past 2^53 would be rounded, and a ceiling that is not the one the kernel
/// enforces is worse than none.
fn exact_sum(rates: &[u64]) -> Option<f64> {
    const F64_EXACT: u64 = 1 << f64::MANTISSA_DIGITS;
    if rates.is_empty() {
        return None;
    }
    let sum = rates.iter().try_fold(0u64, |acc, r| acc.checked_add(*r))?;
    (sum <= F64_EXACT).then_some(sum as f64)
}

impl V2Cgroup {
    pub(crate) fn read_limits(&self) -> Result<Limits, LinuxError> {
        let dir = self.dir();
        let mut b = Builder::default();
        let p = dir.join("cpu.max");
        if let Some(max) = read_parsed(&p, parse_cpu_max)? {
            b.cpu(&p, max)?;
        }
        let p = dir.join("cpu.weight");
        if let Some(w) = read_parsed(&p, parse::parse_single_u64)? {
            b.weight(&p, w)?;
        }
        let p = dir.join("memory.max");
        b.memory_max(&p, read_parsed(&p, parse_max_or_u64)?.flatten())?;
        let p = dir.join("memory.high");
        b.memory_high(&p, read_parsed(&p, parse_max_or_u64)?.flatten());
        let p = dir.join("io.max");
        if let Some(devs) = read_parsed(&p, parse_io_max)? {
            b.io(&p, Resource::IoRead, devs.iter().filter_map(|d| d.rbps))?;
            b.io(&p, Resource::IoWrite, devs.iter().filter_map(|d| d.wbps))?;
        }
        b.finish()
    }
}

impl V1Cgroup {
    pub(crate) fn read_limits(&self) -> Result<Limits, LinuxError> {
        let mut b = Builder::default();
        if let (Some(qp), Some(pp)) = (
            self.file(Controller::Cpu, "cpu.cfs_quota_us"),
            self.file(Controller::Cpu, "cpu.cfs_period_us"),
        ) && let (Some(Some(quota)), Some(period)) = (
            read_parsed(&qp, parse_cfs_quota)?,
            read_parsed(&pp, parse::parse_single_u64)?,
        ) {
            let max = CpuMax::new(Some(quota), period).map_err(|e| LinuxError::Parse {
                path: qp.clone(),
                line: 1,
                field: "cfs_quota_us".to_string(),
                reason: format!("with period {period}: {e}"),
            })?;
            b.cpu(&qp, max)?;
        }
        if let Some(p) = self.file(Controller::Cpu, "cpu.shares")
            && let Some(shares) = read_parsed(&p, parse::parse_single_u64)?
        {
            b.weight(&p, u64::from(CpuWeight::from_v1_shares(shares).get()))?;
        }
        if let Some(p) = self.file(Controller::Memory, "memory.limit_in_bytes") {
            b.memory_max(&p, read_parsed(&p, parse_v1_bytes_limit)?.flatten())?;
        }
        if let Some(p) = self.file(Controller::Memory, "memory.soft_limit_in_bytes") {
            b.memory_high(&p, read_parsed(&p, parse_v1_bytes_limit)?.flatten());
        }
        for (name, resource) in [
            ("blkio.throttle.read_bps_device", Resource::IoRead),
            ("blkio.throttle.write_bps_device", Resource::IoWrite),
        ] {
            if let Some(p) = self.file(Controller::Io, name)
                && let Some(devs) = read_parsed(&p, parse_blkio_throttle_device)?
            {
                b.io(&p, resource, devs.iter().map(|d| d.rate))?;
            }
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testutil::put;

    #[test]
    fn v2_limits_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "cpu.max", "50000 100000\n");
        put(d, "cpu.weight", "250\n");
        put(d, "memory.max", "1073741824\n");
        put(d, "memory.high", "805306368\n");
        put(
            d,
            "io.max",
            "8:0 rbps=1000 wbps=max riops=max wiops=max\n8:16 rbps=24 wbps=max riops=5 wiops=max\n",
        );
        let l = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap();
        assert_eq!(l.cpu_quota_cores(), Some(0.5));
        assert_eq!(l.cpu_weight(), Some(250));
        assert_eq!(l.memory_max_bytes(), Some(1_073_741_824.0));
        assert_eq!(l.memory_high_bytes(), Some(805_306_368.0));
        assert_eq!(l.hard(Resource::IoRead), Some(1024.0));
        assert_eq!(l.hard(Resource::IoWrite), None, "no device limits writes");
        assert_eq!(l.hard(Resource::NetRx), None);
    }

    #[test]
    fn v2_max_everywhere_is_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "cpu.max", "max 100000\n");
        put(d, "memory.max", "max\n");
        put(d, "memory.high", "max\n");
        put(d, "io.max", "");
        let l = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap();
        assert_eq!(l, Limits::unlimited());
    }

    #[test]
    fn missing_files_and_gone_cgroups_are_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let gone = V2Cgroup::new(dir.path().join("gone"));
        assert_eq!(gone.read_limits().unwrap(), Limits::unlimited());
        let v1 = V1Cgroup::new(BTreeMap::new(), None);
        assert_eq!(v1.read_limits().unwrap(), Limits::unlimited());
    }

    #[test]
    fn high_above_max_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "memory.max", "1000\n");
        put(d, "memory.high", "2000\n");
        let l = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap();
        assert_eq!(l.memory_max_bytes(), Some(1000.0));
        assert_eq!(l.memory_high_bytes(), None);
    }

    #[test]
    fn unrepresentable_values_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "memory.max", "0\n");
        let err = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap_err();
        assert!(matches!(err, LinuxError::Limit { .. }), "{err}");
        assert!(err.to_string().contains("memory.max"), "{err}");
        put(d, "memory.max", "max\n");
        put(d, "cpu.weight", "0\n");
        let err = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap_err();
        assert!(err.to_string().contains("cpu.weight"), "{err}");
        put(d, "cpu.weight", "100\n");
        put(d, "cpu.max", "garbage\n");
        let err = V2Cgroup::new(d.to_path_buf()).read_limits().unwrap_err();
        assert!(matches!(err, LinuxError::Parse { .. }), "{err}");
    }

    fn v1(root: &Path) -> V1Cgroup {
        let mut dirs = BTreeMap::new();
        dirs.insert(Controller::Cpu, root.join("cpu/w"));
        dirs.insert(Controller::Memory, root.join("memory/w"));
        dirs.insert(Controller::Io, root.join("blkio/w"));
        V1Cgroup::new(dirs, None)
    }

    #[test]
    fn v1_limits_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "cpu/w/cpu.cfs_quota_us", "150000\n");
        put(r, "cpu/w/cpu.cfs_period_us", "100000\n");
        put(r, "cpu/w/cpu.shares", "2560\n");
        put(r, "memory/w/memory.limit_in_bytes", "67108864\n");
        put(r, "memory/w/memory.soft_limit_in_bytes", "33554432\n");
        put(r, "blkio/w/blkio.throttle.read_bps_device", "");
        put(
            r,
            "blkio/w/blkio.throttle.write_bps_device",
            "8:0 1048576\n8:16 1048576\n",
        );
        let l = v1(r).read_limits().unwrap();
        assert_eq!(l.cpu_quota_cores(), Some(1.5));
        assert_eq!(l.cpu_weight(), Some(250), "2560 shares is weight 250");
        assert_eq!(l.memory_max_bytes(), Some(67_108_864.0));
        assert_eq!(l.memory_high_bytes(), Some(33_554_432.0));
        assert_eq!(l.hard(Resource::IoRead), None);
        assert_eq!(l.hard(Resource::IoWrite), Some(2_097_152.0));
    }

    #[test]
    fn v1_defaults_are_unlimited_with_default_weight() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "cpu/w/cpu.cfs_quota_us", "-1\n");
        put(r, "cpu/w/cpu.cfs_period_us", "100000\n");
        put(r, "cpu/w/cpu.shares", "1024\n");
        put(r, "memory/w/memory.limit_in_bytes", "9223372036854771712\n");
        put(
            r,
            "memory/w/memory.soft_limit_in_bytes",
            "9223372036854771712\n",
        );
        let l = v1(r).read_limits().unwrap();
        let mut want = Limits::unlimited();
        want.set_cpu_weight(100).unwrap();
        assert_eq!(l, want);
    }

    #[test]
    fn v1_soft_limit_above_hard_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "memory/w/memory.limit_in_bytes", "4096\n");
        put(r, "memory/w/memory.soft_limit_in_bytes", "8192\n");
        let l = v1(r).read_limits().unwrap();
        assert_eq!(
            (l.memory_max_bytes(), l.memory_high_bytes()),
            (Some(4096.0), None)
        );
    }

    #[test]
    fn io_sums_only_when_exact() {
        assert_eq!(exact_sum(&[]), None);
        assert_eq!(exact_sum(&[1, 2]), Some(3.0));
        assert_eq!(exact_sum(&[u64::MAX, 1]), None, "overflow");
        assert_eq!(exact_sum(&[(1 << 53) + 1]), None, "not exact in f64");
        assert_eq!(exact_sum(&[1 << 53]), Some(9_007_199_254_740_992.0));
    }
}
