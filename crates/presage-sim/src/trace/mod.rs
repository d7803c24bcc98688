//! Trace readers: each turns a recorded trace into per-workload demand series.
//!
//! Readers stream their input line by line (gzip is detected by its magic bytes, not the
//! file name), so a trace never has to fit in memory as text. Every malformed line is an
//! error naming the file, the line and the field; with `lenient` it is skipped instead and
//! counted in [`Trace::skipped`].
//!
//! The entry point is [`read_trace`]; `docs/TRACES.md` documents every format, its units
//! and the choices made where the source data is ambiguous.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use presage_core::{CoreError, Limits, Timestamp, Usage, WorkloadId, WorkloadKey};
use serde::Serialize;
use thiserror::Error;

mod alibaba;
mod bitbrains;
mod csv;
mod input;
mod prometheus;
mod timefmt;

pub use csv::write_csv;

/// The trace formats [`read_trace`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// Bitbrains GWA-T-12 (fastStorage, Rnd): one VM per `;`-separated file.
    Bitbrains,
    /// Alibaba cluster-trace-v2018 `machine_usage` with its `machine_meta`.
    Alibaba,
    /// presage's generic CSV (`timestamp,workload,cpu,memory,…`), also written by
    /// [`write_csv`].
    Csv,
    /// Prometheus `/api/v1/query_range` JSON responses, one resource per file.
    Prometheus,
}

impl TraceFormat {
    /// Every format, in the order their names are listed in messages.
    pub const ALL: [TraceFormat; 4] = [
        TraceFormat::Bitbrains,
        TraceFormat::Alibaba,
        TraceFormat::Csv,
        TraceFormat::Prometheus,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            TraceFormat::Bitbrains => "bitbrains",
            TraceFormat::Alibaba => "alibaba",
            TraceFormat::Csv => "csv",
            TraceFormat::Prometheus => "prometheus",
        }
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TraceFormat {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| CoreError::UnknownName {
                what: "trace format",
                name: s.to_owned(),
                expected: "bitbrains, alibaba, csv, prometheus",
            })
    }
}

/// How to read a trace. `Default` is strict, with the documented nominal values.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    /// Skip malformed lines (counting them in [`Trace::skipped`]) instead of failing.
    /// Problems with a whole file (unreadable, truncated, bad header) still fail.
    pub lenient: bool,
    /// Alibaba: the memory of a machine whose `mem_size` is 100, in bytes. The public trace
    /// normalises memory, so absolute bytes are unknowable; default 512 GiB (see
    /// `docs/TRACES.md`). Ratios (slack, violation rate) do not depend on it.
    pub alibaba_machine_memory_bytes: f64,
    /// Alibaba: the instant that `time_stamp` 0 is mapped to. Default
    /// 2018-01-01T00:00:00Z, a Monday, so day-of-week features see day 0 as a Monday.
    pub alibaba_epoch: Timestamp,
    /// Prometheus: the resource of every file, overriding the one named by the file name.
    pub prometheus_resource: Option<presage_core::Resource>,
    /// Prometheus: the label whose value is the workload id. `None` joins all labels but
    /// `__name__` as sorted `k=v` pairs.
    pub prometheus_id_label: Option<String>,
}

/// 512 GiB: the nominal memory of an Alibaba 2018 machine (see [`ReadOptions`]).
pub const ALIBABA_DEFAULT_MACHINE_MEMORY_BYTES: f64 = 512.0 * 1024.0 * 1024.0 * 1024.0;

/// 2018-01-01T00:00:00Z, the default instant for Alibaba `time_stamp` 0.
pub const ALIBABA_DEFAULT_EPOCH: Timestamp = Timestamp::from_unix_secs(1_514_764_800);

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            lenient: false,
            alibaba_machine_memory_bytes: ALIBABA_DEFAULT_MACHINE_MEMORY_BYTES,
            alibaba_epoch: ALIBABA_DEFAULT_EPOCH,
            prometheus_resource: None,
            prometheus_id_label: None,
        }
    }
}

/// Reads the trace at `path` (a file, or a directory read recursively) in `format`.
///
/// The workloads come back sorted by id, each with strictly increasing timestamps.
/// Rows repeating a timestamp are dropped (the first is kept) and counted in
/// [`Trace::duplicates`].
pub fn read_trace(
    format: TraceFormat,
    path: &Path,
    options: &ReadOptions,
) -> Result<Trace, TraceError> {
    let trace = match format {
        TraceFormat::Bitbrains => bitbrains::read(path, options),
        TraceFormat::Alibaba => alibaba::read(path, options),
        TraceFormat::Csv => csv::read(path, options),
        TraceFormat::Prometheus => prometheus::read(path, options),
    }?;
    tracing::debug!(
        %format,
        path = %path.display(),
        workloads = trace.workloads.len(),
        files = trace.files,
        duplicates = trace.duplicates,
        skipped = trace.skipped.lines,
        "read trace"
    );
    Ok(trace)
}

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
    /// The file it came from (for a workload merged from several files, the earliest).
    pub origin: PathBuf,
    /// When a known demand surge began, in time order. Only synthetic traces know this
    /// (see [`crate::synth`]); recorded traces leave it empty. An evaluation uses it to ask
    /// whether limits were raised *before* each surge.
    pub surges: Vec<Timestamp>,
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

impl Skipped {
    /// How many skipped lines are quoted in [`Skipped::examples`].
    pub const MAX_EXAMPLES: usize = 10;

    /// Counts one skipped line.
    pub(crate) fn record(&mut self, reason: &str, example: impl FnOnce() -> String) {
        self.lines += 1;
        *self.by_reason.entry(reason.to_owned()).or_default() += 1;
        if self.examples.len() < Self::MAX_EXAMPLES {
            self.examples.push(example());
        }
    }

    /// Adds another file's skipped lines to these.
    pub(crate) fn absorb(&mut self, other: Skipped) {
        self.lines += other.lines;
        for (reason, n) in other.by_reason {
            *self.by_reason.entry(reason).or_default() += n;
        }
        let room = Self::MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
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
