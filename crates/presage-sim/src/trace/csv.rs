//! presage's generic CSV: a header row, then `timestamp,workload,<resources>…`, rows of
//! many workloads interleaved. The full contract is in `docs/TRACES.md`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use presage_core::{Limits, Resource, ResourceMap, Usage, WorkloadId, WorkloadKey};
use rayon::prelude::*;

use super::input::{self, Bad, Lines, Problems, Series};
use super::timefmt;
use super::{ReadOptions, Skipped, Trace, TraceError, TraceWorkload};

/// The workload-key columns, in [`WorkloadKey::new`]'s argument order.
const KEY_COLUMNS: [&str; 4] = ["code_id", "code_version", "input_hash", "user"];

/// What a header column holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Timestamp,
    Workload,
    Demand(Resource),
    Provisioned(Resource),
    Key(usize),
}

impl Column {
    fn from_name(name: &str) -> Option<Column> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "timestamp" => return Some(Column::Timestamp),
            "workload" => return Some(Column::Workload),
            _ => {}
        }
        if let Some(i) = KEY_COLUMNS.iter().position(|k| *k == name) {
            return Some(Column::Key(i));
        }
        if let Some(base) = name.strip_suffix("_provisioned") {
            return base.parse().ok().map(Column::Provisioned);
        }
        name.parse().ok().map(Column::Demand)
    }

    /// The canonical column name (for messages).
    fn name(self) -> Cow<'static, str> {
        match self {
            Column::Timestamp => "timestamp".into(),
            Column::Workload => "workload".into(),
            Column::Demand(r) => r.name().into(),
            Column::Provisioned(r) => format!("{}_provisioned", r.name()).into(),
            Column::Key(i) => KEY_COLUMNS[i].into(),
        }
    }
}

const EXPECTED: &str = "timestamp, workload, cpu, memory, io_read, io_write, net_rx, net_tx, \
    <resource>_provisioned, code_id, code_version, input_hash, user";

/// One workload's rows from one file.
#[derive(Debug, Default)]
struct Acc {
    series: Series,
    provisioned: ResourceMap<Option<f64>>,
    key: [Option<String>; 4],
}

/// One file's workloads.
#[derive(Debug)]
struct FileRows {
    path: PathBuf,
    workloads: HashMap<String, Acc>,
    skipped: Skipped,
}

pub(crate) fn read(path: &Path, options: &ReadOptions) -> Result<Trace, TraceError> {
    let files = input::data_files(path, "CSV", |name| input::has_ext(name, "csv"))?;
    let parts: Vec<Result<FileRows, TraceError>> = files
        .par_iter()
        .map(|file| read_file(file, options.lenient))
        .collect();
    let mut skipped = Skipped::default();
    let mut merged: BTreeMap<String, (PathBuf, Vec<Acc>)> = BTreeMap::new();
    for part in parts {
        let part = part?;
        skipped.absorb(part.skipped);
        for (id, acc) in part.workloads {
            merged
                .entry(id)
                .or_insert_with(|| (part.path.clone(), Vec::new()))
                .1
                .push(acc);
        }
    }
    let mut duplicates = 0;
    let mut workloads = Vec::with_capacity(merged.len());
    for (id, (origin, accs)) in merged {
        let mut points = Vec::new();
        let mut provisioned = ResourceMap::<Option<f64>>::none();
        let mut key: [Option<String>; 4] = Default::default();
        // Files come in path order; a later file's provisioned/key values win, as a later
        // row's do within a file.
        for acc in accs {
            duplicates += acc.series.duplicates;
            points.extend(acc.series.points);
            for (r, v) in acc.provisioned.present() {
                provisioned.set(r, Some(*v));
            }
            for (slot, value) in key.iter_mut().zip(acc.key) {
                if value.is_some() {
                    *slot = value;
                }
            }
        }
        duplicates += input::sort_dedup(&mut points);
        let invalid = |e: presage_core::CoreError| input::invalid(&origin, e.to_string());
        let mut limits = Limits::unlimited();
        for (r, v) in provisioned.present() {
            limits.set_hard(r, *v).map_err(invalid)?;
        }
        let [code, version, input_hash, user] = key.map(Option::unwrap_or_default);
        let code = if code.is_empty() { id.clone() } else { code };
        workloads.push(TraceWorkload {
            id: WorkloadId::new(&id).map_err(invalid)?,
            key: WorkloadKey::new(code, version, input_hash, user).map_err(invalid)?,
            provisioned: limits,
            points,
            origin,
            surges: Vec::new(),
        });
    }
    Ok(input::finish(workloads, files.len(), duplicates, skipped))
}

