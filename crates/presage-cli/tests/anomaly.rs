//! `presage evaluate-anomaly` end to end on a tiny NAB-shaped directory: the report
//! contract and the counts NAB's rules give.

use std::fmt::Write as _;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Row `i` of a 5-minute series starting 2014-01-01 00:00:00.
fn stamp(i: usize) -> String {
    let s = i * 300;
    format!(
        "2014-01-{:02} {:02}:{:02}:00",
        1 + s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60
    )
}

fn write_series(path: &Path, rows: usize, spike_at: usize) -> TestResult {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..rows {
        // Small bounded noise, and one two-row spike.
        let v = if i == spike_at || i == spike_at + 1 {
            50.0
        } else {
            10.0 + ((i * 7919) % 13) as f64 * 0.05
        };
        writeln!(csv, "{},{v}", stamp(i))?;
    }
    std::fs::write(path, csv)?;
    Ok(())
}

#[test]
fn evaluate_anomaly_writes_the_contracted_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let nab = dir.path().join("nab");
    std::fs::create_dir_all(nab.join("data/realTest"))?;
    std::fs::create_dir_all(nab.join("labels"))?;
    // a.csv: the spike (row 600) falls inside its window (rows 550–650): one TP.
    write_series(&nab.join("data/realTest/a.csv"), 1000, 600)?;
    // b.csv: the spike (row 250) comes before its window (rows 300–350): one FP and a
    // missed window.
    write_series(&nab.join("data/realTest/b.csv"), 400, 250)?;
    let labels = serde_json::json!({
        "realTest/a.csv": [[format!("{}.000000", stamp(550)), format!("{}.000000", stamp(650))]],
        "realTest/b.csv": [[stamp(300), stamp(350)]],
    });
    std::fs::write(
        nab.join("labels/combined_windows.json"),
        serde_json::to_string_pretty(&labels)?,
    )?;

    let out_dir = dir.path().join("out");
    let out = Command::cargo_bin("presage")?
        .args(["evaluate-anomaly", "--quiet", "--nab"])
        .arg(&nab)
        .arg("--out")
        .arg(&out_dir)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.contains("| **presage** |"), "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(out_dir.join("report.json"))?)?;
    for profile in ["standard", "reward_low_fp", "reward_low_fn"] {
        let score = report["scores"][profile].as_f64();
        assert!(score.is_some_and(f64::is_finite), "{profile}: {report}");
    }
    let series = report["series"]
        .as_array()
        .ok_or("series is not an array")?;
    let counts: Vec<(String, u64, u64, u64, u64)> = series
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["detections"].as_u64().unwrap_or(99),
                s["true_positives"].as_u64().unwrap_or(99),
                s["false_positives"].as_u64().unwrap_or(99),
                s["missed_windows"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("realTest/a.csv".to_owned(), 1, 1, 0, 0),
            ("realTest/b.csv".to_owned(), 1, 0, 1, 1),
        ]
    );
    // Standard profile by hand: a's window is 101 rows and the spike is its 51st, so it
    // scores σ(−51/101)/σ(−1); b pays a full FP (0.11) and a miss (1). Null = −2,
    // perfect = 2.
    let sig = |x: f64| 2.0 / (1.0 + (5.0 * x).exp()) - 1.0;
    let raw = sig(-51.0 / 101.0) / sig(-1.0) - 0.11 - 1.0;
    let expected = 100.0 * (raw + 2.0) / 4.0;
    let standard = report["scores"]["standard"].as_f64().ok_or("no standard")?;
    assert!(
        (standard - expected).abs() < 1e-9,
        "{standard} vs {expected}"
    );
    Ok(())
}

#[test]
fn evaluate_anomaly_names_the_bad_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("data/x"))?;
    std::fs::create_dir_all(dir.path().join("labels"))?;
    std::fs::write(
        dir.path().join("data/x/s.csv"),
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,oops\n",
    )?;
    std::fs::write(
        dir.path().join("labels/combined_windows.json"),
        r#"{"x/s.csv": []}"#,
    )?;
    let out = Command::cargo_bin("presage")?
        .args(["evaluate-anomaly", "--quiet", "--nab"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("s.csv:3:"), "{stderr}");
    Ok(())
}
