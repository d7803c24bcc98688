//! The cgroup v1 backend: one directory per controller hierarchy.
//!
//! On a hybrid host the workload also has a place in the v2 tree, which carries what v1
//! lacks (PSI, `cgroup.kill`); that directory is kept alongside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cgroup::{Membership, checked_relative, parse_proc_cgroup};
use crate::error::LinuxError;
use crate::fsio::{self, read_parsed, write_value};
use crate::kill::{self, Freezer};
use crate::layout::{Controller, ControllerMount, Layout};
use crate::limits::{CpuMax, CpuWeight, IoMax};
use crate::parse::{
    self, parse_blkio_io_service_bytes, parse_cpuacct_usage, parse_v1_cpu_stat,
    parse_v1_memory_stat, parse_v1_oom_control,
};
use crate::procfs::ProcRoot;
use crate::sample::{RawCgroupSample, working_set};
use crate::v2::V2Cgroup;

/// One workload's cgroups across the v1 hierarchies (and the v2 tree, on a hybrid host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Cgroup {
    dirs: BTreeMap<Controller, PathBuf>,
    unified: Option<V2Cgroup>,
    // Where each hierarchy is mounted, to find the cgroup a process came from when a
    // move has to be undone; empty for handles built with `new`.
    mounts: BTreeMap<Controller, PathBuf>,
    unified_mount: Option<PathBuf>,
}

impl V1Cgroup {
    /// A cgroup whose directory in each available hierarchy is given, plus its v2
    /// directory on a hybrid host.
    pub fn new(dirs: BTreeMap<Controller, PathBuf>, unified: Option<PathBuf>) -> V1Cgroup {
        V1Cgroup {
            dirs,
            unified: unified.map(V2Cgroup::new),
            mounts: BTreeMap::new(),
            unified_mount: None,
        }
    }

    /// Records the layout's mount points, which [`V1Cgroup::add_process`] needs to move a
    /// process back where it was.
    pub(crate) fn with_mounts(mut self, layout: &Layout) -> V1Cgroup {
        self.mounts = layout
            .controllers()
            .filter_map(|(c, m)| match m {
                ControllerMount::V1(p) => Some((c, p.clone())),
                ControllerMount::V2(_) => None,
            })
            .collect();
        self.unified_mount = layout.v2_mount().map(Path::to_path_buf);
        self
    }

    /// The directory for `controller`, if that hierarchy is mounted.
    pub fn dir(&self, controller: Controller) -> Option<&Path> {
        self.dirs.get(&controller).map(PathBuf::as_path)
    }

