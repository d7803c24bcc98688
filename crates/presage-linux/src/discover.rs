//! Finding the workloads to manage: cgroups whose paths match configured glob patterns.
//!
//! Every runtime names its cgroups by a convention (systemd `*.service` and `*.scope`
//! units, Docker's `docker/<id>` or `docker-<id>.scope`, libvirt's `machine.slice`), so a
//! handful of path patterns finds the workloads on a host without asking each runtime.

use std::fs;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::LinuxError;
use crate::fsio::{is_absence, read_parsed};
use crate::layout::{Controller, ControllerMount, Layout};
use crate::parse::parse_procs;

/// How deep below the hierarchy root the walk goes unless configured otherwise: the
/// deepest default pattern (a Kubernetes container under the systemd driver) sits at 4.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// The default workload patterns, relative to the hierarchy root.
pub const DEFAULT_ROOTS: [&str; 11] = [
    // presage's own subtree (`presage run` puts jobs there).
    "presage/*",
    // systemd services and transient scopes (including `docker-<id>.scope` and
    // `libpod-<id>.scope` under the systemd cgroup driver).
    "system.slice/*.service",
    "system.slice/*.scope",
    // Template instances (`getty@tty1.service`) sit in a per-template slice.
    "system.slice/*.slice/*.service",
    // Login sessions.
    "user.slice/user-*.slice/*.scope",
    // libvirt/QEMU VMs, systemd-nspawn machines, rootful podman containers.
    "machine.slice/*",
    // Kubernetes containers: systemd driver, then cgroupfs driver (QoS class, or
    // Guaranteed pods directly under kubepods).
    "kubepods*/**/*.scope",
    "kubepods/*/pod*/*",
    "kubepods/pod*/*",
    // Docker under the cgroupfs driver.
    "docker/*",
    // LXC containers.
    "lxc.payload.*",
];

/// Which cgroups are workloads. Every field has a default, so a config file names only
/// what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Glob patterns over cgroup paths relative to the hierarchy root (`*` stays within
    /// one path component, `**` crosses any number); a cgroup matching one is a candidate.
    pub roots: Vec<String>,
    /// If non-empty, only candidates matching one of these are kept.
    pub include: Vec<String>,
    /// Candidates matching any of these are dropped.
    ///
    /// Empty by default: the agent's own cgroup is the one thing every host should
    /// exclude, and its path depends on how the agent was started (unit name, container,
    /// shell), so the agent drops it at runtime from `/proc/self/cgroup` rather than
    /// trusting a guessed name here.
    pub exclude: Vec<String>,
    /// Drop cgroups with no processes of their own (an idle service, a slice-like scope).
    pub skip_empty: bool,
    /// Deepest path (in components) the walk visits.
    pub max_depth: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            roots: DEFAULT_ROOTS.iter().map(|s| (*s).to_string()).collect(),
            include: Vec::new(),
            exclude: Vec::new(),
            skip_empty: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// What kind of workload a cgroup holds, judged from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Under presage's own `presage/` subtree.
    Presage,
    /// A systemd service (`*.service`).
    Service,
    /// A systemd scope that is not a container or VM (`*.scope`: login sessions, `systemd-run --scope`).
    Scope,
    /// A container (Docker, containerd/CRI, CRI-O, podman, LXC, systemd-nspawn).
    Container,
    /// A virtual machine (libvirt/QEMU).
    Vm,
    /// Anything else a pattern matched.
    Other,
}

impl WorkloadKind {
    /// Classifies a cgroup path relative to the hierarchy root.
    pub fn classify(relative: &str) -> WorkloadKind {
        let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty()).collect();
        let first = parts.first().copied().unwrap_or("");
        let last = parts.last().copied().unwrap_or("");
        if first == "presage" {
            WorkloadKind::Presage
        } else if first == "docker"
            || first.starts_with("kubepods")
            || first == "lxc"
            || first.starts_with("lxc.payload")
            || parts.iter().any(|p| is_container_unit(p))
        {
            WorkloadKind::Container
        } else if first == "machine.slice"
            || first == "machine"
            || parts.iter().any(|p| p.starts_with("machine-qemu"))
        {
            WorkloadKind::Vm
        } else if last.ends_with(".service") {
            WorkloadKind::Service
        } else if last.ends_with(".scope") {
            WorkloadKind::Scope
        } else {
            WorkloadKind::Other
        }
    }
}

