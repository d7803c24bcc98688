//! The Prometheus range-query reader, on fixtures written by the test.

use std::io::Write;
use std::path::{Path, PathBuf};

use presage_core::{Resource, Timestamp};
use presage_sim::trace::{ReadOptions, Trace, TraceError, TraceFormat, read_trace};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const T0: i64 = 1_714_564_800;

/// A response with one point per line, so line numbers in errors can be checked.
fn response(series: &[(&str, &[(f64, &str)])]) -> String {
    let mut out =
        String::from("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[\n");
    for (i, (metric, values)) in series.iter().enumerate() {
        out.push_str(&format!("{{\"metric\":{metric},\"values\":[\n"));
        for (j, (t, v)) in values.iter().enumerate() {
            let comma = if j + 1 < values.len() { "," } else { "" };
            out.push_str(&format!("[{t},\"{v}\"]{comma}\n"));
        }
        let comma = if i + 1 < series.len() { "," } else { "" };
        out.push_str(&format!("]}}{comma}\n"));
    }
    out.push_str("]}}\n");
    out
}

fn t(offset: i64) -> f64 {
    (T0 + offset) as f64
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn read(path: &Path) -> Result<Trace, TraceError> {
    read_trace(TraceFormat::Prometheus, path, &ReadOptions::default())
}

const POD_A: &str = r#"{"__name__":"cpu_rate","namespace":"shop","pod":"a"}"#;
const POD_B: &str = r#"{"namespace":"shop","pod":"b"}"#;

fn fixture() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    write(
        tmp.path(),
        "cpu.json",
        &response(&[
            (POD_A, &[(t(0), "0.5"), (t(60), "1.25"), (t(120), "2")]),
            (POD_B, &[(t(0), "0.1"), (t(60), "0.1")]),
        ]),
    )?;
    // Memory arrives gzipped; the reader inflates it by its magic bytes.
    let memory = response(&[
        (
            r#"{"__name__":"container_memory_working_set_bytes","namespace":"shop","pod":"a"}"#,
            &[(t(0), "1048576"), (t(90), "2097152"), (t(120), "3e6")],
        ),
        (POD_B, &[(t(60), "5e8")]),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(memory.as_bytes())?;
    std::fs::write(tmp.path().join("memory-2024-05-01.json.gz"), gz.finish()?)?;
    write(
        tmp.path(),
        "memory_provisioned.json",
        &response(&[(
            POD_A,
            &[(t(0), "4294967296"), (t(60), "8589934592"), (t(120), "0")],
        )]),
    )?;
    write(tmp.path(), "README.md", "how these were queried")?;
    Ok(tmp)
}

#[test]
fn resources_from_several_files_merge_per_workload() -> TestResult {
    let tmp = fixture()?;
    let trace = read(tmp.path())?;
    assert_eq!(trace.files, 3);
    let ids: Vec<&str> = trace.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["namespace=shop,pod=a", "namespace=shop,pod=b"]);
    let a = &trace.workloads[0];
    let times: Vec<i64> = a
        .points
        .iter()
        .map(|p| p.at.unix_ms() / 1000 - T0)
        .collect();
    assert_eq!(times, [0, 60, 90, 120]);
    assert_eq!(a.points[0].demand.cpu_cores(), Some(0.5));
    assert_eq!(a.points[0].demand.memory_bytes(), Some(1_048_576.0));
    assert_eq!(a.points[1].demand.memory_bytes(), None);
    assert_eq!(a.points[2].demand.cpu_cores(), None);
    assert_eq!(a.points[3].demand.memory_bytes(), Some(3e6));
    assert_eq!(a.points[0].at, Timestamp::from_unix_secs(T0));
    // The latest positive limit (a 0 means "no limit").
    assert_eq!(a.provisioned.memory_max_bytes(), Some(8_589_934_592.0));
    assert_eq!(a.provisioned.cpu_quota_cores(), None);
    assert!(a.origin.ends_with("cpu.json"));
    let b = &trace.workloads[1];
    assert_eq!(b.points.len(), 2);
    assert_eq!(b.points[1].demand.memory_bytes(), Some(5e8));
    assert_eq!(b.points[1].demand.get(Resource::NetRx), None);
    Ok(())
}

#[test]
fn a_chosen_label_names_the_workload() -> TestResult {
    let tmp = fixture()?;
    let options = ReadOptions {
        prometheus_id_label: Some("pod".to_owned()),
        ..ReadOptions::default()
    };
    let trace = read_trace(TraceFormat::Prometheus, tmp.path(), &options)?;
    let ids: Vec<&str> = trace.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);

    let missing = ReadOptions {
        prometheus_id_label: Some("container".to_owned()),
        ..ReadOptions::default()
    };
    match read_trace(TraceFormat::Prometheus, tmp.path(), &missing) {
        Err(TraceError::Parse { field, message, .. }) => {
            assert_eq!(field, "metric");
            assert!(message.contains("container"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn bad_values_name_their_line() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cases: [(&str, (f64, &str), &str, &str); 4] = [
        ("text", (t(60), "lots"), "value", "not a number"),
        ("nan", (t(60), "NaN"), "value", "NaN"),
        ("negative", (t(60), "-1"), "value", "negative"),
        ("backwards", (t(-60), "1"), "timestamp", "backwards"),
    ];
    for (name, bad, field, message) in cases {
        let text = response(&[(POD_B, &[(t(0), "1"), bad, (t(120), "1")])]);
        let path = write(tmp.path(), &format!("cpu-{name}.json"), &text)?;
        match read(&path) {
            Err(TraceError::Parse {
                path: p,
                line,
                field: f,
                message: m,
            }) => {
                assert_eq!(p, path);
                // Line 1 opens the response, 2 the series, 3 the first point.
                assert_eq!(line, 4, "{name}");
                assert_eq!(f, field, "{name}");
                assert!(m.contains(message), "{name}: {m}");
            }
            other => panic!("{name}: expected a parse error, got {other:?}"),
        }
        let options = ReadOptions {
            lenient: true,
            ..ReadOptions::default()
        };
        let trace = read_trace(TraceFormat::Prometheus, &path, &options)?;
        assert_eq!(trace.skipped.lines, 1);
        assert_eq!(trace.workloads[0].points.len(), 2);
    }
    Ok(())
}

#[test]
fn repeated_timestamps_across_files_are_dropped() -> TestResult {
    let tmp = tempfile::tempdir()?;
    write(
        tmp.path(),
        "cpu-1.json",
        &response(&[(POD_B, &[(t(0), "1"), (t(60), "2"), (t(60), "9")])]),
    )?;
    write(
        tmp.path(),
        "cpu-2.json",
        &response(&[(POD_B, &[(t(60), "3"), (t(120), "4")])]),
    )?;
    let trace = read(tmp.path())?;
    let w = &trace.workloads[0];
    assert_eq!(w.points.len(), 3);
    assert_eq!(w.points[1].demand.cpu_cores(), Some(2.0));
    assert_eq!(trace.duplicates, 2);
    Ok(())
}

#[test]
fn whole_response_problems_are_invalid() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let error = write(
        tmp.path(),
        "cpu-error.json",
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}"#,
    )?;
    match read(&error) {
        Err(TraceError::Invalid { path, message }) => {
            assert_eq!(path, error);
            assert!(
                message.contains("\"error\"") && message.contains("bad_data"),
                "{message}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let vector = write(
        tmp.path(),
        "cpu-vector.json",
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#,
    )?;
    assert!(
        matches!(read(&vector), Err(TraceError::Invalid { message, .. }) if message.contains("matrix"))
    );

    let unnamed = write(
        tmp.path(),
        "node.json",
        &response(&[(POD_B, &[(t(0), "1")])]),
    )?;
    assert!(
        matches!(read(&unnamed), Err(TraceError::Invalid { message, .. }) if message.contains("resource"))
    );
    let options = ReadOptions {
        prometheus_resource: Some(Resource::NetTx),
        ..ReadOptions::default()
    };
    let trace = read_trace(TraceFormat::Prometheus, &unnamed, &options)?;
    assert_eq!(
        trace.workloads[0].points[0].demand.get(Resource::NetTx),
        Some(1.0)
    );

    let text = response(&[(POD_B, &[(t(0), "1"), (t(60), "2")])]);
    let cut = write(tmp.path(), "cpu-cut.json", &text[..text.len() / 2])?;
    match read(&cut) {
        Err(TraceError::Parse {
            path,
            field,
            message,
            ..
        }) => {
            assert_eq!(path, cut);
            assert_eq!(field, "json");
            assert!(message.contains("EOF"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }

    let many: Vec<(f64, String)> = (0..20_000)
        .map(|i| (t(i), format!("{}", i % 977)))
        .collect();
    let many: Vec<(f64, &str)> = many.iter().map(|(t, v)| (*t, v.as_str())).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(response(&[(POD_B, &many)]).as_bytes())?;
    let bytes = gz.finish()?;
    let truncated = tmp.path().join("cpu-truncated.json.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    assert!(matches!(read(&truncated), Err(TraceError::Io { path, .. }) if path == truncated));

    let empty = write(
        tmp.path(),
        "cpu-empty.json",
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
    )?;
    assert!(read(&empty)?.workloads.is_empty());
    Ok(())
}
