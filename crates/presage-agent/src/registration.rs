//! How a `presage run` hands its workload to a running agent: a registration file naming
//! the cgroup, the key and the policy, plus the agent's pid file to find out whether an
//! agent is running at all. Files rather than a socket so that registration works
//! whether the agent is up now or starts later (it reads them at discovery).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use presage_core::WorkloadKey;
use presage_policy::WorkloadPolicy;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::ledger::write_atomically;

/// A workload a `presage run` asks the agent to manage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The cgroup, relative to the hierarchy root.
    pub cgroup: String,
    /// What it is.
    pub key: WorkloadKey,
    /// Its policy (budget as hard ceilings).
    pub policy: WorkloadPolicy,
    /// The supervising `presage run`'s pid.
    pub supervisor_pid: u32,
    /// Labels `[policies.match]` selectors can test (`presage run --label KEY=VALUE`).
    /// Absent in registrations written before labels existed.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn file_of(dir: &Path, cgroup: &str) -> PathBuf {
    dir.join(format!("{}.json", cgroup.replace('/', "%")))
}

impl Registration {
    /// Writes the registration into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, AgentError> {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let path = file_of(dir, &self.cgroup);
        let text = serde_json::to_vec_pretty(self).map_err(|e| AgentError::Corrupt {
            path: path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        write_atomically(&path, &text)?;
        Ok(path)
    }

    /// The registration of `cgroup` in `dir`, if there is one.
    pub fn read(dir: &Path, cgroup: &str) -> Result<Option<Registration>, AgentError> {
        let path = file_of(dir, cgroup);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| AgentError::Corrupt {
                        path,
                        message: format!("line {}, column {}: {e}", e.line(), e.column()),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AgentError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Removes the registration of `cgroup` from `dir` (absent is fine).
    pub fn remove(dir: &Path, cgroup: &str) {
        let _ = std::fs::remove_file(file_of(dir, cgroup));
    }
}

/// The agent's pid file in `data_dir`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.pid")
}

/// The pid of the agent running with `data_dir`, if one is: the pid file exists and
/// names a live `presage` process.
pub fn running_agent(data_dir: &Path, proc_root: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file(data_dir)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let comm = std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).ok()?;
    (comm.trim() == "presage").then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registration {
            cgroup: "presage/run-x-1".into(),
            key: WorkloadKey::new("c", "", "i", "0").unwrap(),
            policy: WorkloadPolicy::default(),
            supervisor_pid: 1,
            labels: BTreeMap::from([("team".to_string(), "ml".to_string())]),
        };
        let path = r.write(dir.path()).unwrap();
        assert_eq!(
            Registration::read(dir.path(), "presage/run-x-1").unwrap(),
            Some(r)
        );
        assert_eq!(
            Registration::read(dir.path(), "presage/other").unwrap(),
            None
        );
        std::fs::write(&path, "{").unwrap();
        let e = Registration::read(dir.path(), "presage/run-x-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("run-x-1"), "{e}");
        Registration::remove(dir.path(), "presage/run-x-1");
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_pid_file_is_no_agent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_agent(dir.path(), Path::new("/proc")), None);
        std::fs::write(pid_file(dir.path()), format!("{}\n", u32::MAX)).unwrap();
        assert_eq!(running_agent(dir.path(), Path::new("/proc")), None);
    }
}
