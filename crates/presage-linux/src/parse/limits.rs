//! Limit files, read back: v2 `cpu.max`, `memory.max`/`memory.high`, `io.max`; v1
//! `cpu.cfs_quota_us`, `memory.limit_in_bytes`, `blkio.throttle.*_device`.

use std::path::Path;

use crate::error::LinuxError;
use crate::limits::{CpuMax, IoMax};
use crate::parse::{parse_device, parse_u64};

/// v1 memory limits at or above this many bytes mean "unlimited".
///
/// The kernel stores "no limit" as the largest page count and prints it in bytes, rounded
/// down to the page size (9223372036854771712 with 4 KiB pages, less with larger pages),
/// so no single sentinel works; no machine has 4 EiB of memory to limit.
pub const V1_UNLIMITED_BYTES: u64 = 1 << 62;

fn parse_err(path: &Path, line: usize, field: &str, reason: String) -> LinuxError {
    LinuxError::Parse {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        reason,
    }
}

fn file_field(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses v2 `cpu.max` (`$MAX $PERIOD`, `$MAX` being `max` or a quota in µs).
pub fn parse_cpu_max(path: &Path, text: &str) -> Result<CpuMax, LinuxError> {
    let mut parts = text.split_whitespace();
    let (Some(quota), Some(period), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(parse_err(
            path,
            1,
            "cpu.max",
            format!("{:?} is not `QUOTA PERIOD`", text.trim()),
        ));
    };
    let quota = match quota {
        "max" => None,
        q => Some(parse_u64(path, 1, "quota", q)?),
    };
    let period = parse_u64(path, 1, "period", period)?;
    CpuMax::new(quota, period).map_err(|e| parse_err(path, 1, "cpu.max", e.to_string()))
}

/// Parses a v2 byte limit (`memory.max`, `memory.high`): `max` is `None`.
pub fn parse_max_or_u64(path: &Path, text: &str) -> Result<Option<u64>, LinuxError> {
    match text.trim() {
        "max" => Ok(None),
        v => parse_u64(path, 1, &file_field(path), v).map(Some),
    }
}

/// Parses v1 `cpu.cfs_quota_us`: a quota in µs, or `-1` for none.
pub fn parse_cfs_quota(path: &Path, text: &str) -> Result<Option<u64>, LinuxError> {
    let v = text.trim();
    let n = v
        .parse::<i64>()
        .map_err(|e| parse_err(path, 1, "cfs_quota_us", format!("{v:?}: {e}")))?;
    // Any negative value reads as "no quota" to the kernel, not just -1.
    Ok(u64::try_from(n).ok())
}

/// Parses a v1 byte limit (`memory.limit_in_bytes`, `memory.soft_limit_in_bytes`):
/// [`V1_UNLIMITED_BYTES`] and above are `None`.
pub fn parse_v1_bytes_limit(path: &Path, text: &str) -> Result<Option<u64>, LinuxError> {
    let v = parse_u64(path, 1, &file_field(path), text.trim())?;
    Ok((v < V1_UNLIMITED_BYTES).then_some(v))
}

/// Parses v2 `io.max`: one `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..` line per device
/// with a limit, `max` meaning none. Unknown keys are ignored.
pub fn parse_io_max(path: &Path, text: &str) -> Result<Vec<IoMax>, LinuxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let Some(dev) = parts.next() else { continue };
        let (major, minor) = parse_device(path, i + 1, dev)?;
        let mut entry = IoMax {
            major,
            minor,
            rbps: None,
            wbps: None,
            riops: None,
            wiops: None,
        };
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| parse_err(path, i + 1, part, "expected key=value".to_string()))?;
            let value = match value {
                "max" => None,
                v => Some(parse_u64(path, i + 1, key, v)?),
            };
            match key {
                "rbps" => entry.rbps = value,
                "wbps" => entry.wbps = value,
                "riops" => entry.riops = value,
                "wiops" => entry.wiops = value,
                _ => {}
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// One device's rate from a v1 `blkio.throttle.*_device` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRate {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes (or operations) per second.
    pub rate: u64,
}

