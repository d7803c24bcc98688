//! Shared by the integration tests that read the real dev traces.

use std::path::{Path, PathBuf};

/// `sub` under the dev data directory: `$PRESAGE_DATA` if set, else `../shared/data`
/// beside the repository. `None` (after saying why) when it is not there, so the test
/// is skipped rather than failed on a machine without the data.
pub(crate) fn data_dir(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("PRESAGE_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let dir = root.join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: dev data {} is missing (set PRESAGE_DATA to the data directory)",
            dir.display()
        );
        None
    }
}
