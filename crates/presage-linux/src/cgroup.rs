//! The handle the agent holds per workload, and the trait both backends answer to.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::LinuxError;
use crate::fsio;
use crate::layout::{CgroupMode, Controller, ControllerMount, Layout};
use crate::lifecycle;
use crate::limits::{CpuMax, CpuWeight, IoMax};
use crate::sample::RawCgroupSample;
use crate::v1::V1Cgroup;
use crate::v2::V2Cgroup;

/// Default headroom kept above current usage when a memory hard limit is written: the
/// allocator keeps its own (larger) margin; this is the last line of defence against an
/// instant OOM kill if a bug upstream lets a too-low limit through.
pub const DEFAULT_MEMORY_MARGIN_BYTES: u64 = 4 * 1024 * 1024;

/// Reading and actuating one cgroup, whatever the hierarchy version.
pub trait CgroupManager: std::fmt::Debug {
    /// Reads every counter available; absent files leave their fields `None`.
    fn read_sample(&self) -> Result<RawCgroupSample, LinuxError>;
    /// The limits the kernel enforces on the cgroup now. A limit whose file is absent
    /// (controller not mounted, cgroup gone) is `None`, so a vanished cgroup reads as
    /// [`presage_core::Limits::unlimited`]. I/O ceilings are the per-device limits summed.
    fn read_limits(&self) -> Result<presage_core::Limits, LinuxError>;
    /// PIDs in the cgroup, `None` if the cgroup is gone.
    fn processes(&self) -> Result<Option<Vec<u32>>, LinuxError>;
    /// Sets the CPU bandwidth limit.
    fn set_cpu_max(&self, limit: CpuMax) -> Result<(), LinuxError>;
    /// Sets the relative CPU weight.
    fn set_cpu_weight(&self, weight: CpuWeight) -> Result<(), LinuxError>;
    /// Sets the memory throttling threshold (v2 `memory.high`, v1 soft limit); `None` lifts it.
    fn set_memory_high(&self, bytes: Option<u64>) -> Result<(), LinuxError>;
    /// Sets the memory hard limit; `None` lifts it.
    fn set_memory_max(&self, bytes: Option<u64>) -> Result<(), LinuxError>;
    /// Sets per-device I/O limits.
    fn set_io_max(&self, limit: &IoMax) -> Result<(), LinuxError>;
    /// Freezes (`true`) or thaws (`false`) every process in the cgroup.
    fn set_frozen(&self, frozen: bool) -> Result<(), LinuxError>;
    /// Kills every process in the cgroup: with `cgroup.kill` where the (possibly hybrid)
    /// v2 tree has it, else by freezing, SIGKILLing each listed process and thawing, for
    /// a bounded number of rounds. Refuses a hierarchy root and a cgroup holding the
    /// calling process.
    fn kill(&self) -> Result<(), LinuxError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    V1(V1Cgroup),
    V2(V2Cgroup),
}

/// One workload's cgroup, with the backend chosen from the host's [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    backend: Backend,
    memory_margin_bytes: u64,
}

impl Cgroup {
    /// The cgroup at `relative` (e.g. `presage/job-1`) in every hierarchy of `layout`.
    ///
    /// Nothing is created; a cgroup that does not exist reads as an empty sample.
    pub fn open(layout: &Layout, relative: &str) -> Result<Cgroup, LinuxError> {
        let rel = checked_relative(relative)?;
        let v2_dir = layout.v2_mount().map(|m| m.join(&rel));
        let backend = if layout.mode() == CgroupMode::Unified {
            let dir = v2_dir.ok_or_else(|| no_v2(layout))?;
            Backend::V2(V2Cgroup::new(dir))
        } else {
            let dirs = v1_dirs(layout, |_| Some(rel.clone()));
            Backend::V1(V1Cgroup::new(dirs, v2_dir).with_mounts(layout))
        };
        Ok(Cgroup::with_backend(backend))
    }

