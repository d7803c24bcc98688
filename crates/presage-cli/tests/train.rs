//! `presage train` end to end.

use assert_cmd::Command;
use presage_nn::NeuralFactory;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn train_one_epoch_on_a_tiny_trace_writes_a_loadable_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("tiny.csv");
    let synth = Command::cargo_bin("presage")?
        .args(["trace", "synth", "--days", "2", "--seed", "3", "--out"])
        .arg(&trace)
        .output()?;
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let model = dir.path().join("model.safetensors");
    let out = Command::cargo_bin("presage")?
        .args([
            "train",
            "--quiet",
            "--epochs",
            "1",
            "--batches-per-epoch",
            "5",
        ])
        .arg("--trace")
        .arg(format!("csv:{}", trace.display()))
        .arg("--out")
        .arg(&model)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("validation pinball"), "{stderr}");
    let family = NeuralFactory::from_file(&model)?;
    assert_eq!(family.header().cell.name(), "gru");
    assert_eq!(
        family.header().trained_on,
        [format!("csv:{}", trace.display())]
    );
    Ok(())
}

#[test]
fn train_names_the_trace_it_cannot_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = Command::cargo_bin("presage")?
        .args([
            "train",
            "--quiet",
            "--trace",
            "csv:/nonexistent/trace.csv",
            "--out",
        ])
        .arg(dir.path().join("m.safetensors"))
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/trace.csv"), "{stderr}");
    Ok(())
}