    /// The v2 directory on a hybrid host.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(V2Cgroup::dir)
    }

    /// Each hierarchy's directory once: controllers co-mounted (`cpu,cpuacct`) share one.
    fn distinct_dirs(&self) -> Vec<&Path> {
        self.distinct_hierarchies()
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    }

    /// Each hierarchy's directory once, with the first controller that names it.
    fn distinct_hierarchies(&self) -> Vec<(Controller, &Path)> {
        let mut out: Vec<(Controller, &Path)> = Vec::new();
        for (c, d) in &self.dirs {
            if !out.iter().any(|(_, seen)| *seen == d.as_path()) {
                out.push((*c, d));
            }
        }
        out
    }

    pub(crate) fn create(&self) -> Result<(), LinuxError> {
        for d in self.distinct_dirs() {
            fsio::make_dir_all(d)?;
        }
        // The hybrid v2 tree has no resource controllers to enable; the directory alone
        // gives freeze, kill and PSI.
        if let Some(u) = &self.unified {
            fsio::make_dir_all(u.dir())?;
        }
        Ok(())
    }

    pub(crate) fn add_process(&self, pid: u32) -> Result<(), LinuxError> {
        self.add_process_with(pid, &ProcRoot::default())
    }

    /// Moves `pid` into every hierarchy; if one refuses, the hierarchies already written
    /// are moved back to where `proc_root` said the process was, best effort, and the
    /// original error is returned. A process half-moved would run under some of the new
    /// limits and some of the old, which nobody chose.
    pub(crate) fn add_process_with(
        &self,
        pid: u32,
        proc_root: &ProcRoot,
    ) -> Result<(), LinuxError> {
        // Read before the first write: afterwards /proc reports the new cgroups.
        let origin = match proc_root.read(pid, "cgroup") {
            Ok(Some(text)) => parse_proc_cgroup(&proc_root.pid_file(pid, "cgroup"), &text).ok(),
            // Without it the move still goes ahead; only the undo is lost.
            Ok(None) | Err(_) => None,
        };
        let value = pid.to_string();
        let mut targets: Vec<(PathBuf, Option<PathBuf>)> = self
            .distinct_hierarchies()
            .into_iter()
            .map(|(c, d)| (d.to_path_buf(), self.origin_dir(origin.as_ref(), Some(c))))
            .collect();
        if let Some(u) = &self.unified {
            targets.push((
                u.dir().to_path_buf(),
                self.origin_dir(origin.as_ref(), None),
            ));
        }
        for (i, (dir, _)) in targets.iter().enumerate() {
            if let Err(e) = write_value(&dir.join("cgroup.procs"), &value) {
                for (_, back) in targets[..i].iter().rev() {
                    if let Some(back) = back {
                        // Best effort: the error worth reporting is the one above.
                        let _ = write_value(&back.join("cgroup.procs"), &value);
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Where a process was in `controller`'s hierarchy (`None`: the v2 tree).
    fn origin_dir(
        &self,
        origin: Option<&Membership>,
        controller: Option<Controller>,
    ) -> Option<PathBuf> {
        let origin = origin?;
        let (mount, rel) = match controller {
            Some(c) => {
                let (_, rel) = origin
                    .v1
                    .iter()
                    .find(|(names, _)| names.split(',').any(|n| n == c.v1_name()))?;
                (self.mounts.get(&c)?, rel)
            }
            None => (self.unified_mount.as_ref()?, origin.v2.as_ref()?),
        };
        checked_relative(rel).ok().map(|r| mount.join(r))
    }

    pub(crate) fn remove(&self) -> Result<(), LinuxError> {
        // Every hierarchy is attempted even after a failure, so one busy directory does
        // not leave the others behind; the first error is the one reported.
        let mut first_err = None;
        let unified = self.unified.as_ref().map(V2Cgroup::dir);
        for d in self.distinct_dirs().into_iter().chain(unified) {
            if let Err(e) = fsio::remove_dir(d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) fn file(&self, controller: Controller, name: &str) -> Option<PathBuf> {
        self.dirs.get(&controller).map(|d| d.join(name))
    }

    fn required_file(
        &self,
        controller: Controller,
        name: &str,
        operation: &'static str,
    ) -> Result<PathBuf, LinuxError> {
        self.file(controller, name)
            .ok_or_else(|| LinuxError::Unsupported {
                operation,
                reason: format!("no v1 {controller} hierarchy is mounted"),
            })
    }

    pub(crate) fn read_sample(&self) -> Result<RawCgroupSample, LinuxError> {
        let mut s = RawCgroupSample::default();
        // PSI and a fallback CPU counter come from the v2 tree; the v1 counters below
        // override the CPU figure because they are the hierarchy the limits apply to.
        if let Some(u) = &self.unified {
            u.read_cpu_and_pressure(&mut s)?;
        }
        if let Some(p) = self.file(Controller::Cpuacct, "cpuacct.usage")
            && let Some(ns) = read_parsed(&p, parse_cpuacct_usage)?
        {
            s.cpu_usage_ns = Some(ns);
        }
        if let Some(p) = self.file(Controller::Cpu, "cpu.stat")
            && let Some(cpu) = read_parsed(&p, parse_v1_cpu_stat)?
        {
            s.cpu_nr_periods = Some(cpu.nr_periods);
            s.cpu_nr_throttled = Some(cpu.nr_throttled);
            s.cpu_throttled_ns = Some(cpu.throttled_time_ns);
        }
        s.memory_usage_bytes = self.memory_usage()?;
        if let Some(p) = self.file(Controller::Memory, "memory.stat") {
            let stat = read_parsed(&p, parse_v1_memory_stat)?;
            s.memory_working_set_bytes =
                working_set(s.memory_usage_bytes, stat.map(|m| m.total_inactive_file));
        }
        if let Some(p) = self.file(Controller::Memory, "memory.max_usage_in_bytes") {
            s.memory_peak_bytes = read_parsed(&p, parse::parse_single_u64)?;
        }
        if let Some(p) = self.file(Controller::Memory, "memory.oom_control") {
            s.oom_kills = read_parsed(&p, parse_v1_oom_control)?.and_then(|o| o.oom_kill);
        }
        if let Some(p) = self.file(Controller::Io, "blkio.throttle.io_service_bytes")
            && let Some(devs) = read_parsed(&p, parse_blkio_io_service_bytes)?
        {
            s.io_read_bytes = Some(devs.iter().map(|d| d.read).fold(0, u64::saturating_add));
            s.io_write_bytes = Some(devs.iter().map(|d| d.write).fold(0, u64::saturating_add));
        }
        s.process_count = self.processes()?.map(|p| p.len() as u64);
        Ok(s)
    }

    pub(crate) fn memory_usage(&self) -> Result<Option<u64>, LinuxError> {
        match self.file(Controller::Memory, "memory.usage_in_bytes") {
            Some(p) => read_parsed(&p, parse::parse_single_u64),
            None => Ok(None),
        }
    }

    pub(crate) fn processes(&self) -> Result<Option<Vec<u32>>, LinuxError> {
        match self.procs_dir() {
            Some(d) => read_parsed(&d.join("cgroup.procs"), parse::parse_procs),
            None => Ok(None),
        }
    }

    /// The hierarchy whose `cgroup.procs` stands for the cgroup's membership.
    fn procs_dir(&self) -> Option<&Path> {
        // Every hierarchy lists the same processes when presage placed them; memory is
        // the one that matters most, so it is asked first.
        const ORDER: [Controller; 6] = [
            Controller::Memory,
            Controller::Cpu,
            Controller::Cpuacct,
            Controller::Pids,
            Controller::Io,
            Controller::Freezer,
        ];
        ORDER.into_iter().find_map(|c| self.dir(c))
    }

    pub(crate) fn set_cpu_max(&self, limit: CpuMax) -> Result<(), LinuxError> {
        let period = self.required_file(Controller::Cpu, "cpu.cfs_period_us", "set CPU limit")?;
        let quota = self.required_file(Controller::Cpu, "cpu.cfs_quota_us", "set CPU limit")?;
        // The kernel checks quota against period on each write; lifting the quota first
        // means the period change cannot be refused for clashing with the old quota.
        write_value(&quota, "-1")?;
        write_value(&period, &limit.period_us().to_string())?;
        match limit.quota_us() {
            Some(q) => write_value(&quota, &q.to_string()),
            None => Ok(()),
        }
    }

    pub(crate) fn set_cpu_weight(&self, weight: CpuWeight) -> Result<(), LinuxError> {
        let path = self.required_file(Controller::Cpu, "cpu.shares", "set CPU weight")?;
        write_value(&path, &weight.to_v1_shares().to_string())
    }

    pub(crate) fn set_memory_high(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        // v1 has no memory.high; the soft limit is the closest: reclaim pressure above it
        // when the host is short of memory, never an OOM kill.
        let path = self.required_file(
            Controller::Memory,
            "memory.soft_limit_in_bytes",
            "set memory soft limit",
        )?;
        write_value(&path, &limit_text(bytes))
    }

    pub(crate) fn memory_max_path(&self) -> Result<PathBuf, LinuxError> {
        self.required_file(
            Controller::Memory,
            "memory.limit_in_bytes",
            "set memory limit",
        )
    }

    pub(crate) fn set_memory_max(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        write_value(&self.memory_max_path()?, &limit_text(bytes))
    }

    pub(crate) fn set_io_max(&self, limit: &IoMax) -> Result<(), LinuxError> {
        let rules = [
            ("blkio.throttle.read_bps_device", limit.rbps),
            ("blkio.throttle.write_bps_device", limit.wbps),
            ("blkio.throttle.read_iops_device", limit.riops),
            ("blkio.throttle.write_iops_device", limit.wiops),
        ];
        for (name, value) in rules {
            let path = self.required_file(Controller::Io, name, "set I/O limit")?;
            // A zero rate deletes the device's rule, which is v1's "unlimited".
            let value = format!("{}:{} {}", limit.major, limit.minor, value.unwrap_or(0));
            write_value(&path, &value)?;
        }
        Ok(())
    }

    pub(crate) fn set_frozen(&self, frozen: bool) -> Result<(), LinuxError> {
        if let Some(path) = self.file(Controller::Freezer, "freezer.state") {
            return write_value(&path, if frozen { "FROZEN" } else { "THAWED" });
        }
        match &self.unified {
            Some(u) if u.can_freeze() => u.set_frozen(frozen),
            _ => Err(LinuxError::Unsupported {
                operation: "freeze",
                reason: "no v1 freezer hierarchy and no v2 cgroup.freeze".to_string(),
            }),
        }
    }

    pub(crate) fn kill(&self) -> Result<(), LinuxError> {
        self.kill_with(&mut kill::sigkill)
    }

    /// Kills with the kernel's `cgroup.kill` where the hybrid v2 tree has one, else by
    /// freezing and signalling each listed process; `send` delivers the signals.
    pub(crate) fn kill_with(
        &self,
        send: &mut dyn FnMut(u32) -> std::io::Result<()>,
    ) -> Result<(), LinuxError> {
        if let Some(u) = &self.unified
            && u.can_kill()
        {
            u.kill()?;
            // A v1-frozen process cannot act on the SIGKILL the v2 tree just queued: it
            // would stay frozen, killed in name only (the response ladder freezes before
            // it kills). Thawing after the signal is queued lets it die without running
            // another instruction of its own.
            if let Some(f) = self.dir(Controller::Freezer) {
                Freezer::V1(f.join("freezer.state")).set(false)?;
            }
            return Ok(());
        }
        let dir = self.procs_dir().ok_or_else(|| LinuxError::Unsupported {
            operation: "kill",
            reason: "no v1 hierarchy is mounted".to_string(),
        })?;
        let freezer = match (self.dir(Controller::Freezer), &self.unified) {
            (Some(f), _) => Freezer::V1(f.join("freezer.state")),
            (None, Some(u)) if u.can_freeze() => Freezer::V2(u.dir().join("cgroup.freeze")),
            _ => Freezer::None,
        };
        kill::kill_listed(dir, &freezer, send)
    }
}

fn limit_text(bytes: Option<u64>) -> String {
    // v1 spells "unlimited" as -1.
    bytes.map_or_else(|| "-1".to_string(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{put, read};

    fn fake(with_unified: bool) -> (tempfile::TempDir, V1Cgroup) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "cpuacct/w/cpuacct.usage", "5000000000\n");
        put(
            r,
            "cpu/w/cpu.stat",
            "nr_periods 20\nnr_throttled 19\nthrottled_time 700\n",
        );
        put(r, "memory/w/memory.usage_in_bytes", "1000000\n");
        put(r, "memory/w/memory.max_usage_in_bytes", "3000000\n");
        put(
            r,
            "memory/w/memory.stat",
            "cache 1\nrss 2\ntotal_cache 500000\ntotal_rss 500000\ntotal_inactive_file 300000\ntotal_active_file 200000\n",
        );
        put(
            r,
            "memory/w/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        put(r, "memory/w/cgroup.procs", "7\n8\n");
        put(
            r,
            "blkio/w/blkio.throttle.io_service_bytes",
            "254:0 Read 10\n254:0 Write 20\n254:0 Total 30\nTotal 30\n",
        );
        fs_dir(r, "freezer/w");
        let mut dirs = BTreeMap::new();
        for (c, d) in [
            (Controller::Cpu, "cpu/w"),
            (Controller::Cpuacct, "cpuacct/w"),
            (Controller::Memory, "memory/w"),
            (Controller::Io, "blkio/w"),
            (Controller::Freezer, "freezer/w"),
        ] {
            dirs.insert(c, r.join(d));
        }
        let unified = with_unified.then(|| {
            put(r, "unified/w/cpu.stat", "usage_usec 1\n");
            put(
                r,
                "unified/w/cpu.pressure",
                "some avg10=2.00 avg60=1.00 avg300=0.50 total=99\n",
            );
            put(r, "unified/w/cgroup.kill", "");
            put(r, "unified/w/cgroup.freeze", "0\n");
            r.join("unified/w")
        });
        (dir, V1Cgroup::new(dirs, unified))
    }

    fn fs_dir(root: &Path, rel: &str) {
        std::fs::create_dir_all(root.join(rel)).unwrap();
    }

    #[test]
    fn sample_gathers_v1_counters_and_hybrid_psi() {
        let (_dir, cg) = fake(true);
        let s = cg.read_sample().unwrap();
        assert_eq!(
            s.cpu_usage_ns,
            Some(5_000_000_000),
            "v1 cpuacct wins over v2 usage_usec"
        );
        assert_eq!(
            (s.cpu_nr_periods, s.cpu_nr_throttled, s.cpu_throttled_ns),
            (Some(20), Some(19), Some(700))
        );
        assert_eq!(s.memory_usage_bytes, Some(1_000_000));
        assert_eq!(s.memory_working_set_bytes, Some(700_000));
        assert_eq!(s.memory_peak_bytes, Some(3_000_000));
        assert_eq!(s.oom_kills, Some(2));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (Some(10), Some(20)));
        assert_eq!(s.cpu_pressure.unwrap().some.total_usec, 99);
        assert_eq!(s.process_count, Some(2));
    }

    #[test]
    fn legacy_has_no_psi() {
        let (_dir, cg) = fake(false);
        let s = cg.read_sample().unwrap();
        assert!(s.cpu_pressure.is_none());
        assert_eq!(s.cpu_usage_ns, Some(5_000_000_000));
    }

    #[test]
    fn writes_use_v1_files() {
        let (dir, cg) = fake(true);
        let r = dir.path();
        cg.set_cpu_max(CpuMax::new(Some(25_000), 100_000).unwrap())
            .unwrap();
        assert_eq!(read(r, "cpu/w/cpu.cfs_quota_us"), "25000");
        assert_eq!(read(r, "cpu/w/cpu.cfs_period_us"), "100000");
        cg.set_cpu_max(CpuMax::unlimited(100_000).unwrap()).unwrap();
        assert_eq!(read(r, "cpu/w/cpu.cfs_quota_us"), "-1");
        cg.set_cpu_weight(CpuWeight::new(100).unwrap()).unwrap();
        assert_eq!(read(r, "cpu/w/cpu.shares"), "1024");
        cg.set_memory_high(Some(4096)).unwrap();
        assert_eq!(read(r, "memory/w/memory.soft_limit_in_bytes"), "4096");
        cg.set_memory_max(None).unwrap();
        assert_eq!(read(r, "memory/w/memory.limit_in_bytes"), "-1");
        let io = IoMax {
            major: 254,
            minor: 0,
            rbps: None,
            wbps: Some(10_485_760),
            riops: None,
            wiops: None,
        };
        cg.set_io_max(&io).unwrap();
        assert_eq!(
            read(r, "blkio/w/blkio.throttle.write_bps_device"),
            "254:0 10485760"
        );
        assert_eq!(read(r, "blkio/w/blkio.throttle.read_bps_device"), "254:0 0");
        cg.set_frozen(true).unwrap();
        assert_eq!(read(r, "freezer/w/freezer.state"), "FROZEN");
        cg.kill().unwrap();
        assert_eq!(read(r, "unified/w/cgroup.kill"), "1");
    }

    #[test]
    fn kill_without_v2_freezes_and_signals_each_process() {
        let (dir, cg) = fake(false);
        let r = dir.path();
        put(r, "freezer/w/freezer.state", "THAWED\n");
        let mut sent = Vec::new();
        // The fake kernel: every signalled process is gone at once.
        cg.kill_with(&mut |pid| {
            assert_eq!(read(r, "freezer/w/freezer.state"), "FROZEN");
            sent.push(pid);
            std::fs::write(r.join("memory/w/cgroup.procs"), "")
        })
        .unwrap();
        assert_eq!(sent, [7, 8]);
        assert_eq!(read(r, "freezer/w/freezer.state"), "THAWED");
    }

    #[test]
    fn kill_on_hybrid_without_cgroup_kill_uses_v1_freezer() {
        let (dir, cg) = fake(true);
        let r = dir.path();
        std::fs::remove_file(r.join("unified/w/cgroup.kill")).unwrap();
        put(r, "freezer/w/freezer.state", "THAWED\n");
        let mut sent = Vec::new();
        cg.kill_with(&mut |pid| {
            sent.push(pid);
            std::fs::write(r.join("memory/w/cgroup.procs"), "")
        })
        .unwrap();
        assert_eq!(sent, [7, 8]);
        assert_eq!(read(r, "freezer/w/freezer.state"), "THAWED");
        assert_eq!(
            read(r, "unified/w/cgroup.freeze"),
            "0\n",
            "v1 freezer preferred"
        );
    }

    #[test]
    fn failed_move_is_undone_in_hierarchies_already_written() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let layout = crate::testutil::hybrid_layout(r);
        // Only cpu and memory exist: the move succeeds there, then blkio refuses.
        for h in [
            "cpu,cpuacct/job",
            "memory/job",
            "cpu,cpuacct/old",
            "memory/m/old",
        ] {
            fs_dir(r, h);
        }
        put(
            r,
            "proc/4242/cgroup",
            "2:cpu,cpuacct:/old\n4:memory:/m/old\n7:blkio:/\n0::/\n",
        );
        let cg = crate::Cgroup::open(&layout, "job").unwrap();
        let err = cg
            .as_v1()
            .unwrap()
            .add_process_with(4242, &ProcRoot::new(r.join("proc")))
            .unwrap_err();
        assert!(err.to_string().contains("blkio/job/cgroup.procs"), "{err}");
        assert_eq!(read(r, "cpu,cpuacct/old/cgroup.procs"), "4242");
        assert_eq!(read(r, "memory/m/old/cgroup.procs"), "4242");
        assert!(!r.join("unified/cgroup.procs").exists(), "v2 never written");
    }

    #[test]
    fn failed_move_without_proc_info_still_reports_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let layout = crate::testutil::hybrid_layout(r);
        fs_dir(r, "cpu,cpuacct/job");
        let cg = crate::Cgroup::open(&layout, "job").unwrap();
        let err = cg
            .as_v1()
            .unwrap()
            .add_process_with(4242, &ProcRoot::new(r.join("proc")))
            .unwrap_err();
        assert!(err.to_string().contains("memory/job/cgroup.procs"), "{err}");
    }

    #[test]
    fn missing_hierarchy_is_unsupported_not_a_panic() {
        let cg = V1Cgroup::new(BTreeMap::new(), None);
        assert!(cg.read_sample().unwrap().is_empty());
        let err = cg.set_cpu_weight(CpuWeight::new(100).unwrap()).unwrap_err();
        assert!(err.to_string().contains("cpu"), "{err}");
    }
}
