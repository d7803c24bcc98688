//! The cgroup v2 backend: one directory holds every controller's files.

use std::path::{Path, PathBuf};

use crate::error::LinuxError;
use crate::fsio::{self, read_parsed, write_value};
use crate::limits::{CpuMax, CpuWeight, IoMax};
use crate::parse::{
    self, V2CpuStat, parse_io_stat, parse_memory_events, parse_pressure, parse_v2_cpu_stat,
    parse_v2_memory_stat,
};
use crate::sample::{RawCgroupSample, working_set};

/// One cgroup in a v2 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Cgroup {
    dir: PathBuf,
}

impl V2Cgroup {
    /// The cgroup whose directory is `dir`.
    pub fn new(dir: PathBuf) -> V2Cgroup {
        V2Cgroup { dir }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn read_sample(&self) -> Result<RawCgroupSample, LinuxError> {
        let mut s = RawCgroupSample::default();
        if let Some(cpu) = self.read_cpu_and_pressure(&mut s)? {
            s.cpu_nr_periods = cpu.nr_periods;
            s.cpu_nr_throttled = cpu.nr_throttled;
            s.cpu_throttled_ns = cpu.throttled_usec.map(|u| u.saturating_mul(1_000));
        }
        s.memory_usage_bytes = self.memory_usage()?;
        let stat = read_parsed(&self.file("memory.stat"), parse_v2_memory_stat)?;
        s.memory_working_set_bytes =
            working_set(s.memory_usage_bytes, stat.map(|m| m.inactive_file));
        s.memory_peak_bytes = read_parsed(&self.file("memory.peak"), parse::parse_single_u64)?;
        s.oom_kills =
            read_parsed(&self.file("memory.events"), parse_memory_events)?.map(|e| e.oom_kill);
        if let Some(io) = read_parsed(&self.file("io.stat"), parse_io_stat)? {
            s.io_read_bytes = Some(io.iter().map(|e| e.rbytes).fold(0, u64::saturating_add));
            s.io_write_bytes = Some(io.iter().map(|e| e.wbytes).fold(0, u64::saturating_add));
        }
        s.process_count = self.processes()?.map(|p| p.len() as u64);
        Ok(s)
    }

    /// Fills the fields a v2 tree provides even without resource controllers, which is what
    /// a hybrid host's unified tree offers: CPU usage and PSI.
    /// Returns the parsed `cpu.stat` so the full backend can take its throttling keys
    /// without reading the file twice.
    pub(crate) fn read_cpu_and_pressure(
        &self,
        s: &mut RawCgroupSample,
    ) -> Result<Option<V2CpuStat>, LinuxError> {
        let cpu = read_parsed(&self.file("cpu.stat"), parse_v2_cpu_stat)?;
        if let Some(cpu) = &cpu {
            s.cpu_usage_ns = Some(cpu.usage_usec.saturating_mul(1_000));
        }
        s.cpu_pressure = read_parsed(&self.file("cpu.pressure"), parse_pressure)?;
        s.memory_pressure = read_parsed(&self.file("memory.pressure"), parse_pressure)?;
        s.io_pressure = read_parsed(&self.file("io.pressure"), parse_pressure)?;
        Ok(cpu)
    }

    pub(crate) fn memory_usage(&self) -> Result<Option<u64>, LinuxError> {
        read_parsed(&self.file("memory.current"), parse::parse_single_u64)
    }

    pub(crate) fn processes(&self) -> Result<Option<Vec<u32>>, LinuxError> {
        read_parsed(&self.file("cgroup.procs"), parse::parse_procs)
    }

    pub(crate) fn set_cpu_max(&self, limit: CpuMax) -> Result<(), LinuxError> {
        let quota = limit
            .quota_us()
            .map_or_else(|| "max".to_string(), |q| q.to_string());
        write_value(
            &self.file("cpu.max"),
            &format!("{quota} {}", limit.period_us()),
        )
    }

    pub(crate) fn set_cpu_weight(&self, weight: CpuWeight) -> Result<(), LinuxError> {
        write_value(&self.file("cpu.weight"), &weight.get().to_string())
    }

    pub(crate) fn set_memory_high(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        write_value(&self.file("memory.high"), &limit_text(bytes))
    }

    pub(crate) fn memory_max_path(&self) -> PathBuf {
        self.file("memory.max")
    }

    pub(crate) fn set_memory_max(&self, bytes: Option<u64>) -> Result<(), LinuxError> {
        write_value(&self.memory_max_path(), &limit_text(bytes))
    }

    pub(crate) fn set_io_max(&self, limit: &IoMax) -> Result<(), LinuxError> {
        let value = format!(
            "{}:{} rbps={} wbps={} riops={} wiops={}",
            limit.major,
            limit.minor,
            limit_text(limit.rbps),
            limit_text(limit.wbps),
            limit_text(limit.riops),
            limit_text(limit.wiops),
        );
        write_value(&self.file("io.max"), &value)
    }

    pub(crate) fn add_process(&self, pid: u32) -> Result<(), LinuxError> {
        write_value(&self.file("cgroup.procs"), &pid.to_string())
    }

    pub(crate) fn remove(&self) -> Result<(), LinuxError> {
        fsio::remove_dir(&self.dir)
    }

    pub(crate) fn can_freeze(&self) -> bool {
        self.file("cgroup.freeze").exists()
    }

    pub(crate) fn set_frozen(&self, frozen: bool) -> Result<(), LinuxError> {
        write_value(&self.file("cgroup.freeze"), if frozen { "1" } else { "0" })
    }

    pub(crate) fn can_kill(&self) -> bool {
        self.file("cgroup.kill").exists()
    }

    pub(crate) fn kill(&self) -> Result<(), LinuxError> {
        write_value(&self.file("cgroup.kill"), "1")
    }
}

fn limit_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "max".to_string(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{put, read};

    fn fake() -> (tempfile::TempDir, V2Cgroup) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        put(
            d,
            "cpu.stat",
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300\n",
        );
        put(d, "memory.current", "1000000\n");
        put(d, "memory.peak", "2000000\n");
        put(
            d,
            "memory.stat",
            "anon 600000\nfile 400000\ninactive_file 250000\nactive_file 150000\n",
        );
        put(
            d,
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
        );
        put(
            d,
            "io.stat",
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n",
        );
        put(
            d,
            "cpu.pressure",
            "some avg10=1.50 avg60=1.00 avg300=0.50 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        put(
            d,
            "memory.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        put(d, "cgroup.procs", "10\n11\n12\n");
        let cg = V2Cgroup::new(d.to_path_buf());
        (dir, cg)
    }

    #[test]
    fn sample_gathers_every_counter() {
        let (_dir, cg) = fake();
        let s = cg.read_sample().unwrap();
        assert_eq!(s.cpu_usage_ns, Some(2_000_000));
        assert_eq!(s.cpu_nr_periods, Some(10));
        assert_eq!(s.cpu_nr_throttled, Some(4));
        assert_eq!(s.cpu_throttled_ns, Some(300_000));
        assert_eq!(s.memory_usage_bytes, Some(1_000_000));
        assert_eq!(s.memory_working_set_bytes, Some(750_000));
        assert_eq!(s.memory_peak_bytes, Some(2_000_000));
        assert_eq!(s.oom_kills, Some(1));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (Some(101), Some(202)));
        assert_eq!(s.cpu_pressure.unwrap().some.total_usec, 123);
        assert!(s.memory_pressure.is_some());
        assert!(s.io_pressure.is_none());
        assert_eq!(s.process_count, Some(3));
    }

