//! Plumbing shared by the readers: finding data files, opening them (gzip by magic bytes),
//! reading lines, parsing numbers, building per-workload series and lenient accounting.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use presage_core::{Timestamp, Usage};

use super::{Skipped, Trace, TracePoint, TraceWorkload};
use crate::trace::TraceError;

/// Read buffer per file. Large enough that gzip inflation and line splitting amortise
/// their per-call costs; small enough that 2× the core count of them is nothing.
const BUF_BYTES: usize = 256 * 1024;

/// One problem on one line, before it is tied to a file.
#[derive(Debug, Clone)]
pub(crate) struct Bad {
    /// The column name (or "columns", "line", "header").
    pub(crate) field: Cow<'static, str>,
    /// A short, stable category; lenient reads count by it.
    pub(crate) reason: &'static str,
    /// The specifics (the offending text, the expected shape).
    pub(crate) detail: String,
}

impl Bad {
    pub(crate) fn new(
        field: impl Into<Cow<'static, str>>,
        reason: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Bad {
            field: field.into(),
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn at(self, path: &Path, line: u64) -> TraceError {
        let message = if self.detail.is_empty() {
            self.reason.to_owned()
        } else {
            format!("{}: {}", self.reason, self.detail)
        };
        TraceError::Parse {
            path: path.to_path_buf(),
            line,
            field: self.field.into_owned(),
            message,
        }
    }
}

/// Where a file's bad lines go: an error (strict) or a count (lenient).
#[derive(Debug, Default)]
pub(crate) struct Problems {
    lenient: bool,
    pub(crate) skipped: Skipped,
}

impl Problems {
    pub(crate) fn new(lenient: bool) -> Self {
        Problems {
            lenient,
            skipped: Skipped::default(),
        }
    }

    /// Fails the read, or counts the line as skipped when lenient.
    pub(crate) fn report(&mut self, path: &Path, line: u64, bad: Bad) -> Result<(), TraceError> {
        let reason = bad.reason;
        let err = bad.at(path, line);
        if !self.lenient {
            return Err(err);
        }
        self.skipped.record(reason, || err.to_string());
        Ok(())
    }
}

/// A line's 1-based number and its text (or why it has none).
pub(crate) type NumberedLine<'a> = (u64, Result<&'a str, Bad>);

/// A file read line by line, decompressing gzip on the fly.
pub(crate) struct Lines {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    buf: Vec<u8>,
    number: u64,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("path", &self.path)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl Lines {
    pub(crate) fn open(path: &Path) -> Result<Self, TraceError> {
        Ok(Lines {
            reader: open(path)?,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(256),
            number: 0,
        })
    }

    /// The next line without its line ending, with its 1-based number; `None` at the end.
    /// A line that is not UTF-8 is a [`Bad`] for the caller to report or skip.
    pub(crate) fn next_line(&mut self) -> Result<Option<NumberedLine<'_>>, TraceError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| io_error(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        // A byte-order mark (spreadsheet exports write one) is not part of the header.
        let start = if self.number == 1 && self.buf.starts_with(b"\xef\xbb\xbf") {
            3
        } else {
            0
        };
        let mut end = self.buf.len();
        while end > start && matches!(self.buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let text = std::str::from_utf8(&self.buf[start..end])
            .map_err(|e| Bad::new("line", "not UTF-8", e.to_string()));
        Ok(Some((self.number, text)))
    }
}

/// Opens `path` for buffered reading, inflating it if it starts with the gzip magic.
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, TraceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = BufReader::with_capacity(BUF_BYTES, file);
    let head = reader.fill_buf().map_err(|e| io_error(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // Multi-member: `cat a.gz b.gz` is a valid gzip file and must read as a whole.
        let gz = MultiGzDecoder::new(reader);
        Ok(Box::new(BufReader::with_capacity(
            BUF_BYTES,
            GzErrors { inner: gz },
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// Rewords inflate errors so a truncated download is recognisable as one.
struct GzErrors<R> {
    inner: R,
}

impl<R: Read> Read for GzErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("gzip stream is truncated or corrupt ({e})"),
            )
        })
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> TraceError {
    TraceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> TraceError {
    TraceError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A file name without a trailing `.gz`.
pub(crate) fn strip_gz(name: &str) -> &str {
    name.strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".GZ"))
        .unwrap_or(name)
}

/// Whether `name` (after any `.gz`) ends in `.ext`, case-insensitively.
pub(crate) fn has_ext(name: &str, ext: &str) -> bool {
    let name = strip_gz(name);
    name.len() > ext.len() + 1
        && name.as_bytes()[name.len() - ext.len() - 1] == b'.'
        && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
}

/// The file name without `.gz` and without its last extension: `1001.csv.gz` → `1001`.
pub(crate) fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = strip_gz(&name);
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[..dot].to_owned(),
        _ => name.to_owned(),
    }
}

/// The data files under `root`: `root` itself if it is a file (whatever its name), else
/// every file below it, recursively, whose name `accept`s, sorted by path. Hidden files
/// are skipped; symlinks are followed, each directory once.
pub(crate) fn data_files(
    root: &Path,
    what: &str,
    accept: impl Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, TraceError> {
    let meta = std::fs::metadata(root).map_err(|e| io_error(root, e))?;
    if meta.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let canonical = std::fs::canonicalize(&dir).map_err(|e| io_error(&dir, e))?;
        if !seen.insert(canonical) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && accept(&name) {
                files.push(path);
            } else {
                tracing::debug!(path = %path.display(), "not a {what} data file; ignored");
            }
        }
    }
    if files.is_empty() {
        return Err(invalid(root, format!("no {what} data files found")));
    }
    files.sort();
    Ok(files)
}

/// Splits `text` on the ASCII byte `sep` into at most `N` cells, trimming ASCII
/// whitespace from each, and says how many cells there were in all. Hand-rolled because
/// `str::split` + `trim` were a quarter of the time of reading Bitbrains.
pub(crate) fn split_fixed<const N: usize>(text: &str, sep: u8) -> (usize, [&str; N]) {
    let mut cells = [""; N];
    let mut count = 0;
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if b == sep {
            if count < N {
                // `sep` is ASCII, so `start..i` falls on character boundaries.
                cells[count] = text[start..i].trim_ascii();
            }
            count += 1;
            start = i + 1;
        }
    }
    if count < N {
        cells[count] = text[start..].trim_ascii();
    }
    (count + 1, cells)
}

