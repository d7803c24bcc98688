//! Which cgroup hierarchies are mounted where.
//!
//! The layout is read from the mount table rather than guessed from `statfs` on a fixed
//! path: the root is configurable (tests point it at a temp dir) and hybrid hosts mount the
//! v2 tree somewhere other than the root (`/sys/fs/cgroup/unified`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::LinuxError;
use crate::fsio;

/// Where cgroupfs is usually mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The mount table of the current process.
pub const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";

/// The controllers presage samples or actuates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// CPU bandwidth and weight (`cpu`).
    Cpu,
    /// CPU accounting (v1 `cpuacct`; folded into `cpu` in v2).
    Cpuacct,
    /// Memory (`memory`).
    Memory,
    /// Block I/O (v1 `blkio`, v2 `io`).
    Io,
    /// Process count (`pids`).
    Pids,
    /// Freezing (v1 `freezer`; a core feature of every non-root v2 cgroup).
    Freezer,
}

impl Controller {
    /// All controllers, in a stable order.
    pub const ALL: [Controller; 6] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Io,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// The name of the v1 hierarchy's controller option.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Io => "blkio",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }

    /// The name in v2's `cgroup.controllers`, or `None` where v2 provides it without a
    /// controller (the freezer is built in).
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Cpu | Controller::Cpuacct => Some("cpu"),
            Controller::Memory => Some("memory"),
            Controller::Io => Some("io"),
            Controller::Pids => Some("pids"),
            Controller::Freezer => None,
        }
    }

    fn from_v1_option(option: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.v1_name() == option)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.v1_name())
    }
}

/// The overall shape of the host's cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v2, carrying the resource controllers.
    Unified,
    /// Only cgroup v1 hierarchies.
    Legacy,
    /// v1 hierarchies for the resource controllers plus a v2 tree (freeze, kill, PSI).
    Hybrid,
}

/// Where one controller's hierarchy is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerMount {
    /// A v1 hierarchy mounted at this path (possibly shared with other controllers).
    V1(PathBuf),
    /// The v2 tree mounted at this path.
    V2(PathBuf),
}

impl ControllerMount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        match self {
            ControllerMount::V1(p) | ControllerMount::V2(p) => p,
        }
    }
}

/// The detected cgroup layout of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    mode: CgroupMode,
    root: PathBuf,
    v2_mount: Option<PathBuf>,
    v2_controllers: Vec<String>,
    controllers: BTreeMap<Controller, ControllerMount>,
}

impl Layout {
    /// Detects the layout of this host from [`DEFAULT_ROOT`] and [`DEFAULT_MOUNTINFO`].
    pub fn detect() -> Result<Layout, LinuxError> {
        Layout::detect_at(Path::new(DEFAULT_ROOT), Path::new(DEFAULT_MOUNTINFO))
    }

    /// Detects the layout of the cgroup mounts at or below `root`, listed in `mountinfo`.
    pub fn detect_at(root: &Path, mountinfo: &Path) -> Result<Layout, LinuxError> {
        let text = fsio::read_optional(mountinfo)?.ok_or_else(|| LinuxError::NoCgroupMounts {
            root: root.to_path_buf(),
            mountinfo: mountinfo.to_path_buf(),
        })?;
        let mounts = parse_mountinfo(mountinfo, &text)?;
        Layout::from_mounts(root, mountinfo, &mounts)
    }

