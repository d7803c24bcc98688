//! Network byte counters for a cgroup, where they can honestly be attributed to it.
//!
//! cgroups count no network traffic. What the kernel counts is traffic per interface, and
//! interfaces belong to a network namespace; so a workload's traffic is knowable exactly
//! when it has a namespace of its own (a container). A workload in the host's namespace
//! shares its interfaces with everything else on the host, and a figure for it would be
//! the host's traffic passed off as the workload's: it is reported as not attributable.
//! A VM's traffic crosses a tap device in the host's namespace, so a QEMU process reads as
//! shared too.
//!
//! Counters are the namespace's, not the cgroup's: cgroups sharing one namespace (the
//! containers of a Kubernetes pod) each see the namespace's total.
//!
//! Reading /proc costs a few syscalls per workload, so it is separate from
//! [`CgroupManager::read_sample`]: callers choose whether to pay for it.

use crate::cgroup::CgroupManager;
use crate::error::LinuxError;
use crate::parse::parse_net_dev;
use crate::procfs::ProcRoot;
use crate::sample::RawCgroupSample;

/// Whose network a cgroup's counters describe (a [`NetAttribution`] without the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetScope {
    /// The cgroup's processes have a namespace of their own, identified by its inode.
    Own {
        /// Inode of the network namespace; a different one later means the counters
        /// restarted in a new namespace.
        netns: u64,
    },
    /// The cgroup's processes are in the host's namespace: no figure can be attributed.
    SharedWithHost,
    /// No process could be inspected (the cgroup is empty, or its processes exited while
    /// being read).
    Unknown,
}

/// A cgroup's network counters, or why there are none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetAttribution {
    /// The namespace is the workload's own; cumulative bytes over every interface but `lo`.
    Own {
        /// Bytes received.
        rx_bytes: u64,
        /// Bytes transmitted.
        tx_bytes: u64,
        /// Inode of the network namespace.
        netns: u64,
    },
    /// The workload shares the host's namespace; its traffic cannot be told apart.
    SharedWithHost,
    /// No member process could be inspected.
    Unknown,
}

impl NetAttribution {
    /// The attribution without its counters.
    pub fn scope(&self) -> NetScope {
        match *self {
            NetAttribution::Own { netns, .. } => NetScope::Own { netns },
            NetAttribution::SharedWithHost => NetScope::SharedWithHost,
            NetAttribution::Unknown => NetScope::Unknown,
        }
    }
}

impl RawCgroupSample {
    /// Records a network reading in this sample; counters are set only for
    /// [`NetAttribution::Own`].
    pub fn set_network(&mut self, net: &NetAttribution) {
        let (rx, tx) = match *net {
            NetAttribution::Own {
                rx_bytes, tx_bytes, ..
            } => (Some(rx_bytes), Some(tx_bytes)),
            NetAttribution::SharedWithHost | NetAttribution::Unknown => (None, None),
        };
        self.net_rx_bytes = rx;
        self.net_tx_bytes = tx;
        self.net_scope = Some(net.scope());
    }
}

/// Reads the network counters of `cgroup`'s namespace, judged from its first member
/// process that can still be inspected.
///
/// The host's namespace is the one of pid 1 under `proc_root` (this process's own where
/// pid 1's cannot be read). Only one process is
/// looked at: processes of one workload share a namespace in every runtime presage
/// targets, and reading each would multiply the cost by the process count.
pub fn read_network<C: CgroupManager + ?Sized>(
    cgroup: &C,
    proc_root: &ProcRoot,
) -> Result<NetAttribution, LinuxError> {
    match cgroup.processes()? {
        Some(pids) => network_of_pids(&pids, proc_root),
        None => Ok(NetAttribution::Unknown),
    }
}

/// [`read_network`], recorded in `sample` with [`RawCgroupSample::set_network`]; on an
/// error the sample is left as it was (no network figure) and the error returned.
pub fn fill_network<C: CgroupManager + ?Sized>(
    cgroup: &C,
    proc_root: &ProcRoot,
    sample: &mut RawCgroupSample,
) -> Result<NetAttribution, LinuxError> {
    let net = read_network(cgroup, proc_root)?;
    sample.set_network(&net);
    Ok(net)
}

