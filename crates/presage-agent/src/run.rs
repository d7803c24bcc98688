//! `presage run`: a command in a fresh cgroup, managed from its first instant.
//!
//! The child joins its cgroup between fork and exec (it writes `0` — "myself" — to every
//! hierarchy's `cgroup.procs`), so not one instruction of the command runs unmanaged.
//! Standalone, an in-process [`Agent`] manages it; when an agent is running on the host
//! the run registers with it instead and only watches, for its summary.

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use presage_core::{Limits, Resource, WorkloadId, WorkloadKey};
use presage_linux::{Cgroup, CgroupManager, Layout, RawCgroupSample};
use presage_policy::{Budget, WorkloadPolicy};
use tracing::{info, warn};

use crate::agent::{Agent, Explicit, Persistence, apply_initial_limits, now};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::identity::{code_id_of_file, input_hash};
use crate::registration::{Registration, running_agent};
use crate::sampler::Sampler;
use crate::summary::{ExecutionSummary, SummaryBuilder};

/// Hard ceilings for a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunBudget {
    /// CPU ceiling, cores.
    pub cpu_cores: Option<f64>,
    /// Memory ceiling, bytes.
    pub memory_bytes: Option<f64>,
    /// CPU-seconds allowed per `window_s`.
    pub cpu_seconds: Option<f64>,
    /// The CPU-seconds window.
    pub window_s: Option<u32>,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's name (default: the program's file name).
    pub name: Option<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Hard ceilings.
    pub budget: RunBudget,
    /// Priority weight when the node is short.
    pub weight: Option<f64>,
    /// A version appended to the code id.
    pub version: Option<String>,
    /// The agent settings (mode, policy, interval, paths).
    pub config: AgentConfig,
    /// Limits to start from instead of the budget's ceilings (experiments).
    pub initial_limits: Option<Limits>,
    /// Hand the run to a running agent when there is one.
    pub register_with_agent: bool,
    /// Labels the agent's `[policies.match]` selectors can test.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Runs the command to completion under presage and returns its summary. `stop` asks the
