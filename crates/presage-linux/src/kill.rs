//! Killing every process of a cgroup that has no `cgroup.kill` (v1, and v2 before 5.14).
//!
//! Without the kernel doing it atomically, a process can fork between the listing of
//! `cgroup.procs` and the signals, and the child survives. Freezing first stops that:
//! frozen processes cannot fork, a SIGKILL sent to them takes effect when they are
//! thawed, and a few rounds of list–kill–thaw catch whatever slipped past a freeze that
//! was still in progress.

use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::LinuxError;
use crate::fsio::{read_parsed, write_value};
use crate::parse::parse_procs;

/// List–kill–thaw rounds before giving up.
pub(crate) const MAX_ROUNDS: u32 = 10;

/// How the cgroup can be frozen while it is being killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freezer {
    /// A v1 `freezer.state` file.
    V1(PathBuf),
    /// A v2 `cgroup.freeze` file (a hybrid host's tree on kernels without `cgroup.kill`).
    V2(PathBuf),
    /// No freezer: kill by listing alone and rely on the rounds.
    None,
}

impl Freezer {
    /// Freezes or thaws; `Ok(false)` when there is nothing to freeze with, including a
    /// cgroup missing from the freezer hierarchy (or the hierarchy root, which has no
    /// `freezer.state`).
    pub(crate) fn set(&self, frozen: bool) -> Result<bool, LinuxError> {
        let (path, value) = match self {
            Freezer::V1(p) => (p, if frozen { "FROZEN" } else { "THAWED" }),
            Freezer::V2(p) => (p, if frozen { "1" } else { "0" }),
            Freezer::None => return Ok(false),
        };
        // Writing a missing file would try to create it, which cgroupfs refuses with
        // EACCES rather than ENOENT; the root of a v1 freezer hierarchy is such a case.
        if !path.exists() {
            return Ok(false);
        }
        match write_value(path, value) {
            Ok(()) => Ok(true),
            Err(LinuxError::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Sends SIGKILL to `pid`; a process that is already gone is not an error.
pub(crate) fn sigkill(pid: u32) -> io::Result<()> {
    // pid 0 and negative pids address process groups; a cgroup.procs never lists them,
    // and letting one through would signal presage's own group or every process.
    let raw = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    match signal::kill(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Kills every process listed in `dir/cgroup.procs`, freezing with `freezer` around each
/// round; `send` delivers the signal (tests replace it, so no real process is touched).
///
/// Succeeds once the list is empty or the cgroup is gone.
pub(crate) fn kill_listed(
    dir: &Path,
    freezer: &Freezer,
    send: &mut dyn FnMut(u32) -> io::Result<()>,
) -> Result<(), LinuxError> {
    let procs = dir.join("cgroup.procs");
    // Only a v1 hierarchy root has release_agent; its cgroup.procs is every process
    // not placed elsewhere, init included. v2's cgroup.kill is absent at the root too.
    if dir.join("release_agent").exists() {
        return Err(LinuxError::Unsupported {
            operation: "kill",
            reason: format!("{} is a hierarchy root", dir.display()),
        });
    }
    for round in 0..MAX_ROUNDS {
        let Some(pids) = read_parsed(&procs, parse_procs)? else {
            return Ok(());
        };
        if pids.is_empty() {
            return Ok(());
        }
        // Checked before freezing: freezing our own cgroup would stop this thread too,
        // and nothing would ever thaw it.
        if pids.contains(&std::process::id()) {
            return Err(LinuxError::Unsupported {
                operation: "kill",
                reason: format!("{} lists presage's own process", procs.display()),
            });
        }
        let frozen = freezer.set(true)?;
        let killed = signal_listed(&procs, send);
        let thawed = if frozen {
            freezer.set(false)
        } else {
            Ok(false)
        };
        killed?;
        thawed?;
        // Killed processes leave the list as they finish exiting, shortly after thaw.
        thread::sleep(Duration::from_millis(5 * u64::from(round + 1)));
    }
    let pids = read_parsed(&procs, parse_procs)?.unwrap_or_default();
    if pids.is_empty() {
        return Ok(());
    }
    Err(LinuxError::KillIncomplete {
        path: procs,
        pids,
        rounds: MAX_ROUNDS,
    })
}

/// Signals every pid listed now: reading after the freeze catches children forked just
/// before it.
fn signal_listed(
    procs: &Path,
    send: &mut dyn FnMut(u32) -> io::Result<()>,
) -> Result<(), LinuxError> {
    for pid in read_parsed(procs, parse_procs)?.unwrap_or_default() {
        send(pid).map_err(|source| LinuxError::Signal {
            path: procs.to_path_buf(),
            pid,
            signal: "SIGKILL",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{put, read};

    /// A fake kernel: a signalled pid leaves the list, except `immortal`.
    fn reaper(dir: &Path, immortal: Option<u32>) -> impl FnMut(u32) -> io::Result<()> + use<> {
        let procs = dir.join("cgroup.procs");
        move |pid| {
            if Some(pid) != immortal {
                let text = std::fs::read_to_string(&procs)?;
                let rest: String = text
                    .lines()
                    .filter(|l| l.trim() != pid.to_string())
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(&procs, rest)?;
            }
            Ok(())
        }
    }

    #[test]
    fn freezes_kills_every_listed_pid_and_thaws() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "w/cgroup.procs", "7\n8\n");
        put(d, "f/freezer.state", "THAWED\n");
        let freezer = Freezer::V1(d.join("f/freezer.state"));
        let mut sent = Vec::new();
        let mut reap = reaper(&d.join("w"), None);
        kill_listed(&d.join("w"), &freezer, &mut |pid| {
            // The signal lands while the cgroup is frozen.
            assert_eq!(read(d, "f/freezer.state"), "FROZEN");
            sent.push(pid);
            reap(pid)
        })
        .unwrap();
        assert_eq!(sent, [7, 8]);
        assert_eq!(read(d, "f/freezer.state"), "THAWED");
    }

    #[test]
    fn survivors_are_reported_after_the_last_round() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "w/cgroup.procs", "7\n9\n");
        let err = kill_listed(
            &d.join("w"),
            &Freezer::None,
            &mut reaper(&d.join("w"), Some(9)),
        )
        .unwrap_err();
        assert!(
            matches!(&err, LinuxError::KillIncomplete { pids, .. } if pids == &[9]),
            "{err}"
        );
    }

    #[test]
    fn signal_failure_names_pid_and_file_and_still_thaws() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(d, "w/cgroup.procs", "7\n");
        put(d, "w/cgroup.freeze", "0\n");
        let freezer = Freezer::V2(d.join("w/cgroup.freeze"));
        let err = kill_listed(&d.join("w"), &freezer, &mut |_| {
            Err(io::Error::from_raw_os_error(1))
        })
        .unwrap_err();
        assert!(matches!(err, LinuxError::Signal { pid: 7, .. }), "{err}");
        assert!(err.to_string().contains("w/cgroup.procs"), "{err}");
        assert_eq!(read(d, "w/cgroup.freeze"), "0");
    }

    #[test]
    fn gone_or_empty_cgroup_is_done_and_missing_freezer_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut never = |_| -> io::Result<()> { panic!("nothing to signal") };
        kill_listed(&d.join("gone"), &Freezer::None, &mut never).unwrap();
        put(d, "w/cgroup.procs", "");
        let absent = Freezer::V1(d.join("nofreezer/freezer.state"));
        kill_listed(&d.join("w"), &absent, &mut never).unwrap();
        put(d, "w/cgroup.procs", "7\n");
        kill_listed(&d.join("w"), &absent, &mut reaper(&d.join("w"), None)).unwrap();
    }

    #[test]
    fn refuses_roots_and_presage_itself() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut never = |_| -> io::Result<()> { panic!("must not signal") };
        put(d, "release_agent", "");
        put(d, "cgroup.procs", "1\n");
        let err = kill_listed(d, &Freezer::None, &mut never).unwrap_err();
        assert!(matches!(err, LinuxError::Unsupported { .. }), "{err}");
        put(d, "w/cgroup.procs", &format!("{}\n", std::process::id()));
        put(d, "w/freezer.state", "THAWED\n");
        let freezer = Freezer::V1(d.join("w/freezer.state"));
        let err = kill_listed(&d.join("w"), &freezer, &mut never).unwrap_err();
        assert!(err.to_string().contains("own process"), "{err}");
        assert_eq!(read(d, "w/freezer.state"), "THAWED\n", "never frozen");
    }

    #[test]
    fn sigkill_refuses_group_addresses() {
        assert!(sigkill(0).is_err());
        assert!(sigkill(u32::MAX).is_err());
    }
}
