//! The peers' allocation rules, re-implemented as baselines (ANCHORS.md): each is one
//! [`crate::AllocatorFactory`] the simulator runs beside presage's own rule.
//!
//! Every module exposes the same small surface for the registry: `KNOB` (what the sweep
//! knob means), `DEFAULT_KNOB`, `SWEEP` (the grid `--sweep` runs) and
//! `build(knob) -> Result<PolicyParts, PolicyError>`.

pub mod autopilot_ml;
pub mod autopilot_mw;
pub mod cloudscale;
mod static_alloc;
pub mod threshold;
pub mod vpa;

pub use static_alloc::StaticAllocator;