/// child to terminate (SIGTERM, then SIGKILL after 10 s); `on_tick` sees each interval's
/// sample with the limits in force after that interval's decision.
pub fn run(
    opts: &RunOptions,
    stop: &AtomicBool,
    mut on_tick: impl FnMut(&presage_core::Sample, Option<&Limits>),
) -> Result<ExecutionSummary, AgentError> {
    let program = opts.command.first().ok_or_else(|| AgentError::Config {
        file: PathBuf::from("<command line>"),
        message: "no command given after --".into(),
    })?;
    let exe = resolve_program(Path::new(program))?;
    // Unlabelled, the code is what its bytes hash to, and a rebuilt binary is new code
    // (it starts from its nearest fingerprint). Labelled with --code-version, the code
    // is the program at its path and the label its version, so a new label starts from
    // the previous label's profile.
    let code_id = match &opts.version {
        None => code_id_of_file(&exe)?,
        Some(_) => format!(
            "path:{}",
            std::fs::canonicalize(&exe)
                .unwrap_or_else(|_| exe.clone())
                .display()
        ),
    };
    let fingerprint = match crate::fingerprint::fingerprint_of_file(&exe) {
        Ok(fp) => Some(fp),
        Err(e) => {
            warn!(error = %e, "no fingerprint; an unknown program starts from the defaults");
            None
        }
    };
    let inputs = input_hash(&opts.command[1..]);
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let key = WorkloadKey::new(
        code_id.clone(),
        opts.version.clone().unwrap_or_default(),
        inputs.clone(),
        uid.to_string(),
    )?;
    let name = opts.name.clone().unwrap_or_else(|| {
        exe.file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
    });
    let relative = format!("presage/run-{}-{}", sanitize(&name), std::process::id());
    let policy = run_policy(&opts.config.default_policy, &opts.budget, opts.weight);
    policy.validate().map_err(|e| AgentError::Config {
        file: PathBuf::from("<command line>"),
        message: format!("--budget/--weight: {e}"),
    })?;

    let layout = Layout::detect_at(&opts.config.cgroup_root, &opts.config.mountinfo)?;
    let cg = Cgroup::create(&layout, &relative)?;
    let guard = CgroupGuard {
        cg: cg.clone(),
        relative: relative.clone(),
    };
    let initial = match opts.initial_limits {
        Some(l) => l,
        None => ceilings(&opts.budget)?,
    };
    apply_initial_limits(&cg, &initial)?;

    let mut profile_restored = false;
    let agent_pid = opts
        .register_with_agent
        .then(|| running_agent(&opts.config.data_dir, &opts.config.proc_root))
        .flatten();
    let mut manager = match agent_pid {
        Some(pid) => {
            let dir = opts.config.data_dir.join("registrations");
            Registration {
                cgroup: relative.clone(),
                key: key.clone(),
                policy: policy.clone(),
                supervisor_pid: std::process::id(),
                labels: opts.labels.clone(),
            }
            .write(&dir)?;
            info!(agent = pid, cgroup = %relative, "registered with the running agent");
            Manager::Agent { pid, dir }
        }
        None => {
            let persistence = Persistence::ProfilesOnly(opts.config.data_dir.clone());
            let mut agent = Agent::new(opts.config.clone(), persistence, false)?;
            let (_, restored) = agent.adopt_explicit(Explicit {
                cgroup: relative.clone(),
                key: key.clone(),
                policy,
                fingerprint,
                labels: opts.labels.clone(),
            })?;
            profile_restored = restored;
            Manager::Standalone(Box::new(agent))
        }
    };
    let id = WorkloadId::new(&relative)?;
    let watcher = match &manager {
        Manager::Agent { .. } => {
            let mut s = Sampler::new(None);
            s.track(id.clone(), std::sync::Arc::new(cg.clone()));
            Some(s)
        }
        Manager::Standalone(_) => None,
    };
    let mut watcher = watcher;

    let procs = procs_files(&layout, &relative);
    let started = Instant::now();
    let first = cg.read_sample()?;
    let mut child = spawn_in_cgroup(&opts.command, &exe, &procs)?;
    info!(pid = child.id(), cgroup = %relative, "started");

    let mut builder = SummaryBuilder::default();
    let mut decisions = 0u64;
    let interval = Duration::from_secs_f64(opts.config.interval_s);
    let mut next = Instant::now();
    let mut term_sent: Option<Instant> = None;
    let capacity = host_capacity();
    let mut limits_read_at = Instant::now();
    let status = loop {
        if let Some(status) = wait_step(&mut child, next)? {
            break status;
        }
        next += interval;
        let at = now();
        let samples = match (&mut manager, watcher.as_mut()) {
            (Manager::Standalone(agent), _) => {
                let tick = agent.tick(at);
                decisions += tick.report.decisions.len() as u64;
                tick.report
                    .issues
                    .iter()
                    .for_each(|i| warn!("{}", i.message));
                own_samples(&tick.report, &id, agent)
            }
            (Manager::Agent { .. }, Some(w)) => w.round(at).samples,
            (Manager::Agent { .. }, None) => Vec::new(),
        };
        let limits = cg.read_limits().ok();
        if let Some(limits) = &limits {
            let dt = limits_read_at.elapsed().as_secs_f64();
            limits_read_at = Instant::now();
            builder.observe_limits(limits, dt, capacity);
        }
        for s in &samples {
            builder.observe(s);
            on_tick(s, limits.as_ref());
        }
        forward_stop(stop, &mut child, &mut term_sent);
    };
    let duration_s = started.elapsed().as_secs_f64();
    let last = cg.read_sample().unwrap_or_default();
    let limits_final = cg.read_limits().unwrap_or_else(|_| Limits::unlimited());
    if let Manager::Agent { dir, .. } = &manager {
        decisions =
            crate::log::count_for(&crate::agent::decision_log_path(&opts.config.data_dir), &id)
                .unwrap_or(0);
        Registration::remove(dir, &relative);
    }
    if let Manager::Standalone(agent) = &mut manager {
        // The run's profile is what the next run of this code starts from; its record
        // (peaks, totals, exit status, how good its prior was) joins the executions.
        let ended = agent.end(&id, Some(exit_code(status)));
        for problem in ended.into_iter().chain(agent.shutdown(false)) {
            warn!("{problem}");
        }
    }
    let managed_by = match &manager {
        Manager::Agent { pid, .. } => format!("agent pid {pid}"),
        Manager::Standalone(_) => "standalone".into(),
    };
    drop(manager);
    drop(guard);
    let (peaks, mean) = builder.figures(cpu_mean(&first, &last, duration_s));
    let (ooms_sampled, throttled_sampled) = builder.events();
    let (oom_kills, throttled_s) = totals(&first, &last, ooms_sampled, throttled_sampled);
    Ok(ExecutionSummary {
        name,
        cgroup: relative,
        code_id,
        input_hash: inputs,
        user: uid,
        duration_s,
        exit_status: exit_code(status),
        peaks,
        mean,
        oom_kills,
        throttled_s,
        decisions,
        samples: builder.samples(),
        limits_final,
        mean_limits: builder.mean_limits(),
        profile_restored,
        managed_by,
    })
}

