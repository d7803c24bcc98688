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
    match fs::read_to_string(path) {
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

fn is_absence(e: &io::Error) -> bool {
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
