//! What a workload *is*: the seeds' code identifier (SHA-256 of the executable), the
//! input-parameters hash and the user — the key its profile is stored under.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use presage_core::WorkloadKey;
use sha2::{Digest, Sha256};

use crate::error::AgentError;

/// SHA-256 of the file at `path`, in hex.
pub fn code_id_of_file(path: &Path) -> Result<String, AgentError> {
    let mut file = File::open(path).map_err(|source| AgentError::Io {
        context: format!("opening executable {}", path.display()),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|source| AgentError::Io {
            context: format!("reading executable {}", path.display()),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A hash of the arguments (not the program name): runs of one program with the same
/// inputs share a profile, runs with other inputs get their own. NUL-separated, so
/// `["a b"]` and `["a", "b"]` differ.
pub fn input_hash<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut hasher = Sha256::new();
    for a in args {
        hasher.update(a.as_ref().as_bytes());
        hasher.update([0u8]);
    }
    // 128 bits tell inputs apart; the full digest would only lengthen keys and logs.
    hex(&hasher.finalize()[..16])
}

/// Lower-case hex of `bytes` (shared with the fingerprint's script hash).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The path to read for the executable of process `pid` under `proc_root`:
/// `<proc_root>/<pid>/exe`. Opening it opens the binary the process runs, even if the
/// file on disk was replaced or deleted since it started. `None` when there is none to
/// read: the process is gone, is a kernel thread (no executable), or is not ours to
/// inspect.
pub fn exe_of_process(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let exe = proc_root.join(pid.to_string()).join("exe");
    // metadata follows the link, so this fails exactly when opening it would.
    std::fs::metadata(&exe).ok()?;
    Some(exe)
}

/// Code ids of executables already hashed, keyed by what changes when the file does, so
/// a 100 MB binary is read once rather than at every discovery.
#[derive(Debug, Default)]
pub struct CodeIdCache {
    known: HashMap<(u64, u64, i64, u64), String>,
}

impl CodeIdCache {
    /// The key of process `pid` under `proc_root`: its executable's hash, its arguments'
    /// hash and its real uid. `None` when the process is gone or its executable cannot
    /// be read (a kernel thread, a permission we lack).
    pub fn key_of_process(&mut self, proc_root: &Path, pid: u32) -> Option<WorkloadKey> {
        let dir = proc_root.join(pid.to_string());
        // Through /proc/<pid>/exe the file is readable even if it was replaced on disk
        // since the process started — the code that is running is what counts.
        let exe = exe_of_process(proc_root, pid)?;
        let meta = std::fs::metadata(&exe).ok()?;
        let stamp = (meta.dev(), meta.ino(), meta.mtime(), meta.size());
        let code_id = match self.known.get(&stamp) {
            Some(id) => id.clone(),
            None => {
                let id = code_id_of_file(&exe).ok()?;
                self.known.insert(stamp, id.clone());
                id
            }
        };
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let args: Vec<OsString> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string())
            .collect();
        let user = real_uid(&dir.join("status")).unwrap_or_default();
        WorkloadKey::new(code_id, "", input_hash(&args), user).ok()
    }
}

fn real_uid(status: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_id_is_the_sha256_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            code_id_of_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = code_id_of_file(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none"), "{e}");
    }

    #[test]
    fn input_hash_separates_arguments() {
        assert_ne!(input_hash(["a b"]), input_hash(["a", "b"]));
        assert_eq!(input_hash(["x", "y"]), input_hash(["x", "y"]));
        assert_eq!(input_hash(["x"]).len(), 32);
    }

    #[test]
    fn this_process_has_a_key() {
        let mut cache = CodeIdCache::default();
        let pid = std::process::id();
        let key = cache.key_of_process(Path::new("/proc"), pid).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(key.code_id(), code_id_of_file(&exe).unwrap());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(key.user(), uid.to_string());
        assert!(cache.key_of_process(Path::new("/proc"), u32::MAX).is_none());
    }

    #[test]
    fn exe_of_process_opens_this_binary_and_not_a_missing_one() {
        let pid = std::process::id();
        let exe = exe_of_process(Path::new("/proc"), pid).unwrap();
        assert_eq!(exe, Path::new("/proc").join(pid.to_string()).join("exe"));
        let current = std::env::current_exe().unwrap();
        assert_eq!(
            code_id_of_file(&exe).unwrap(),
            code_id_of_file(&current).unwrap()
        );
        assert!(exe_of_process(Path::new("/proc"), u32::MAX).is_none());
        // Kernel threads (kthreadd is pid 2 on Linux) have no executable to read.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(exe_of_process(Path::new("/proc"), 2).is_none());
        }
    }
}
