//! `[[policies]]` in a running agent, on a fake cgroup tree: which workload gets which
//! policy, reloads that apply and reloads that are refused.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use presage_agent::{Agent, AgentConfig, Persistence, now};
use presage_core::WorkloadId;

fn put(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A unified hierarchy under `root` with two services and a batch scope, each with one
/// (fake) process.
fn fake_host(root: &Path) {
    put(root, "cgroup.controllers", "cpu memory io pids\n");
    put(
        root,
        "mountinfo",
        &format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display()),
    );
    for leaf in [
        "system.slice/nginx.service",
        "system.slice/sshd.service",
        "batch.slice/job-1.scope",
    ] {
        put(root, &format!("{leaf}/cgroup.procs"), "");
        put(root, &format!("{leaf}/cpu.max"), "max 100000\n");
        put(root, &format!("{leaf}/memory.max"), "max\n");
        put(root, &format!("{leaf}/memory.current"), "1000000\n");
        put(root, &format!("{leaf}/cpu.stat"), "usage_usec 0\n");
    }
}

fn config_text(root: &Path, policies: &str) -> String {
    format!(
        "mode = \"observe\"\nrecord_samples = false\nnetwork = false\n\
         cgroup_root = {root:?}\nmountinfo = {mi:?}\nproc_root = {root:?}\n\
         [api]\nlisten = \"\"\n\
         [discovery]\nroots = [\"system.slice/*\", \"batch.slice/*\"]\nskip_empty = false\n\
         [default_policy]\nweight = 1.5\n{policies}",
        root = root.display().to_string(),
        mi = root.join("mountinfo").display().to_string(),
    )
}

const POLICIES: &str = r#"
[[policies]]
name = "web"
match = { unit = "nginx.service" }
weight = 5.0

[[policies]]
name = "services"
match = { labels = { kind = "service" } }
protected = true
"#;

fn id(s: &str) -> WorkloadId {
    WorkloadId::new(s).unwrap()
}

#[test]
fn policies_apply_at_adoption_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path());
    let file = dir.path().join("presage.toml");
    std::fs::write(&file, config_text(dir.path(), POLICIES)).unwrap();
    let config = AgentConfig::load(&file).unwrap();
    let mut agent = Agent::new(config, Persistence::Ephemeral, true).unwrap();
    agent.tick(now());
    let nginx = id("system.slice/nginx.service");
    let sshd = id("system.slice/sshd.service");
    let job = id("batch.slice/job-1.scope");
    assert_eq!(agent.policy_name(&nginx), "web");
    assert_eq!(agent.policy_name(&sshd), "services");
    assert_eq!(agent.policy_name(&job), "default");
    let policy = |a: &Agent, w: &WorkloadId| a.engine().workload(w).unwrap().policy.clone();
    assert_eq!(policy(&agent, &nginx).weight, 5.0);
    assert!(policy(&agent, &sshd).protected);
    assert_eq!(
        policy(&agent, &sshd).weight,
        1.5,
        "inherited from [default_policy]"
    );
    let status = agent.policy_status();
    assert_eq!(status.names, ["web", "services", "default"]);
    assert_eq!(status.source.as_deref(), Some(file.to_str().unwrap()));
    assert!(status.loaded_at_ms > 0 && status.last_error.is_none());

    // A broken file is refused: old policies stay, the error is kept with its line.
    std::fs::write(
        &file,
        config_text(dir.path(), "[[policies]]\nname = \"x\"\nwieght = 2.0\n"),
    )
    .unwrap();
    let e = agent.reload_from_file(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("policies[0].wieght"), "{e}");
    assert_eq!(agent.policy_name(&nginx), "web");
    assert_eq!(policy(&agent, &nginx).weight, 5.0);
    let last = agent.policy_status().last_error.unwrap();
    let line = config_text(dir.path(), "").lines().count() + 3;
    assert!(
        last.contains(&format!("presage.toml:{line}:1: key `policies[0].wieght`")),
        "{last}"
    );

    // A good one applies to every managed workload and clears the error; a setting that
    // needs a restart is reported, not applied.
    let new = POLICIES.replace("weight = 5.0", "weight = 7.0").replace(
        "match = { labels = { kind = \"service\" } }",
        "match = { cgroup = \"batch.slice/*\" }",
    );
    let text = config_text(dir.path(), &new).replace("mode = \"observe\"", "mode = \"enforce\"");
    std::fs::write(&file, text).unwrap();
    let summary = agent.reload_from_file(Some(&file)).unwrap();
    assert_eq!(summary.ignored, ["mode"]);
    assert_eq!(policy(&agent, &nginx).weight, 7.0);
    assert_eq!(agent.policy_name(&sshd), "default");
    assert_eq!(agent.policy_name(&job), "services");
    let moved: Vec<_> = summary
        .changed
        .iter()
        .map(|c| c.workload.as_str())
        .collect();
    assert_eq!(
        moved,
        ["batch.slice/job-1.scope", "system.slice/sshd.service"]
    );
    assert!(agent.policy_status().last_error.is_none());
    assert_eq!(agent.config().mode, presage_agent::Mode::Observe);
}

#[test]
fn reload_policies_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path());
    let text = config_text(dir.path(), POLICIES);
    let config = AgentConfig::from_toml(&text, Path::new("t.toml")).unwrap();
    let mut agent = Agent::new(config.clone(), Persistence::Ephemeral, true).unwrap();
    agent.tick(now());
    let mut bad = config;
    bad.default_policy.target_risk = 2.0;
    let e = agent.reload_policies(bad).unwrap_err().to_string();
    assert!(e.contains("default_policy.target_risk"), "{e}");
    assert!(agent.policy_status().last_error.is_some());
    assert_eq!(agent.config().default_policy.target_risk, 0.02);
}

#[test]
fn a_window_changes_the_policy_while_it_is_open() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path());
    let windows = "[[policies]]\nname = \"web\"\nmatch = { unit = \"nginx.service\" }\n\
                   [[policies.windows]]\nname = \"peak\"\ndays = \"mon\"\nhours = \"09:00-18:00\"\n\
                   vip_multiplier = 4.0\n";
    let text = config_text(dir.path(), windows);
    let config = AgentConfig::from_toml(&text, Path::new("t.toml")).unwrap();
    let mut agent = Agent::new(config, Persistence::Ephemeral, true).unwrap();
    // Monday 2026-11-23, 03:00 and 10:00 UTC (the tick's clock decides, not the wall's).
    let monday = |h: i64| presage_core::Timestamp::from_unix_secs(1_795_392_000 + h * 3600);
    agent.tick(monday(3));
    let nginx = id("system.slice/nginx.service");
    assert_eq!(agent.policy_name(&nginx), "web");
    agent.tick(monday(10));
    assert_eq!(agent.policy_name(&nginx), "web@peak");
    let vip = |a: &Agent| a.engine().workload(&nginx).unwrap().policy.vip_multiplier;
    assert_eq!(vip(&agent), 4.0);
    agent.tick(monday(18));
    assert_eq!((agent.policy_name(&nginx), vip(&agent)), ("web", 1.0));
}

#[test]
fn the_documented_example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/presage.example.toml");
    let c = AgentConfig::load(&path).unwrap();
    let names: Vec<_> = c.policies.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web", "ml-batch", "root-services"]);
    assert_eq!(c.policies[0].windows.len(), 1);
    assert_eq!(
        c.policies[1].policy.max[presage_core::Resource::Memory],
        Some(8e9)
    );
}
