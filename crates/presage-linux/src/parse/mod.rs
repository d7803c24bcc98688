//! Pure parsers for cgroupfs files: text in, typed struct out.
//!
//! Each parser takes the path only to name it in errors; none of them touch the filesystem,
//! so they are tested with literal strings. Unknown keys are ignored because kernels add
//! keys over time; a missing key that presage relies on is an error naming it.

mod limits;
mod net;
mod psi;
mod v1;
mod v2;

use std::path::Path;

pub use limits::{
    DeviceRate, V1_UNLIMITED_BYTES, parse_blkio_throttle_device, parse_cfs_quota, parse_cpu_max,
    parse_io_max, parse_max_or_u64, parse_v1_bytes_limit,
};
pub use net::{NetDevEntry, parse_net_dev, parse_netns_link};
pub use psi::{Pressure, PressureLine, parse_pressure};
pub use v1::{
    BlkioDevice, V1CpuStat, V1MemoryStat, V1OomControl, parse_blkio_io_service_bytes,
    parse_cpuacct_usage, parse_v1_cpu_stat, parse_v1_memory_stat, parse_v1_oom_control,
};
pub use v2::{
    IoStatEntry, MemoryEvents, V2CpuStat, V2MemoryStat, parse_io_stat, parse_memory_events,
    parse_v2_cpu_stat, parse_v2_memory_stat,
};

use crate::error::LinuxError;

/// Parses a file holding one unsigned integer (`memory.current`, `cpuacct.usage`, …).
pub fn parse_single_u64(path: &Path, text: &str) -> Result<u64, LinuxError> {
    let value = text.trim();
    let field = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_u64(path, 1, &field, value)
}

/// Parses `cgroup.procs` (or `tasks`): one PID per line.
pub fn parse_procs(path: &Path, text: &str) -> Result<Vec<u32>, LinuxError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim().parse::<u32>().map_err(|e| LinuxError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                field: "pid".to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

pub(crate) fn parse_u64(
    path: &Path,
    line: usize,
    field: &str,
    value: &str,
) -> Result<u64, LinuxError> {
    value.parse::<u64>().map_err(|e| LinuxError::Parse {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        reason: format!("{value:?} is not an unsigned integer: {e}"),
    })
}

/// A "flat keyed" file (`key value` per line), parsed once so typed views can pick fields.
#[derive(Debug)]
pub(crate) struct FlatKeyed<'a> {
    path: &'a Path,
    entries: Vec<(usize, &'a str, &'a str)>,
}

impl<'a> FlatKeyed<'a> {
    pub(crate) fn parse(path: &'a Path, text: &'a str) -> Result<FlatKeyed<'a>, LinuxError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut parts = line.split_whitespace();
            let Some(key) = parts.next() else { continue };
            let (Some(value), None) = (parts.next(), parts.next()) else {
                return Err(LinuxError::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    field: key.to_string(),
                    reason: "expected exactly `key value`".to_string(),
                });
            };
            entries.push((i + 1, key, value));
        }
        Ok(FlatKeyed { path, entries })
    }

    pub(crate) fn optional(&self, key: &str) -> Result<Option<u64>, LinuxError> {
        match self.entries.iter().find(|(_, k, _)| *k == key) {
            Some((line, k, v)) => parse_u64(self.path, *line, k, v).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn required(&self, key: &str) -> Result<u64, LinuxError> {
        self.optional(key)?.ok_or_else(|| LinuxError::MissingField {
            path: self.path.to_path_buf(),
            field: key.to_string(),
        })
    }
}

/// Parses a `MAJ:MIN` device column.
pub(crate) fn parse_device(path: &Path, line: usize, dev: &str) -> Result<(u32, u32), LinuxError> {
    let err = |reason: String| LinuxError::Parse {
        path: path.to_path_buf(),
        line,
        field: "device".to_string(),
        reason,
    };
    let (maj, min) = dev
        .split_once(':')
        .ok_or_else(|| err(format!("{dev:?} is not MAJ:MIN")))?;
    let maj = maj
        .parse()
        .map_err(|e| err(format!("bad major in {dev:?}: {e}")))?;
    let min = min
        .parse()
        .map_err(|e| err(format!("bad minor in {dev:?}: {e}")))?;
    Ok((maj, min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value_trims_newline() {
        assert_eq!(
            parse_single_u64(Path::new("memory.current"), "4096\n").unwrap(),
            4096
        );
    }

    #[test]
    fn single_value_error_names_file() {
        let err = parse_single_u64(Path::new("/x/memory.peak"), "max\n").unwrap_err();
        match err {
            LinuxError::Parse { field, line, .. } => {
                assert_eq!(field, "memory.peak");
                assert_eq!(line, 1);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn procs_lists_pids() {
        assert_eq!(
            parse_procs(Path::new("p"), "1\n42\n\n").unwrap(),
            vec![1, 42]
        );
        assert!(parse_procs(Path::new("p"), "").unwrap().is_empty());
        let err = parse_procs(Path::new("p"), "1\nx\n").unwrap_err();
        assert!(matches!(err, LinuxError::Parse { line: 2, .. }));
    }

    #[test]
    fn flat_keyed_rejects_extra_columns() {
        let err = FlatKeyed::parse(Path::new("f"), "a 1\nb 2 3\n").unwrap_err();
        assert!(matches!(err, LinuxError::Parse { line: 2, .. }));
    }

    #[test]
    fn device_parses() {
        assert_eq!(
            parse_device(Path::new("f"), 1, "254:16").unwrap(),
            (254, 16)
        );
        assert!(parse_device(Path::new("f"), 1, "254").is_err());
    }
}