    #[test]
    fn vanished_cgroup_samples_empty() {
        let dir = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(dir.path().join("gone"));
        assert!(cg.read_sample().unwrap().is_empty());
    }

    #[test]
    fn corrupt_file_is_an_error_with_its_path() {
        let (dir, cg) = fake();
        put(dir.path(), "memory.current", "lots\n");
        let err = cg.read_sample().unwrap_err();
        assert!(err.to_string().contains("memory.current"), "{err}");
    }

    #[test]
    fn writes_use_v2_syntax() {
        let (dir, cg) = fake();
        let d = dir.path();
        cg.set_cpu_max(CpuMax::new(Some(30_000), 100_000).unwrap())
            .unwrap();
        assert_eq!(read(d, "cpu.max"), "30000 100000");
        cg.set_cpu_max(CpuMax::unlimited(100_000).unwrap()).unwrap();
        assert_eq!(read(d, "cpu.max"), "max 100000");
        cg.set_cpu_weight(CpuWeight::new(250).unwrap()).unwrap();
        assert_eq!(read(d, "cpu.weight"), "250");
        cg.set_memory_high(Some(1 << 30)).unwrap();
        assert_eq!(read(d, "memory.high"), "1073741824");
        cg.set_memory_max(None).unwrap();
        assert_eq!(read(d, "memory.max"), "max");
        let io = IoMax {
            major: 8,
            minor: 0,
            rbps: Some(1_048_576),
            wbps: None,
            riops: None,
            wiops: Some(100),
        };
        cg.set_io_max(&io).unwrap();
        assert_eq!(
            read(d, "io.max"),
            "8:0 rbps=1048576 wbps=max riops=max wiops=100"
        );
        cg.set_frozen(true).unwrap();
        assert_eq!(read(d, "cgroup.freeze"), "1");
        cg.kill().unwrap();
        assert_eq!(read(d, "cgroup.kill"), "1");
    }
}