fn read_file(path: &Path, lenient: bool) -> Result<FileRows, TraceError> {
    let mut lines = Lines::open(path)?;
    let mut problems = Problems::new(lenient);
    let mut columns: Option<Vec<Column>> = None;
    let mut workloads: HashMap<String, Acc> = HashMap::new();
    while let Some((number, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => t,
            Err(bad) => {
                problems.report(path, number, bad)?;
                continue;
            }
        };
        let Some(header) = &columns else {
            // A bad header makes every row unreadable, so it fails even a lenient read.
            columns = Some(parse_header(text).map_err(|bad| bad.at(path, number))?);
            continue;
        };
        let mut cells = Vec::with_capacity(header.len());
        let outcome =
            split_into(text, &mut cells).and_then(|()| parse_row(header, &cells, &mut workloads));
        if let Err(bad) = outcome {
            problems.report(path, number, bad)?;
        }
    }
    if columns.is_none() {
        return Err(Bad::new("header", "missing header", "the file is empty").at(path, 1));
    }
    Ok(FileRows {
        path: path.to_path_buf(),
        workloads,
        skipped: problems.skipped,
    })
}

fn parse_header(text: &str) -> Result<Vec<Column>, Bad> {
    let mut names = Vec::new();
    split_into(text, &mut names)?;
    let mut columns: Vec<Column> = Vec::with_capacity(names.len());
    for name in &names {
        let name = name.trim();
        let column = Column::from_name(name).ok_or_else(|| {
            Bad::new(
                name.to_owned(),
                "unknown column",
                format!("expected {EXPECTED}"),
            )
        })?;
        if columns.contains(&column) {
            return Err(Bad::new(name.to_owned(), "duplicate column", ""));
        }
        columns.push(column);
    }
    for required in [Column::Timestamp, Column::Workload] {
        if !columns.contains(&required) {
            return Err(Bad::new(required.name(), "missing column", ""));
        }
    }
    if !columns.iter().any(|c| matches!(c, Column::Demand(_))) {
        return Err(Bad::new(
            "header",
            "no resource column",
            "need at least one of cpu, memory, io_read, io_write, net_rx, net_tx",
        ));
    }
    Ok(columns)
}

fn parse_row(
    columns: &[Column],
    cells: &[Cow<'_, str>],
    into: &mut HashMap<String, Acc>,
) -> Result<(), Bad> {
    if cells.len() != columns.len() {
        return Err(Bad::new(
            "columns",
            "wrong column count",
            format!("expected {}, found {}", columns.len(), cells.len()),
        ));
    }
    let mut at = None;
    let mut workload = "";
    let mut demand = Usage::empty();
    let mut provisioned = ResourceMap::<Option<f64>>::none();
    let mut key: [Option<&str>; 4] = [None; 4];
    for (column, cell) in columns.iter().zip(cells) {
        let cell: &str = cell;
        match *column {
            Column::Timestamp => at = Some(timefmt::any("timestamp", cell)?),
            Column::Workload => workload = cell,
            Column::Demand(r) => {
                if let Some(v) = input::optional_quantity(r.name(), cell)? {
                    demand
                        .set(r, v)
                        .map_err(|e| Bad::new(r.name(), "out of range", e.to_string()))?;
                }
            }
            Column::Provisioned(r) => {
                let name = column.name();
                if let Some(v) = input::optional_quantity("provisioned", cell).map_err(|b| Bad {
                    field: name.clone(),
                    ..b
                })? {
                    if v == 0.0 {
                        return Err(Bad::new(
                            name,
                            "zero",
                            "a provisioned limit must be positive",
                        ));
                    }
                    provisioned.set(r, Some(v));
                }
            }
            Column::Key(i) => {
                if !cell.is_empty() {
                    key[i] = Some(cell);
                }
            }
        }
    }
    if workload.trim().is_empty() {
        return Err(Bad::new("workload", "empty value", ""));
    }
    let Some(at) = at else {
        return Err(Bad::new("timestamp", "empty value", ""));
    };
    let acc = match into.get_mut(workload) {
        Some(acc) => acc,
        None => into.entry(workload.to_owned()).or_default(),
    };
    if !acc.series.push("timestamp", at, demand)? {
        return Ok(());
    }
    for (r, v) in provisioned.present() {
        acc.provisioned.set(r, Some(*v));
    }
    for (slot, value) in acc.key.iter_mut().zip(key) {
        if let Some(v) = value {
            *slot = Some(v.to_owned());
        }
    }
    Ok(())
}

/// Splits one CSV line on commas. Unquoted cells are trimmed; a cell in double quotes
/// keeps its text verbatim, with `""` for a quote. Quoted line breaks are not supported.
fn split_into<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), Bad> {
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        if let Some(quoted) = trimmed.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => value.push(c),
                    None => {
                        return Err(Bad::new("line", "unterminated quote", ""));
                    }
                }
            };
            out.push(Cow::Owned(value));
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(()),
                None => {
                    return Err(Bad::new(
                        "line",
                        "text after a quoted cell",
                        format!("{after:?}"),
                    ));
                }
            }
        } else {
            match rest.split_once(',') {
                Some((cell, next)) => {
                    out.push(Cow::Borrowed(cell.trim()));
                    rest = next;
                }
                None => {
                    out.push(Cow::Borrowed(rest.trim()));
                    return Ok(());
                }
            }
        }
    }
}

