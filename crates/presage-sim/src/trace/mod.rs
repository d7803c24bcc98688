//! Trace readers: each turns a recorded trace into per-workload demand series.
//!
//! Readers stream their input line by line (gzip is detected by its magic bytes, not the
//! file name), so a trace never has to fit in memory as text. Every malformed line is an
//! error naming the file, the line and the field; with `lenient` it is skipped instead and
//! counted in [`Trace::skipped`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use presage_core::{Limits, Timestamp, Usage, WorkloadId, WorkloadKey};
use serde::Serialize;
use thiserror::Error;

/// One step of a workload's demand: what it would have used over the interval ending at
/// `at` had nothing limited it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// End of the interval.
    pub at: Timestamp,
    /// Demand per resource, in each resource's unit.
    pub demand: Usage,
}

/// One workload of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceWorkload {
    /// Its id (a VM id, a machine id, a CSV `workload` value).
    pub id: WorkloadId,
    /// What it is; traces rarely say, so usually the code id is the workload id.
    pub key: WorkloadKey,
    /// The allocation it had in the trace (its static limits), where the trace says.
    pub provisioned: Limits,
    /// Its demand, strictly increasing in time.
    pub points: Vec<TracePoint>,
    /// The file it came from.
    pub origin: PathBuf,
}

/// Lines a lenient read skipped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Skipped {
    /// Lines skipped in all.
    pub lines: u64,
    /// Count per reason.
    pub by_reason: BTreeMap<String, u64>,
    /// The first few skipped lines' locations and reasons, for the report.
    pub examples: Vec<String>,
}

/// A whole trace: every workload read from one `FORMAT:PATH`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The workloads, sorted by id.
    pub workloads: Vec<TraceWorkload>,
    /// Files read.
    pub files: usize,
    /// Rows dropped as duplicates of an earlier row's timestamp.
    pub duplicates: u64,
    /// Lines skipped by a lenient read.
    pub skipped: Skipped,
}

/// A malformed trace: where, and what is wrong.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be opened or read (including a truncated gzip stream).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line did not parse.
    #[error("{path}:{line}: field {field}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The field (column name, or position).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The trace as a whole cannot be used (no files, a missing companion file, …).
    #[error("{path}: {message}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
