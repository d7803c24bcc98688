//! The generic CSV reader and writer: the documented contract, errors, and round trips.

use std::path::{Path, PathBuf};

use presage_core::{Limits, Resource, Timestamp, Usage, WorkloadId, WorkloadKey};
use presage_sim::synth::{SynthConfig, generate};
use presage_sim::trace::{
    ReadOptions, Trace, TraceError, TraceFormat, TracePoint, TraceWorkload, read_trace, write_csv,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn read(path: &Path) -> Result<Trace, TraceError> {
    read_trace(TraceFormat::Csv, path, &ReadOptions::default())
}

fn lenient(path: &Path) -> Result<Trace, TraceError> {
    let options = ReadOptions {
        lenient: true,
        ..ReadOptions::default()
    };
    read_trace(TraceFormat::Csv, path, &options)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes `trace` as CSV, reads it back and checks everything the format carries.
fn round_trip(trace: &Trace) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("trace.csv");
    let mut out = Vec::new();
    write_csv(trace, &mut out)?;
    std::fs::write(&path, &out)?;
    let back = read(&path)?;
    assert_eq!(back.workloads.len(), trace.workloads.len());
    assert_eq!(back.duplicates, 0);
    for (a, b) in trace.workloads.iter().zip(&back.workloads) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.key, b.key);
        assert_eq!(a.provisioned, b.provisioned, "{}", a.id);
        assert_eq!(a.points, b.points, "{}", a.id);
        assert_eq!(b.origin, path);
    }
    Ok(())
}

#[test]
fn documented_example_reads_as_documented() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // The example of docs/TRACES.md.
    let path = write(
        tmp.path(),
        "example.csv",
        "timestamp,workload,cpu,memory,net_rx,cpu_provisioned,memory_provisioned\n\
         2024-05-01T12:00:00Z,web,0.50,536870912,,2,2147483648\n\
         2024-05-01T12:00:00Z,batch,3.2,4294967296,1200,4,8589934592\n\
         1714565100,web,0.75,541065216,2048.5,2,2147483648\n\
         1714565100.5,batch,3.9,4311744512,,4,8589934592\n",
    )?;
    let trace = read(&path)?;
    assert_eq!(trace.files, 1);
    let [batch, web] = trace.workloads.as_slice() else {
        panic!("two workloads expected, got {}", trace.workloads.len());
    };
    assert_eq!(batch.id.as_str(), "batch");
    assert_eq!(web.id.as_str(), "web");
    assert_eq!(web.key, WorkloadKey::for_code("web")?);
    assert_eq!(web.points.len(), 2);
    assert_eq!(web.points[0].at, Timestamp::from_unix_secs(1_714_564_800));
    assert_eq!(web.points[0].demand.cpu_cores(), Some(0.5));
    assert_eq!(
        web.points[0].demand.get(Resource::NetRx),
        None,
        "empty = absent"
    );
    assert_eq!(web.points[1].demand.get(Resource::NetRx), Some(2048.5));
    assert_eq!(batch.points[1].at.unix_ms(), 1_714_565_100_500);
    assert_eq!(
        batch.points[1].demand.get(Resource::IoRead),
        None,
        "no column = absent"
    );
    assert_eq!(batch.provisioned.cpu_quota_cores(), Some(4.0));
    assert_eq!(batch.provisioned.memory_max_bytes(), Some(8_589_934_592.0));
    Ok(())
}

#[test]
fn header_errors_name_the_column_even_when_lenient() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cases = [
        (
            "timestamp,workload,cpu,gpu\n1,a,1,1\n",
            "gpu",
            "unknown column",
        ),
        ("timestamp,cpu\n1,1\n", "workload", "missing column"),
        ("workload,cpu\na,1\n", "timestamp", "missing column"),
        (
            "timestamp,workload,cpu_provisioned\n1,a,1\n",
            "header",
            "no resource column",
        ),
        (
            "timestamp,workload,cpu,CPU\n1,a,1,1\n",
            "CPU",
            "duplicate column",
        ),
    ];
    for (i, (text, field, message)) in cases.into_iter().enumerate() {
        let path = write(tmp.path(), &format!("h{i}.csv"), text)?;
        for result in [read(&path), lenient(&path)] {
            match result {
                Err(TraceError::Parse {
                    path: p,
                    line,
                    field: f,
                    message: m,
                }) => {
                    assert_eq!((p.as_path(), line), (path.as_path(), 1));
                    assert_eq!(f, field);
                    assert!(m.contains(message), "{m}");
                }
                other => panic!("{text:?}: expected a parse error, got {other:?}"),
            }
        }
    }
    Ok(())
}

