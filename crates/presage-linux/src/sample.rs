//! What one read of a cgroup yields: cumulative counters and gauges, not yet rates.
//!
//! Rates (cores, bytes/s) need two samples and an interval, which the caller owns; keeping
//! the raw counters here means a missed tick loses no information.

use crate::net::NetScope;
use crate::parse::Pressure;

/// Counters and gauges read from one cgroup at one instant.
///
/// Every field is optional: each comes from a different file, any file can be absent (the
/// controller is not mounted, the kernel is too old, the workload just exited), and an
/// absent reading must stay distinguishable from a zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCgroupSample {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Cumulative CFS enforcement periods.
    pub cpu_nr_periods: Option<u64>,
    /// Cumulative throttled periods.
    pub cpu_nr_throttled: Option<u64>,
    /// Cumulative throttled time, nanoseconds.
    pub cpu_throttled_ns: Option<u64>,
    /// Memory charged to the cgroup, bytes (includes page cache).
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive page cache, bytes: what the workload cannot give back without
    /// being hurt, and what the kernel's OOM decisions track most closely.
    pub memory_working_set_bytes: Option<u64>,
    /// Highest usage recorded by the kernel, bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Cumulative OOM kills.
    pub oom_kills: Option<u64>,
    /// Cumulative bytes read from block devices.
    pub io_read_bytes: Option<u64>,
    /// Cumulative bytes written to block devices.
    pub io_write_bytes: Option<u64>,
    /// CPU pressure stall information.
    pub cpu_pressure: Option<Pressure>,
    /// Memory pressure stall information.
    pub memory_pressure: Option<Pressure>,
    /// I/O pressure stall information.
    pub io_pressure: Option<Pressure>,
    /// Processes in the cgroup (not counting descendants).
    pub process_count: Option<u64>,
    /// Cumulative bytes received on the cgroup's own network namespace, every interface
    /// but `lo`. Filled only by [`crate::read_network`] callers, never by `read_sample`.
    pub net_rx_bytes: Option<u64>,
    /// Cumulative bytes transmitted, as for `net_rx_bytes`.
    pub net_tx_bytes: Option<u64>,
    /// Whose network the counters above describe; `None` when the network was not read.
    pub net_scope: Option<NetScope>,
}

impl RawCgroupSample {
    /// True when nothing could be read, which usually means the cgroup is gone.
    pub fn is_empty(&self) -> bool {
        *self == RawCgroupSample::default()
    }
}

pub(crate) fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    // Without the inactive-file figure, usage is the closest upper bound we have; a
    // missing memory.stat must not hide the memory reading altogether.
    usage.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)))
}
