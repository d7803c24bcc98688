//! The `presage` command end to end.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn presage() -> Result<Command, Box<dyn std::error::Error>> {
    Ok(Command::cargo_bin("presage")?)
}

fn read_report(dir: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join("report.json"),
    )?)?)
}

#[test]
fn help_says_what_presage_is() -> TestResult {
    let out = presage()?.arg("--help").output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("forecasts its demand"), "{text}");
    assert!(text.contains("simulate"));
    Ok(())
}

#[test]
fn simulate_on_the_builtin_trace_writes_the_contracted_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = presage()?
        .args([
            "simulate",
            "--quiet",
            "--sweep",
            "--policies",
            "static,vpa,presage,oracle",
            "--out",
        ])
        .arg(dir.path())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.contains("slack at VPA's violation rate"), "{stdout}");
    let report = read_report(dir.path())?;
    assert!(report["workloads"].as_u64().is_some_and(|n| n > 0));
    assert!(report["samples"].as_u64().is_some_and(|n| n > 0));
    let policies = report["policies"].as_array().ok_or("policies")?;
    assert_eq!(policies.len(), 4);
    for p in policies {
        for resource in ["cpu", "memory"] {
            for key in [
                "slack",
                "violation_rate",
                "unmet",
                "oom_per_workload_day",
                "churn_per_workload_day",
            ] {
                let v = &p["resources"][resource][key];
                assert!(
                    v.as_f64().is_some_and(f64::is_finite),
                    "{} {resource} {key}: {v}",
                    p["name"]
                );
            }
        }
    }
    for resource in ["cpu", "memory"] {
        let vpa = report["headline"][resource]["vpa"]
            .as_f64()
            .ok_or("vpa headline")?;
        assert!((vpa - 1.0).abs() < 1e-9, "VPA against itself is 1×: {vpa}");
        let frontier = report["frontiers"][resource]["presage"]
            .as_array()
            .ok_or("frontier")?;
        assert!(!frontier.is_empty());
    }
    for plot in [
        "frontier_cpu.svg",
        "frontier_cpu.png",
        "frontier_memory.png",
    ] {
        assert!(dir.path().join(plot).metadata()?.len() > 1000, "{plot}");
    }
    Ok(())
}

#[test]
fn a_synthetic_csv_round_trips_through_simulate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("synth.csv");
    let out = presage()?
        .args(["trace", "synth", "--days", "2", "--out"])
        .arg(&csv)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = presage()?
        .args([
            "simulate",
            "--quiet",
            "--no-plots",
            "--policies",
            "static,vpa",
            "--out",
        ])
        .arg(dir.path())
        .arg("--trace")
        .arg(format!("csv:{}", csv.display()))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_report(dir.path())?;
    assert!(report["workloads"].as_u64().is_some_and(|n| n > 0));
    Ok(())
}

#[test]
fn a_bad_trace_line_is_named_and_lenient_skips_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "timestamp,workload,cpu,memory\n0,a,1.0,1000000\n300,a,lots,1000000\n600,a,1.5,1000000\n",
    )?;
    let out = presage()?
        .args([
            "simulate",
            "--quiet",
            "--no-plots",
            "--policies",
            "static",
            "--out",
        ])
        .arg(dir.path())
        .arg("--trace")
        .arg(format!("csv:{}", csv.display()))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("bad.csv:3") && err.contains("cpu"), "{err}");
    let out = presage()?
        .args([
            "simulate",
            "--quiet",
            "--no-plots",
            "--lenient",
            "--policies",
            "static",
            "--out",
        ])
        .arg(dir.path())
        .arg("--trace")
        .arg(format!("csv:{}", csv.display()))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_report(dir.path())?;
    assert_eq!(report["trace"]["skipped"]["lines"].as_u64(), Some(1));
    Ok(())
}

#[test]
fn unknown_policies_and_formats_are_refused_with_the_choices() -> TestResult {
    let out = presage()?
        .args(["simulate", "--quiet", "--policies", "magic"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("magic") && err.contains("vpa"), "{err}");
    let out = presage()?
        .args(["simulate", "--quiet", "--trace", "azure:/nowhere"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("azure") && err.contains("bitbrains"), "{err}");
    Ok(())
}

#[test]
fn synthetic_days_set_the_builtin_trace_length_and_zero_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = presage()?
        .args(["simulate", "--quiet", "--no-plots", "--synthetic-days", "2"])
        .args(["--policies", "static", "--out"])
        .arg(dir.path())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_report(dir.path())?;
    let days = report["workload_days"].as_f64().ok_or("workload_days")?;
    let workloads = report["workloads"].as_f64().ok_or("workloads")?;
    assert!(
        (days / workloads - 2.0).abs() < 0.01,
        "{days} over {workloads}"
    );

    let out = presage()?
        .args(["simulate", "--quiet", "--synthetic-days", "0", "--out"])
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("--synthetic-days 0"), "{err}");
    Ok(())
}

#[test]
fn the_neural_model_joins_presage_and_a_missing_model_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut decisions = Vec::new();
    for neural in [false, true] {
        let out = presage()?
            .args(["simulate", "--quiet", "--no-plots", "--synthetic-days", "2"])
            .args(["--policies", "presage", "--out"])
            .arg(dir.path())
            .args(neural.then_some("--neural"))
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = read_report(dir.path())?;
        decisions.push(
            report["policies"][0]["decisions"]
                .as_u64()
                .ok_or("decisions")?,
        );
    }
    // The GRU is chosen by the ensemble for some workload-steps, which moves some limits.
    assert!(
        decisions[0] > 0 && decisions[0] != decisions[1],
        "{decisions:?}"
    );

    let missing = dir.path().join("no-such-model.safetensors");
    let out = presage()?
        .args([
            "simulate",
            "--quiet",
            "--synthetic-days",
            "1",
            "--neural",
            "--model",
        ])
        .arg(&missing)
        .arg("--out")
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("no-such-model.safetensors"), "{err}");
    Ok(())
}

#[test]
fn config_check_passes_the_example_and_locates_problems() -> TestResult {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/presage.example.toml");
    let out = presage()?
        .args(["config", "check"])
        .arg(&example)
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1. web") && stdout.contains("unit=nginx.service"),
        "{stdout}"
    );
    assert!(stdout.contains("4. default"), "{stdout}");

    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "mode = \"enforce\"\n[[policies]]\nname = \"a\"\nwieght = 2\n",
    )?;
    let out = presage()?.args(["config", "check"]).arg(&bad).output()?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(!out.status.success());
    let want = format!(
        "{}:4:1: key `policies[0].wieght`: unknown field",
        bad.display()
    );
    assert!(stdout.contains(&want), "{stdout}");
    Ok(())
}
