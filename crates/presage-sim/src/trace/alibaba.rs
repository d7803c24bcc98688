//! Alibaba cluster-trace-v2018 `machine_usage` (one row per machine sample, no header)
//! with `machine_meta` (cores and normalised memory per machine).
//!
//! Time stamps are seconds from the trace start, mapped to [`ReadOptions::alibaba_epoch`].
//! Rows are sorted per machine before use: the dev slice happens to be sorted, but nothing
//! in the format promises it, so an earlier time stamp after a later one is not an error
//! here (unlike the other formats).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use presage_core::{Limits, Resource, Timestamp, Usage, WorkloadId, WorkloadKey};
use rayon::prelude::*;

use super::input::{self, Bad, Lines, Problems, Tally};
use super::timefmt;
use super::{ReadOptions, Skipped, Trace, TraceError, TracePoint, TraceWorkload};

const USAGE_COLUMNS: [&str; 9] = [
    "machine_id",
    "time_stamp",
    "cpu_util_percent",
    "mem_util_percent",
    "mem_gps",
    "mkpi",
    "net_in",
    "net_out",
    "disk_io_percent",
];

const META_COLUMNS: [&str; 7] = [
    "machine_id",
    "time_stamp",
    "failure_domain_1",
    "failure_domain_2",
    "cpu_num",
    "mem_size",
    "status",
];

/// `mem_size` of a machine with [`ReadOptions::alibaba_machine_memory_bytes`] of memory.
const NOMINAL_MEM_SIZE: f64 = 100.0;

/// What `machine_meta` says about one machine.
#[derive(Debug, Clone, Copy)]
struct Machine {
    cores: f64,
    memory_bytes: f64,
}

pub(crate) fn read(path: &Path, options: &ReadOptions) -> Result<Trace, TraceError> {
    let (usage_files, meta_files) = locate(path)?;
    let mut skipped = Skipped::default();
    let machines = read_meta(&meta_files, options, &mut skipped)?;
    let parts: Vec<Result<FileRows, TraceError>> = usage_files
        .par_iter()
        .map(|file| read_usage(file, &machines, options))
        .collect();
    let mut by_machine: BTreeMap<String, (PathBuf, Vec<TracePoint>)> = BTreeMap::new();
    for part in parts {
        let part = part?;
        skipped.absorb(part.skipped);
        for (machine, points) in part.rows {
            by_machine
                .entry(machine)
                .or_insert_with(|| (part.path.clone(), Vec::new()))
                .1
                .extend(points);
        }
    }
    let mut duplicates = 0;
    let mut workloads = Vec::with_capacity(by_machine.len());
    for (machine, (origin, mut points)) in by_machine {
        duplicates += input::sort_dedup(&mut points);
        let invalid = |e: presage_core::CoreError| input::invalid(&origin, e.to_string());
        let spec = machines.get(&machine).copied();
        let mut provisioned = Limits::unlimited();
        if let Some(spec) = spec {
            provisioned
                .set_hard(Resource::Cpu, spec.cores)
                .map_err(invalid)?;
            provisioned
                .set_hard(Resource::Memory, spec.memory_bytes)
                .map_err(invalid)?;
        }
        workloads.push(TraceWorkload {
            id: WorkloadId::new(&machine).map_err(invalid)?,
            key: WorkloadKey::for_code(machine.as_str()).map_err(invalid)?,
            provisioned,
            points,
            origin,
            surges: Vec::new(),
        });
    }
    let files = usage_files.len() + meta_files.len();
    Ok(input::finish(workloads, files, duplicates, skipped))
}

