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

/// A fake unified host rooted at `root`, offering `controllers` at the top.
pub(crate) fn unified_layout(root: &Path, controllers: &str) -> crate::Layout {
    put(root, "cgroup.controllers", controllers);
    put(
        root,
        "mountinfo",
        &format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display()),
    );
    crate::Layout::detect_at(root, &root.join("mountinfo")).unwrap()
}

/// A fake hybrid host like this project's test machine: v1 controllers and a v2 tree
/// without resource controllers at `root/unified`.
pub(crate) fn hybrid_layout(root: &Path) -> crate::Layout {
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
    crate::Layout::detect_at(root, &root.join("mountinfo")).unwrap()
}
