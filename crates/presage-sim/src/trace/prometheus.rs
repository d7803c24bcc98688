//! Prometheus range-query responses (`/api/v1/query_range`, `resultType` `matrix`).
//!
//! A response holds one resource: the file name says which (`cpu.json`,
//! `memory-2024-05-01.json.gz`, `memory_provisioned.json`), unless
//! [`ReadOptions::prometheus_resource`] overrides it. A series becomes a workload by its
//! labels. Files of different resources merge per workload by timestamp.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use presage_core::{Limits, Resource, ResourceMap, Timestamp, Usage, WorkloadId, WorkloadKey};
use rayon::prelude::*;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

use super::input::{self, Bad, Problems};
use super::{ReadOptions, Skipped, Trace, TraceError, TracePoint, TraceWorkload};

/// The workload id of a series whose labels (besides `__name__`) are empty, as an
/// aggregate query like `sum(rate(…))` returns.
const UNLABELLED_ID: &str = "total";

/// What a file's values are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Demand(Resource),
    Provisioned(Resource),
}

/// The role a file name announces: its stem starts with a resource name followed by the
/// end or a non-alphanumeric character; a later word `provisioned` makes it a limit.
fn role_from_name(path: &Path) -> Option<Role> {
    let stem = input::stem(path).to_ascii_lowercase();
    let mut names: Vec<Resource> = Resource::ALL.to_vec();
    // Longest first, so no resource name is mistaken for a prefix of another.
    names.sort_by_key(|r| std::cmp::Reverse(r.name().len()));
    names.into_iter().find_map(|r| {
        let rest = stem.strip_prefix(r.name())?;
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return None;
        }
        let provisioned = rest
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "provisioned");
        Some(if provisioned {
            Role::Provisioned(r)
        } else {
            Role::Demand(r)
        })
    })
}

thread_local! {
    /// Newlines consumed so far by the JSON parser on this thread. A file is parsed start
    /// to end on one thread, and serde_json reads one byte at a time without look-ahead
    /// beyond a byte, so a value's visitor sees the line it sits on.
    static NEWLINES: Cell<u64> = const { Cell::new(0) };
}

struct CountNewlines<R> {
    inner: R,
}

impl<R: Read> Read for CountNewlines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if newlines > 0 {
            NEWLINES.with(|c| c.set(c.get() + newlines));
        }
        Ok(n)
    }
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<SeriesJson>,
}

#[derive(Deserialize)]
struct SeriesJson {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Point>,
}

/// One `[unix_seconds, "value"]` pair, with the line it was on.
struct Point {
    secs: f64,
    value: String,
    line: u64,
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(PointVisitor)
    }
}

struct PointVisitor;

/// Prometheus writes sample values as strings; a plain number is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum ValueJson {
    Text(String),
    Number(f64),
}

impl<'de> Visitor<'de> for PointVisitor {
    type Value = Point;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [unix_seconds, \"value\"] pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
        let line = NEWLINES.with(Cell::get) + 1;
        let secs: f64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let value: ValueJson = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        let value = match value {
            ValueJson::Text(s) => s,
            ValueJson::Number(n) => n.to_string(),
        };
        Ok(Point { secs, value, line })
    }
}

/// One series of one file, checked and in time order.
#[derive(Debug)]
struct SeriesOut {
    id: String,
    points: Vec<(Timestamp, f64)>,
}

#[derive(Debug)]
struct FileOut {
    path: PathBuf,
    role: Role,
    series: Vec<SeriesOut>,
    duplicates: u64,
    skipped: Skipped,
}

pub(crate) fn read(path: &Path, options: &ReadOptions) -> Result<Trace, TraceError> {
    let files = input::data_files(path, "Prometheus", |name| input::has_ext(name, "json"))?;
    let outs: Vec<Result<FileOut, TraceError>> = files
        .par_iter()
        .map(|file| read_file(file, options))
        .collect();

    #[derive(Default)]
    struct Acc {
        points: BTreeMap<Timestamp, Usage>,
        provisioned: ResourceMap<Option<(Timestamp, f64)>>,
        origin: Option<PathBuf>,
    }
    let mut by_id: BTreeMap<String, Acc> = BTreeMap::new();
    let mut skipped = Skipped::default();
    let mut duplicates = 0;
    for out in outs {
        let out = out?;
        skipped.absorb(out.skipped);
        duplicates += out.duplicates;
        for series in out.series {
            let acc = by_id.entry(series.id).or_default();
            match out.role {
                Role::Demand(r) => {
                    acc.origin.get_or_insert_with(|| out.path.clone());
                    for (at, v) in series.points {
                        let usage = acc.points.entry(at).or_insert_with(Usage::empty);
                        if usage.get(r).is_some() {
                            duplicates += 1;
                        } else if usage.set(r, v).is_err() {
                            usage.clear(r);
                        }
                    }
                }
                Role::Provisioned(r) => {
                    // A limit of 0 is how exporters say "no limit"; the latest positive
                    // value is the allocation.
                    let latest = series.points.into_iter().rev().find(|(_, v)| *v > 0.0);
                    if let Some((at, v)) = latest
                        && acc.provisioned.get(r).is_none_or(|(seen, _)| at > seen)
                    {
                        acc.provisioned.set(r, Some((at, v)));
                    }
                }
            }
        }
    }
    let mut workloads = Vec::with_capacity(by_id.len());
    for (id, acc) in by_id {
        let origin = acc.origin.unwrap_or_else(|| path.to_path_buf());
        let invalid = |e: presage_core::CoreError| input::invalid(&origin, e.to_string());
        let mut provisioned = Limits::unlimited();
        for (r, (_, v)) in acc.provisioned.present() {
            provisioned.set_hard(r, *v).map_err(invalid)?;
        }
        workloads.push(TraceWorkload {
            id: WorkloadId::new(&id).map_err(invalid)?,
            key: WorkloadKey::for_code(id.as_str()).map_err(invalid)?,
            provisioned,
            points: acc
                .points
                .into_iter()
                .map(|(at, demand)| TracePoint { at, demand })
                .collect(),
            origin,
            surges: Vec::new(),
        });
    }
    Ok(input::finish(workloads, files.len(), duplicates, skipped))
}

