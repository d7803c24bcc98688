//! Linux cgroup sampling and actuation for presage.
//!
//! Everything goes through plain file I/O on a configurable cgroupfs root, so the same code
//! drives a v2 host, a v1 host, a hybrid host (v2 mounted at `/sys/fs/cgroup/unified`), and a
//! fake tree in a temp dir under test. The layout is detected from the mount table
//! ([`Layout`]); a [`Cgroup`] picks the v1 or v2 backend from it at runtime and implements
//! [`CgroupManager`].
//!
//! A file that is missing is an absence (`None`), never an error: workloads exit while they
//! are being read, and the agent must not fall over when they do.

// Tests fail loudly on a broken fixture; the lint guards library code, not them.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cgroup;
mod current_limits;
mod discover;
mod error;
mod fsio;
mod kill;
mod layout;
mod lifecycle;
mod limits;
mod net;
pub mod parse;
mod probe;
mod procfs;
mod rates;
mod sample;
#[cfg(test)]
mod testutil;
mod v1;
mod v2;

pub use cgroup::{Cgroup, CgroupManager, DEFAULT_MEMORY_MARGIN_BYTES};
pub use discover::{
    DEFAULT_MAX_DEPTH, DEFAULT_ROOTS, Discovered, Discoverer, DiscoveryConfig, WorkloadKind,
    discover, discovery_tree,
};
pub use error::LinuxError;
pub use fsio::hold_files_open;
pub use layout::{
    CgroupMode, Controller, ControllerMount, DEFAULT_MOUNTINFO, DEFAULT_ROOT, Layout, MountEntry,
    parse_mountinfo,
};
pub use limits::{CpuMax, CpuWeight, IoMax};
pub use net::{NetAttribution, NetScope, fill_network, read_network};
pub use probe::{probe_writable, writable_layout};
pub use procfs::{DEFAULT_PROC, ProcRoot};
pub use rates::sample_between;
pub use sample::RawCgroupSample;
pub use v1::V1Cgroup;
pub use v2::V2Cgroup;
