//! procfs network files: `/proc/<pid>/net/dev` and the `ns/net` link.

use std::path::Path;

use crate::error::LinuxError;
use crate::parse::parse_u64;

/// One interface's cumulative byte counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevEntry {
    /// Interface name (`eth0`, `lo`, …).
    pub interface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
}

/// Parses `/proc/<pid>/net/dev`: two header lines, then `iface: <8 receive columns>
/// <8 transmit columns>` per interface.
pub fn parse_net_dev(path: &Path, text: &str) -> Result<Vec<NetDevEntry>, LinuxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let err = |field: &str, reason: &str| LinuxError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            reason: reason.to_string(),
        };
        // Old kernels print a wide counter flush against the colon (`eth0:123`), so the
        // name is split off at the colon rather than at whitespace.
        let (name, counters) = line
            .split_once(':')
            .ok_or_else(|| err("interface", "no `:` after the interface name"))?;
        let cols: Vec<&str> = counters.split_whitespace().collect();
        let (Some(rx), Some(tx)) = (cols.first(), cols.get(8)) else {
            return Err(err("counters", "fewer than 9 counter columns"));
        };
        out.push(NetDevEntry {
            interface: name.trim().to_string(),
            rx_bytes: parse_u64(path, i + 1, "rx_bytes", rx)?,
            tx_bytes: parse_u64(path, i + 1, "tx_bytes", tx)?,
        });
    }
    Ok(out)
}

/// Parses the target of a `/proc/<pid>/ns/net` link (`net:[4026531833]`) into the
/// namespace's inode number, which identifies it while it exists.
pub fn parse_netns_link(path: &Path, target: &str) -> Result<u64, LinuxError> {
    let inode = target
        .strip_prefix("net:[")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| LinuxError::Parse {
            path: path.to_path_buf(),
            line: 1,
            field: "ns/net".to_string(),
            reason: format!("{target:?} is not `net:[INODE]`"),
        })?;
    parse_u64(path, 1, "ns/net", inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   11971     129    0    0    0     0          0         0    11971     129    0    0    0     0       0          0
  eth0:203304614   13028    0    0    0     0          0         0   953330   11215    0    0    0     0       0          0
";

    #[test]
    fn net_dev_reads_every_interface() {
        let v = parse_net_dev(Path::new("net/dev"), HOST).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].interface, "lo");
        assert_eq!(
            (v[1].interface.as_str(), v[1].rx_bytes, v[1].tx_bytes),
            ("eth0", 203_304_614, 953_330)
        );
    }

    #[test]
    fn net_dev_headers_only_is_empty_and_short_lines_fail() {
        let headers: String = HOST.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert!(parse_net_dev(Path::new("d"), &headers).unwrap().is_empty());
        let bad = format!("{headers}  eth0: 1 2 3\n");
        assert!(matches!(
            parse_net_dev(Path::new("d"), &bad),
            Err(LinuxError::Parse { line: 3, .. })
        ));
    }

    #[test]
    fn netns_link() {
        let p = Path::new("/proc/1/ns/net");
        assert_eq!(
            parse_netns_link(p, "net:[4026531833]").unwrap(),
            4_026_531_833
        );
        assert!(parse_netns_link(p, "mnt:[1]").is_err());
        assert!(parse_netns_link(p, "net:[x]").is_err());
    }
}
