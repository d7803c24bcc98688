//! The one error type of this crate.
//!
//! Every variant names the file it is about, and write errors also carry the value that was
//! being written: an operator reading a log line must be able to reproduce the failing
//! `echo VALUE > PATH` by hand.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Anything that can go wrong while reading or writing cgroupfs.
#[derive(Debug, Error)]
pub enum LinuxError {
    /// A file exists (or might) but could not be read for a reason other than absence.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The kernel (or the filesystem) refused a write.
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The exact text that was written.
        value: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A line of a kernel file did not have the expected shape.
    #[error("{path}:{line}: field `{field}`: {reason}")]
    Parse {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key or column that failed.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A file was readable but lacked a field this crate relies on.
    #[error("{path}: required field `{field}` is missing")]
    MissingField {
        /// The file being parsed.
        path: PathBuf,
        /// The key that was not found.
        field: String,
    },
    /// No cgroup filesystem is mounted at or below the configured root.
    #[error("no cgroup hierarchy is mounted under {root} according to {mountinfo}")]
    NoCgroupMounts {
        /// The configured cgroup root.
        root: PathBuf,
        /// The mount table that was consulted.
        mountinfo: PathBuf,
    },
    /// The operation cannot be done with the controllers this host provides.
    #[error("{operation} is not supported here: {reason}")]
    Unsupported {
        /// What was attempted.
        operation: &'static str,
        /// Why it cannot be done.
        reason: String,
    },
    /// A caller-supplied value is outside what the kernel accepts.
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// Which parameter.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A cgroup directory could not be created.
    #[error("cannot create cgroup directory {path}: {source}")]
    CreateDir {
        /// The directory being created.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed; `EBUSY` means it still has processes or
    /// child cgroups.
    #[error("cannot remove cgroup directory {path}: {source}")]
    RemoveDir {
        /// The directory being removed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Two raw samples could not be turned into a [`presage_core::Sample`].
    #[error("cannot build a sample for workload {workload}: {source}")]
    Sample {
        /// The workload the sample was for.
        workload: String,
        /// What presage-core rejected.
        #[source]
        source: presage_core::CoreError,
    },
    /// A limit the kernel reports cannot be expressed as a [`presage_core::Limits`] (a zero
    /// memory limit, a weight outside 1..=10000).
    #[error("{path} holds {value:?}, which presage limits cannot express: {source}")]
    Limit {
        /// The limit file.
        path: PathBuf,
        /// The value as read.
        value: String,
        /// What presage-core rejected.
        #[source]
        source: presage_core::CoreError,
    },
    /// A discovery glob pattern did not compile.
    #[error("discovery `{field}` pattern {pattern:?} is invalid: {source}")]
    Pattern {
        /// The configuration field holding it (`roots`, `include` or `exclude`).
        field: &'static str,
        /// The pattern as configured.
        pattern: String,
        /// What globset rejected.
        #[source]
        source: globset::Error,
    },
    /// A signal could not be sent to a process listed in a cgroup.
    #[error("cannot send {signal} to pid {pid} (listed in {path}): {source}")]
    Signal {
        /// The `cgroup.procs` file the pid was read from.
        path: PathBuf,
        /// The target process.
        pid: u32,
        /// The signal's name.
        signal: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Processes were still in the cgroup after every round of killing.
    #[error("{path} still lists {pids:?} after {rounds} rounds of SIGKILL")]
    KillIncomplete {
        /// The `cgroup.procs` file read last.
        path: PathBuf,
        /// The survivors.
        pids: Vec<u32>,
        /// Rounds attempted.
        rounds: u32,
    },
    /// A memory hard limit would have been set below what the workload already uses.
    #[error(
        "refusing to write memory limit {limit} bytes to {path}: current usage {usage} bytes plus margin {margin} bytes would not fit"
    )]
    UnsafeMemoryLimit {
        /// The limit file that was not written.
        path: PathBuf,
        /// The requested limit.
        limit: u64,
        /// The usage read just before.
        usage: u64,
        /// The configured safety margin.
        margin: u64,
    },
}
