//! The memory side of `presage loadgen`: a worker process that holds resident memory, and
//! the supervisor in the parent that feeds it targets and respawns it.
//!
//! The memory lives in a child process so that hitting the cgroup's memory limit costs
//! only the holder: the OOM killer picks the biggest process (the worker, which also
//! raises its own `oom_score_adj`), the parent sees it die of SIGKILL, counts it and
//! starts a new one, and the CPU load in the parent never stops. That is the behaviour
//! of a real service under a supervisor, which is what the allocator must cope with.
//!
//! Protocol: the parent writes one decimal byte count per line to the worker's stdin;
//! the worker grows or shrinks to it. End of input (the parent finished or died) ends the
//! worker, so it can never outlive its parent for long.

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGKILL, SIGTERM};

/// The worker holds memory in chunks of this size: small enough to follow a target
/// closely, big enough that the allocator maps each one on its own (see `spawn`) so
/// that dropping it returns the pages to the kernel at once.
const CHUNK_BYTES: usize = 1 << 20;

/// Every page gets written; 4 KiB is the smallest page size, so this touches them all
/// whatever the real page size.
const PAGE_BYTES: usize = 4096;

/// The first wait before respawning a dead worker. Respawning at once would fork at
/// kernel speed in an OOM loop; a pause also lets a 1-second sampler see the drop.
const RESPAWN_MIN: Duration = Duration::from_millis(250);

/// The longest wait between respawns while the worker keeps dying young.
const RESPAWN_MAX: Duration = Duration::from_secs(4);

/// A worker that lived at least this long is considered healthy: the backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(2);

/// Runs the hidden `presage loadgen --memory-worker`: hold what the parent asks for
/// until stdin closes.
pub(crate) fn run_worker() -> Result<()> {
    // Ctrl-C reaches the whole process group; the parent shuts the worker down itself,
    // so the worker ignores SIGINT/SIGTERM instead of dying as an apparent crash.
    let ignored = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&ignored))
            .context("installing the worker's signal handlers")?;
    }
    // Make this the process the OOM killer picks. Unprivileged processes may raise their
    // own score; where even that is refused, the worker is still the biggest anyway.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "500") {
        tracing::debug!("could not raise oom_score_adj: {e}");
    }
    // The target is the worker's whole resident set, as a sampler of this process (or
    // of a cgroup holding just it) sees it, so its own code and runtime count too.
    let baseline = own_rss_bytes().unwrap_or(0);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut stamp = u64::from(std::process::id()) << 32;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading the memory target from the parent")?;
        let target: u64 = line
            .trim()
            .parse()
            .with_context(|| format!("bad memory target {line:?} from the parent"))?;
        let chunk = CHUNK_BYTES as u64;
        let want = (target.saturating_sub(baseline) + chunk / 2) / chunk;
        let want = usize::try_from(want).unwrap_or(usize::MAX);
        chunks.truncate(want);
        while chunks.len() < want {
            chunks.push(touched_chunk(&mut stamp));
        }
    }
    Ok(())
}

/// This process's resident set (`VmRSS`), in bytes.
fn own_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A chunk whose every page is written with distinct non-zero data, so it is resident
/// (not the shared zero page) and cannot be merged with another page.
fn touched_chunk(stamp: &mut u64) -> Vec<u8> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    for page in chunk.chunks_mut(PAGE_BYTES) {
        *stamp = stamp.wrapping_add(1);
        page[..8].copy_from_slice(&(*stamp | 1 << 63).to_le_bytes());
    }
    // The writes are never read back; keep the optimiser from deciding they are dead.
    std::hint::black_box(&mut chunk);
    chunk
}

/// A live worker process.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    spawned: Instant,
    /// The last target written to it.
    sent: Option<u64>,
}

/// Feeds memory targets to the worker and keeps one alive.
#[derive(Debug)]
pub(crate) struct Supervisor {
    exe: PathBuf,
    worker: Option<Worker>,
    target: u64,
    respawn_at: Option<Instant>,
    backoff: Duration,
    restarts: u32,
    oom_kills: u32,
}

