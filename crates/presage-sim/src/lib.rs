//! The trace-driven simulator.
//!
//! It runs the same [`presage_engine::Engine`] as the live agent, fed by a recorded trace
//! instead of cgroups: the trace gives each workload's *demand*; the simulated world
//! applies the limits in force (CPU above the quota is throttled, memory above the hard
//! limit is an OOM kill) and shows the engine what a host would show. Decisions made after
//! observing step *t* take effect from step *t + 1* (plus any configured delay).

pub mod coldstart;
pub mod evaluate;
pub mod metrics;
pub mod nab;
mod oracle;
pub mod plot;
pub mod report;
pub mod run;
pub mod surges;
pub mod synth;
pub mod trace;
mod world;

pub use presage_policy::capacity::NodeCapacity;
pub use run::{
    PolicyRun, Resolver, RunResult, SimError, SimOptions, Timeline, resolve, simulate,
    simulate_with,
};
pub use world::TimelinePoint;