    /// The cgroups a process belongs to, from the text of `/proc/<pid>/cgroup`.
    ///
    /// On v1 a process can sit at a different path in each hierarchy (this machine's test
    /// processes are in a memory sub-cgroup but at the root of cpu), so each controller
    /// gets its own path.
    pub fn of_process_text(
        layout: &Layout,
        source: &Path,
        text: &str,
    ) -> Result<Cgroup, LinuxError> {
        let membership = parse_proc_cgroup(source, text)?;
        let v2_dir = match (&membership.v2, layout.v2_mount()) {
            (Some(p), Some(m)) => Some(m.join(checked_relative(p)?)),
            _ => None,
        };
        let backend = if layout.mode() == CgroupMode::Unified {
            Backend::V2(V2Cgroup::new(v2_dir.ok_or_else(|| no_v2(layout))?))
        } else {
            let mut rels = BTreeMap::new();
            for c in Controller::ALL {
                let found = membership
                    .v1
                    .iter()
                    .find(|(names, _)| names.split(',').any(|n| n == c.v1_name()));
                if let Some((_, p)) = found {
                    rels.insert(c, checked_relative(p)?);
                }
            }
            Backend::V1(
                V1Cgroup::new(v1_dirs(layout, |c| rels.get(&c).cloned()), v2_dir)
                    .with_mounts(layout),
            )
        };
        Ok(Cgroup::with_backend(backend))
    }

    /// The cgroups of process `pid` (or of this process when `None`), read from /proc.
    pub fn of_process(layout: &Layout, pid: Option<u32>) -> Result<Cgroup, LinuxError> {
        let path = match pid {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/cgroup")),
            None => PathBuf::from("/proc/self/cgroup"),
        };
        let text = fsio::read_optional(&path)?.ok_or_else(|| LinuxError::Unsupported {
            operation: "find a process's cgroup",
            reason: format!("{} does not exist (process gone?)", path.display()),
        })?;
        Cgroup::of_process_text(layout, &path, &text)
    }

    /// Creates the cgroup at `relative` in every hierarchy of `layout` and returns its
    /// handle. Creating one that already exists is not an error.
    ///
    /// On v2 the controllers presage needs (`cpu`, `memory`, `io`, `pids`) are enabled on
    /// the way down where the parent offers them. On v1 a directory is made under each
    /// mounted controller hierarchy and, on a hybrid host, in the v2 tree as well.
    pub fn create(layout: &Layout, relative: &str) -> Result<Cgroup, LinuxError> {
        let cg = Cgroup::open(layout, relative)?;
        match &cg.backend {
            Backend::V2(_) => {
                let mount = layout.v2_mount().ok_or_else(|| no_v2(layout))?;
                lifecycle::create_v2(mount, &checked_relative(relative)?)?;
            }
            Backend::V1(c) => c.create()?,
        }
        Ok(cg)
    }

    /// Moves process `pid` into this cgroup in every hierarchy.
    ///
    /// v1 hierarchies are independent, so a process moved in one stays where it was in the
    /// others; writing every `cgroup.procs` is what makes all limits apply to it. If one
    /// hierarchy refuses, the ones already written are moved back to the cgroups
    /// `/proc/<pid>/cgroup` listed before the move (best effort), and the refusal is
    /// returned.
    pub fn add_process(&self, pid: u32) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.add_process(pid),
            Backend::V2(c) => c.add_process(pid),
        }
    }

    /// Removes the cgroup's directory in every hierarchy. Directories already gone are
    /// fine; one still holding processes or children fails with its path.
    ///
    /// Only the leaf is removed, never its parents. Meant for cgroups made with
    /// [`Cgroup::create`]: on a handle from [`Cgroup::of_process`] it would try to remove
    /// cgroups presage does not own (the kernel refuses while they are populated).
    pub fn remove(&self) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.remove(),
            Backend::V2(c) => c.remove(),
        }
    }

    fn with_backend(backend: Backend) -> Cgroup {
        Cgroup {
            backend,
            memory_margin_bytes: DEFAULT_MEMORY_MARGIN_BYTES,
        }
    }

    /// Sets the headroom [`CgroupManager::set_memory_max`] insists on above current usage.
    pub fn with_memory_margin(mut self, bytes: u64) -> Cgroup {
        self.memory_margin_bytes = bytes;
        self
    }

    /// True when the v2 backend is in use.
    pub fn is_v2(&self) -> bool {
        matches!(self.backend, Backend::V2(_))
    }

    /// The v1 view, when the v1 backend is in use.
    pub fn as_v1(&self) -> Option<&V1Cgroup> {
        match &self.backend {
            Backend::V1(c) => Some(c),
            Backend::V2(_) => None,
        }
    }

    /// The v2 view, when the v2 backend is in use.
    pub fn as_v2(&self) -> Option<&V2Cgroup> {
        match &self.backend {
            Backend::V2(c) => Some(c),
            Backend::V1(_) => None,
        }
    }
}

