//! The agent on this host's real cgroups: adoption, enforcement, restore on shutdown, and
//! re-adoption after a crash. Runs as root; skips with the reason otherwise.

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use presage_agent::run::{procs_files, resolve_program, spawn_in_cgroup};
use presage_agent::{Agent, AgentConfig, Mode, Persistence, now};
use presage_linux::{Cgroup, CgroupManager, CpuMax, Layout};

struct Cleanup {
    cgroups: Vec<Cgroup>,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Leaves first, parent last; a just-killed child can keep a cgroup busy briefly.
        for cg in &self.cgroups {
            for _ in 0..50 {
                if cg.remove().is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn writable_layout() -> Option<Layout> {
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .ok()
}

fn spin(layout: &Layout, relative: &str) -> Child {
    let command: Vec<OsString> = ["sh", "-c", "while :; do :; done"]
        .iter()
        .map(OsString::from)
        .collect();
    let exe = resolve_program(Path::new("sh")).unwrap();
    spawn_in_cgroup(&command, &exe, &procs_files(layout, relative)).unwrap()
}

fn config(parent: &str, data_dir: &Path) -> AgentConfig {
    // The static rule at half scale makes one decision, at once: a deterministic change
    // to watch go in and come back out.
    let text = format!(
        "mode = \"enforce\"\npolicy = \"static\"\nknob = 0.5\ndecide_every_s = 0\ndata_dir = {:?}\n[discovery]\nroots = [\"{parent}/*\"]\n",
        data_dir.display().to_string()
    );
    AgentConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

fn start(config: AgentConfig, data: &Path) -> Agent {
    Agent::new(config, Persistence::DataDir(data.to_path_buf()), true).unwrap()
}

fn ticks(agent: &mut Agent, n: usize) {
    for _ in 0..n {
        let tick = agent.tick(now());
        assert!(tick.problems.is_empty(), "{:?}", tick.problems);
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// `presage/NAME-PID/w1` with a 1.5-core quota and a spinning shell in it; removed (and
/// the shell killed) when the returned guard drops.
fn spinning_leaf(layout: &Layout, name: &str) -> (Cleanup, String, String, Cgroup) {
    let parent = format!("presage/{name}-{}", std::process::id());
    let leaf = format!("{parent}/w1");
    let mut cleanup = Cleanup {
        cgroups: Vec::new(),
        children: Vec::new(),
    };
    let parent_cg = Cgroup::create(layout, &parent).unwrap();
    let cg = Cgroup::create(layout, &leaf).unwrap();
    cleanup.cgroups.push(cg.clone());
    cleanup.cgroups.push(parent_cg);
    cg.set_cpu_max(CpuMax::from_cores(1.5, 100_000).unwrap())
        .unwrap();
    cleanup.children.push(spin(layout, &leaf));
    (cleanup, parent, leaf, cg)
}

fn cpu_quota(cg: &Cgroup) -> Option<f64> {
    cg.read_limits().unwrap().cpu_quota_cores()
}

#[test]
fn enforces_restores_on_shutdown_and_readopts_after_a_crash() {
    let Some(layout) = writable_layout() else {
        return;
    };
    let (_cleanup, parent, leaf, cg) = spinning_leaf(&layout, "agent-test");
    let data = tempfile::tempdir().unwrap();

    let mut agent = start(config(&parent, data.path()), data.path());
    ticks(&mut agent, 4);
    assert_eq!(
        agent.engine().workloads().count(),
        1,
        "found the one workload"
    );
    assert_eq!(cpu_quota(&cg), Some(0.75), "the decision reached cpu.max");
    let log = std::fs::read_to_string(data.path().join("decisions.jsonl")).unwrap();
    assert!(
        log.contains(&leaf) && log.contains("\"applied\":true"),
        "{log}"
    );

    // A crash: the agent vanishes without restoring. The ledger on disk still holds the
    // limits the operator had.
    drop(agent);
    assert_eq!(cpu_quota(&cg), Some(0.75));
    let ledger = std::fs::read_to_string(data.path().join("adopted.json")).unwrap();
    assert!(ledger.contains(&leaf) && ledger.contains("1.5"), "{ledger}");

    let mut agent = start(config(&parent, data.path()), data.path());
    ticks(&mut agent, 4);
    assert_eq!(
        cpu_quota(&cg),
        Some(0.75),
        "managed again after the restart"
    );
    let problems = agent.shutdown(true);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(cpu_quota(&cg), Some(1.5), "the operator's limit is back");
    let ledger = std::fs::read_to_string(data.path().join("adopted.json")).unwrap();
    assert!(!ledger.contains(&leaf), "nothing left to restore: {ledger}");
}

#[test]
fn observe_mode_never_writes() {
    let Some(layout) = writable_layout() else {
        return;
    };
    let (_cleanup, parent, _leaf, cg) = spinning_leaf(&layout, "agent-observe");
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&parent, data.path());
    c.mode = Mode::Observe;
    let mut agent = start(c, data.path());
    ticks(&mut agent, 4);
    assert_eq!(agent.engine().workloads().count(), 1);
    let w = agent.engine().workloads().next().unwrap();
    let sampled = w.last_sample.and_then(|s| s.usage().cpu_cores()).unwrap();
    // A spinner wants a whole core; on a shared 2-core host it may get much less.
    assert!(sampled > 0.1, "the spinning shell was sampled: {sampled}");
    assert_eq!(cpu_quota(&cg), Some(1.5), "observe mode left cpu.max alone");
    assert!(!data.path().join("decisions.jsonl").exists());
    agent.shutdown(true);
    assert_eq!(cpu_quota(&cg), Some(1.5));
}

#[test]
fn operators_switch_modes_and_override_limits_at_run_time() {
    use presage_agent::surface::{Command, CommandError};
    let Some(layout) = writable_layout() else {
        return;
    };
    let (_cleanup, parent, leaf, cg) = spinning_leaf(&layout, "agent-control");
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&parent, data.path());
    c.mode = Mode::Recommend;
    let mut agent = start(c, data.path());
    ticks(&mut agent, 3);
    assert_eq!(
        cpu_quota(&cg),
        Some(1.5),
        "recommend mode leaves cpu.max alone"
    );

    // Entering enforce applies what presage recommends at once, before any tick.
    agent.handle(Command::SetMode(Mode::Enforce)).unwrap();
    assert_eq!(agent.config().mode, Mode::Enforce);
    assert_eq!(cpu_quota(&cg), Some(0.75), "the recommendation enforced");

    // Leaving enforce puts the operator's limit back; recommending writes nothing.
    agent.handle(Command::SetMode(Mode::Recommend)).unwrap();
    assert_eq!(cpu_quota(&cg), Some(1.5), "restored when enforce ended");
    ticks(&mut agent, 2);
    assert_eq!(
        cpu_quota(&cg),
        Some(1.5),
        "recommend mode left cpu.max alone"
    );
    agent.handle(Command::SetMode(Mode::Enforce)).unwrap();

    // An override holds against the rule until it is cleared.
    let expires = now().unix_ms() + 60_000;
    let limits = presage_core::Limits::unlimited()
        .with_hard(presage_core::Resource::Cpu, 0.4)
        .unwrap();
    agent
        .handle(Command::Override {
            workload: leaf.clone(),
            limits,
            expires_at_ms: expires,
        })
        .unwrap();
    ticks(&mut agent, 3);
    assert_eq!(cpu_quota(&cg), Some(0.4), "the override reached cpu.max");
    let view = agent.engine().workloads().next().unwrap();
    assert!(view.override_hold.is_some());
    agent
        .handle(Command::ClearOverride {
            workload: leaf.clone(),
        })
        .unwrap();
    ticks(&mut agent, 2);
    let view = agent.engine().workloads().next().unwrap();
    assert!(view.override_hold.is_none(), "the override ended");

    // Bad requests are refused, naming what is wrong.
    let unknown = agent.handle(Command::ClearOverride {
        workload: "no/such/workload".into(),
    });
    assert!(
        matches!(unknown, Err(CommandError::NotFound(_))),
        "{unknown:?}"
    );
    let too_long = agent.handle(Command::Override {
        workload: leaf,
        limits,
        expires_at_ms: now().unix_ms() + 30 * 24 * 3600 * 1000,
    });
    assert!(
        matches!(&too_long, Err(CommandError::Rejected(m)) if m.contains("expires_at_ms")),
        "{too_long:?}"
    );
    assert!(agent.shutdown(true).is_empty());
    assert_eq!(cpu_quota(&cg), Some(1.5));
}
