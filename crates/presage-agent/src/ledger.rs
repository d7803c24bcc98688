//! The adoption ledger: the limits each workload had before presage first touched it.
//!
//! Written to disk before the first limit is changed, so that after a crash a restarted
//! agent still knows what to put back on shutdown (it re-adopts with the recorded
//! limits, not the ones it had itself set). Every save is a whole-file atomic replace:
//! a crash mid-save leaves the previous ledger intact.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use presage_core::{Limits, Timestamp, WorkloadKey};
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// What was recorded when a cgroup was adopted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adoption {
    /// The cgroup, relative to the hierarchy root.
    pub cgroup: String,
    /// The limits it had before presage.
    pub limits: Limits,
    /// When it was first adopted.
    pub adopted_at: Timestamp,
    /// What it is.
    pub key: WorkloadKey,
}

/// The adoption ledger, in memory and (unless ephemeral) on disk.
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Adoption>,
}

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    adopted: Vec<Adoption>,
}

const LEDGER_VERSION: u32 = 1;

impl Ledger {
    /// A ledger kept only in memory (a `presage run` cgroup is removed at exit, so there
    /// is nothing to restore after a crash).
    pub fn ephemeral() -> Ledger {
        Ledger {
            path: None,
            entries: BTreeMap::new(),
        }
    }

    /// The ledger at `path`, read if it exists.
    pub fn open(path: &Path) -> Result<Ledger, AgentError> {
        let entries = match fs::read_to_string(path) {
            Ok(text) => {
                let file: LedgerFile =
                    serde_json::from_str(&text).map_err(|e| AgentError::Corrupt {
                        path: path.to_path_buf(),
                        message: format!("line {}, column {}: {e}", e.line(), e.column()),
                    })?;
                if file.version != LEDGER_VERSION {
                    return Err(AgentError::Corrupt {
                        path: path.to_path_buf(),
                        message: format!(
                            "field `version`: {} is not the supported {LEDGER_VERSION}",
                            file.version
                        ),
                    });
                }
                file.adopted
                    .into_iter()
                    .map(|a| (a.cgroup.clone(), a))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(AgentError::Io {
                    context: format!("reading ledger {}", path.display()),
                    source,
                });
            }
        };
        Ok(Ledger {
            path: Some(path.to_path_buf()),
            entries,
        })
    }

    /// The record of `cgroup`, if it was adopted before.
    pub fn get(&self, cgroup: &str) -> Option<&Adoption> {
        self.entries.get(cgroup)
    }

    /// Every record.
    pub fn entries(&self) -> impl Iterator<Item = &Adoption> {
        self.entries.values()
    }

    /// Records an adoption and saves. An earlier record of the same cgroup is kept: the
    /// first limits seen are the operator's, later ones may be presage's own.
    pub fn record(&mut self, adoption: Adoption) -> Result<(), AgentError> {
        if self.entries.contains_key(&adoption.cgroup) {
            return Ok(());
        }
        self.entries.insert(adoption.cgroup.clone(), adoption);
        self.save()
    }

    /// Forgets cgroups (gone, or restored) and saves.
    pub fn forget<'a>(
        &mut self,
        cgroups: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AgentError> {
        let mut changed = false;
        for cg in cgroups {
            changed |= self.entries.remove(cg).is_some();
        }
        if changed { self.save() } else { Ok(()) }
    }

    fn save(&self) -> Result<(), AgentError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = LedgerFile {
            version: LEDGER_VERSION,
            adopted: self.entries.values().cloned().collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| AgentError::Corrupt {
            path: path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        write_atomically(path, text.as_bytes())
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old file or
/// the new one, never a mix: write a sibling, flush it to disk, rename over.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let io_err = |what: &str, p: &Path, source| AgentError::Io {
        context: format!("{what} {}", p.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err("creating", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err("writing", &tmp, e))?;
    f.sync_all().map_err(|e| io_err("syncing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("renaming onto", path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the directory entry is.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use presage_core::Resource;

    fn adoption(cg: &str, cores: f64) -> Adoption {
        Adoption {
            cgroup: cg.into(),
            limits: Limits::unlimited().with_hard(Resource::Cpu, cores).unwrap(),
            adopted_at: Timestamp::from_unix_secs(100),
            key: WorkloadKey::for_code("abc").unwrap(),
        }
    }

    #[test]
    fn survives_a_restart_and_keeps_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut l = Ledger::open(&path).unwrap();
        l.record(adoption("presage/a", 2.0)).unwrap();
        l.record(adoption("presage/a", 0.5)).unwrap();
        l.record(adoption("presage/b", 1.0)).unwrap();
        let l2 = Ledger::open(&path).unwrap();
        assert_eq!(l2.entries().count(), 2);
        assert_eq!(
            l2.get("presage/a").unwrap().limits.cpu_quota_cores(),
            Some(2.0)
        );
        let mut l2 = l2;
        l2.forget(["presage/a"]).unwrap();
        assert!(Ledger::open(&path).unwrap().get("presage/a").is_none());
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn corrupt_ledger_names_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        fs::write(&path, "{\"version\":1,\n\"adopted\":[{\"cgroup\":3}]}").unwrap();
        let e = Ledger::open(&path).unwrap_err().to_string();
        assert!(e.contains("ledger.json") && e.contains("line 2"), "{e}");
    }
}