/// Writes `trace` as presage CSV, readable by [`super::read_trace`] with
/// [`super::TraceFormat::Csv`] into the same workloads, points and provisioned limits.
///
/// Columns: `timestamp` (Unix seconds, with milliseconds when needed), `workload`, the
/// workload-key columns that any workload needs, every resource any point has, and
/// `<resource>_provisioned` for every provisioned hard limit (repeated on each row).
/// Workloads are written one after another, each in time order. What the format does
/// not carry: [`TraceWorkload::origin`] and [`TraceWorkload::surges`].
pub fn write_csv(trace: &Trace, out: &mut impl Write) -> io::Result<()> {
    let demand: Vec<Resource> = Resource::ALL
        .into_iter()
        .filter(|r| {
            trace
                .workloads
                .iter()
                .any(|w| w.points.iter().any(|p| p.demand.get(*r).is_some()))
        })
        .collect();
    let provisioned: Vec<Resource> = Resource::ALL
        .into_iter()
        .filter(|r| {
            trace
                .workloads
                .iter()
                .any(|w| w.provisioned.hard(*r).is_some())
        })
        .collect();
    let key_fields = |w: &TraceWorkload| {
        let k = &w.key;
        [
            k.code_id().to_owned(),
            k.code_version().to_owned(),
            k.input_hash().to_owned(),
            k.user().to_owned(),
        ]
    };
    // A key column is written only if some workload's key differs from the default
    // (code id = workload id, the rest empty), keeping plain traces plain.
    let keys: Vec<usize> = (0..KEY_COLUMNS.len())
        .filter(|&i| {
            trace.workloads.iter().any(|w| {
                let fields = key_fields(w);
                if i == 0 {
                    fields[0] != w.id.as_str()
                } else {
                    !fields[i].is_empty()
                }
            })
        })
        .collect();
    // With no resource at all the header would be unreadable; cpu stands in, empty.
    let demand = if demand.is_empty() {
        vec![Resource::Cpu]
    } else {
        demand
    };

    let mut header: Vec<Cow<'_, str>> = vec!["timestamp".into(), "workload".into()];
    header.extend(keys.iter().map(|&i| Cow::Borrowed(KEY_COLUMNS[i])));
    header.extend(demand.iter().map(|r| Cow::Borrowed(r.name())));
    header.extend(
        provisioned
            .iter()
            .map(|r| Cow::Owned(format!("{}_provisioned", r.name()))),
    );
    writeln!(out, "{}", header.join(","))?;

    let mut line = String::new();
    for w in &trace.workloads {
        let fields = key_fields(w);
        let mut fixed = quote(w.id.as_str()).into_owned();
        for &i in &keys {
            fixed.push(',');
            fixed.push_str(&quote(&fields[i]));
        }
        let mut tail = String::new();
        for r in &provisioned {
            tail.push(',');
            if let Some(v) = w.provisioned.hard(*r) {
                tail.push_str(&v.to_string());
            }
        }
        for p in &w.points {
            line.clear();
            line.push_str(&timefmt::format_unix_secs(p.at));
            line.push(',');
            line.push_str(&fixed);
            for r in &demand {
                line.push(',');
                if let Some(v) = p.demand.get(*r) {
                    // `Display` for f64 is the shortest text that parses back exactly.
                    line.push_str(&v.to_string());
                }
            }
            line.push_str(&tail);
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Quotes a cell when the reader would otherwise change it (commas, quotes, line breaks,
/// or surrounding spaces that unquoted cells lose).
fn quote(text: &str) -> Cow<'_, str> {
    let needs = text.contains([',', '"', '\n', '\r']) || text.trim() != text;
    if needs {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_cells() -> Result<(), Bad> {
        let mut out = Vec::new();
        split_into(r#" a , "b,c" ,"say ""hi""",, "#, &mut out)?;
        assert_eq!(out, vec!["a", "b,c", "say \"hi\"", "", ""]);
        out.clear();
        assert!(split_into(r#"a,"open"#, &mut out).is_err());
        out.clear();
        assert!(split_into(r#""x"y,z"#, &mut out).is_err());
        Ok(())
    }

    #[test]
    fn header_names_are_checked() {
        assert!(parse_header("timestamp,workload,cpu,memory_provisioned,user").is_ok());
        let unknown = parse_header("timestamp,workload,cpus");
        assert!(unknown.is_err_and(|b| b.field == "cpus" && b.reason == "unknown column"));
        assert!(parse_header("timestamp,workload,cpu_provisioned").is_err());
        assert!(parse_header("timestamp,cpu").is_err_and(|b| b.field == "workload"));
        assert!(parse_header("timestamp,workload,cpu,cpu").is_err());
    }
}