/// Cores and bytes of memory on this host: what "no limit" allows.
pub fn host_capacity() -> (f64, f64) {
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    (cores, mem_kib * 1024.0)
}

enum Manager {
    Standalone(Box<Agent>),
    Agent { pid: u32, dir: PathBuf },
}

fn own_samples(
    report: &presage_engine::TickReport,
    id: &WorkloadId,
    agent: &Agent,
) -> Vec<presage_core::Sample> {
    if report.samples_used == 0 {
        return Vec::new();
    }
    agent
        .engine()
        .workload(id)
        .and_then(|w| w.last_sample.cloned())
        .filter(|s| s.at() == report.now)
        .into_iter()
        .collect()
}

/// The policy of a run: the default with the budget as hard ceilings (`max`) and as a
/// budget the engine tracks (CPU-seconds per window, memory ceiling).
pub fn run_policy(
    base: &WorkloadPolicy,
    budget: &RunBudget,
    weight: Option<f64>,
) -> WorkloadPolicy {
    let mut p = base.clone();
    if let Some(c) = budget.cpu_cores {
        p.max.set(Resource::Cpu, Some(c));
    }
    if let Some(m) = budget.memory_bytes {
        p.max.set(Resource::Memory, Some(m));
    }
    if budget.cpu_seconds.is_some() || budget.memory_bytes.is_some() {
        p.budget = Some(Budget {
            cpu_seconds: budget.cpu_seconds,
            window_s: budget.window_s.unwrap_or(3600),
            memory_bytes: budget.memory_bytes,
        });
    }
    if let Some(w) = weight {
        p.weight = w;
    }
    p
}

fn ceilings(budget: &RunBudget) -> Result<Limits, AgentError> {
    let mut l = Limits::unlimited();
    if let Some(c) = budget.cpu_cores {
        l.set_hard(Resource::Cpu, c)?;
    }
    if let Some(m) = budget.memory_bytes {
        l.set_hard(Resource::Memory, m)?;
    }
    Ok(l)
}

fn cpu_mean(first: &RawCgroupSample, last: &RawCgroupSample, duration_s: f64) -> Option<f64> {
    let used = last.cpu_usage_ns?.checked_sub(first.cpu_usage_ns?)?;
    (duration_s > 0.0).then(|| used as f64 / 1e9 / duration_s)
}

