//! Applies the engine's decisions to cgroups — or, outside enforce mode, only records
//! that they were made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use presage_core::{Decision, Limits, WorkloadId};
use presage_engine::{ActuationError, Actuator};
use presage_linux::{Cgroup, CgroupManager, CpuMax, CpuWeight, LinuxError};

use crate::config::Mode;
use std::sync::atomic::{AtomicU8, Ordering};

/// The cgroups the engine's workloads live in, shared by the agent (which adds and
/// removes them as workloads come and go) and the actuator (which writes to them).
pub type Registry = Arc<Mutex<HashMap<WorkloadId, Arc<Cgroup>>>>;

/// When each limit write finished, for the sample-to-limit latency.
pub type WriteLog = Arc<Mutex<Vec<(WorkloadId, Instant)>>>;

/// The agent's mode, shared between the agent (which switches it on an operator's
/// request) and its actuator (which reads it at every write).
#[derive(Debug, Clone)]
pub struct ModeCell(Arc<AtomicU8>);

impl ModeCell {
    /// A cell holding `mode`.
    pub fn new(mode: Mode) -> ModeCell {
        ModeCell(Arc::new(AtomicU8::new(Self::code(mode))))
    }

    /// The mode now.
    pub fn get(&self) -> Mode {
        match self.0.load(Ordering::Acquire) {
            0 => Mode::Observe,
            1 => Mode::Recommend,
            _ => Mode::Enforce,
        }
    }

    /// Switches to `mode`.
    pub fn set(&self, mode: Mode) {
        self.0.store(Self::code(mode), Ordering::Release);
    }

    fn code(mode: Mode) -> u8 {
        match mode {
            Mode::Observe => 0,
            Mode::Recommend => 1,
            Mode::Enforce => 2,
        }
    }
}

/// The kernel's default CFS period; the quota is scaled to it.
const CPU_PERIOD_US: u64 = 100_000;

/// Writes decisions to cgroups in enforce mode; in the other modes accepts them without
/// touching the kernel (recommend mode records them; the agent drops them in observe
/// mode).
#[derive(Debug)]
pub struct CgroupActuator {
    mode: ModeCell,
    registry: Registry,
    writes: WriteLog,
}

impl CgroupActuator {
    /// An actuator over `registry`.
    pub fn new(mode: ModeCell, registry: Registry, writes: WriteLog) -> CgroupActuator {
        CgroupActuator {
            mode,
            registry,
            writes,
        }
    }

    fn cgroup(&self, id: &WorkloadId) -> Result<Arc<Cgroup>, ActuationError> {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| ActuationError::Gone(id.clone()))
    }
}

impl Actuator for CgroupActuator {
    fn apply(&mut self, decision: &Decision) -> Result<Limits, ActuationError> {
        match self.mode.get() {
            // The engine keeps believing the limits the kernel really has.
            Mode::Observe => return Ok(decision.old),
            // The engine follows its own recommendations, as if they had been applied.
            Mode::Recommend => return Ok(decision.new),
            Mode::Enforce => {}
        }
        let cg = self.cgroup(&decision.workload)?;
        write_limits(cg.as_ref(), &decision.old, &decision.new).map_err(|e| match &e {
            // The cgroup went away between the sample and the write: an absence.
            LinuxError::Write { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ActuationError::Gone(decision.workload.clone())
            }
            _ => failed(&decision.workload, e),
        })?;
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((decision.workload.clone(), Instant::now()));
        Ok(decision.new)
    }

    fn freeze(&mut self, workload: &WorkloadId, frozen: bool) -> Result<(), ActuationError> {
        if self.mode.get() != Mode::Enforce {
            return Err(ActuationError::Unsupported {
                action: "freeze outside enforce mode",
            });
        }
        let cg = self.cgroup(workload)?;
        cg.set_frozen(frozen).map_err(|e| failed(workload, e))
    }

    fn kill(&mut self, workload: &WorkloadId) -> Result<(), ActuationError> {
        if self.mode.get() != Mode::Enforce {
            return Err(ActuationError::Unsupported {
                action: "kill outside enforce mode",
            });
        }
        let cg = self.cgroup(workload)?;
        cg.kill().map_err(|e| failed(workload, e))
    }
}

fn failed(workload: &WorkloadId, e: LinuxError) -> ActuationError {
    ActuationError::Failed {
        workload: workload.clone(),
        message: e.to_string(),
    }
}

/// Writes the limits that differ between `old` and `new`. I/O and network ceilings are
/// not written: `io.max` is per device and presage forecasts bytes/s per workload, and
/// network shaping needs tc, not cgroupfs.
pub fn write_limits(cg: &dyn CgroupManager, old: &Limits, new: &Limits) -> Result<(), LinuxError> {
    if old.cpu_quota_cores() != new.cpu_quota_cores() {
        let max = match new.cpu_quota_cores() {
            Some(cores) => CpuMax::from_cores(cores, CPU_PERIOD_US)?,
            None => CpuMax::unlimited(CPU_PERIOD_US)?,
        };
        cg.set_cpu_max(max)?;
    }
    if old.cpu_weight() != new.cpu_weight() {
        // Unset means the kernel default (100).
        let w = new.cpu_weight().unwrap_or(100).clamp(1, 10_000);
        cg.set_cpu_weight(CpuWeight::new(u16::try_from(w).unwrap_or(10_000))?)?;
    }
    let bytes = |v: Option<f64>| v.map(|b| b.ceil() as u64);
    let (old_max, new_max) = (bytes(old.memory_max_bytes()), bytes(new.memory_max_bytes()));
    let (old_high, new_high) = (
        bytes(old.memory_high_bytes()),
        bytes(new.memory_high_bytes()),
    );
    let raising = new_max.is_none_or(|n| old_max.is_some_and(|o| n >= o));
    // Order so the soft limit is never left above the hard one in between: raise the
    // hard limit before the soft, lower the soft before the hard.
    if raising {
        if old_max != new_max {
            cg.set_memory_max(new_max)?;
        }
        if old_high != new_high {
            cg.set_memory_high(new_high)?;
        }
    } else {
        if old_high != new_high {
            cg.set_memory_high(new_high)?;
        }
        if old_max != new_max {
            cg.set_memory_max(new_max)?;
        }
    }
    Ok(())
}