impl CgroupManager for Cgroup {
    fn read_sample(&self) -> Result<RawCgroupSample, LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.read_sample(),
            Backend::V2(c) => c.read_sample(),
        }
    }

    fn read_limits(&self) -> Result<presage_core::Limits, LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.read_limits(),
            Backend::V2(c) => c.read_limits(),
        }
    }

    fn processes(&self) -> Result<Option<Vec<u32>>, LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.processes(),
            Backend::V2(c) => c.processes(),
        }
    }

    fn set_cpu_max(&self, limit: CpuMax) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.set_cpu_max(limit),
            Backend::V2(c) => c.set_cpu_max(limit),
        }
    }

    fn set_cpu_weight(&self, weight: CpuWeight) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.set_cpu_weight(weight),
            Backend::V2(c) => c.set_cpu_weight(weight),
        }
    }

    fn set_memory_high(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.set_memory_high(bytes),
            Backend::V2(c) => c.set_memory_high(bytes),
        }
    }

    fn set_memory_max(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        // DESIGN.md safety invariant, checked at the last step before the kernel: a hard
        // limit below usage plus margin would OOM-kill the workload on the spot.
        if let Some(limit) = bytes {
            let (usage, path) = match &self.backend {
                Backend::V1(c) => (c.memory_usage()?, c.memory_max_path()?),
                Backend::V2(c) => (c.memory_usage()?, c.memory_max_path()),
            };
            if let Some(usage) = usage
                && limit < usage.saturating_add(self.memory_margin_bytes)
            {
                return Err(LinuxError::UnsafeMemoryLimit {
                    path,
                    limit,
                    usage,
                    margin: self.memory_margin_bytes,
                });
            }
        }
        match &self.backend {
            Backend::V1(c) => c.set_memory_max(bytes),
            Backend::V2(c) => c.set_memory_max(bytes),
        }
    }

    fn set_io_max(&self, limit: &IoMax) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.set_io_max(limit),
            Backend::V2(c) => c.set_io_max(limit),
        }
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.set_frozen(frozen),
            Backend::V2(c) => c.set_frozen(frozen),
        }
    }

    fn kill(&self) -> Result<(), LinuxError> {
        match &self.backend {
            Backend::V1(c) => c.kill(),
            Backend::V2(c) => c.kill(),
        }
    }
}

fn no_v2(layout: &Layout) -> LinuxError {
    LinuxError::Unsupported {
        operation: "open a v2 cgroup",
        reason: format!("no cgroup2 mount under {}", layout.root().display()),
    }
}

fn v1_dirs(
    layout: &Layout,
    rel_for: impl Fn(Controller) -> Option<PathBuf>,
) -> BTreeMap<Controller, PathBuf> {
    layout
        .controllers()
        .filter_map(|(c, m)| match m {
            ControllerMount::V1(mount) => rel_for(c).map(|rel| (c, mount.join(rel))),
            ControllerMount::V2(_) => None,
        })
        .collect()
}

/// Turns `/a/b` or `a/b` into a path that stays inside the mount when joined: a `..` or
/// an absolute path would let a bad name write limits to some other cgroup.
pub(crate) fn checked_relative(relative: &str) -> Result<PathBuf, LinuxError> {
    let mut out = PathBuf::new();
    for comp in Path::new(relative).components() {
        match comp {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LinuxError::InvalidValue {
                    what: "cgroup path",
                    reason: format!("{relative:?} leaves the cgroup hierarchy"),
                });
            }
        }
    }
    Ok(out)
}

/// A process's cgroup membership as `/proc/<pid>/cgroup` states it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Path in the v2 tree (`0::/path`).
    pub(crate) v2: Option<String>,
    /// (comma-separated controller list, path) per v1 hierarchy.
    pub(crate) v1: Vec<(String, String)>,
}

