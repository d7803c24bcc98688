//! Attributes network counters on this host: a process in a namespace of its own (made
//! with util-linux `unshare --net`) versus one in the host's namespace.
//!
//! Needs root, a writable cgroupfs and `unshare`; elsewhere it prints why and returns.
//! Cgroups and children are cleaned up by guards, also when an assertion fails.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{CgroupGuard, ChildGuard, wait_for, writable_layout};
use presage_core::{Resource, Timestamp, WorkloadId};
use presage_linux::{
    Cgroup, CgroupManager, NetAttribution, NetScope, ProcRoot, read_network, sample_between,
};

fn can_unshare_net() -> bool {
    match Command::new("unshare")
        .args(["--net", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) => {
            println!("skipped: `unshare --net true` failed ({s})");
            false
        }
        Err(e) => {
            println!("skipped: unshare (util-linux) not runnable: {e}");
            false
        }
    }
}

#[test]
fn own_namespace_is_attributed_and_the_host_namespace_is_not()
-> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = writable_layout() else {
        return Ok(());
    };
    if !can_unshare_net() {
        return Ok(());
    }
    let tag = std::process::id();
    // Declared before the children so they are dropped (removed) after the children die.
    let own = CgroupGuard(Cgroup::create(&layout, &format!("presage-net-own-{tag}"))?);
    let shared = CgroupGuard(Cgroup::create(&layout, &format!("presage-net-host-{tag}"))?);
    let isolated = ChildGuard(
        Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()?,
    );
    let host_child = ChildGuard(Command::new("sleep").arg("30").spawn()?);

    // This test runs in the host's namespace; pid 1's link is unreadable on some hosts.
    let host_ns = fs::read_link("/proc/self/ns/net")?;
    let ipid = isolated.0.id();
    let ns_link = format!("/proc/{ipid}/ns/net");
    // unshare enters the new namespace, then execs sleep under the same pid.
    assert!(
        wait_for(Duration::from_secs(5), || {
            fs::read_link(&ns_link).is_ok_and(|l| l != host_ns)
        }),
        "{ns_link} never left the host namespace"
    );
    let target = fs::read_link(&ns_link)?.to_string_lossy().into_owned();
    own.0.add_process(ipid)?;
    shared.0.add_process(host_child.0.id())?;

    let proc = ProcRoot::default();
    let net = read_network(&own.0, &proc)?;
    println!("own: {net:?} ({target}), host: {host_ns:?}");
    match net {
        NetAttribution::Own {
            rx_bytes,
            tx_bytes,
            netns,
        } => {
            assert_eq!(format!("net:[{netns}]"), target);
            // A fresh namespace has only `lo`, which is not counted.
            assert_eq!((rx_bytes, tx_bytes), (0, 0));
        }
        other => panic!("expected the unshared process's own namespace, got {other:?}"),
    }
    assert_eq!(
        read_network(&shared.0, &proc)?,
        NetAttribution::SharedWithHost
    );

    // Two readings of the same namespace make a rate; read_sample alone carries none.
    let mut a = own.0.read_sample()?;
    assert_eq!(a.net_scope, None, "read_sample does not read /proc");
    a.set_network(&net);
    let mut b = own.0.read_sample()?;
    b.set_network(&read_network(&own.0, &proc)?);
    assert_eq!(
        b.net_scope,
        Some(NetScope::Own {
            netns: match net {
                NetAttribution::Own { netns, .. } => netns,
                _ => 0,
            }
        })
    );
    let t0 = Timestamp::from_unix_ms(1_000);
    let s = sample_between(&WorkloadId::new("net-test")?, t0, &a, t0.plus_ms(1_000), &b)?;
    assert_eq!(s.usage().get(Resource::NetRx), Some(0.0));
    assert_eq!(s.usage().get(Resource::NetTx), Some(0.0));
    Ok(())
}