/// systemd units that container runtimes create for their containers; checked before
/// the generic `.scope` rule, since `docker-<id>.scope` is a container, not a session.
fn is_container_unit(part: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "docker-",
        "libpod-",
        "crio-",
        "cri-containerd-",
        "machine-lxc",
        "systemd-nspawn@",
    ];
    PREFIXES.iter().any(|p| part.starts_with(p))
        && (part.ends_with(".scope") || part.ends_with(".service"))
}

/// One workload found by discovery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Discovered {
    /// Path relative to the hierarchy root, `/`-separated, without a leading `/`: what
    /// [`crate::Cgroup::open`] takes.
    pub relative: String,
    /// Its kind, from the path.
    pub kind: WorkloadKind,
}

/// A [`DiscoveryConfig`] with its patterns compiled, for repeated discovery.
#[derive(Debug, Clone)]
pub struct Discoverer {
    roots: GlobSet,
    include: Option<GlobSet>,
    exclude: GlobSet,
    skip_empty: bool,
    max_depth: usize,
}

fn compile(field: &'static str, patterns: &[String]) -> Result<GlobSet, LinuxError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let err = |source| LinuxError::Pattern {
            field,
            pattern: pattern.clone(),
            source,
        };
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(err)?;
        set.add(glob);
    }
    set.build().map_err(|source| LinuxError::Pattern {
        field,
        pattern: patterns.join(", "),
        source,
    })
}

impl Discoverer {
    /// Compiles the patterns; a bad one is reported with its field and text.
    pub fn new(config: &DiscoveryConfig) -> Result<Discoverer, LinuxError> {
        Ok(Discoverer {
            roots: compile("roots", &config.roots)?,
            include: if config.include.is_empty() {
                None
            } else {
                Some(compile("include", &config.include)?)
            },
            exclude: compile("exclude", &config.exclude)?,
            skip_empty: config.skip_empty,
            max_depth: config.max_depth,
        })
    }

    /// True when `relative` matches a root pattern, passes `include` and not `exclude`.
    pub fn matches(&self, relative: &str) -> bool {
        self.roots.is_match(relative)
            && self.include.as_ref().is_none_or(|s| s.is_match(relative))
            && !self.exclude.is_match(relative)
    }

    /// The workloads in the hierarchy [`discovery_tree`] picks for `layout`, sorted by
    /// path.
    pub fn discover(&self, layout: &Layout) -> Result<Vec<Discovered>, LinuxError> {
        self.discover_in(&discovery_tree(layout)?)
    }

