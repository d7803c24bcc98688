//! cgroup v1 keyed files.

use std::path::Path;

use crate::error::LinuxError;
use crate::parse::{FlatKeyed, parse_device, parse_u64};

/// Parses v1 `cpuacct.usage` (total CPU time in nanoseconds).
pub fn parse_cpuacct_usage(path: &Path, text: &str) -> Result<u64, LinuxError> {
    crate::parse::parse_single_u64(path, text)
}

/// v1 `cpu.stat` (CFS bandwidth statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1CpuStat {
    /// Enforcement periods elapsed with runnable tasks.
    pub nr_periods: u64,
    /// Periods in which the group was throttled.
    pub nr_throttled: u64,
    /// Total time throttled, in nanoseconds.
    pub throttled_time_ns: u64,
}

/// Parses v1 `cpu.stat`.
pub fn parse_v1_cpu_stat(path: &Path, text: &str) -> Result<V1CpuStat, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(V1CpuStat {
        nr_periods: kv.required("nr_periods")?,
        nr_throttled: kv.required("nr_throttled")?,
        throttled_time_ns: kv.required("throttled_time")?,
    })
}

/// The parts of v1 `memory.stat` presage uses, in bytes.
///
/// The `total_*` keys are hierarchical (this cgroup and its descendants), which is what
/// `memory.usage_in_bytes` counts too, so the working set is computed from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1MemoryStat {
    /// Hierarchical page cache.
    pub total_cache: u64,
    /// Hierarchical anonymous memory.
    pub total_rss: u64,
    /// Hierarchical inactive page cache.
    pub total_inactive_file: u64,
    /// Hierarchical active page cache.
    pub total_active_file: u64,
}

/// Parses v1 `memory.stat`.
pub fn parse_v1_memory_stat(path: &Path, text: &str) -> Result<V1MemoryStat, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(V1MemoryStat {
        total_cache: kv.required("total_cache")?,
        total_rss: kv.required("total_rss")?,
        total_inactive_file: kv.required("total_inactive_file")?,
        total_active_file: kv.required("total_active_file")?,
    })
}

/// v1 `memory.oom_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1OomControl {
    /// The OOM killer is disabled for this group.
    pub oom_kill_disable: bool,
    /// The group is currently stalled under OOM.
    pub under_oom: bool,
    /// Processes OOM-killed so far; the key appeared in Linux 4.13.
    pub oom_kill: Option<u64>,
}

/// Parses v1 `memory.oom_control`.
pub fn parse_v1_oom_control(path: &Path, text: &str) -> Result<V1OomControl, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(V1OomControl {
        oom_kill_disable: kv.required("oom_kill_disable")? != 0,
        under_oom: kv.required("under_oom")? != 0,
        oom_kill: kv.optional("oom_kill")?,
    })
}

/// Bytes moved for one device, from v1 `blkio.throttle.io_service_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkioDevice {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub read: u64,
    /// Bytes written.
    pub write: u64,
}

/// Parses v1 `blkio.throttle.io_service_bytes`: `MAJ:MIN Op bytes` lines (Op in Read, Write,
/// Sync, Async, Discard, Total) and a final grand `Total N` line, which is skipped because
/// it double-counts the per-device lines.
pub fn parse_blkio_io_service_bytes(
    path: &Path,
    text: &str,
) -> Result<Vec<BlkioDevice>, LinuxError> {
    let mut out: Vec<BlkioDevice> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields.as_slice() {
            [] | ["Total", _] => continue,
            [dev, op, value] => (*dev, *op, *value),
            _ => {
                return Err(LinuxError::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    field: "line".to_string(),
                    reason: "expected `MAJ:MIN Op bytes`".to_string(),
                });
            }
        };
        let (major, minor) = parse_device(path, i + 1, dev)?;
        let bytes = parse_u64(path, i + 1, op, value)?;
        let idx = match out
            .iter()
            .position(|d| d.major == major && d.minor == minor)
        {
            Some(idx) => idx,
            None => {
                out.push(BlkioDevice {
                    major,
                    minor,
                    read: 0,
                    write: 0,
                });
                out.len() - 1
            }
        };
        match op {
            "Read" => out[idx].read = bytes,
            "Write" => out[idx].write = bytes,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuacct_usage() {
        assert_eq!(
            parse_cpuacct_usage(Path::new("cpuacct.usage"), "27394509988445\n").unwrap(),
            27_394_509_988_445
        );
    }

    #[test]
    fn v1_cpu_stat() {
        let text = "nr_periods 20\nnr_throttled 19\nthrottled_time 1500000000\nnr_bursts 0\nburst_time 0\n";
        let s = parse_v1_cpu_stat(Path::new("cpu.stat"), text).unwrap();
        assert_eq!(
            (s.nr_periods, s.nr_throttled, s.throttled_time_ns),
            (20, 19, 1_500_000_000)
        );
    }

    #[test]
    fn v1_memory_stat_uses_totals() {
        let text = "cache 1\nrss 2\ninactive_file 3\nactive_file 4\ntotal_cache 966656\n\
                    total_rss 1650688\ntotal_inactive_file 253952\ntotal_active_file 712704\n";
        let s = parse_v1_memory_stat(Path::new("memory.stat"), text).unwrap();
        assert_eq!(s.total_inactive_file, 253_952);
        assert_eq!(s.total_rss, 1_650_688);
        let err = parse_v1_memory_stat(Path::new("memory.stat"), "cache 1\n").unwrap_err();
        assert!(matches!(err, LinuxError::MissingField { .. }));
    }

    #[test]
    fn oom_control() {
        let c = parse_v1_oom_control(
            Path::new("o"),
            "oom_kill_disable 0\nunder_oom 1\noom_kill 27\n",
        )
        .unwrap();
        assert!(c.under_oom && !c.oom_kill_disable);
        assert_eq!(c.oom_kill, Some(27));
        let old =
            parse_v1_oom_control(Path::new("o"), "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert_eq!(old.oom_kill, None);
    }

    #[test]
    fn blkio_service_bytes() {
        let text = "254:0 Read 4096\n254:0 Write 10485760\n254:0 Sync 1\n254:0 Async 2\n\
                    254:0 Discard 0\n254:0 Total 10489856\n8:0 Read 7\nTotal 10489863\n";
        let d = parse_blkio_io_service_bytes(Path::new("b"), text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].read, d[0].write), (4096, 10_485_760));
        assert_eq!((d[1].major, d[1].read, d[1].write), (8, 7, 0));
        assert!(
            parse_blkio_io_service_bytes(Path::new("b"), "Total 0\n")
                .unwrap()
                .is_empty()
        );
        let err = parse_blkio_io_service_bytes(Path::new("b"), "254:0 Read\n").unwrap_err();
        assert!(matches!(err, LinuxError::Parse { line: 1, .. }));
    }
}
