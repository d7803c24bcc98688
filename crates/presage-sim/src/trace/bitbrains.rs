//! Bitbrains GWA-T-12 (fastStorage and Rnd): one VM per file, `;`+TAB separated, a
//! header line, Unix *seconds* despite the `[ms]` label, KB and MHz units.
//!
//! A VM id is the file stem; files with the same stem in different folders (Rnd's month
//! folders) are the same VM and merge into one workload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use presage_core::{Limits, Resource, Timestamp, Usage, WorkloadId, WorkloadKey};
use rayon::prelude::*;

use super::input::{self, Bad, Lines, Problems, Series, Tally};
use super::timefmt;
use super::{ReadOptions, Skipped, Trace, TraceError, TraceWorkload};

/// The columns, as the header names them.
const COLUMNS: [&str; 11] = [
    "Timestamp [ms]",
    "CPU cores",
    "CPU capacity provisioned [MHZ]",
    "CPU usage [MHZ]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
];

/// KB (the trace's kilobyte is 1024 bytes) to bytes.
const KB: f64 = 1024.0;

/// Columns 7–10 and the resource each becomes (×1024: KB/s → bytes/s).
const RATES: [(usize, Resource); 4] = [
    (7, Resource::IoRead),
    (8, Resource::IoWrite),
    (9, Resource::NetRx),
    (10, Resource::NetTx),
];

/// What one file contributes to its VM.
#[derive(Debug)]
struct FilePart {
    path: PathBuf,
    series: Series,
    skipped: Skipped,
    /// Rows with CPU MHz but no usable cores/capacity anywhere in this file: (time, MHz),
    /// converted with a per-core speed from another file of the same VM.
    unresolved: Vec<(Timestamp, f64)>,
    /// The last usable MHz-per-core of the file.
    per_core_mhz: Option<f64>,
    cores: Tally,
    memory_kb: Tally,
}

pub(crate) fn read(path: &Path, options: &ReadOptions) -> Result<Trace, TraceError> {
    let files = input::data_files(path, "Bitbrains", |name| input::has_ext(name, "csv"))?;
    let parts: Vec<Result<FilePart, TraceError>> = files
        .par_iter()
        .map(|file| read_file(file, options.lenient))
        .collect();
    let mut by_vm: BTreeMap<String, Vec<FilePart>> = BTreeMap::new();
    for (file, part) in files.iter().zip(parts) {
        by_vm.entry(input::stem(file)).or_default().push(part?);
    }
    let mut skipped = Skipped::default();
    let mut duplicates = 0;
    let mut workloads = Vec::with_capacity(by_vm.len());
    for (id, parts) in by_vm {
        let (workload, dups) = merge(&id, parts, &mut skipped)?;
        duplicates += dups;
        workloads.push(workload);
    }
    Ok(input::finish(workloads, files.len(), duplicates, skipped))
}

fn read_file(path: &Path, lenient: bool) -> Result<FilePart, TraceError> {
    let mut lines = Lines::open(path)?;
    let mut problems = Problems::new(lenient);
    let mut part = FilePart {
        path: path.to_path_buf(),
        series: Series::default(),
        skipped: Skipped::default(),
        unresolved: Vec::new(),
        per_core_mhz: None,
        cores: Tally::default(),
        memory_kb: Tally::default(),
    };
    // Indices of leading points whose CPU waits for the file's first usable per-core speed.
    let mut waiting: Vec<(usize, f64)> = Vec::new();
    let mut header_seen = false;
    while let Some((number, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => t,
            Err(bad) => {
                problems.report(path, number, bad)?;
                continue;
            }
        };
        if !header_seen {
            header_seen = true;
            check_header(text).map_err(|bad| bad.at(path, number))?;
            continue;
        }
        let row = match parse_row(text) {
            Ok(row) => row,
            Err(bad) => {
                problems.report(path, number, bad)?;
                continue;
            }
        };
        let mut demand = row.rest;
        match part.series.push(COLUMNS[0], row.at, demand) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(bad) => {
                problems.report(path, number, bad)?;
                continue;
            }
        }
        if row.cores > 0.0 {
            part.cores.add(row.cores, row.at);
        }
        if row.memory_capacity_kb > 0.0 {
            part.memory_kb.add(row.memory_capacity_kb, row.at);
        }
        let index = part.series.points.len() - 1;
        // Rows of a VM that is off have 0 cores and 0 capacity; 0 MHz is 0 cores anyway,
        // and a non-zero MHz there is converted at the VM's per-core speed nearest in time.
        let cpu = if row.cores > 0.0 && row.capacity_mhz > 0.0 {
            let speed = row.capacity_mhz / row.cores;
            for (i, mhz) in waiting.drain(..) {
                set_cpu(&mut part.series.points[i].demand, mhz / speed);
            }
            part.per_core_mhz = Some(speed);
            Some(row.usage_mhz / speed)
        } else if row.usage_mhz == 0.0 {
            Some(0.0)
        } else {
            part.per_core_mhz.map(|speed| row.usage_mhz / speed)
        };
        match cpu {
            Some(cores) => set_cpu(&mut demand, cores),
            None => waiting.push((index, row.usage_mhz)),
        }
        part.series.points[index].demand = demand;
    }
    if !header_seen {
        return Err(Bad::new("header", "missing header", "the file is empty").at(path, 1));
    }
    part.unresolved = waiting
        .into_iter()
        .map(|(i, mhz)| (part.series.points[i].at, mhz))
        .collect();
    part.skipped = problems.skipped;
    Ok(part)
}

