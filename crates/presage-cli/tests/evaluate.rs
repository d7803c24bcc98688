//! `presage evaluate-forecast` end to end: the report contract other tools read.

use assert_cmd::Command;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn presage() -> Result<Command, Box<dyn std::error::Error>> {
    Ok(Command::cargo_bin("presage")?)
}

#[test]
fn evaluate_forecast_writes_the_contracted_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("synth.csv");
    let made = presage()?
        .args(["trace", "synth", "--days", "3", "--out"])
        .arg(&csv)
        .output()?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let out_dir = dir.path().join("eval");
    let out = presage()?
        .args(["evaluate-forecast", "--quiet", "--trace"])
        .arg(format!("csv:{}", csv.display()))
        .arg("--out")
        .arg(&out_dir)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.contains("seasonal-naive"), "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(out_dir.join("report.json"))?)?;
    let models = report["models"].as_array().ok_or("models is not a list")?;
    let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    for expected in [
        "decaying-histogram",
        "moving-window",
        "segmented",
        "holt-winters",
        "seasonal-naive",
        "ets",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for m in models {
        let name = &m["name"];
        let coverage = m["coverage_p95"].as_f64().ok_or("coverage_p95")?;
        assert!(
            (0.0..=1.0).contains(&coverage),
            "{name} coverage {coverage}"
        );
        for key in ["pinball_p95", "mase"] {
            let v = m[key].as_f64().ok_or(key)?;
            assert!(v.is_finite() && v >= 0.0, "{name} {key} {v}");
        }
        for resource in ["cpu", "memory"] {
            let r = &m["resources"][resource];
            for key in ["pinball_p95", "coverage_p95", "mase"] {
                assert!(
                    r[key].as_f64().is_some_and(f64::is_finite),
                    "{name} {resource} {key}: {r}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn evaluate_forecast_names_a_bad_trace_argument() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = presage()?
        .args([
            "evaluate-forecast",
            "--quiet",
            "--trace",
            "bitbrains",
            "--out",
        ])
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("FORMAT:PATH"), "{stderr}");
    Ok(())
}
