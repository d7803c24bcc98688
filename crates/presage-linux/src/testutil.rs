//! Helpers for tests that build a fake cgroupfs in a temp dir.

use std::fs;
use std::path::Path;

/// Writes `content` to `dir/name`, creating parent directories.
pub(crate) fn put(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
}

/// Reads `dir/name` back.
pub(crate) fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}