/// Whole-run OOM kills and throttled time from the counters, which also cover the last
/// partial interval; the sampled sums when the counters are unreadable.
fn totals(
    first: &RawCgroupSample,
    last: &RawCgroupSample,
    ooms: u64,
    throttled_s: f64,
) -> (u64, f64) {
    let d = |a: Option<u64>, b: Option<u64>| b?.checked_sub(a?);
    let ooms = d(first.oom_kills, last.oom_kills).map_or(ooms, |k| k.max(ooms));
    let thr = d(first.cpu_throttled_ns, last.cpu_throttled_ns)
        .map_or(throttled_s, |ns| (ns as f64 / 1e9).max(throttled_s));
    (ooms, thr)
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Every hierarchy's `cgroup.procs` of `relative`: the child writes itself into each.
pub fn procs_files(layout: &Layout, relative: &str) -> Vec<PathBuf> {
    let mounts: BTreeSet<&Path> = layout
        .controllers()
        .map(|(_, m)| m.path())
        .chain(layout.v2_mount())
        .collect();
    mounts
        .into_iter()
        .map(|m| m.join(relative).join("cgroup.procs"))
        .filter(|p| p.exists())
        .collect()
}

/// Starts `command` (its program already resolved to `exe`) so that it joins the cgroups
/// whose `cgroup.procs` files are `procs` before its first instruction.
pub fn spawn_in_cgroup(
    command: &[OsString],
    exe: &Path,
    procs: &[PathBuf],
) -> Result<Child, AgentError> {
    let paths: Vec<CString> = procs
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| AgentError::Config {
            file: PathBuf::from("<cgroup path>"),
            message: e.to_string(),
        })?;
    let mut cmd = Command::new(exe);
    cmd.arg0(&command[0]).args(&command[1..]);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (open, write, close) on buffers allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            for path in &paths {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| AgentError::Io {
        context: format!(
            "starting {} in its cgroup ({})",
            exe.display(),
            procs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        source,
    })
}

/// Waits for the child until `deadline`; its exit status if it ended.
fn wait_step(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, AgentError> {
    loop {
        let status = child.try_wait().map_err(|source| AgentError::Io {
            context: format!("waiting for pid {}", child.id()),
            source,
        })?;
        if status.is_some() {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

fn forward_stop(stop: &AtomicBool, child: &mut Child, term_sent: &mut Option<Instant>) {
    if !stop.load(Ordering::Relaxed) {
        return;
    }
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    match term_sent {
        None => {
            // SAFETY: kill with a pid we own and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            *term_sent = Some(Instant::now());
        }
        Some(t) if t.elapsed() > Duration::from_secs(10) => {
            let _ = child.kill();
        }
        Some(_) => {}
    }
}

/// The executable `program` names: a path as given, or the first match on `PATH`.
pub fn resolve_program(program: &Path) -> Result<PathBuf, AgentError> {
    let not_found = |what: String| AgentError::Io {
        context: what,
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    if program.components().count() > 1 {
        return program.canonicalize().map_err(|source| AgentError::Io {
            context: format!("finding {}", program.display()),
            source,
        });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(|| not_found(format!("{} is not on PATH", program.display())))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("run{s}")
    } else {
        s
    }
}

/// Removes the run's cgroup when the run ends, however it ends: kills stragglers (a
/// daemon the command left behind) first, since a populated cgroup cannot be removed.
struct CgroupGuard {
    cg: Cgroup,
    relative: String,
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for _ in 0..50 {
            match self.cg.processes() {
                Ok(Some(p)) if !p.is_empty() => {
                    let _ = self.cg.kill();
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        if let Err(e) = self.cg.remove() {
            warn!(cgroup = %self.relative, error = %e, "could not remove the run's cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_a_path() {
        assert_eq!(sanitize("my job/1"), "my_job_1");
        assert_eq!(sanitize(".."), "run..");
        assert_eq!(sanitize(""), "run");
    }

    #[test]
    fn budget_becomes_ceilings_and_a_tracked_budget() {
        let b = RunBudget {
            cpu_cores: Some(2.0),
            memory_bytes: Some(1e9),
            ..RunBudget::default()
        };
        let p = run_policy(&WorkloadPolicy::default(), &b, Some(3.0));
        assert_eq!(p.max[Resource::Cpu], Some(2.0));
        assert_eq!(p.max[Resource::Memory], Some(1e9));
        assert_eq!(p.budget.unwrap().memory_bytes, Some(1e9));
        assert_eq!(p.weight, 3.0);
        p.validate().unwrap();
        let l = ceilings(&b).unwrap();
        assert_eq!(l.cpu_quota_cores(), Some(2.0));
    }

    #[test]
    fn programs_resolve_on_path_or_fail_with_the_name() {
        assert!(resolve_program(Path::new("sh")).unwrap().is_absolute());
        let e = resolve_program(Path::new("no-such-program-xyz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-program-xyz"), "{e}");
    }
}
