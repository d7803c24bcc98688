//! What the long-running evaluation commands share: a counting progress bar and writing
//! their JSON report into the output directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A bar counting `total` `units` while `doing` (hidden when `quiet`).
pub(crate) fn counting_bar(quiet: bool, total: u64, doing: &str, units: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!(
        "{{spinner}} {doing} [{{bar:40}}] {{human_pos}}/{{human_len}} {units} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Writes `report` as pretty JSON to `out/name`, creating `out`; returns the file's path.
pub(crate) fn write_report<T: Serialize>(out: &Path, name: &str, report: &T) -> Result<PathBuf> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating output directory {}", out.display()))?;
    let path = out.join(name);
    let json = serde_json::to_vec_pretty(report).context("serialising the report")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
