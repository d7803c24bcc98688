//! `presage config check [FILE]`: every problem of an agent config file, located, or a
//! summary of the policies it defines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use presage_agent::{AgentConfig, DEFAULT_CONFIG_TOML};

/// Where the agent's config lives when installed as a service.
const SYSTEM_CONFIG: &str = "/etc/presage/presage.toml";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a config file: prints `FILE:LINE:COL: key `a.b`: reason` for each
    /// problem and exits 1, or a summary of the policies in match order. FILE defaults to
    /// /etc/presage/presage.toml when it exists, else the embedded defaults are checked.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: &Command) -> Result<ExitCode> {
    let Command::Check { file } = cmd;
    let file = file.clone().or_else(|| {
        Path::new(SYSTEM_CONFIG)
            .exists()
            .then(|| SYSTEM_CONFIG.into())
    });
    let (text, origin) = match &file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.clone(),
        ),
        None => (
            DEFAULT_CONFIG_TOML.to_string(),
            PathBuf::from("<embedded defaults>"),
        ),
    };
    match AgentConfig::check(&text, &origin) {
        Ok(config) => {
            print!("{}", summary(&origin, &config));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            println!("{errors}");
            eprintln!(
                "{}: {} problem(s); the agent would refuse this file",
                origin.display(),
                errors.problems.len()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn summary(origin: &Path, config: &AgentConfig) -> String {
    let mut out = format!(
        "{}: ok (mode {}, rule {}, interval {} s)\npolicies, first match wins:\n",
        origin.display(),
        config.mode,
        config.policy,
        config.interval_s
    );
    for (i, rule) in config.policies.iter().enumerate() {
        out.push_str(&format!(
            "  {}. {:<16} match {}\n",
            i + 1,
            rule.name,
            rule.selector.describe()
        ));
        for w in &rule.windows {
            out.push_str(&format!("       window {}\n", w.name));
        }
    }
    out.push_str(&format!(
        "  {}. {:<16} match everything else\n",
        config.policies.len() + 1,
        "default"
    ));
    out
}