fn read_file(path: &Path, options: &ReadOptions) -> Result<FileOut, TraceError> {
    let role = match options.prometheus_resource {
        Some(r) => Role::Demand(r),
        None => role_from_name(path).ok_or_else(|| {
            input::invalid(
                path,
                "cannot tell the resource: the file name must start with cpu, memory, \
                 io_read, io_write, net_rx or net_tx (e.g. cpu.json, \
                 memory_provisioned.json), or set the resource option",
            )
        })?,
    };
    let reader = input::open(path)?;
    NEWLINES.with(|c| c.set(0));
    let response: Response = serde_json::from_reader(CountNewlines { inner: reader })
        .map_err(|e| json_error(path, e))?;
    if response.status != "success" {
        return Err(input::invalid(
            path,
            format!(
                "Prometheus status is {:?}, not \"success\" ({}: {})",
                response.status,
                response.error_type.as_deref().unwrap_or("no errorType"),
                response.error.as_deref().unwrap_or("no error message"),
            ),
        ));
    }
    let Some(data) = response.data else {
        return Err(input::invalid(path, "the response has no data"));
    };
    if data.result_type != "matrix" {
        return Err(input::invalid(
            path,
            format!(
                "resultType {:?} is not supported: save a range query \
                 (/api/v1/query_range), whose resultType is \"matrix\"",
                data.result_type
            ),
        ));
    }
    let mut problems = Problems::new(options.lenient);
    let mut duplicates = 0;
    let mut series = Vec::with_capacity(data.result.len());
    for (index, s) in data.result.into_iter().enumerate() {
        let first_line = s.values.first().map_or(1, |p| p.line);
        let id = match series_id(&s.metric, options.prometheus_id_label.as_deref(), index) {
            Ok(id) => id,
            Err(bad) => {
                problems.report(path, first_line, bad)?;
                continue;
            }
        };
        let mut points: Vec<(Timestamp, f64)> = Vec::with_capacity(s.values.len());
        for p in s.values {
            match check_point(&p, points.last().map(|(at, _)| *at)) {
                Ok(Some(point)) => points.push(point),
                Ok(None) => duplicates += 1,
                Err(bad) => problems.report(path, p.line, bad)?,
            }
        }
        series.push(SeriesOut { id, points });
    }
    Ok(FileOut {
        path: path.to_path_buf(),
        role,
        series,
        duplicates,
        skipped: problems.skipped,
    })
}

fn json_error(path: &Path, e: serde_json::Error) -> TraceError {
    if e.is_io() {
        input::io_error(path, e.into())
    } else {
        TraceError::Parse {
            path: path.to_path_buf(),
            line: e.line() as u64,
            field: "json".to_owned(),
            message: e.to_string(),
        }
    }
}

/// A checked point, `None` for a repeat of the previous timestamp.
fn check_point(p: &Point, previous: Option<Timestamp>) -> Result<Option<(Timestamp, f64)>, Bad> {
    let ms = (p.secs * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 9.0e15 {
        return Err(Bad::new("timestamp", "not a timestamp", p.secs.to_string()));
    }
    let at = Timestamp::from_unix_ms(ms as i64);
    let value = input::quantity("value", &p.value)?;
    match previous {
        Some(prev) if at == prev => Ok(None),
        Some(prev) if at < prev => Err(Bad::new(
            "timestamp",
            "timestamp went backwards",
            format!("{at} is before the previous sample's {prev}"),
        )),
        _ => Ok(Some((at, value))),
    }
}

/// The workload id of a series: the chosen label's value, or every label but `__name__`
/// as sorted `k=v` pairs joined by `,`.
fn series_id(
    metric: &BTreeMap<String, String>,
    label: Option<&str>,
    index: usize,
) -> Result<String, Bad> {
    if let Some(label) = label {
        return match metric.get(label) {
            Some(v) if !v.trim().is_empty() => Ok(v.clone()),
            _ => Err(Bad::new(
                "metric",
                "missing id label",
                format!("series {index} has no label {label:?} (labels: {metric:?})"),
            )),
        };
    }
    let pairs: Vec<String> = metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if pairs.is_empty() {
        Ok(UNLABELLED_ID.to_owned())
    } else {
        Ok(pairs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_choose_the_resource() {
        let role = |name: &str| role_from_name(Path::new(name));
        assert_eq!(role("cpu.json"), Some(Role::Demand(Resource::Cpu)));
        assert_eq!(
            role("memory-2024-05-01.json.gz"),
            Some(Role::Demand(Resource::Memory))
        );
        assert_eq!(role("io_write.json"), Some(Role::Demand(Resource::IoWrite)));
        assert_eq!(
            role("memory_provisioned.json"),
            Some(Role::Provisioned(Resource::Memory))
        );
        assert_eq!(role("cpus.json"), None);
        assert_eq!(role("node.json"), None);
    }
}
