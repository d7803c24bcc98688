//! The decision log: one JSON line per decision, appended and flushed as it is made, so
//! a crash loses at most the line being written.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use presage_core::{Decision, WorkloadId};
use serde::Serialize;

use crate::config::Mode;
use crate::error::AgentError;

/// An append-only JSON-lines file of decisions.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    file: File,
}

#[derive(Serialize)]
struct Line<'a> {
    mode: Mode,
    applied: bool,
    #[serde(flatten)]
    decision: &'a Decision,
}

impl DecisionLog {
    /// Opens (creating if needed) the log at `path`.
    pub fn open(path: &Path) -> Result<DecisionLog, AgentError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AgentError::Io {
                context: format!("opening decision log {}", path.display()),
                source,
            })?;
        Ok(DecisionLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `decisions`, made in `mode`.
    pub fn append(&mut self, mode: Mode, decisions: &[Decision]) -> Result<(), AgentError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for decision in decisions {
            let line = Line {
                mode,
                applied: mode == Mode::Enforce,
                decision,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| AgentError::Corrupt {
                path: self.path.clone(),
                message: format!("cannot serialise a decision: {e}"),
            })?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.flush())
            .map_err(|source| AgentError::Io {
                context: format!("appending to decision log {}", self.path.display()),
                source,
            })
    }
}

/// How many decisions about `workload` the log at `path` holds (0 if there is no log).
pub fn count_for(path: &Path, workload: &WorkloadId) -> Result<u64, AgentError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(AgentError::Io {
                context: format!("reading decision log {}", path.display()),
                source,
            });
        }
    };
    let needle = serde_json::to_string(workload.as_str()).unwrap_or_default();
    let needle = format!("\"workload\":{needle}");
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| AgentError::Io {
            context: format!("reading decision log {}", path.display()),
            source,
        })?;
        if line.contains(&needle) {
            n += 1;
        }
    }
    Ok(n)
}
