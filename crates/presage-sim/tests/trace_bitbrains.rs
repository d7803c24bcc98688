//! The Bitbrains reader on the real dev files, and on broken files written to a tempdir.

mod common;

use common::data_dir;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use presage_core::{Resource, Timestamp};
use presage_sim::trace::{ReadOptions, Trace, TraceError, TraceFormat, TraceWorkload, read_trace};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]";

fn read(path: &Path) -> Result<Trace, TraceError> {
    read_trace(TraceFormat::Bitbrains, path, &ReadOptions::default())
}

fn only(trace: &Trace) -> &TraceWorkload {
    assert_eq!(trace.workloads.len(), 1);
    &trace.workloads[0]
}

fn assert_strictly_increasing(w: &TraceWorkload) {
    assert!(
        w.points.windows(2).all(|p| p[0].at < p[1].at),
        "{} is not strictly increasing",
        w.id
    );
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn first_row_of_a_regular_vm_in_cores_and_bytes() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage/2013-8") else {
        return Ok(());
    };
    let trace = read(&dir.join("1.csv.gz"))?;
    let w = only(&trace);
    assert_eq!(w.id.as_str(), "1");
    assert_eq!(w.key.code_id(), "1");
    assert_eq!(w.points.len(), 8634);
    assert_eq!(trace.duplicates, 0);
    assert_eq!(trace.files, 1);
    let first = w.points[0];
    assert_eq!(first.at, Timestamp::from_unix_secs(1_376_314_846));
    // 10912.027692426667 MHz / (11703.99824 MHz / 4 cores)
    let cpu = first.demand.cpu_cores().ok_or("no cpu")?;
    assert!(close(cpu, 3.729_333_333_333_333_4), "cpu {cpu}");
    // 6129274.4 KB × 1024
    let mem = first.demand.memory_bytes().ok_or("no memory")?;
    assert!(close(mem, 6_276_376_985.6), "memory {mem}");
    // 0.13333 KB/s read, 15981.6 KB/s written, 0 received, 2.1333 KB/s sent.
    assert!(close(
        first.demand.get(Resource::IoRead).ok_or("io_read")?,
        0.133_333_333_333_333_33 * 1024.0
    ));
    assert!(close(
        first.demand.get(Resource::IoWrite).ok_or("io_write")?,
        15_981.6 * 1024.0
    ));
    assert_eq!(first.demand.get(Resource::NetRx), Some(0.0));
    assert!(close(
        first.demand.get(Resource::NetTx).ok_or("net_tx")?,
        2.133_333_333_333_333 * 1024.0
    ));
    assert_eq!(w.provisioned.cpu_quota_cores(), Some(4.0));
    // 6.7108864E7 KB = 64 GiB.
    assert_eq!(w.provisioned.memory_max_bytes(), Some(68_719_476_736.0));
    assert_eq!(
        w.points.last().map(|p| p.at),
        Some(Timestamp::from_unix_secs(1_378_906_798))
    );
    assert_strictly_increasing(w);
    Ok(())
}

#[test]
fn duplicate_timestamps_keep_the_first_row() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage/2013-8") else {
        return Ok(());
    };
    // 161 repeats 15 of its 1256 rows; 671 repeats 34 of 14459.
    for (vm, rows, unique) in [("161", 1256, 1241), ("671", 14459, 14425)] {
        let trace = read(&dir.join(format!("{vm}.csv.gz")))?;
        let w = only(&trace);
        assert_eq!(w.points.len(), unique, "{vm}");
        assert_eq!(trace.duplicates, (rows - unique) as u64, "{vm}");
        assert_strictly_increasing(w);
    }
    // 161 starts powered off: 0 cores, 0 MHz → 0 cores of demand, not a gap.
    let trace = read(&dir.join("161.csv.gz"))?;
    let w = only(&trace);
    assert_eq!(w.points[0].demand.cpu_cores(), Some(0.0));
    // A 0 KB memory reading is a reading not taken: memory is absent at that step.
    assert_eq!(w.points[0].demand.memory_bytes(), None);
    // Provisioned: the most common non-zero values (1 core; 2093056 KB on 11 rows).
    assert_eq!(w.provisioned.cpu_quota_cores(), Some(1.0));
    assert_eq!(w.provisioned.memory_max_bytes(), Some(2_093_056.0 * 1024.0));
    Ok(())
}

