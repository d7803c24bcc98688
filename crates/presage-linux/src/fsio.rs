//! Reading and writing cgroupfs files with the error context this crate promises.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::LinuxError;

/// Reads a whole file, mapping "does not exist" to `None`.
///
/// A workload can exit between listing its cgroup and reading a file in it; the kernel then
/// reports `ENOENT` (file gone) or `ENODEV` (cgroup being torn down). Both mean "no data",
/// not a fault in the agent.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, LinuxError> {
    let result = match held::read(path) {
        Some(result) => result,
        None => fs::read_to_string(path),
    };
    match result {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_absence(&e) => Ok(None),
        Err(source) => Err(LinuxError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads and parses a file; an absent file is `Ok(None)`.
pub(crate) fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&Path, &str) -> Result<T, LinuxError>,
) -> Result<Option<T>, LinuxError> {
    match read_optional(path)? {
        Some(text) => parse(path, &text).map(Some),
        None => Ok(None),
    }
}

/// Writes `value` to a cgroup control file.
///
/// cgroupfs files must be written in one `write(2)`; `fs::write` opens with `O_TRUNC`, which
/// cgroupfs ignores, and writes the buffer whole, which is what the kernel expects.
pub(crate) fn write_value(path: &Path, value: &str) -> Result<(), LinuxError> {
    fs::write(path, value).map_err(|source| LinuxError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Creates `path` and any missing ancestors; a directory that already exists is fine, so
/// creating a cgroup twice (a restarted agent re-adopting its tree) is not an error.
pub(crate) fn make_dir_all(path: &Path) -> Result<(), LinuxError> {
    fs::create_dir_all(path).map_err(|source| LinuxError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates exactly one directory level, accepting one that already exists.
pub(crate) fn make_dir(path: &Path) -> Result<(), LinuxError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(LinuxError::CreateDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes one cgroup directory; one that is already gone counts as removed.
///
/// cgroupfs directories are removed with a plain `rmdir` even though they list files: the
/// files are the kernel's interface, not contents. A cgroup that still holds processes or
/// children fails with `EBUSY`, which is reported with the path.
pub(crate) fn remove_dir(path: &Path) -> Result<(), LinuxError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if is_absence(&e) => Ok(()),
        Err(source) => Err(LinuxError::RemoveDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn is_absence(e: &io::Error) -> bool {
    // ENODEV: a cgroup directory that is being removed still lists files whose reads fail.
    const ENODEV: i32 = 19;
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ENODEV)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
    }

    #[test]
    fn write_error_names_path_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("cpu.max");
        let err = write_value(&path, "max 100000").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cpu.max"), "{text}");
        assert!(text.contains("max 100000"), "{text}");
    }
}

/// Held-open files: reading a cgroupfs file through a descriptor kept open (`pread` at
/// offset 0 regenerates its content) costs a fraction of `open`/`read`/`close` — on this
/// host 2–12 µs instead of 12–24 µs per file, and a cgroup is a dozen files. Off unless
/// the agent turns it on ([`hold_files_open`]), so tests that replace files in a fake tree
/// always read what is on disk.
mod held {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    static CAPACITY: AtomicUsize = AtomicUsize::new(0);
    static FILES: Mutex<Option<HashMap<PathBuf, File>>> = Mutex::new(None);

    pub(super) fn set_capacity(capacity: usize) {
        CAPACITY.store(capacity, Ordering::Relaxed);
        let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
        *files = (capacity > 0).then(HashMap::new);
    }

    /// The file's content through a held descriptor, or `None` when holding is off (the
    /// caller reads the plain way). A held descriptor that went stale — its cgroup
    /// removed, or recreated under the same path — is dropped and the file reopened once.
    pub(super) fn read(path: &Path) -> Option<io::Result<String>> {
        let capacity = CAPACITY.load(Ordering::Relaxed);
        if capacity == 0 || !regenerates(path) {
            return None;
        }
        let mut guard = FILES.lock().unwrap_or_else(PoisonError::into_inner);
        let files = guard.as_mut()?;
        if let Some(f) = files.get(path) {
            if let Ok(text) = pread_all(f) {
                return Some(Ok(text));
            }
            files.remove(path);
        }
        // An absent file fails here once, not again in a fallback read.
        let opened = File::open(path).and_then(|f| pread_all(&f).map(|text| (f, text)));
        Some(opened.map(|(f, text)| {
            if files.len() >= capacity {
                // Stale descriptors of cgroups that went away are never read again;
                // starting over sheds them without tracking every cgroup's lifetime.
                files.clear();
            }
            files.insert(path.to_path_buf(), f);
            text
        }))
    }

    /// Whether `pread` at offset 0 on a held descriptor gives the file's current content.
    /// Not so for the process lists: cgroup v1 builds a `cgroup.procs`/`tasks` list once
    /// per open file, so a held descriptor kept answering with the processes of the
    /// moment it was opened (an empty list, for a cgroup adopted before its command
    /// started) and a fork storm went unseen.
    fn regenerates(path: &Path) -> bool {
        !matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("cgroup.procs" | "tasks")
        )
    }

    fn pread_all(f: &File) -> io::Result<String> {
        let mut buf = vec![0u8; 4096];
        let mut len = 0;
        loop {
            let n = f.read_at(&mut buf[len..], len as u64)?;
            if n == 0 {
                break;
            }
            len += n;
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        buf.truncate(len);
        String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Keeps up to `capacity` cgroup files open between reads (0 turns it off and closes
/// them). The caller owns the descriptor budget: leave room under `RLIMIT_NOFILE`.
pub fn hold_files_open(capacity: usize) {
    held::set_capacity(capacity);
}
