//! Discovers a real cgroup under `presage/` with the default configuration.
//!
//! Needs root and a writable cgroupfs; elsewhere it prints why and returns. The cgroups
//! (and `presage/` itself, if this test made it) are removed by guards, also when an
//! assertion fails.

mod common;

use std::process::Command;

use common::{CgroupGuard, ChildGuard, writable_layout};
use presage_linux::{Cgroup, Discovered, DiscoveryConfig, WorkloadKind, discover, discovery_tree};

#[test]
fn default_config_finds_a_populated_presage_cgroup() -> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = writable_layout() else {
        return Ok(());
    };
    let tree = discovery_tree(&layout)?;
    println!("walking {}", tree.display());
    // Only a `presage/` this test creates is removed afterwards; a real agent's stays.
    let _parent = (!tree.join("presage").exists())
        .then(|| Cgroup::open(&layout, "presage").map(CgroupGuard))
        .transpose()?;
    let tag = std::process::id();
    let name = format!("presage/presage-disc-test-{tag}");
    let empty_name = format!("presage/presage-disc-empty-{tag}");
    let populated = CgroupGuard(Cgroup::create(&layout, &name)?);
    let _empty = CgroupGuard(Cgroup::create(&layout, &empty_name)?);
    let child = ChildGuard(Command::new("sleep").arg("30").spawn()?);
    populated.0.add_process(child.0.id())?;

    let found = discover(&layout, &DiscoveryConfig::default())?;
    println!("found: {found:#?}");
    assert!(
        found.contains(&Discovered {
            relative: name.clone(),
            kind: WorkloadKind::Presage,
        }),
        "{name} not discovered"
    );
    assert!(
        !found.iter().any(|d| d.relative == empty_name),
        "an empty cgroup was discovered"
    );
    let mut sorted = found.clone();
    sorted.sort();
    assert_eq!(found, sorted);
    Ok(())
}