/// The usage and meta files: all `machine_usage*` / `machine_meta*` files of a directory,
/// or a usage file and the meta files beside it.
fn locate(path: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), TraceError> {
    let is = |prefix: &str| {
        let prefix = prefix.to_owned();
        move |name: &str| name.starts_with(&prefix) && input::has_ext(name, "csv")
    };
    let meta = std::fs::metadata(path).map_err(|e| input::io_error(path, e))?;
    let (usage, dir) = if meta.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (vec![path.to_path_buf()], dir)
    } else {
        let usage = input::data_files(path, "Alibaba machine_usage", is("machine_usage"))?;
        (usage, path.to_path_buf())
    };
    let meta = match input::data_files(&dir, "Alibaba machine_meta", is("machine_meta")) {
        Ok(files) if meta.is_file() => files
            .into_iter()
            .filter(|f| f.parent() == Some(dir.as_path()))
            .collect(),
        Ok(files) => files,
        Err(TraceError::Invalid { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    if meta.is_empty() {
        return Err(input::invalid(
            &dir.join("machine_meta.csv"),
            "missing: Alibaba machine_usage needs machine_meta.csv (cpu_num per machine) \
             beside it",
        ));
    }
    Ok((usage, meta))
}

fn read_meta(
    files: &[PathBuf],
    options: &ReadOptions,
    skipped: &mut Skipped,
) -> Result<HashMap<String, Machine>, TraceError> {
    let mut cores: HashMap<String, (Tally, Tally)> = HashMap::new();
    for path in files {
        let mut lines = Lines::open(path)?;
        let mut problems = Problems::new(options.lenient);
        while let Some((number, text)) = lines.next_line()? {
            let parsed = text.and_then(|t| {
                if t.trim().is_empty() {
                    return Ok(None);
                }
                parse_meta_row(t).map(Some)
            });
            match parsed {
                Ok(Some((machine, at, cpu_num, mem_size))) => {
                    let entry = cores.entry(machine.to_owned()).or_default();
                    entry.0.add(cpu_num, at);
                    entry.1.add(mem_size, at);
                }
                Ok(None) => {}
                Err(bad) => problems.report(path, number, bad)?,
            }
        }
        skipped.absorb(problems.skipped);
    }
    let machine_memory = options.alibaba_machine_memory_bytes;
    if !(machine_memory.is_finite() && machine_memory > 0.0) {
        return Err(input::invalid(
            files.first().map(PathBuf::as_path).unwrap_or(Path::new("")),
            format!("alibaba_machine_memory_bytes must be positive, got {machine_memory}"),
        ));
    }
    Ok(cores
        .into_iter()
        .filter_map(|(machine, (cpu, mem))| {
            let spec = Machine {
                cores: cpu.mode()?,
                memory_bytes: mem.mode()? / NOMINAL_MEM_SIZE * machine_memory,
            };
            Some((machine, spec))
        })
        .collect())
}

fn split<'a, const N: usize>(text: &'a str, names: &[&str; N]) -> Result<[&'a str; N], Bad> {
    let (count, cells) = input::split_fixed::<N>(text, b',');
    if count != N {
        return Err(Bad::new(
            "columns",
            "wrong column count",
            format!("expected {N} ({}), found {count}", names.join(",")),
        ));
    }
    Ok(cells)
}

fn parse_meta_row(text: &str) -> Result<(&str, Timestamp, f64, f64), Bad> {
    let cells = split(text, &META_COLUMNS)?;
    if cells[0].is_empty() {
        return Err(Bad::new(META_COLUMNS[0], "empty value", ""));
    }
    let at = timefmt::unix_secs(META_COLUMNS[1], cells[1])?;
    let positive = |i: usize| -> Result<f64, Bad> {
        let v = input::quantity(META_COLUMNS[i], cells[i])?;
        if v == 0.0 {
            return Err(Bad::new(META_COLUMNS[i], "zero", "must be positive"));
        }
        Ok(v)
    };
    Ok((cells[0], at, positive(4)?, positive(5)?))
}

/// One usage file's rows, per machine, in file order.
#[derive(Debug)]
struct FileRows {
    path: PathBuf,
    rows: HashMap<String, Vec<TracePoint>>,
    skipped: Skipped,
}

fn read_usage(
    path: &Path,
    machines: &HashMap<String, Machine>,
    options: &ReadOptions,
) -> Result<FileRows, TraceError> {
    let mut lines = Lines::open(path)?;
    let mut problems = Problems::new(options.lenient);
    let mut rows: HashMap<String, Vec<TracePoint>> = HashMap::new();
    while let Some((number, text)) = lines.next_line()? {
        let parsed = text.and_then(|t| {
            if t.trim().is_empty() {
                return Ok(None);
            }
            parse_usage_row(t, machines, options.alibaba_epoch).map(Some)
        });
        match parsed {
            Ok(Some((machine, point))) => match rows.get_mut(machine) {
                Some(points) => points.push(point),
                None => {
                    rows.insert(machine.to_owned(), vec![point]);
                }
            },
            Ok(None) => {}
            Err(bad) => problems.report(path, number, bad)?,
        }
    }
    Ok(FileRows {
        path: path.to_path_buf(),
        rows,
        skipped: problems.skipped,
    })
}

fn parse_usage_row<'a>(
    text: &'a str,
    machines: &HashMap<String, Machine>,
    epoch: Timestamp,
) -> Result<(&'a str, TracePoint), Bad> {
    let cells = split(text, &USAGE_COLUMNS)?;
    let machine = cells[0];
    if machine.is_empty() {
        return Err(Bad::new(USAGE_COLUMNS[0], "empty value", ""));
    }
    let Some(spec) = machines.get(machine) else {
        return Err(Bad::new(
            USAGE_COLUMNS[0],
            "machine not in machine_meta",
            format!("{machine:?}"),
        ));
    };
    let offset = timefmt::unix_secs(USAGE_COLUMNS[1], cells[1])?;
    if offset.unix_ms() < 0 {
        return Err(Bad::new(
            USAGE_COLUMNS[1],
            "negative time stamp",
            format!("{:?}", cells[1]),
        ));
    }
    let cpu = input::optional_quantity(USAGE_COLUMNS[2], cells[2])?;
    let mem = input::optional_quantity(USAGE_COLUMNS[3], cells[3])?;
    // Unused columns are still checked, so a shifted or corrupted row is not half-read.
    for i in 4..USAGE_COLUMNS.len() {
        input::number_or_empty(USAGE_COLUMNS[i], cells[i])?;
    }
    if cpu.is_none() && mem.is_none() {
        return Err(Bad::new(
            USAGE_COLUMNS[2],
            "no usage values",
            "cpu_util_percent and mem_util_percent are both empty",
        ));
    }
    let mut demand = Usage::empty();
    let out_of_range =
        |e: presage_core::CoreError| Bad::new("usage", "out of range", e.to_string());
    if let Some(pct) = cpu {
        demand
            .set(Resource::Cpu, pct / 100.0 * spec.cores)
            .map_err(out_of_range)?;
    }
    if let Some(pct) = mem {
        demand
            .set(Resource::Memory, pct / 100.0 * spec.memory_bytes)
            .map_err(out_of_range)?;
    }
    let at = epoch.plus_ms(offset.unix_ms());
    Ok((machine, TracePoint { at, demand }))
}