/// How the worker fared over a run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WorkerStats {
    /// Times a dead worker had to be replaced.
    pub(crate) restarts: u32,
    /// Of those, deaths by SIGKILL: in a memory-limited cgroup, the OOM killer.
    pub(crate) oom_kills: u32,
}

impl Supervisor {
    /// Starts a worker that holds `target` bytes.
    pub(crate) fn start(target: u64) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the presage binary to re-run")?;
        let mut supervisor = Supervisor {
            exe,
            worker: None,
            target,
            respawn_at: None,
            backoff: RESPAWN_MIN,
            restarts: 0,
            oom_kills: 0,
        };
        supervisor.spawn().context("starting the memory worker")?;
        Ok(supervisor)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let mut child = Command::new(&self.exe)
            .args(["loadgen", "--memory-worker"])
            // glibc would otherwise raise its mmap threshold after the first free and
            // serve later chunks from the heap, which it rarely gives back: RSS would not
            // drop when the pattern goes down. A fixed threshold keeps every chunk its
            // own mapping, unmapped when dropped.
            .env("MALLOC_MMAP_THRESHOLD_", "65536")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let Some(stdin) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the worker has no stdin pipe"));
        };
        tracing::info!(pid = child.id(), "memory worker started");
        self.worker = Some(Worker {
            child,
            stdin,
            spawned: Instant::now(),
            sent: None,
        });
        self.send();
        Ok(())
    }

    /// Sets the bytes the worker should hold; sent at once if it differs.
    pub(crate) fn set_target(&mut self, bytes: u64) {
        self.target = bytes;
        self.send();
    }

    fn send(&mut self) {
        let Some(worker) = &mut self.worker else {
            return;
        };
        if worker.sent == Some(self.target) {
            return;
        }
        // A failed write means the worker is gone; `poll` will reap and replace it.
        if writeln!(worker.stdin, "{}", self.target).is_ok() {
            worker.sent = Some(self.target);
        }
    }

    /// Reaps a dead worker and starts its replacement when the backoff has passed.
    pub(crate) fn poll(&mut self) {
        if let Some(worker) = &mut self.worker {
            match worker.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let lived = worker.spawned.elapsed();
                    self.worker = None;
                    self.restarts += 1;
                    if status.signal() == Some(SIGKILL) {
                        self.oom_kills += 1;
                    }
                    tracing::warn!(%status, ?lived, "memory worker died; restarting it");
                    // Back off while it keeps dying young (a limit below the target).
                    let wait = if lived >= HEALTHY_AFTER {
                        RESPAWN_MIN
                    } else {
                        self.backoff
                    };
                    self.backoff = (wait * 2).min(RESPAWN_MAX);
                    self.respawn_at = Some(Instant::now() + wait);
                }
                Err(e) => tracing::warn!("checking on the memory worker: {e}"),
            }
        }
        if self.worker.is_none() && self.respawn_at.is_some_and(|at| Instant::now() >= at) {
            match self.spawn() {
                Ok(()) => self.respawn_at = None,
                Err(e) => {
                    tracing::warn!("respawning the memory worker: {e}");
                    self.respawn_at = Some(Instant::now() + self.backoff);
                }
            }
        }
    }

    /// Kills and reaps the worker (its CPU time then counts in the parent's children
    /// time) and says how it fared.
    pub(crate) fn shutdown(mut self) -> WorkerStats {
        if let Some(mut worker) = self.worker.take() {
            if let Err(e) = worker.child.kill() {
                tracing::debug!("killing the memory worker: {e}");
            }
            if let Err(e) = worker.child.wait() {
                tracing::warn!("reaping the memory worker: {e}");
            }
        }
        WorkerStats {
            restarts: self.restarts,
            oom_kills: self.oom_kills,
        }
    }
}