/// Parses a usage quantity: a finite, non-negative number (scientific notation allowed).
pub(crate) fn quantity(field: &'static str, text: &str) -> Result<f64, Bad> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(Bad::new(field, "empty value", ""));
    }
    let value: f64 = text
        .parse()
        .map_err(|_| Bad::new(field, "not a number", format!("{text:?}")))?;
    if !value.is_finite() {
        return Err(Bad::new(field, "NaN or infinite", format!("{text:?}")));
    }
    if value < 0.0 {
        return Err(Bad::new(field, "negative value", format!("{text:?}")));
    }
    Ok(value)
}

/// Parses an optional quantity: an empty cell is absent.
pub(crate) fn optional_quantity(field: &'static str, text: &str) -> Result<Option<f64>, Bad> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        quantity(field, text).map(Some)
    }
}

/// Checks that a cell we do not use is a number (any sign) or empty, so a shifted column
/// or text where a number belongs is still caught.
pub(crate) fn number_or_empty(field: &'static str, text: &str) -> Result<(), Bad> {
    let text = text.trim();
    if text.is_empty() || text.parse::<f64>().is_ok_and(f64::is_finite) {
        Ok(())
    } else {
        Err(Bad::new(field, "not a number", format!("{text:?}")))
    }
}

/// A per-workload series being built in time order.
#[derive(Debug, Default)]
pub(crate) struct Series {
    pub(crate) points: Vec<TracePoint>,
    pub(crate) duplicates: u64,
}

impl Series {
    /// Appends a point. A repeated timestamp is dropped and counted (the first row wins);
    /// a timestamp before the previous one is an error on `field`.
    pub(crate) fn push(
        &mut self,
        field: &'static str,
        at: Timestamp,
        demand: Usage,
    ) -> Result<bool, Bad> {
        if let Some(last) = self.points.last() {
            if at == last.at {
                self.duplicates += 1;
                return Ok(false);
            }
            if at < last.at {
                return Err(Bad::new(
                    field,
                    "timestamp went backwards",
                    format!("{at} is before the previous row's {}", last.at),
                ));
            }
        }
        self.points.push(TracePoint { at, demand });
        Ok(true)
    }
}

/// Sorts points by time (stably, so among equal timestamps the earlier row stays first)
/// and drops repeated timestamps, keeping the first. Returns how many were dropped.
pub(crate) fn sort_dedup(points: &mut Vec<TracePoint>) -> u64 {
    if !points.windows(2).all(|w| w[0].at <= w[1].at) {
        points.sort_by_key(|p| p.at);
    }
    let before = points.len();
    points.dedup_by_key(|p| p.at);
    (before - points.len()) as u64
}

/// Counts how often each value occurs, to pick the value a workload was provisioned with
/// when its rows disagree.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// value bits → (count, latest time seen).
    counts: HashMap<u64, (u64, Timestamp)>,
}

impl Tally {
    pub(crate) fn add(&mut self, value: f64, at: Timestamp) {
        let entry = self.counts.entry(value.to_bits()).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
    }

    pub(crate) fn absorb(&mut self, other: &Tally) {
        for (bits, (n, at)) in &other.counts {
            let entry = self.counts.entry(*bits).or_insert((0, *at));
            entry.0 += n;
            entry.1 = entry.1.max(*at);
        }
    }

    /// The most common value; among equally common ones, the one seen latest.
    pub(crate) fn mode(&self) -> Option<f64> {
        self.counts
            .iter()
            .max_by_key(|(bits, (n, at))| (*n, *at, **bits))
            .map(|(bits, _)| f64::from_bits(*bits))
    }
}

/// Assembles the result: drops workloads left without points (a header-only file, or
/// every line skipped) and sorts the rest by id.
pub(crate) fn finish(
    mut workloads: Vec<TraceWorkload>,
    files: usize,
    duplicates: u64,
    skipped: Skipped,
) -> Trace {
    workloads.retain(|w| {
        if w.points.is_empty() {
            tracing::warn!(workload = %w.id, origin = %w.origin.display(), "no usable rows; workload dropped");
        }
        !w.points.is_empty()
    });
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    Trace {
        workloads,
        files,
        duplicates,
        skipped,
    }
}