fn set_cpu(demand: &mut Usage, cores: f64) {
    // Only absurd capacities (a per-core speed near 0) can make this non-finite; CPU is
    // then left absent rather than poisoning the series with an infinity.
    if demand.set(Resource::Cpu, cores).is_err() {
        demand.clear(Resource::Cpu);
    }
}

fn check_header(text: &str) -> Result<(), Bad> {
    let (count, [first]) = input::split_fixed::<1>(text, b';');
    if count != COLUMNS.len() || !first.to_ascii_lowercase().starts_with("timestamp") {
        return Err(Bad::new(
            "header",
            "not a Bitbrains header",
            format!(
                "expected {} columns starting with {:?}, found {count} starting with {first:?}",
                COLUMNS.len(),
                COLUMNS[0]
            ),
        ));
    }
    Ok(())
}

/// One data row, in the trace's units, before CPU is converted to cores.
#[derive(Debug)]
struct Row {
    at: Timestamp,
    cores: f64,
    capacity_mhz: f64,
    usage_mhz: f64,
    memory_capacity_kb: f64,
    /// Memory, I/O and network already in bytes and bytes/s.
    rest: Usage,
}

fn parse_row(text: &str) -> Result<Row, Bad> {
    let (count, cells) = input::split_fixed::<11>(text, b';');
    if count != cells.len() {
        return Err(Bad::new(
            "columns",
            "wrong column count",
            format!("expected {}, found {count}", cells.len()),
        ));
    }
    let at = timefmt::unix_secs(COLUMNS[0], cells[0])?;
    let mut values = [0.0; 11];
    for i in 1..cells.len() {
        values[i] = input::quantity(COLUMNS[i], cells[i])?;
    }
    let mut rest = Usage::empty();
    let bytes = |v: f64| v * KB;
    let mut set = |resource, value: f64| {
        rest.set(resource, value)
            .map_err(|e| Bad::new(resource.name(), "out of range", e.to_string()))
    };
    // A running VM never uses zero bytes: a 0 here is a reading that was not taken (21 %
    // of fastStorage rows, most of them while the VM burns CPU), so memory is left absent
    // for that step rather than read as a drop that every policy would follow down.
    if values[6] > 0.0 {
        set(Resource::Memory, bytes(values[6]))?;
    }
    for (column, resource) in RATES {
        set(resource, bytes(values[column]))?;
    }
    Ok(Row {
        at,
        cores: values[1],
        capacity_mhz: values[2],
        usage_mhz: values[3],
        memory_capacity_kb: values[5],
        rest,
    })
}

/// Joins one VM's files (Rnd: one per month) into a workload, in time order.
fn merge(
    id: &str,
    mut parts: Vec<FilePart>,
    skipped: &mut Skipped,
) -> Result<(TraceWorkload, u64), TraceError> {
    parts.sort_by_key(|p| p.series.points.first().map(|pt| pt.at));
    let origin = parts
        .iter()
        .find(|p| !p.series.points.is_empty())
        .or(parts.first())
        .map(|p| p.path.clone())
        .unwrap_or_default();
    // Files of one VM must cover disjoint periods (Rnd's months do); overlapping ones are
    // two different VMs sharing a stem, e.g. fastStorage and Rnd read together.
    for pair in parts.windows(2) {
        let (Some(a), Some(b)) = (pair[0].series.points.last(), pair[1].series.points.first())
        else {
            continue;
        };
        if b.at < a.at {
            return Err(input::invalid(
                &pair[1].path,
                format!(
                    "overlaps {} in time ({} < {}), yet both are VM {id:?}; read one \
                     dataset at a time",
                    pair[0].path.display(),
                    b.at,
                    a.at
                ),
            ));
        }
    }
    let mut duplicates: u64 = parts.iter().map(|p| p.series.duplicates).sum();
    let mut cores = Tally::default();
    let mut memory_kb = Tally::default();
    let hints: Vec<Option<f64>> = parts.iter().map(|p| p.per_core_mhz).collect();
    let mut unresolved = Vec::new();
    let mut points = Vec::with_capacity(parts.iter().map(|p| p.series.points.len()).sum());
    for (i, part) in parts.into_iter().enumerate() {
        cores.absorb(&part.cores);
        memory_kb.absorb(&part.memory_kb);
        skipped.absorb(part.skipped);
        if !part.unresolved.is_empty() {
            // The nearest file in time that knows the VM's per-core speed: earlier first.
            let hint = hints[..i]
                .iter()
                .rev()
                .chain(hints[i + 1..].iter())
                .find_map(|h| *h);
            unresolved.extend(part.unresolved.into_iter().map(|u| (u, hint)));
        }
        points.extend(part.series.points);
    }
    duplicates += input::sort_dedup(&mut points);
    for ((at, mhz), hint) in unresolved {
        let Some(speed) = hint else {
            // No file of this VM says how fast a core is: CPU stays absent, not invented.
            continue;
        };
        if let Ok(i) = points.binary_search_by_key(&at, |p| p.at)
            && points[i].demand.cpu_cores().is_none()
        {
            set_cpu(&mut points[i].demand, mhz / speed);
        }
    }
    let invalid = |e: presage_core::CoreError| input::invalid(&origin, e.to_string());
    let mut provisioned = Limits::unlimited();
    if let Some(c) = cores.mode() {
        provisioned.set_hard(Resource::Cpu, c).map_err(invalid)?;
    }
    if let Some(kb) = memory_kb.mode() {
        provisioned
            .set_hard(Resource::Memory, kb * KB)
            .map_err(invalid)?;
    }
    let workload = TraceWorkload {
        id: WorkloadId::new(id).map_err(invalid)?,
        key: WorkloadKey::for_code(id).map_err(invalid)?,
        provisioned,
        points,
        origin,
        surges: Vec::new(),
    };
    Ok((workload, duplicates))
}