#[test]
fn short_vms_are_read_whole() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage/2013-8") else {
        return Ok(());
    };
    let trace = read(&dir.join("1211.csv.gz"))?;
    let w = only(&trace);
    assert_eq!(w.points.len(), 39);
    let first = w.points[0];
    assert_eq!(first.at, Timestamp::from_unix_secs(1_377_590_877));
    // 27.733329248 MHz on one 2599.999617 MHz core.
    assert!(close(
        first.demand.cpu_cores().ok_or("cpu")?,
        0.010_666_666_666_666_666
    ));
    assert!(close(
        first.demand.memory_bytes().ok_or("memory")?,
        156_935.466_666_666_67 * 1024.0
    ));
    // 97784 KB on 29 of 39 rows, 91192 KB on 6.
    assert_eq!(w.provisioned.memory_max_bytes(), Some(97_784.0 * 1024.0));
    assert_eq!(only(&read(&dir.join("59.csv.gz"))?).points.len(), 41);
    Ok(())
}

#[test]
fn rows_without_cores_use_the_nearest_per_core_speed() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage/2013-8") else {
        return Ok(());
    };
    // VM 185 reports 0 cores and 0 MHz capacity from 1378506560 on, while still using
    // 77.99999853 MHz; the row before had 8 cores at 20799.999608 MHz.
    let trace = read(&dir.join("185.csv.gz"))?;
    let w = only(&trace);
    assert_eq!(w.points.len(), 9947);
    let at = Timestamp::from_unix_secs(1_378_506_560);
    let i = w
        .points
        .binary_search_by_key(&at, |p| p.at)
        .map_err(|_| "row missing")?;
    let cpu = w.points[i].demand.cpu_cores().ok_or("cpu absent")?;
    assert!(close(cpu, 0.03), "cpu {cpu}");
    assert!(w.points.iter().all(|p| p.demand.cpu_cores().is_some()));
    assert_eq!(w.provisioned.cpu_quota_cores(), Some(8.0));
    Ok(())
}

/// Links real files into a tempdir (no copy), so a test can read a chosen subset.
fn link(files: &[(&Path, &str)]) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    for (source, rel) in files {
        let target = dir.path().join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(source, target)?;
    }
    Ok(dir)
}

#[test]
fn a_directory_of_a_handful_of_vms() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage/2013-8") else {
        return Ok(());
    };
    let names = ["1", "161", "1211", "59", "671"];
    let files: Vec<(PathBuf, String)> = names
        .iter()
        .map(|n| (dir.join(format!("{n}.csv.gz")), format!("{n}.csv.gz")))
        .collect();
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, r)| (p.as_path(), r.as_str()))
        .collect();
    let tmp = link(&refs)?;
    std::fs::write(tmp.path().join("MANIFEST.tsv"), "path\tbytes\n")?;
    std::fs::write(tmp.path().join("README.md"), "# not data\n")?;
    let trace = read(tmp.path())?;
    assert_eq!(trace.files, 5);
    let ids: Vec<&str> = trace.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["1", "1211", "161", "59", "671"], "sorted by id");
    assert_eq!(trace.duplicates, 15 + 34);
    let points: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
    assert_eq!(points, 8634 + 39 + 1241 + 41 + 14425);
    Ok(())
}

#[test]
fn rnd_months_merge_into_one_vm() -> TestResult {
    let Some(dir) = data_dir("bitbrains_rnd") else {
        return Ok(());
    };
    let mut files = Vec::new();
    for month in ["2013-7", "2013-8", "2013-9"] {
        for vm in ["1", "51"] {
            let rel = format!("{month}/{vm}.csv.gz");
            files.push((dir.join(&rel), rel));
        }
    }
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, r)| (p.as_path(), r.as_str()))
        .collect();
    let tmp = link(&refs)?;
    let trace = read(tmp.path())?;
    assert_eq!(trace.files, 6);
    assert_eq!(trace.workloads.len(), 2);
    let vm1 = &trace.workloads[0];
    assert_eq!(vm1.id.as_str(), "1");
    // 8260 + 8627 + 8333 rows, none repeated.
    assert_eq!(vm1.points.len(), 25_220);
    assert_strictly_increasing(vm1);
    assert!(
        vm1.origin.ends_with("2013-7/1.csv.gz"),
        "{}",
        vm1.origin.display()
    );
    let first = vm1.points[0];
    assert_eq!(first.at, Timestamp::from_unix_secs(1_372_629_804));
    // 87.7799835 MHz on 2 cores of 5851.9989 MHz in all.
    assert!(close(first.demand.cpu_cores().ok_or("cpu")?, 0.03));
    assert!(close(
        first.demand.memory_bytes().ok_or("memory")?,
        1_059_423_027.2
    ));
    // 8388608 KB (8 GiB) on 24922 of 25220 rows.
    assert_eq!(
        vm1.provisioned.memory_max_bytes(),
        Some(8.0 * 1024.0 * 1024.0 * 1024.0)
    );
    assert_eq!(vm1.provisioned.cpu_quota_cores(), Some(2.0));
    // The month gap stays a gap: July ends 1375221457, August starts 1375308176.
    let july_end = Timestamp::from_unix_secs(1_375_221_457);
    let august_start = Timestamp::from_unix_secs(1_375_308_176);
    assert!(
        vm1.points
            .windows(2)
            .any(|p| p[0].at == july_end && p[1].at == august_start)
    );

    let vm51 = &trace.workloads[1];
    assert_eq!(vm51.id.as_str(), "51");
    // September repeats 1826 of its 11940 rows.
    assert_eq!(vm51.points.len(), 8253 + 8621 + 10_114);
    assert_eq!(trace.duplicates, 11_940 - 10_114);
    assert_strictly_increasing(vm51);
    Ok(())
}