    /// Builds the layout from already-parsed mount entries (only cgroup ones matter).
    pub fn from_mounts(
        root: &Path,
        mountinfo: &Path,
        mounts: &[MountEntry],
    ) -> Result<Layout, LinuxError> {
        let mut v1 = BTreeMap::new();
        let mut v2_mount = None;
        for m in mounts.iter().filter(|m| m.mount_point.starts_with(root)) {
            match m.fs_type.as_str() {
                "cgroup2" => {
                    // Several v2 mounts can exist (bind mounts into containers); the shortest
                    // path is the host's own.
                    let shorter = v2_mount.as_ref().is_none_or(|p: &PathBuf| {
                        m.mount_point.as_os_str().len() < p.as_os_str().len()
                    });
                    if shorter {
                        v2_mount = Some(m.mount_point.clone());
                    }
                }
                "cgroup" => {
                    for option in m.super_options.split(',') {
                        if let Some(c) = Controller::from_v1_option(option) {
                            v1.entry(c).or_insert_with(|| m.mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }

        let v2_controllers = match &v2_mount {
            Some(p) => fsio::read_optional(&p.join("cgroup.controllers"))?
                .map(|t| t.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };

        let mut controllers = BTreeMap::new();
        for c in Controller::ALL {
            // A v1 mount wins: a controller can be active in only one hierarchy, and if v1
            // holds it, v2's cgroup.controllers will not list it anyway.
            if let Some(p) = v1.get(&c) {
                controllers.insert(c, ControllerMount::V1(p.clone()));
            } else if let Some(p) = &v2_mount {
                let in_v2 = match c.v2_name() {
                    Some(name) => v2_controllers.iter().any(|n| n == name),
                    None => true,
                };
                if in_v2 {
                    controllers.insert(c, ControllerMount::V2(p.clone()));
                }
            }
        }

        let mode = match (v1.is_empty(), v2_mount.is_some()) {
            (true, true) => CgroupMode::Unified,
            (false, false) => CgroupMode::Legacy,
            (false, true) => CgroupMode::Hybrid,
            (true, false) => {
                return Err(LinuxError::NoCgroupMounts {
                    root: root.to_path_buf(),
                    mountinfo: mountinfo.to_path_buf(),
                });
            }
        };

        Ok(Layout {
            mode,
            root: root.to_path_buf(),
            v2_mount,
            v2_controllers,
            controllers,
        })
    }

    /// Unified, legacy or hybrid.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The configured cgroup root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the v2 tree is mounted, if anywhere.
    pub fn v2_mount(&self) -> Option<&Path> {
        self.v2_mount.as_deref()
    }

    /// The controllers enabled at the v2 root (`cgroup.controllers`).
    pub fn v2_controllers(&self) -> &[String] {
        &self.v2_controllers
    }

    /// Where `controller` is mounted, or `None` if this host lacks it.
    pub fn controller(&self, controller: Controller) -> Option<&ControllerMount> {
        self.controllers.get(&controller)
    }

    /// Every available controller and its mount.
    pub fn controllers(&self) -> impl Iterator<Item = (Controller, &ControllerMount)> {
        self.controllers.iter().map(|(c, m)| (*c, m))
    }
}

/// The fields of one mountinfo line that layout detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where the filesystem is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type (`cgroup`, `cgroup2`, `tmpfs`, …).
    pub fs_type: String,
    /// Per-superblock options; for v1 cgroups these name the controllers.
    pub super_options: String,
}

/// Parses `/proc/<pid>/mountinfo` (proc(5)): six or more fixed fields, optional fields, a
/// lone `-`, then fs type, source and super options.
pub fn parse_mountinfo(path: &Path, text: &str) -> Result<Vec<MountEntry>, LinuxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |field: &str, reason: &str| LinuxError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let mount_point = fields
            .get(4)
            .ok_or_else(|| err("mount point", "fewer than 5 fields"))?;
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .ok_or_else(|| err("separator", "no `-` before the filesystem type"))?;
        let fs_type = fields
            .get(sep + 1)
            .ok_or_else(|| err("fs type", "missing after `-`"))?;
        let super_options = fields.get(sep + 3).copied().unwrap_or("");
        out.push(MountEntry {
            mount_point: PathBuf::from(unescape_octal(mount_point)),
            fs_type: (*fs_type).to_string(),
            super_options: super_options.to_string(),
        });
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn hybrid_mountinfo(root: &Path) -> String {
        let r = root.display();
        format!(
            "31 23 0:28 / {r} rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / {r}/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             33 31 0:30 / {r}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
             35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
             37 31 0:34 / {r}/freezer rw,relatime - cgroup cgroup rw,freezer\n\
             38 31 0:35 / {r}/blkio rw,relatime - cgroup cgroup rw,blkio\n\
             39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
             40 31 0:37 / {r}/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
             41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n\
             50 1 0:50 / /elsewhere rw - cgroup cgroup rw,memory\n"
        )
    }

    fn detect(root: &Path, mountinfo: &str) -> Layout {
        let mi = root.join("mountinfo");
        fs::write(&mi, mountinfo).unwrap();
        Layout::detect_at(root, &mi).unwrap()
    }

    #[test]
    fn hybrid_host_like_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let layout = detect(root, &hybrid_mountinfo(root));
        assert_eq!(layout.mode(), CgroupMode::Hybrid);
        assert_eq!(layout.v2_mount(), Some(root.join("unified").as_path()));
        assert_eq!(
            layout.controller(Controller::Memory),
            Some(&ControllerMount::V1(root.join("memory")))
        );
        assert_eq!(
            layout.controller(Controller::Io),
            Some(&ControllerMount::V1(root.join("blkio")))
        );
        assert_eq!(layout.v2_controllers(), ["hugetlb".to_string()]);
    }

    #[test]
    fn legacy_with_comounted_cpu_cpuacct() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let r = root.display();
        let text = format!(
            "32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n"
        );
        let layout = detect(root, &text);
        assert_eq!(layout.mode(), CgroupMode::Legacy);
        let both = ControllerMount::V1(root.join("cpu,cpuacct"));
        assert_eq!(layout.controller(Controller::Cpu), Some(&both));
        assert_eq!(layout.controller(Controller::Cpuacct), Some(&both));
        assert_eq!(layout.controller(Controller::Io), None);
    }

    #[test]
    fn unified_maps_controllers_from_cgroup_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let text = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let layout = detect(root, &text);
        assert_eq!(layout.mode(), CgroupMode::Unified);
        let v2 = ControllerMount::V2(root.to_path_buf());
        for c in Controller::ALL {
            assert_eq!(layout.controller(c), Some(&v2), "{c}");
        }
    }

    #[test]
    fn unified_without_memory_controller_lacks_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("cgroup.controllers"), "cpu\n").unwrap();
        let text = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let layout = detect(root, &text);
        assert_eq!(layout.controller(Controller::Memory), None);
        assert!(layout.controller(Controller::Freezer).is_some());
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mi = dir.path().join("mountinfo");
        fs::write(&mi, "31 23 0:28 / /tmp rw - tmpfs tmpfs rw\n").unwrap();
        let err = Layout::detect_at(dir.path(), &mi).unwrap_err();
        assert!(matches!(err, LinuxError::NoCgroupMounts { .. }));
    }

    #[test]
    fn malformed_line_names_line_and_field() {
        let err =
            parse_mountinfo(Path::new("mi"), "1 2 3 / /x rw - cgroup2 c rw\nbad\n").unwrap_err();
        match err {
            LinuxError::Parse { line, field, .. } => {
                assert_eq!(line, 2);
                assert_eq!(field, "mount point");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape_octal(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_octal(r"/trailing\04"), r"/trailing\04");
    }
}
