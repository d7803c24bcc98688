//! Creating cgroups in a v2 tree, where controllers must be switched on level by level.
//!
//! A v2 cgroup only has the controllers its parent lists in `cgroup.subtree_control`, so
//! making `presage/job` with a working `cpu.max` means enabling `cpu` at the root and at
//! `presage` before `job` exists. v1 hierarchies need nothing of the sort; their creation
//! lives in the v1 backend.

use std::path::Path;

use crate::error::LinuxError;
use crate::fsio::{self, write_value};
use crate::layout::Controller;

/// Makes `mount/rel`, enabling at each level the controllers presage needs that the
/// level offers. Already-existing directories and already-enabled controllers are left
/// as they are.
pub(crate) fn create_v2(mount: &Path, rel: &Path) -> Result<(), LinuxError> {
    let wanted: Vec<&str> = Controller::ALL
        .into_iter()
        .filter_map(Controller::v2_name)
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    let mut parent = mount.to_path_buf();
    for part in rel.components() {
        enable_controllers(&parent, &wanted)?;
        let child = parent.join(part);
        fsio::make_dir(&child)?;
        parent = child;
    }
    Ok(())
}

/// Enables in `dir`'s children whichever of `wanted` `dir` itself has.
fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<(), LinuxError> {
    // A tree without resource controllers (a hybrid host's) has nothing to enable; a
    // missing file means the same.
    let available = fsio::read_optional(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let subtree_path = dir.join("cgroup.subtree_control");
    let enabled = fsio::read_optional(&subtree_path)?.unwrap_or_default();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| available.split_whitespace().any(|a| a == **w))
        .filter(|w| !enabled.split_whitespace().any(|e| e == **w))
        .map(|w| format!("+{w}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // One write for all of them: the kernel applies the set or refuses it whole, so a
    // failure leaves the level as it was.
    write_value(&subtree_path, &missing.join(" "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::testutil::{put, read};
    use crate::{Cgroup, Controller, Layout, LinuxError};

    fn unified_layout(root: &Path, controllers: &str) -> Layout {
        put(root, "cgroup.controllers", controllers);
        put(root, "cgroup.subtree_control", "");
        put(
            root,
            "mountinfo",
            &format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display()),
        );
        Layout::detect_at(root, &root.join("mountinfo")).unwrap()
    }

    fn hybrid_layout(root: &Path) -> Layout {
        let r = root.display();
        let mi = format!(
            "32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             36 31 0:33 / {r}/blkio rw - cgroup cgroup rw,blkio\n\
             37 31 0:34 / {r}/freezer rw - cgroup cgroup rw,freezer\n\
             38 31 0:35 / {r}/pids rw - cgroup cgroup rw,pids\n\
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n"
        );
        put(root, "mountinfo", &mi);
        put(root, "unified/cgroup.controllers", "hugetlb\n");
        Layout::detect_at(root, &root.join("mountinfo")).unwrap()
    }

    #[test]
    fn v2_create_enables_offered_controllers_on_the_way_down() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        // `io` is not offered here, so it must not be asked for.
        let layout = unified_layout(r, "cpu memory pids hugetlb\n");
        // The fake kernel: an intermediate level offers what its parent enabled.
        put(r, "presage/cgroup.controllers", "cpu memory pids\n");
        put(r, "presage/cgroup.subtree_control", "cpu\n");
        let cg = Cgroup::create(&layout, "presage/job").unwrap();
        assert!(r.join("presage/job").is_dir());
        assert_eq!(read(r, "cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(
            read(r, "presage/cgroup.subtree_control"),
            "+memory +pids",
            "already-enabled cpu is not written again"
        );
        assert_eq!(cg.as_v2().unwrap().dir(), r.join("presage/job"));
    }

    #[test]
    fn v2_create_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let layout = unified_layout(r, "cpu memory\n");
        Cgroup::create(&layout, "job").unwrap();
        // The fake subtree_control now says what the kernel would: both enabled.
        put(r, "cgroup.subtree_control", "cpu memory\n");
        put(r, "job/cgroup.procs", "");
        Cgroup::create(&layout, "job").unwrap();
        assert_eq!(read(r, "cgroup.subtree_control"), "cpu memory\n");
        assert!(r.join("job/cgroup.procs").exists(), "existing cgroup kept");
    }

    #[test]
    fn v1_create_makes_each_hierarchy_and_the_unified_dir() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let layout = hybrid_layout(r);
        let cg = Cgroup::create(&layout, "presage/job").unwrap();
        for h in [
            "cpu,cpuacct",
            "memory",
            "blkio",
            "freezer",
            "pids",
            "unified",
        ] {
            assert!(r.join(h).join("presage/job").is_dir(), "{h}");
        }
        Cgroup::create(&layout, "presage/job").unwrap();
        assert_eq!(
            cg.as_v1().unwrap().dir(Controller::Pids),
            Some(r.join("pids/presage/job").as_path())
        );
    }

    #[test]
    fn add_process_writes_every_hierarchy_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let cg = Cgroup::create(&hybrid_layout(r), "job").unwrap();
        cg.add_process(4242).unwrap();
        for h in [
            "cpu,cpuacct",
            "memory",
            "blkio",
            "freezer",
            "pids",
            "unified",
        ] {
            assert_eq!(read(r, &format!("{h}/job/cgroup.procs")), "4242", "{h}");
        }
    }

    #[test]
    fn add_process_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        // Opened, never created: the write has nowhere to go.
        let cg = Cgroup::open(&unified_layout(r, "cpu\n"), "ghost").unwrap();
        let err = cg.add_process(7).unwrap_err();
        assert!(matches!(err, LinuxError::Write { .. }), "{err}");
        assert!(err.to_string().contains("ghost/cgroup.procs"), "{err}");
    }

    #[test]
    fn remove_takes_every_hierarchy_and_tolerates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let layout = hybrid_layout(r);
        let cg = Cgroup::create(&layout, "presage/job").unwrap();
        std::fs::remove_dir(r.join("blkio/presage/job")).unwrap();
        cg.remove().unwrap();
        for h in [
            "cpu,cpuacct",
            "memory",
            "blkio",
            "freezer",
            "pids",
            "unified",
        ] {
            assert!(!r.join(h).join("presage/job").exists(), "{h}");
            assert!(r.join(h).join("presage").is_dir(), "parent {h} kept");
        }
        cg.remove().unwrap();
    }

    #[test]
    fn busy_remove_names_the_path_and_still_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let cg = Cgroup::create(&hybrid_layout(r), "job").unwrap();
        // A non-empty directory stands in for the kernel's EBUSY.
        put(r, "memory/job/child/x", "");
        let err = cg.remove().unwrap_err();
        assert!(matches!(err, LinuxError::RemoveDir { .. }), "{err}");
        assert!(err.to_string().contains("memory/job"), "{err}");
        assert!(!r.join("pids/job").exists());
        assert!(!r.join("unified/job").exists());
    }

    #[test]
    fn v2_remove_is_one_rmdir() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let cg = Cgroup::create(&unified_layout(r, "cpu\n"), "job").unwrap();
        cg.remove().unwrap();
        assert!(!r.join("job").exists());
        assert!(r.join("cgroup.controllers").exists());
    }
}
