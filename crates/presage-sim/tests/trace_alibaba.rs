//! The Alibaba v2018 `machine_usage` reader on the real dev slice and on broken copies.

mod common;

use common::data_dir;

use std::path::{Path, PathBuf};

use presage_core::{Resource, Timestamp};
use presage_sim::trace::{
    ALIBABA_DEFAULT_EPOCH, ReadOptions, Trace, TraceError, TraceFormat, read_trace,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn read(path: &Path) -> Result<Trace, TraceError> {
    read_trace(TraceFormat::Alibaba, path, &ReadOptions::default())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn the_default_epoch_is_a_monday_midnight() {
    assert_eq!(ALIBABA_DEFAULT_EPOCH.day_of_week(), 0);
    assert_eq!(ALIBABA_DEFAULT_EPOCH.second_of_day(), 0);
    assert_eq!(
        ALIBABA_DEFAULT_EPOCH,
        Timestamp::from_unix_secs(1_514_764_800)
    );
}

#[test]
fn the_dev_slice_in_cores_and_nominal_bytes() -> TestResult {
    let Some(dir) = data_dir("alibaba2018_machine_usage") else {
        return Ok(());
    };
    let trace = read(&dir)?;
    assert_eq!(
        trace.files, 2,
        "machine_usage and machine_meta; MANIFEST.tsv ignored"
    );
    let ids: Vec<&str> = trace.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "m_1932", "m_1934", "m_1936", "m_1937", "m_1939", "m_1941", "m_1942", "m_1944",
            "m_1946", "m_1947"
        ]
    );
    let points: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
    assert_eq!(points, 58_729);
    assert_eq!(trace.duplicates, 0);
    assert_eq!(trace.skipped.lines, 0);

    // m_1932 covers only the last 3.5 days: its first row is
    // `m_1932,386640,41,92,,,43.04,33.08,5`, and machine_meta gives it 96 cores.
    let m1932 = &trace.workloads[0];
    assert_eq!(m1932.points.len(), 3325);
    let first = m1932.points[0];
    assert_eq!(first.at, ALIBABA_DEFAULT_EPOCH.plus_secs(386_640));
    assert!(first.at.secs_since(ALIBABA_DEFAULT_EPOCH) >= 386_640.0);
    assert!(close(first.demand.cpu_cores().ok_or("cpu")?, 39.36));
    assert!(close(
        first.demand.memory_bytes().ok_or("memory")?,
        0.92 * 512.0 * GIB
    ));
    // net_in/net_out are normalised and disk_io_percent a percent: left out, not invented.
    for r in [
        Resource::IoRead,
        Resource::IoWrite,
        Resource::NetRx,
        Resource::NetTx,
    ] {
        assert_eq!(first.demand.get(r), None);
    }
    assert_eq!(m1932.provisioned.cpu_quota_cores(), Some(96.0));
    assert_eq!(m1932.provisioned.memory_max_bytes(), Some(512.0 * GIB));
    assert_eq!(m1932.key.code_id(), "m_1932");

    // m_1947 covers only the first 2.2 days: 1148 rows from t = 10 s to 188370 s.
    let m1947 = &trace.workloads[9];
    assert_eq!(m1947.points.len(), 1148);
    assert_eq!(m1947.points[0].at, ALIBABA_DEFAULT_EPOCH.plus_secs(10));
    assert_eq!(
        m1947.points.last().map(|p| p.at),
        Some(ALIBABA_DEFAULT_EPOCH.plus_secs(188_370))
    );
    for w in &trace.workloads {
        assert!(w.points.windows(2).all(|p| p[0].at < p[1].at), "{}", w.id);
    }
    Ok(())
}

#[test]
fn the_usage_file_finds_its_meta_and_the_options_apply() -> TestResult {
    let Some(dir) = data_dir("alibaba2018_machine_usage") else {
        return Ok(());
    };
    let options = ReadOptions {
        alibaba_machine_memory_bytes: 256.0 * GIB,
        alibaba_epoch: Timestamp::from_unix_secs(0),
        ..ReadOptions::default()
    };
    let trace = read_trace(
        TraceFormat::Alibaba,
        &dir.join("machine_usage.csv"),
        &options,
    )?;
    assert_eq!(trace.workloads.len(), 10);
    let first = trace.workloads[0].points[0];
    assert_eq!(first.at, Timestamp::from_unix_secs(386_640));
    assert!(close(
        first.demand.memory_bytes().ok_or("memory")?,
        0.92 * 256.0 * GIB
    ));
    assert_eq!(
        trace.workloads[0].provisioned.memory_max_bytes(),
        Some(256.0 * GIB)
    );
    Ok(())
}

