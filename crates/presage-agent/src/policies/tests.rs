//! Compiling `[[policies]]` and choosing a workload's policy.

use std::collections::BTreeMap;
use std::path::Path;

use presage_core::{Resource, Timestamp};

use super::*;
use crate::config::AgentConfig;

fn config(text: &str) -> AgentConfig {
    AgentConfig::from_toml(text, Path::new("p.toml")).unwrap()
}

fn facts(cgroup: &str, labels: &[(&str, &str)]) -> WorkloadFacts {
    WorkloadFacts {
        cgroup: cgroup.into(),
        user: "0".into(),
        code_id: "abc".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Monday 2026-11-23 at `h`:00 UTC.
fn monday(h: i64) -> Timestamp {
    Timestamp::from_unix_secs(1_795_392_000 + h * 3600)
}

const FILE: &str = r#"
[default_policy]
target_risk = 0.05
weight = 2.0
[default_policy.max]
cpu = 8.0

[[policies]]
name = "web"
match = { unit = "nginx.service" }
weight = 4.0
[policies.max]
memory = 1e9
[[policies.windows]]
name = "peak"
days = "mon-fri"
hours = "09:00-18:00"
vip_multiplier = 3.0
target_risk = 0.01

[[policies]]
name = "batch"
match = { cgroup = "batch.slice/**", labels = { team = "ml" } }
headroom = 0.2

[[policies]]
name = "services"
match = { labels = { kind = "service" } }
protected = true
"#;

#[test]
fn first_matching_policy_wins_and_the_default_is_last() {
    let c = config(FILE);
    let names: Vec<_> = c.policies.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web", "batch", "services"]);
    let nginx = facts("system.slice/nginx.service", &[("kind", "service")]);
    assert_eq!(select(&c.policies, &nginx), Some(0), "web before services");
    let sshd = facts("system.slice/sshd.service", &[("kind", "service")]);
    assert_eq!(select(&c.policies, &sshd), Some(2));
    let job = facts("batch.slice/j1/step", &[("team", "ml")]);
    assert_eq!(select(&c.policies, &job), Some(1));
    let other_team = facts("batch.slice/j2", &[("team", "web")]);
    assert_eq!(
        select(&c.policies, &other_team),
        None,
        "AND of cgroup and labels"
    );
    let (name, p) = resolve(&c.policies, &c.default_policy, &other_team, None, monday(3));
    assert_eq!((name.as_str(), p), ("default", c.default_policy.clone()));
}

#[test]
fn left_out_keys_inherit_from_default_policy() {
    let c = config(FILE);
    let web = &c.policies[0].policy;
    assert_eq!(web.weight, 4.0);
    assert_eq!(
        web.target_risk, 0.05,
        "from [default_policy], not the Rust default"
    );
    assert_eq!(
        web.max[Resource::Cpu],
        Some(8.0),
        "nested tables merge key by key"
    );
    assert_eq!(web.max[Resource::Memory], Some(1e9));
    let batch = &c.policies[1].policy;
    assert_eq!((batch.weight, batch.headroom), (2.0, 0.2));
    assert!(c.policies[2].policy.protected);
}

#[test]
fn windows_overlay_their_policy_while_open() {
    let c = config(FILE);
    let nginx = facts("system.slice/nginx.service", &[]);
    let (name, p) = resolve(&c.policies, &c.default_policy, &nginx, None, monday(10));
    assert_eq!(name, "web@peak");
    assert_eq!(
        (p.weight, p.vip_multiplier, p.target_risk),
        (4.0, 3.0, 0.01)
    );
    assert_eq!(p.max[Resource::Memory], Some(1e9), "the rule's keys stay");
    let (name, p) = resolve(&c.policies, &c.default_policy, &nginx, None, monday(20));
    assert_eq!(name, "web");
    assert_eq!(p.vip_multiplier, 1.0);
    let saturday = monday(10 + 5 * 24);
    assert_eq!(
        resolve(&c.policies, &c.default_policy, &nginx, None, saturday).0,
        "web"
    );
}

#[test]
fn a_registration_keeps_its_own_policy_or_tightens_the_matched_one() {
    let c = config(FILE);
    let mut own = c.default_policy.clone();
    own.max.set(Resource::Memory, Some(5e8));
    own.weight = 100.0;
    own.protected = true;
    let lone = facts("presage/run-x-1", &[]);
    let (name, p) = resolve(&c.policies, &c.default_policy, &lone, Some(&own), monday(3));
    assert_eq!((name.as_str(), p.weight), ("registration", 100.0));
    let nginx = facts("system.slice/nginx.service", &[]);
    let (name, p) = resolve(
        &c.policies,
        &c.default_policy,
        &nginx,
        Some(&own),
        monday(3),
    );
    assert_eq!(name, "web");
    assert_eq!(p.weight, 4.0, "priority is the operator's");
    assert_eq!(
        p.max[Resource::Memory],
        Some(5e8),
        "the run's ceiling tightens"
    );
    assert!(p.protected);
}

#[test]
fn names_must_be_unique_and_present() {
    let e = AgentConfig::from_toml(
        "[[policies]]\nname = \"a\"\n[[policies]]\nname = \"a\"\n",
        Path::new("p.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("p.toml:4:1: key `policies[1].name`"), "{e}");
    let e = AgentConfig::from_toml("[[policies]]\nweight = 2.0\n", Path::new("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("policies[0].name") && e.contains("needs"), "{e}");
    let e = AgentConfig::from_toml("[[policies]]\nname = \"default\"\n", Path::new("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reserved"), "{e}");
}