fn network_of_pids(pids: &[u32], proc_root: &ProcRoot) -> Result<NetAttribution, LinuxError> {
    let Some(host) = proc_root.host_net_ns()? else {
        return Ok(NetAttribution::Unknown);
    };
    for &pid in pids {
        let Some(netns) = proc_root.net_ns(pid)? else {
            continue;
        };
        if netns == host {
            return Ok(NetAttribution::SharedWithHost);
        }
        let Some(text) = proc_root.read(pid, "net/dev")? else {
            continue;
        };
        // The pid could have exited and been reused between the two reads; the counters
        // are only the namespace's if the process is still in it afterwards.
        if proc_root.net_ns(pid)? != Some(netns) {
            continue;
        }
        let devs = parse_net_dev(&proc_root.pid_file(pid, "net/dev"), &text)?;
        let (mut rx_bytes, mut tx_bytes) = (0u64, 0u64);
        // Loopback traffic never leaves the namespace, so it uses no network capacity.
        for d in devs.iter().filter(|d| d.interface != "lo") {
            rx_bytes = rx_bytes.saturating_add(d.rx_bytes);
            tx_bytes = tx_bytes.saturating_add(d.tx_bytes);
        }
        return Ok(NetAttribution::Own {
            rx_bytes,
            tx_bytes,
            netns,
        });
    }
    Ok(NetAttribution::Unknown)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::Cgroup;
    use crate::testutil::{put, unified_layout};

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    fn netns(proc: &Path, pid: u32, inode: u64) {
        let dir = proc.join(format!("{pid}/ns"));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("net");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("net:[{inode}]"), link).unwrap();
    }

    fn net_dev(proc: &Path, pid: u32, lines: &str) {
        put(proc, &format!("{pid}/net/dev"), &format!("{HEADER}{lines}"));
    }

    /// A fake host: cgroupfs under `cg/`, procfs under `proc/`, pid 1 in netns 100.
    fn host() -> (tempfile::TempDir, Cgroup, ProcRoot) {
        let dir = tempfile::tempdir().unwrap();
        let cg_root = dir.path().join("cg");
        let cg = Cgroup::open(&unified_layout(&cg_root, "cpu memory\n"), "job").unwrap();
        let proc = dir.path().join("proc");
        netns(&proc, 1, 100);
        (dir, cg, ProcRoot::new(proc))
    }

    #[test]
    fn own_namespace_sums_all_but_loopback() {
        let (dir, cg, proc) = host();
        put(dir.path(), "cg/job/cgroup.procs", "10\n11\n");
        netns(proc.path(), 10, 200);
        net_dev(
            proc.path(),
            10,
            "    lo:  999 1 0 0 0 0 0 0   999 1 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0  300 2 0 0 0 0 0 0\n  eth1:   24 1 0 0 0 0 0 0   12 1 0 0 0 0 0 0\n",
        );
        let net = read_network(&cg, &proc).unwrap();
        assert_eq!(
            net,
            NetAttribution::Own {
                rx_bytes: 1024,
                tx_bytes: 312,
                netns: 200
            }
        );
        let mut s = RawCgroupSample::default();
        s.set_network(&net);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (Some(1024), Some(312)));
        assert_eq!(s.net_scope, Some(NetScope::Own { netns: 200 }));
    }

    #[test]
    fn host_namespace_is_not_attributable() {
        let (dir, cg, proc) = host();
        put(dir.path(), "cg/job/cgroup.procs", "10\n");
        netns(proc.path(), 10, 100);
        net_dev(proc.path(), 10, "  eth0: 1 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0\n");
        let mut s = RawCgroupSample::default();
        let net = fill_network(&cg, &proc, &mut s).unwrap();
        assert_eq!(net, NetAttribution::SharedWithHost);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (None, None));
        assert_eq!(s.net_scope, Some(NetScope::SharedWithHost));
    }

    #[test]
    fn vanished_processes_are_skipped_then_unknown() {
        let (dir, cg, proc) = host();
        // No cgroup at all, then an empty one, then members that have all exited.
        assert_eq!(read_network(&cg, &proc).unwrap(), NetAttribution::Unknown);
        put(dir.path(), "cg/job/cgroup.procs", "");
        assert_eq!(read_network(&cg, &proc).unwrap(), NetAttribution::Unknown);
        put(dir.path(), "cg/job/cgroup.procs", "10\n11\n");
        assert_eq!(read_network(&cg, &proc).unwrap(), NetAttribution::Unknown);
        // 10 exits between its ns link and its net/dev; 11 answers.
        netns(proc.path(), 10, 200);
        netns(proc.path(), 11, 300);
        net_dev(proc.path(), 11, "  eth0: 5 0 0 0 0 0 0 0 6 0 0 0 0 0 0 0\n");
        assert_eq!(
            read_network(&cg, &proc).unwrap(),
            NetAttribution::Own {
                rx_bytes: 5,
                tx_bytes: 6,
                netns: 300
            }
        );
    }

    #[test]
    fn corrupt_net_dev_names_the_file() {
        let (dir, cg, proc) = host();
        put(dir.path(), "cg/job/cgroup.procs", "10\n");
        netns(proc.path(), 10, 200);
        net_dev(proc.path(), 10, "  eth0: x\n");
        let err = read_network(&cg, &proc).unwrap_err();
        assert!(err.to_string().contains("10/net/dev"), "{err}");
    }
}