/// Parses v1 `blkio.throttle.read_bps_device` and its siblings: `MAJ:MIN rate` per
/// limited device; an empty file means no limits.
pub fn parse_blkio_throttle_device(path: &Path, text: &str) -> Result<Vec<DeviceRate>, LinuxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [dev, rate] => {
                let (major, minor) = parse_device(path, i + 1, dev)?;
                let rate = parse_u64(path, i + 1, "rate", rate)?;
                out.push(DeviceRate { major, minor, rate });
            }
            _ => {
                return Err(parse_err(
                    path,
                    i + 1,
                    "line",
                    "expected `MAJ:MIN rate`".to_string(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_reads_quota_and_period() {
        let p = Path::new("cpu.max");
        let m = parse_cpu_max(p, "50000 100000\n").unwrap();
        assert_eq!((m.quota_us(), m.period_us()), (Some(50_000), 100_000));
        let m = parse_cpu_max(p, "max 100000\n").unwrap();
        assert_eq!(m.quota_us(), None);
        assert!(matches!(
            parse_cpu_max(p, "max\n"),
            Err(LinuxError::Parse { .. })
        ));
        assert!(parse_cpu_max(p, "lots 100000\n").is_err());
        assert!(parse_cpu_max(p, "10 100000\n").is_err(), "below kernel min");
    }

    #[test]
    fn byte_limits() {
        let p = Path::new("memory.max");
        assert_eq!(parse_max_or_u64(p, "max\n").unwrap(), None);
        assert_eq!(parse_max_or_u64(p, "4096\n").unwrap(), Some(4096));
        let err = parse_max_or_u64(p, "-1\n").unwrap_err();
        assert!(err.to_string().contains("memory.max"), "{err}");
        let v1 = Path::new("memory.limit_in_bytes");
        assert_eq!(
            parse_v1_bytes_limit(v1, "9223372036854771712\n").unwrap(),
            None
        );
        // 64 KiB pages round the sentinel further down.
        assert_eq!(
            parse_v1_bytes_limit(v1, "9223372036854710272\n").unwrap(),
            None
        );
        assert_eq!(
            parse_v1_bytes_limit(v1, "67108864\n").unwrap(),
            Some(64 << 20)
        );
    }

    #[test]
    fn cfs_quota_negative_is_none() {
        let p = Path::new("cpu.cfs_quota_us");
        assert_eq!(parse_cfs_quota(p, "-1\n").unwrap(), None);
        assert_eq!(parse_cfs_quota(p, "25000\n").unwrap(), Some(25_000));
        assert!(parse_cfs_quota(p, "x\n").is_err());
    }

    #[test]
    fn io_max_lines() {
        let p = Path::new("io.max");
        let v = parse_io_max(
            p,
            "8:0 rbps=2097152 wbps=max riops=max wiops=120\n8:16 rbps=max wbps=10\n",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].major, v[0].rbps, v[0].wbps),
            (8, Some(2_097_152), None)
        );
        assert_eq!(v[0].wiops, Some(120));
        assert_eq!((v[1].minor, v[1].wbps), (16, Some(10)));
        assert!(parse_io_max(p, "").unwrap().is_empty());
        assert!(matches!(
            parse_io_max(p, "8:0 rbps\n"),
            Err(LinuxError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn blkio_throttle_device() {
        let p = Path::new("blkio.throttle.read_bps_device");
        let v = parse_blkio_throttle_device(p, "8:0 1048576\n254:0 10\n").unwrap();
        assert_eq!(
            v,
            [
                DeviceRate {
                    major: 8,
                    minor: 0,
                    rate: 1_048_576
                },
                DeviceRate {
                    major: 254,
                    minor: 0,
                    rate: 10
                }
            ]
        );
        assert!(parse_blkio_throttle_device(p, "").unwrap().is_empty());
        assert!(parse_blkio_throttle_device(p, "8:0\n").is_err());
    }
}