#[test]
fn whole_fast_storage_dev_set() -> TestResult {
    let Some(dir) = data_dir("bitbrains_fastStorage") else {
        return Ok(());
    };
    let started = Instant::now();
    let trace = read(&dir)?;
    let elapsed = started.elapsed();
    println!(
        "read {} VMs, {} points from {} files in {elapsed:.2?}",
        trace.workloads.len(),
        trace
            .workloads
            .iter()
            .map(|w| w.points.len())
            .sum::<usize>(),
        trace.files
    );
    assert_eq!(trace.files, 375);
    assert_eq!(trace.workloads.len(), 375);
    assert_eq!(trace.duplicates, 125_054);
    let points: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
    assert_eq!(points, 3_387_432 - 125_054);
    for w in &trace.workloads {
        assert_strictly_increasing(w);
        assert!(w.points.iter().all(|p| p.demand.cpu_cores().is_some()));
        assert!(w.provisioned.cpu_quota_cores().is_some(), "{}", w.id);
    }
    Ok(())
}

#[test]
fn whole_rnd_dev_set_merges_150_vms() -> TestResult {
    let Some(dir) = data_dir("bitbrains_rnd") else {
        return Ok(());
    };
    let trace = read(&dir)?;
    assert_eq!(trace.files, 450);
    assert_eq!(trace.workloads.len(), 150);
    let points: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
    assert_eq!(points, 3_678_201);
    assert_eq!(trace.duplicates, 3_719_268 - 3_678_201);
    for w in &trace.workloads {
        assert_strictly_increasing(w);
        // Every VM has rows in July (which ends at 1375221457) and in September (which
        // starts at 1377986608).
        let (Some(first), Some(last)) = (w.points.first(), w.points.last()) else {
            panic!("{} is empty", w.id);
        };
        assert!(
            first.at <= Timestamp::from_unix_secs(1_375_221_457),
            "{}",
            w.id
        );
        assert!(
            last.at >= Timestamp::from_unix_secs(1_377_986_608),
            "{}",
            w.id
        );
    }
    Ok(())
}