    /// The workloads in the hierarchy mounted at `tree`, sorted by path. A tree that does
    /// not exist holds none.
    pub fn discover_in(&self, tree: &Path) -> Result<Vec<Discovered>, LinuxError> {
        let mut out = Vec::new();
        self.walk(tree, "", 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        depth: usize,
        out: &mut Vec<Discovered>,
    ) -> Result<(), LinuxError> {
        if depth >= self.max_depth {
            return Ok(());
        }
        let Some(children) = subdirs(dir)? else {
            return Ok(());
        };
        for name in children {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let child = dir.join(&name);
            if self.matches(&child_rel) && (!self.skip_empty || has_processes(&child)?) {
                out.push(Discovered {
                    kind: WorkloadKind::classify(&child_rel),
                    relative: child_rel.clone(),
                });
            }
            self.walk(&child, &child_rel, depth + 1, out)?;
        }
        Ok(())
    }
}

/// Discovers the workloads under `layout` with `config`; see [`Discoverer`] to compile
/// the patterns once for repeated calls.
pub fn discover(layout: &Layout, config: &DiscoveryConfig) -> Result<Vec<Discovered>, LinuxError> {
    Discoverer::new(config)?.discover(layout)
}

/// The hierarchy to walk: the v2 tree if it carries resource controllers; otherwise the
/// v1 `cpu` hierarchy (or `memory`), since on a hybrid host the v2 tree has no controllers
/// and systemd mirrors its units into each v1 hierarchy that accounts for them.
pub fn discovery_tree(layout: &Layout) -> Result<PathBuf, LinuxError> {
    const RESOURCE: [&str; 4] = ["cpu", "memory", "io", "pids"];
    if let Some(v2) = layout.v2_mount()
        && layout
            .v2_controllers()
            .iter()
            .any(|c| RESOURCE.contains(&c.as_str()))
    {
        return Ok(v2.to_path_buf());
    }
    for c in [Controller::Cpu, Controller::Memory] {
        if let Some(ControllerMount::V1(p)) = layout.controller(c) {
            return Ok(p.clone());
        }
    }
    layout
        .v2_mount()
        .map(Path::to_path_buf)
        .ok_or_else(|| LinuxError::Unsupported {
            operation: "discover workloads",
            reason: format!(
                "no v1 cpu or memory hierarchy and no v2 tree under {}",
                layout.root().display()
            ),
        })
}

/// Names of `dir`'s subdirectories, sorted; `None` if `dir` vanished.
fn subdirs(dir: &Path) -> Result<Option<Vec<String>>, LinuxError> {
    let read_err = |source| LinuxError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // A cgroup removed between listing its parent and reading it is an absence.
        Err(e) if is_absence(&e) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if is_absence(&e) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        // cgroupfs reports d_type, so this costs no extra stat; a child removed in the
        // meantime just is not a directory any more.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        // systemd escapes unit names to ASCII; a non-UTF-8 name cannot match a pattern.
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(Some(names))
}

fn has_processes(dir: &Path) -> Result<bool, LinuxError> {
    Ok(read_parsed(&dir.join("cgroup.procs"), parse_procs)?.is_some_and(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{hybrid_layout, put, unified_layout};

    const TREE: [(&str, &str); 14] = [
        ("presage/job-1", "5\n"),
        ("presage/idle", ""),
        ("system.slice/cron.service", "7\n"),
        ("system.slice/docker-0123abcd.scope", "8\n"),
        ("system.slice/run-r42.scope", "80\n"),
        ("system.slice/system-getty.slice/getty@tty1.service", "81\n"),
        ("user.slice/user-1000.slice/session-2.scope", "9\n"),
        ("machine.slice/machine-qemu\\x2d1\\x2dvm.scope", "10\n"),
        (
            "machine.slice/machine-qemu\\x2d1\\x2dvm.scope/libvirt",
            "11\n",
        ),
        ("machine.slice/libpod-feed.scope", "15\n"),
        (
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-aa.scope",
            "12\n",
        ),
        ("kubepods/besteffort/pod2/bb", "16\n"),
        ("docker/cafe", "13\n"),
        ("other/thing", "14\n"),
    ];

    fn fake_tree(tree: &Path) {
        for (rel, procs) in TREE {
            put(tree, &format!("{rel}/cgroup.procs"), procs);
        }
    }

    fn found(list: &[Discovered]) -> Vec<(&str, WorkloadKind)> {
        list.iter().map(|d| (d.relative.as_str(), d.kind)).collect()
    }

    #[test]
    fn default_config_finds_workloads_on_a_hybrid_host() {
        let dir = tempfile::tempdir().unwrap();
        let layout = hybrid_layout(dir.path());
        fake_tree(&dir.path().join("cpu,cpuacct"));
        let list = discover(&layout, &DiscoveryConfig::default()).unwrap();
        use WorkloadKind::*;
        assert_eq!(
            found(&list),
            [
                ("docker/cafe", Container),
                (
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-aa.scope",
                    Container
                ),
                ("kubepods/besteffort/pod2/bb", Container),
                ("machine.slice/libpod-feed.scope", Container),
                ("machine.slice/machine-qemu\\x2d1\\x2dvm.scope", Vm),
                ("presage/job-1", Presage),
                ("system.slice/cron.service", Service),
                ("system.slice/docker-0123abcd.scope", Container),
                ("system.slice/run-r42.scope", Scope),
                (
                    "system.slice/system-getty.slice/getty@tty1.service",
                    Service
                ),
                ("user.slice/user-1000.slice/session-2.scope", Scope),
            ]
        );
    }

    #[test]
    fn include_exclude_and_keeping_empty_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path());
        let config = DiscoveryConfig {
            include: vec!["presage/**".into(), "system.slice/**".into()],
            exclude: vec!["system.slice/docker-*".into()],
            skip_empty: false,
            ..DiscoveryConfig::default()
        };
        let list = Discoverer::new(&config)
            .unwrap()
            .discover_in(dir.path())
            .unwrap();
        let paths: Vec<&str> = list.iter().map(|d| d.relative.as_str()).collect();
        assert_eq!(
            paths,
            [
                "presage/idle",
                "presage/job-1",
                "system.slice/cron.service",
                "system.slice/run-r42.scope",
                "system.slice/system-getty.slice/getty@tty1.service",
            ]
        );
    }

    #[test]
    fn star_stays_in_one_component_and_depth_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path());
        put(dir.path(), "a/b/c/d/cgroup.procs", "1\n");
        let config = |roots: &[&str], max_depth| DiscoveryConfig {
            roots: roots.iter().map(|s| (*s).to_string()).collect(),
            max_depth,
            ..DiscoveryConfig::default()
        };
        let run = |c: DiscoveryConfig| {
            Discoverer::new(&c)
                .unwrap()
                .discover_in(dir.path())
                .unwrap()
                .into_iter()
                .map(|d| d.relative)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(config(&["a/*"], 8)), Vec::<String>::new());
        assert_eq!(run(config(&["a/**/d"], 8)), ["a/b/c/d"]);
        assert_eq!(run(config(&["a/**/d"], 3)), Vec::<String>::new());
        assert_eq!(run(config(&["a/**/d"], 4)), ["a/b/c/d"]);
    }

    #[test]
    fn bad_pattern_names_field_and_pattern() {
        let config = DiscoveryConfig {
            exclude: vec!["ok/*".into(), "bad/[".into()],
            ..DiscoveryConfig::default()
        };
        let err = Discoverer::new(&config).unwrap_err();
        match &err {
            LinuxError::Pattern { field, pattern, .. } => {
                assert_eq!((*field, pattern.as_str()), ("exclude", "bad/["));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("bad/["), "{err}");
    }

    #[test]
    fn missing_tree_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = Discoverer::new(&DiscoveryConfig::default()).unwrap();
        assert!(d.discover_in(&dir.path().join("gone")).unwrap().is_empty());
    }

    #[test]
    fn tree_choice_follows_the_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        assert_eq!(
            discovery_tree(&hybrid_layout(r)).unwrap(),
            r.join("cpu,cpuacct")
        );
        let u = tempfile::tempdir().unwrap();
        assert_eq!(
            discovery_tree(&unified_layout(u.path(), "cpu memory\n")).unwrap(),
            u.path()
        );
        let bare = tempfile::tempdir().unwrap();
        assert_eq!(
            discovery_tree(&unified_layout(bare.path(), "hugetlb\n")).unwrap(),
            bare.path(),
            "a controller-less v2 tree is still the only tree"
        );
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let c: DiscoveryConfig =
            toml::from_str("exclude = [\"system.slice/sshd.service\"]\n").unwrap();
        assert_eq!(c.roots, DiscoveryConfig::default().roots);
        assert_eq!(c.exclude, ["system.slice/sshd.service"]);
        assert!(c.skip_empty);
        assert!(toml::from_str::<DiscoveryConfig>("rootz = []\n").is_err());
    }

    #[test]
    fn classification() {
        use WorkloadKind::*;
        for (path, kind) in [
            ("presage/job", Presage),
            ("/system.slice/nginx.service", Service),
            ("system.slice/containerd.service", Service),
            ("user.slice/user-0.slice/session-1.scope", Scope),
            ("system.slice/docker-abc.scope", Container),
            ("system.slice/crio-abc.scope", Container),
            ("machine.slice/systemd-nspawn@web.service", Container),
            ("lxc.payload.web", Container),
            ("machine.slice/machine-qemu\\x2d3\\x2dwin.scope", Vm),
            ("machine/qemu-1-vm.libvirt-qemu", Vm),
            ("some/thing", Other),
        ] {
            assert_eq!(WorkloadKind::classify(path), kind, "{path}");
        }
    }
}