#[test]
fn missing_meta_is_a_clear_error() -> TestResult {
    let Some(dir) = data_dir("alibaba2018_machine_usage") else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let usage = tmp.path().join("machine_usage.csv");
    std::os::unix::fs::symlink(dir.join("machine_usage.csv"), &usage)?;
    for path in [tmp.path().to_path_buf(), usage] {
        match read(&path) {
            Err(TraceError::Invalid { path, message }) => {
                assert!(path.ends_with("machine_meta.csv"), "{}", path.display());
                assert!(message.contains("machine_meta"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    Ok(())
}

const META: &str = "m_1,0,1,1,8,100,USING\nm_2,0,1,1,4,100,USING\nm_2,500,1,1,4,100,USING\n";

fn write_pair(usage: &str) -> Result<(tempfile::TempDir, PathBuf), std::io::Error> {
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("machine_meta.csv"), META)?;
    let path = tmp.path().join("machine_usage.csv");
    std::fs::write(&path, usage)?;
    Ok((tmp, path))
}

#[test]
fn unsorted_rows_are_sorted_per_machine() -> TestResult {
    let (tmp, _) = write_pair(
        "m_1,120,50,10,,,1,1,5\n\
         m_2,60,25,20,,,1,1,-1\n\
         m_1,60,25,10,,,1,1,5\n\
         m_1,120,99,99,,,1,1,5\n\
         m_1,0,0,10,,,1,1,101\n",
    )?;
    let trace = read(tmp.path())?;
    let m1 = &trace.workloads[0];
    let times: Vec<i64> = m1
        .points
        .iter()
        .map(|p| p.at.secs_since(ALIBABA_DEFAULT_EPOCH) as i64)
        .collect();
    assert_eq!(times, [0, 60, 120]);
    // The repeated t=120 keeps the row that came first in the file (50 %, not 99 %).
    assert_eq!(m1.points[2].demand.cpu_cores(), Some(4.0));
    assert_eq!(trace.duplicates, 1);
    assert_eq!(trace.workloads[1].points[0].demand.cpu_cores(), Some(1.0));
    assert_eq!(trace.workloads[1].provisioned.cpu_quota_cores(), Some(4.0));
    Ok(())
}

#[test]
fn bad_rows_name_line_and_field() -> TestResult {
    let cases = [
        ("m_1,60,25,10,,,1,1\n", "columns", "wrong column count"),
        (
            "m_1,60,lots,10,,,1,1,5\n",
            "cpu_util_percent",
            "not a number",
        ),
        ("m_1,60,25,-3,,,1,1,5\n", "mem_util_percent", "negative"),
        ("m_1,60,25,10,,,1,x,5\n", "net_out", "not a number"),
        ("m_1,later,25,10,,,1,1,5\n", "time_stamp", "not a timestamp"),
        (
            "m_9,60,25,10,,,1,1,5\n",
            "machine_id",
            "machine not in machine_meta",
        ),
        ("m_1,60,,,,,1,1,5\n", "cpu_util_percent", "no usage values"),
    ];
    for (bad, field, message) in cases {
        let (tmp, path) = write_pair(&format!(
            "m_1,0,25,10,,,1,1,5\n{bad}m_1,120,25,10,,,1,1,5\n"
        ))?;
        match read(tmp.path()) {
            Err(TraceError::Parse {
                path: p,
                line,
                field: f,
                message: m,
            }) => {
                assert_eq!(p, path);
                assert_eq!(line, 2, "{bad}");
                assert_eq!(f, field, "{bad}");
                assert!(m.contains(message), "{bad}: {m}");
            }
            other => panic!("{bad}: expected a parse error, got {other:?}"),
        }
        let lenient = ReadOptions {
            lenient: true,
            ..ReadOptions::default()
        };
        let trace = read_trace(TraceFormat::Alibaba, tmp.path(), &lenient)?;
        assert_eq!(trace.skipped.lines, 1, "{bad}");
        assert_eq!(trace.workloads[0].points.len(), 2, "{bad}");
    }
    Ok(())
}

#[test]
fn bad_meta_rows_are_errors_too() -> TestResult {
    let tmp = tempfile::tempdir()?;
    std::fs::write(
        tmp.path().join("machine_meta.csv"),
        "m_1,0,1,1,0,100,USING\n",
    )?;
    std::fs::write(
        tmp.path().join("machine_usage.csv"),
        "m_1,0,25,10,,,1,1,5\n",
    )?;
    match read(tmp.path()) {
        Err(TraceError::Parse {
            path, line, field, ..
        }) => {
            assert!(path.ends_with("machine_meta.csv"));
            assert_eq!((line, field.as_str()), (1, "cpu_num"));
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    Ok(())
}