#[test]
fn one_id_in_two_overlapping_datasets_is_refused() -> TestResult {
    let (Some(fast), Some(rnd)) = (
        data_dir("bitbrains_fastStorage/2013-8"),
        data_dir("bitbrains_rnd/2013-8"),
    ) else {
        return Ok(());
    };
    let (a, b) = (fast.join("1.csv.gz"), rnd.join("1.csv.gz"));
    let tmp = link(&[
        (a.as_path(), "fast/1.csv.gz"),
        (b.as_path(), "rnd/1.csv.gz"),
    ])?;
    match read(tmp.path()) {
        Err(TraceError::Invalid { message, .. }) => {
            assert!(message.contains("overlaps"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    Ok(())
}

// ---- broken traces ----------------------------------------------------------------

const GOOD_ROW: &str = "1376314846;\t4;\t11703.99824;\t10912.03;\t93.2;\t6.7108864E7;\t6129274.4;\t0.13;\t15981.6;\t0.0;\t2.13";

fn row(t: i64) -> String {
    GOOD_ROW.replacen("1376314846", &t.to_string(), 1)
}

fn write(dir: &Path, name: &str, lines: &[String]) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(name);
    let mut text = String::from(HEADER);
    text.push('\n');
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The parts of a parse error, or a panic naming what came instead.
fn parse_error(result: Result<Trace, TraceError>) -> (PathBuf, u64, String, String) {
    match result {
        Err(TraceError::Parse {
            path,
            line,
            field,
            message,
        }) => (path, line, field, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn each_malformed_line_is_named_by_file_line_and_field() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cases: [(&str, String, u64, &str, &str); 6] = [
        (
            "columns.csv",
            row(1_376_315_146).replace(";\t2.13", ""),
            3,
            "columns",
            "wrong column count",
        ),
        (
            "text.csv",
            row(1_376_315_146).replace("10912.03", "lots"),
            3,
            "CPU usage [MHZ]",
            "not a number",
        ),
        (
            "nan.csv",
            row(1_376_315_146).replace("6129274.4", "NaN"),
            3,
            "Memory usage [KB]",
            "NaN",
        ),
        (
            "negative.csv",
            row(1_376_315_146).replace("15981.6", "-1"),
            3,
            "Disk write throughput [KB/s]",
            "negative",
        ),
        (
            "time.csv",
            row(1_376_315_146).replacen("1376315146", "soon", 1),
            3,
            "Timestamp [ms]",
            "not a timestamp",
        ),
        (
            "backwards.csv",
            row(1_376_314_546),
            3,
            "Timestamp [ms]",
            "backwards",
        ),
    ];
    for (name, bad, line, field, message) in cases {
        let path = write(
            tmp.path(),
            name,
            &[row(1_376_314_846), bad, row(1_376_315_446)],
        )?;
        let (p, l, f, m) = parse_error(read(&path));
        assert_eq!(p, path, "{name}");
        assert_eq!(l, line, "{name}");
        assert_eq!(f, field, "{name}");
        assert!(m.contains(message), "{name}: {m}");
    }
    Ok(())
}

#[test]
fn a_lenient_read_skips_and_counts_bad_lines() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = write(
        tmp.path(),
        "7.csv",
        &[
            row(1_376_314_846),
            row(1_376_315_146).replace("10912.03", "lots"),
            row(1_376_315_146),
            row(1_376_315_146),
            row(1_376_315_446).replace(";\t2.13", ""),
            row(1_376_315_046),
            row(1_376_315_746).replace("6129274.4", "-5"),
            row(1_376_316_046),
        ],
    )?;
    assert!(read(&path).is_err());
    let options = ReadOptions {
        lenient: true,
        ..ReadOptions::default()
    };
    let trace = read_trace(TraceFormat::Bitbrains, &path, &options)?;
    let w = only(&trace);
    assert_eq!(w.points.len(), 3);
    assert_eq!(trace.duplicates, 1);
    assert_eq!(trace.skipped.lines, 4);
    assert_eq!(trace.skipped.by_reason.get("not a number"), Some(&1));
    assert_eq!(trace.skipped.by_reason.get("wrong column count"), Some(&1));
    assert_eq!(
        trace.skipped.by_reason.get("timestamp went backwards"),
        Some(&1)
    );
    assert_eq!(trace.skipped.by_reason.get("negative value"), Some(&1));
    assert_eq!(trace.skipped.examples.len(), 4);
    let expected = format!("{}:3: field CPU usage [MHZ]", path.display());
    assert!(
        trace.skipped.examples[0].starts_with(&expected),
        "{:?}",
        trace.skipped.examples
    );
    Ok(())
}

#[test]
fn a_truncated_gzip_is_an_io_error_naming_the_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    writeln!(gz, "{HEADER}")?;
    // Varied rows, so the compressed stream is long enough to cut in the middle.
    for i in 0..5000_i64 {
        let r =
            row(1_376_314_846 + 300 * i).replace("10912.03", &format!("{}.{}", i * 7 % 1000, i));
        writeln!(gz, "{r}")?;
    }
    let bytes = gz.finish()?;
    // No `.gz` in the name: gzip is recognised by its magic bytes.
    let whole = tmp.path().join("whole.csv");
    std::fs::write(&whole, &bytes)?;
    assert_eq!(only(&read(&whole)?).points.len(), 5000);

    let cut = tmp.path().join("cut.csv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    for options in [
        ReadOptions::default(),
        ReadOptions {
            lenient: true,
            ..ReadOptions::default()
        },
    ] {
        match read_trace(TraceFormat::Bitbrains, &cut, &options) {
            Err(TraceError::Io { path, source }) => {
                assert_eq!(path, cut);
                assert!(source.to_string().contains("truncated"), "{source}");
                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_missing_header_or_path_is_reported() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let empty = tmp.path().join("empty.csv");
    std::fs::write(&empty, "")?;
    let (_, line, field, _) = parse_error(read(&empty));
    assert_eq!((line, field.as_str()), (1, "header"));

    let headless = tmp.path().join("headless.csv");
    std::fs::write(&headless, format!("{}\n", row(1_376_314_846)))?;
    let (_, line, field, _) = parse_error(read(&headless));
    assert_eq!((line, field.as_str()), (1, "header"));

    let bom = tmp.path().join("bom.csv");
    std::fs::write(&bom, format!("\u{feff}{HEADER}\n{}\n", row(1_376_314_846)))?;
    assert_eq!(only(&read(&bom)?).points.len(), 1);

    let nothing = tmp.path().join("nothing-here");
    assert!(matches!(read(&nothing), Err(TraceError::Io { path, .. }) if path == nothing));
    let no_data = tempfile::tempdir()?;
    std::fs::write(no_data.path().join("README.md"), "hi")?;
    assert!(matches!(
        read(no_data.path()),
        Err(TraceError::Invalid { .. })
    ));
    Ok(())
}