pub(crate) fn parse_proc_cgroup(path: &Path, text: &str) -> Result<Membership, LinuxError> {
    let mut m = Membership::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // The cgroup path may itself contain ':', so split at most twice.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(cg_path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(LinuxError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                field: "line".to_string(),
                reason: "expected `id:controllers:path`".to_string(),
            });
        };
        if id == "0" && controllers.is_empty() {
            m.v2 = Some(cg_path.to_string());
        } else {
            m.v1.push((controllers.to_string(), cg_path.to_string()));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{put, read};

    fn hybrid_layout(root: &Path) -> Layout {
        let r = root.display();
        let mi = format!(
            "32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             37 31 0:34 / {r}/freezer rw - cgroup cgroup rw,freezer\n\
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n"
        );
        put(root, "mountinfo", &mi);
        Layout::detect_at(root, &root.join("mountinfo")).unwrap()
    }

    fn unified_layout(root: &Path) -> Layout {
        put(root, "cgroup.controllers", "cpu io memory pids\n");
        put(
            root,
            "mountinfo",
            &format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display()),
        );
        Layout::detect_at(root, &root.join("mountinfo")).unwrap()
    }

    #[test]
    fn open_picks_backend_from_layout() {
        let dir = tempfile::tempdir().unwrap();
        let hybrid = Cgroup::open(&hybrid_layout(dir.path()), "presage/job").unwrap();
        let v1 = hybrid.as_v1().unwrap();
        assert_eq!(
            v1.dir(Controller::Memory),
            Some(dir.path().join("memory/presage/job").as_path())
        );
        assert_eq!(
            v1.dir(Controller::Cpuacct),
            Some(dir.path().join("cpu,cpuacct/presage/job").as_path())
        );
        assert_eq!(
            v1.unified_dir(),
            Some(dir.path().join("unified/presage/job").as_path())
        );

        let dir2 = tempfile::tempdir().unwrap();
        let unified = Cgroup::open(&unified_layout(dir2.path()), "/presage/job").unwrap();
        assert!(unified.is_v2());
        assert_eq!(
            unified.as_v2().unwrap().dir(),
            dir2.path().join("presage/job")
        );
    }

    #[test]
    fn parent_components_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Cgroup::open(&unified_layout(dir.path()), "presage/../../etc").unwrap_err();
        assert!(matches!(err, LinuxError::InvalidValue { .. }));
    }

    #[test]
    fn process_membership_maps_each_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        let layout = hybrid_layout(dir.path());
        let text =
            "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n6:freezer:/\n0::/\n";
        let cg = Cgroup::of_process_text(&layout, Path::new("/proc/1/cgroup"), text).unwrap();
        let v1 = cg.as_v1().unwrap();
        assert_eq!(
            v1.dir(Controller::Memory),
            Some(dir.path().join("memory/process_api/abc").as_path())
        );
        assert_eq!(
            v1.dir(Controller::Cpu),
            Some(dir.path().join("cpu,cpuacct").as_path())
        );
        assert_eq!(v1.dir(Controller::Io), None);
        assert_eq!(v1.unified_dir(), Some(dir.path().join("unified").as_path()));
    }

    #[test]
    fn bad_proc_cgroup_line_is_reported() {
        let err = parse_proc_cgroup(Path::new("/proc/1/cgroup"), "0::/\ngarbage\n").unwrap_err();
        assert!(matches!(err, LinuxError::Parse { line: 2, .. }));
    }

    #[test]
    fn memory_max_below_usage_plus_margin_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroup::open(&unified_layout(dir.path()), "job")
            .unwrap()
            .with_memory_margin(1000);
        put(dir.path(), "job/memory.current", "10000\n");
        let err = cg.set_memory_max(Some(10_500)).unwrap_err();
        assert!(
            matches!(err, LinuxError::UnsafeMemoryLimit { usage: 10_000, .. }),
            "{err}"
        );
        assert!(!dir.path().join("job/memory.max").exists());
        cg.set_memory_max(Some(11_000)).unwrap();
        assert_eq!(read(dir.path(), "job/memory.max"), "11000");
        cg.set_memory_max(None).unwrap();
        assert_eq!(read(dir.path(), "job/memory.max"), "max");
    }

    #[test]
    fn hybrid_handle_samples_and_writes_through_trait() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let cg: Box<dyn CgroupManager> = Box::new(Cgroup::open(&hybrid_layout(r), "job").unwrap());
        put(r, "cpu,cpuacct/job/cpuacct.usage", "42\n");
        put(r, "memory/job/memory.usage_in_bytes", "100\n");
        put(r, "unified/job/cgroup.kill", "");
        put(r, "freezer/job/freezer.state", "FROZEN\n");
        let s = cg.read_sample().unwrap();
        assert_eq!(s.cpu_usage_ns, Some(42));
        assert_eq!(s.memory_working_set_bytes, Some(100));
        cg.set_cpu_max(CpuMax::from_cores(0.5, 100_000).unwrap())
            .unwrap();
        assert_eq!(read(r, "cpu,cpuacct/job/cpu.cfs_quota_us"), "50000");
        cg.set_frozen(false).unwrap();
        assert_eq!(read(r, "freezer/job/freezer.state"), "THAWED");
        cg.kill().unwrap();
        assert_eq!(read(r, "unified/job/cgroup.kill"), "1");
    }
}
