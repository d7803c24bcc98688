//! cgroup v2 keyed files.

use std::path::Path;

use crate::error::LinuxError;
use crate::parse::{FlatKeyed, parse_device, parse_u64};

/// v2 `cpu.stat`.
///
/// The throttling keys exist only where the `cpu` controller is enabled; a hybrid host's v2
/// tree has `usage_usec` alone, so they are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2CpuStat {
    /// Total CPU time consumed, in microseconds.
    pub usage_usec: u64,
    /// Periods in which the cgroup had runnable tasks.
    pub nr_periods: Option<u64>,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: Option<u64>,
    /// Total time throttled, in microseconds.
    pub throttled_usec: Option<u64>,
}

/// Parses v2 `cpu.stat`.
pub fn parse_v2_cpu_stat(path: &Path, text: &str) -> Result<V2CpuStat, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(V2CpuStat {
        usage_usec: kv.required("usage_usec")?,
        nr_periods: kv.optional("nr_periods")?,
        nr_throttled: kv.optional("nr_throttled")?,
        throttled_usec: kv.optional("throttled_usec")?,
    })
}

/// The parts of v2 `memory.stat` presage uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2MemoryStat {
    /// Anonymous memory.
    pub anon: u64,
    /// Page cache.
    pub file: u64,
    /// Page cache on the inactive LRU: reclaimable without pressure, so excluded from the
    /// working set.
    pub inactive_file: u64,
    /// Page cache on the active LRU.
    pub active_file: u64,
    /// Shared memory (tmpfs, shm), counted in `file` but not reclaimable like it.
    pub shmem: Option<u64>,
    /// Kernel memory, when the kernel reports it.
    pub kernel: Option<u64>,
}

/// Parses v2 `memory.stat`.
pub fn parse_v2_memory_stat(path: &Path, text: &str) -> Result<V2MemoryStat, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(V2MemoryStat {
        anon: kv.required("anon")?,
        file: kv.required("file")?,
        inactive_file: kv.required("inactive_file")?,
        active_file: kv.required("active_file")?,
        shmem: kv.optional("shmem")?,
        kernel: kv.optional("kernel")?,
    })
}

/// v2 `memory.events` (cumulative counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times usage went over `memory.high` and was throttled.
    pub high: Option<u64>,
    /// Times usage hit `memory.max`.
    pub max: Option<u64>,
    /// Times the OOM killer was invoked for this cgroup.
    pub oom: u64,
    /// Processes killed by the OOM killer.
    pub oom_kill: u64,
}

/// Parses v2 `memory.events`.
pub fn parse_memory_events(path: &Path, text: &str) -> Result<MemoryEvents, LinuxError> {
    let kv = FlatKeyed::parse(path, text)?;
    Ok(MemoryEvents {
        high: kv.optional("high")?,
        max: kv.optional("max")?,
        oom: kv.required("oom")?,
        oom_kill: kv.required("oom_kill")?,
    })
}

/// One device line of v2 `io.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoStatEntry {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

/// Parses v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
///
/// Keys a line lacks count as zero: the kernel omits nothing today, but the counters are
/// sums and a zero is the honest reading of "not reported".
pub fn parse_io_stat(path: &Path, text: &str) -> Result<Vec<IoStatEntry>, LinuxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let Some(dev) = parts.next() else { continue };
        let (major, minor) = parse_device(path, i + 1, dev)?;
        let mut entry = IoStatEntry {
            major,
            minor,
            rbytes: 0,
            wbytes: 0,
            rios: 0,
            wios: 0,
        };
        for part in parts {
            let (key, value) = part.split_once('=').ok_or_else(|| LinuxError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                field: part.to_string(),
                reason: "expected key=value".to_string(),
            })?;
            let slot = match key {
                "rbytes" => &mut entry.rbytes,
                "wbytes" => &mut entry.wbytes,
                "rios" => &mut entry.rios,
                "wios" => &mut entry.wios,
                _ => continue,
            };
            *slot = parse_u64(path, i + 1, key, value)?;
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_with_and_without_throttling() {
        let full = "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 10\n\
                    nr_throttled 3\nthrottled_usec 250\nnr_bursts 0\n";
        let s = parse_v2_cpu_stat(Path::new("cpu.stat"), full).unwrap();
        assert_eq!(s.usage_usec, 1000);
        assert_eq!(s.nr_throttled, Some(3));
        assert_eq!(s.throttled_usec, Some(250));
        let hybrid =
            parse_v2_cpu_stat(Path::new("cpu.stat"), "usage_usec 5\nuser_usec 5\n").unwrap();
        assert_eq!(hybrid.nr_periods, None);
    }

    #[test]
    fn cpu_stat_without_usage_is_missing_field() {
        let err = parse_v2_cpu_stat(Path::new("cpu.stat"), "user_usec 5\n").unwrap_err();
        assert!(matches!(err, LinuxError::MissingField { ref field, .. } if field == "usage_usec"));
    }

    #[test]
    fn memory_stat_picks_fields() {
        let text = "anon 100\nfile 50\nkernel 7\nshmem 3\ninactive_anon 1\nactive_anon 99\n\
                    inactive_file 20\nactive_file 30\nunevictable 0\n";
        let s = parse_v2_memory_stat(Path::new("memory.stat"), text).unwrap();
        assert_eq!(
            (s.anon, s.file, s.inactive_file, s.active_file),
            (100, 50, 20, 30)
        );
        assert_eq!(s.kernel, Some(7));
    }

    #[test]
    fn memory_stat_bad_number_names_line() {
        let err = parse_v2_memory_stat(Path::new("m"), "anon 1\nfile -3\n").unwrap_err();
        assert!(matches!(err, LinuxError::Parse { line: 2, ref field, .. } if field == "file"));
    }

    #[test]
    fn memory_events() {
        let text = "low 0\nhigh 4\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n";
        let e = parse_memory_events(Path::new("memory.events"), text).unwrap();
        assert_eq!((e.high, e.oom, e.oom_kill), (Some(4), 1, 1));
    }

    #[test]
    fn io_stat_lines() {
        let text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    8:16 rbytes=1 wbytes=2 rios=3 wios=4\n";
        let e = parse_io_stat(Path::new("io.stat"), text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].major, e[0].minor, e[0].rbytes, e[0].wbytes),
            (254, 0, 4096, 8192)
        );
        assert_eq!(e[1].wios, 4);
        assert!(parse_io_stat(Path::new("io.stat"), "").unwrap().is_empty());
        assert!(parse_io_stat(Path::new("io.stat"), "8:0 rbytes=x\n").is_err());
    }
}
