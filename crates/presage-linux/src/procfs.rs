//! The few procfs files this crate reads, under a configurable mount point.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::LinuxError;
use crate::fsio;
use crate::parse::parse_netns_link;

/// Where procfs is mounted on a real host.
pub const DEFAULT_PROC: &str = "/proc";

/// The procfs mount to read process information from: [`DEFAULT_PROC`] on a host, a fake
/// tree in a temp dir under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRoot(PathBuf);

impl Default for ProcRoot {
    fn default() -> ProcRoot {
        ProcRoot(PathBuf::from(DEFAULT_PROC))
    }
}

impl From<PathBuf> for ProcRoot {
    fn from(path: PathBuf) -> ProcRoot {
        ProcRoot(path)
    }
}

impl From<&Path> for ProcRoot {
    fn from(path: &Path) -> ProcRoot {
        ProcRoot(path.to_path_buf())
    }
}

impl ProcRoot {
    /// procfs mounted at `path`.
    pub fn new(path: impl Into<PathBuf>) -> ProcRoot {
        ProcRoot(path.into())
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `<root>/<pid>/<name>`.
    pub(crate) fn pid_file(&self, pid: u32, name: &str) -> PathBuf {
        self.0.join(pid.to_string()).join(name)
    }

    /// The inode of `pid`'s network namespace, `None` if the process is gone.
    pub(crate) fn net_ns(&self, pid: u32) -> Result<Option<u64>, LinuxError> {
        self.net_ns_of(&pid.to_string())
    }

    /// The inode of the host's network namespace: pid 1's, or, where pid 1's is hidden
    /// (`hidepid`, or a host that denies even root ptrace access to init, as this
    /// project's test machine does), this process's own. The fallback assumes the agent
    /// runs in the host's namespace, which is how it is deployed; `None` if neither can
    /// be read.
    pub(crate) fn host_net_ns(&self) -> Result<Option<u64>, LinuxError> {
        match self.net_ns_of("1") {
            Ok(Some(ns)) => return Ok(Some(ns)),
            Ok(None) => {}
            Err(LinuxError::Read { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
        self.net_ns_of("self")
    }

    fn net_ns_of(&self, who: &str) -> Result<Option<u64>, LinuxError> {
        let path = self.0.join(who).join("ns/net");
        match fs::read_link(&path) {
            Ok(target) => parse_netns_link(&path, &target.to_string_lossy()).map(Some),
            Err(e) if is_gone(&e) => Ok(None),
            Err(source) => Err(LinuxError::Read { path, source }),
        }
    }

    /// The text of `/proc/<pid>/<name>`, `None` if the process is gone.
    pub(crate) fn read(&self, pid: u32, name: &str) -> Result<Option<String>, LinuxError> {
        match fsio::read_optional(&self.pid_file(pid, name)) {
            Ok(t) => Ok(t),
            Err(LinuxError::Read { source, .. }) if is_gone(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A process that exits while its procfs entries are read yields `ENOENT`, or `ESRCH`
/// from files that look the task up again on read.
fn is_gone(e: &io::Error) -> bool {
    const ESRCH: i32 = 3;
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::put;

    #[test]
    fn netns_from_a_fake_link() {
        let dir = tempfile::tempdir().unwrap();
        let proc = ProcRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("7/ns")).unwrap();
        std::os::unix::fs::symlink("net:[42]", dir.path().join("7/ns/net")).unwrap();
        assert_eq!(proc.net_ns(7).unwrap(), Some(42));
        assert_eq!(proc.net_ns(8).unwrap(), None, "no such process");
        put(dir.path(), "7/cgroup", "0::/\n");
        assert_eq!(proc.read(7, "cgroup").unwrap().as_deref(), Some("0::/\n"));
        assert_eq!(proc.read(8, "cgroup").unwrap(), None);
        assert_eq!(ProcRoot::default().path(), Path::new("/proc"));
    }

    #[test]
    fn host_namespace_falls_back_to_our_own_when_init_is_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let proc = ProcRoot::new(dir.path());
        assert_eq!(proc.host_net_ns().unwrap(), None);
        fs::create_dir_all(dir.path().join("self/ns")).unwrap();
        std::os::unix::fs::symlink("net:[5]", dir.path().join("self/ns/net")).unwrap();
        assert_eq!(proc.host_net_ns().unwrap(), Some(5));
        fs::create_dir_all(dir.path().join("1/ns")).unwrap();
        std::os::unix::fs::symlink("net:[1]", dir.path().join("1/ns/net")).unwrap();
        assert_eq!(
            proc.host_net_ns().unwrap(),
            Some(1),
            "init wins when visible"
        );
    }

    #[test]
    fn garbage_link_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("7/ns")).unwrap();
        std::os::unix::fs::symlink("pipe:[1]", dir.path().join("7/ns/net")).unwrap();
        let err = ProcRoot::new(dir.path()).net_ns(7).unwrap_err();
        assert!(matches!(err, LinuxError::Parse { .. }), "{err}");
    }
}
