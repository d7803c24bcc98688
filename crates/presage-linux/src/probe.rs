//! Can this process manage cgroups here? Asked by the agent at start-up and by every
//! test that touches the host's real cgroups (which skip, saying why, where it cannot).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::{Controller, Layout};

/// This host's layout if this process may create cgroups in it, or why not.
pub fn writable_layout() -> Result<Layout, String> {
    let layout = Layout::detect().map_err(|e| format!("no cgroup layout detected: {e}"))?;
    probe_writable(&layout)?;
    Ok(layout)
}

/// Whether a cgroup can be made (and removed) in `layout`'s memory hierarchy, or its v2
/// tree when there is no v1 memory controller.
pub fn probe_writable(layout: &Layout) -> Result<(), String> {
    let dir = layout
        .controller(Controller::Memory)
        .map(|m| m.path().to_path_buf())
        .or_else(|| layout.v2_mount().map(Path::to_path_buf))
        .ok_or("no memory controller and no v2 tree mounted")?;
    // Tests probe from several threads of one process at once: the pid alone would make
    // them collide ("File exists") and skip for a reason that is not the machine's.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = dir.join(format!(
        "presage-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cgroupfs not writable ({}): {e}", probe.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}
