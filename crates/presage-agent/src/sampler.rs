//! Reads every tracked cgroup once per interval and turns consecutive readings into
//! samples. A cgroup whose files have all vanished is reported gone, never an error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use presage_core::{Sample, Timestamp, WorkloadId};
use presage_linux::{Cgroup, CgroupManager, ProcRoot, RawCgroupSample, sample_between};
use tracing::debug;

/// One cgroup being sampled.
#[derive(Debug)]
struct Tracked {
    id: WorkloadId,
    cgroup: Arc<Cgroup>,
    prev: Option<(Timestamp, RawCgroupSample)>,
}

/// What one pass over the tracked cgroups produced.
#[derive(Debug, Default)]
pub struct Round {
    /// One sample per cgroup read twice or more.
    pub samples: Vec<Sample>,
    /// When each sample's files were read (same order as `samples`): the start of the
    /// sample-to-limit latency.
    pub read_at: Vec<Instant>,
    /// Cgroups that vanished since the previous round.
    pub gone: Vec<WorkloadId>,
    /// Readings that failed for a reason other than absence (named file and cause).
    pub errors: Vec<(WorkloadId, String)>,
}

/// The live [`Source`](presage_engine::Source)'s sampling half.
#[derive(Debug)]
pub struct Sampler {
    tracked: Vec<Tracked>,
    proc_root: Option<ProcRoot>,
}

impl Sampler {
    /// A sampler; with `proc_root`, network counters are read for workloads in their own
    /// network namespace.
    pub fn new(proc_root: Option<PathBuf>) -> Sampler {
        Sampler {
            tracked: Vec::new(),
            proc_root: proc_root.map(ProcRoot::new),
        }
    }

    /// Starts sampling `cgroup` as `id` (a no-op if already tracked).
    pub fn track(&mut self, id: WorkloadId, cgroup: Arc<Cgroup>) {
        if self.tracked.iter().any(|t| t.id == id) {
            return;
        }
        self.tracked.push(Tracked {
            id,
            cgroup,
            prev: None,
        });
    }

    /// Stops sampling `id`.
    pub fn untrack(&mut self, id: &WorkloadId) {
        self.tracked.retain(|t| &t.id != id);
    }

    /// How many cgroups are tracked.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Reads every tracked cgroup at `now`.
    pub fn round(&mut self, now: Timestamp) -> Round {
        let mut round = Round::default();
        for i in 0..self.tracked.len() {
            round.take(self.read(i, now));
        }
        self.drop_gone(&round.gone);
        round
    }

    /// Reads the `index`-th tracked cgroup at `now` — one workload at a time, so the
    /// agent can decide and write for it before reading the next (what bounds the
    /// sample-to-limit latency). Vanished cgroups stay tracked until
    /// [`Sampler::drop_gone`].
    pub fn read(&mut self, index: usize, now: Timestamp) -> Reading {
        let Some(t) = self.tracked.get_mut(index) else {
            return Reading::Nothing;
        };
        let read_at = Instant::now();
        let mut raw = match t.cgroup.read_sample() {
            Ok(raw) => raw,
            Err(e) => return Reading::Failed(t.id.clone(), e.to_string()),
        };
        if raw.is_empty() {
            debug!(workload = %t.id, "cgroup vanished");
            return Reading::Gone(t.id.clone());
        }
        let mut network_error = None;
        if let Some(proc_root) = &self.proc_root {
            // Network is an extra: its failure must not cost the cgroup's sample.
            if let Err(e) = presage_linux::fill_network(t.cgroup.as_ref(), proc_root, &mut raw) {
                network_error = Some(e.to_string());
            }
        }
        let reading = match &t.prev {
            Some((prev_at, prev)) if now > *prev_at => {
                match sample_between(&t.id, *prev_at, prev, now, &raw) {
                    Ok(sample) => Reading::Sample(Box::new(sample), read_at),
                    Err(e) => Reading::Failed(t.id.clone(), e.to_string()),
                }
            }
            _ => Reading::Nothing,
        };
        t.prev = Some((now, raw));
        match (reading, network_error) {
            (Reading::Nothing, Some(e)) => Reading::Failed(t.id.clone(), e),
            (r, _) => r,
        }
    }

    /// Stops tracking cgroups found gone.
    pub fn drop_gone(&mut self, gone: &[WorkloadId]) {
        if !gone.is_empty() {
            self.tracked.retain(|t| !gone.contains(&t.id));
        }
    }
}

/// What reading one cgroup gave.
#[derive(Debug)]
pub enum Reading {
    /// The interval since the previous reading, and when the files were read.
    Sample(Box<Sample>, Instant),
    /// The first reading (nothing to compare with yet), or no such cgroup.
    Nothing,
    /// The cgroup is gone.
    Gone(WorkloadId),
    /// A read failed for a reason other than absence.
    Failed(WorkloadId, String),
}

impl Round {
    fn take(&mut self, reading: Reading) {
        match reading {
            Reading::Sample(s, at) => {
                self.samples.push(*s);
                self.read_at.push(at);
            }
            Reading::Nothing => {}
            Reading::Gone(id) => self.gone.push(id),
            Reading::Failed(id, e) => self.errors.push((id, e)),
        }
    }
}