#[test]
fn bad_rows_are_errors_or_counted_when_lenient() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = write(
        tmp.path(),
        "rows.csv",
        "timestamp,workload,cpu,memory,memory_provisioned\n\
         100,a,1,10,\n\
         100,b,1,10,\n\
         160,a,1,ten,\n\
         160,a,1\n\
         220,a,NaN,10,\n\
         280,a,-1,10,\n\
         40,a,1,10,\n\
         160,b,1,10,0\n\
         later,b,1,10,\n\
         400,a,1,10,64\n\
         400,a,2,20,\n\
         460,,1,1,\n",
    )?;
    let (line, field, message) = match read(&path) {
        Err(TraceError::Parse {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected a parse error, got {other:?}"),
    };
    assert_eq!((line, field.as_str()), (4, "memory"));
    assert!(message.contains("not a number"), "{message}");

    let trace = lenient(&path)?;
    let by_reason = &trace.skipped.by_reason;
    assert_eq!(by_reason.get("not a number"), Some(&1));
    assert_eq!(by_reason.get("wrong column count"), Some(&1));
    assert_eq!(by_reason.get("NaN or infinite"), Some(&1));
    assert_eq!(by_reason.get("negative value"), Some(&1));
    assert_eq!(by_reason.get("timestamp went backwards"), Some(&1));
    assert_eq!(by_reason.get("zero"), Some(&1));
    assert_eq!(by_reason.get("not a timestamp"), Some(&1));
    assert_eq!(by_reason.get("empty value"), Some(&1));
    assert_eq!(trace.skipped.lines, 8);
    assert_eq!(trace.duplicates, 1);
    let a = &trace.workloads[0];
    assert_eq!(a.points.len(), 2);
    // The first of the two t=400 rows wins, and its provisioned memory with it.
    assert_eq!(a.points[1].demand.cpu_cores(), Some(1.0));
    assert_eq!(a.provisioned.memory_max_bytes(), Some(64.0));
    assert_eq!(trace.workloads[1].points.len(), 1);
    Ok(())
}

#[test]
fn quoted_and_spaced_ids_survive_a_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = write(
        tmp.path(),
        "q.csv",
        "timestamp,workload,cpu\n1,\"db, primary\",1\n2, \"say \"\"hi\"\"\" ,2\n3,\" padded \",3\n",
    )?;
    let trace = read(&path)?;
    let ids: Vec<&str> = trace.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [" padded ", "db, primary", "say \"hi\""]);
    round_trip(&trace)
}

#[test]
fn a_directory_of_files_merges_per_workload() -> TestResult {
    let tmp = tempfile::tempdir()?;
    write(
        tmp.path(),
        "a.csv",
        "timestamp,workload,cpu\n1,w,1\n3,w,3\n",
    )?;
    let sub = tmp.path().join("more");
    std::fs::create_dir(&sub)?;
    write(
        &sub,
        "b.csv",
        "workload,memory,timestamp\nw,20,2\nw,30,3\nv,1,1\n",
    )?;
    write(tmp.path(), "notes.txt", "not data")?;
    let trace = read(tmp.path())?;
    assert_eq!(trace.files, 2);
    let w = &trace.workloads[1];
    assert_eq!(w.id.as_str(), "w");
    let times: Vec<i64> = w.points.iter().map(|p| p.at.unix_ms() / 1000).collect();
    assert_eq!(times, [1, 2, 3]);
    // t=3 is in both files: the first file's row (cpu only) is kept.
    assert_eq!(trace.duplicates, 1);
    assert_eq!(w.points[2].demand.cpu_cores(), Some(3.0));
    assert_eq!(w.points[2].demand.memory_bytes(), None);
    Ok(())
}

#[test]
fn handmade_trace_round_trips() -> TestResult {
    let mut points = Vec::new();
    for (i, ms) in [0_i64, 1, 999, 1000, 1_714_564_800_123]
        .into_iter()
        .enumerate()
    {
        let mut demand = Usage::empty();
        if i % 2 == 0 {
            demand.set(Resource::Cpu, 0.1 + i as f64 / 3.0)?;
        }
        demand.set(Resource::Memory, 1e15 / 7.0)?;
        demand.set(Resource::NetTx, 1e-7 * i as f64)?;
        points.push(TracePoint {
            at: Timestamp::from_unix_ms(ms),
            demand,
        });
    }
    let workload = TraceWorkload {
        id: WorkloadId::new("svc")?,
        key: WorkloadKey::new("sha256:ab", "1.2", "", "alice")?,
        provisioned: Limits::unlimited()
            .with_hard(Resource::Cpu, 2.5)?
            .with_hard(Resource::NetTx, 1e9)?,
        points,
        origin: PathBuf::from("handmade"),
        surges: Vec::new(),
    };
    let plain = TraceWorkload {
        id: WorkloadId::new("plain")?,
        key: WorkloadKey::for_code("plain")?,
        provisioned: Limits::unlimited(),
        ..workload.clone()
    };
    let trace = Trace {
        workloads: vec![plain, workload],
        ..Trace::default()
    };
    round_trip(&trace)
}

#[test]
fn synthetic_trace_round_trips() -> TestResult {
    round_trip(&generate(&SynthConfig::default_mix()))
}

#[test]
fn real_trace_round_trips() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitbrains_fastStorage/2013-8");
    if !dir.is_dir() {
        eprintln!("skipping: {} is missing", dir.display());
        return Ok(());
    }
    let trace = read_trace(
        TraceFormat::Bitbrains,
        &dir.join("1211.csv.gz"),
        &ReadOptions::default(),
    )?;
    round_trip(&trace)
}

#[test]
fn format_names_parse_and_display() {
    for format in TraceFormat::ALL {
        assert_eq!(format.to_string().parse::<TraceFormat>(), Ok(format));
    }
    assert_eq!(" CSV ".parse::<TraceFormat>(), Ok(TraceFormat::Csv));
    let message = "azure".parse::<TraceFormat>().map_err(|e| e.to_string());
    assert!(
        message.is_err_and(
            |m| m.contains("azure") && m.contains("bitbrains, alibaba, csv, prometheus")
        ),
    );
}
