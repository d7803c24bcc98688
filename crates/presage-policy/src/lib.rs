//! Policy for presage: how forecasts become limits.
//!
//! An [`Allocator`] is one workload's allocation rule. It observes every sample (the
//! baselines keep their own statistics), and when the engine asks, proposes limits from
//! the latest sample, the forecast (if its policy uses one) and the limits in force. The
//! proposal then passes through [`safety::enforce`], which makes the invariants of
//! DESIGN.md impossible to break whatever the allocator proposed. [`BehaviorScore`]
//! tracks how well a workload keeps to its own forecast; [`anomaly::AnomalyScorer`]
//! scores how far it strays from its own profile (spikes, shifts, leaks, fork bombs).

mod allocator;
pub mod anomaly;
pub mod baselines;
mod behavior;
mod budget;
pub mod capacity;
mod margin;
mod policy;
mod predictive;
pub mod registry;
mod response;
pub mod safety;

pub use allocator::{AllocationInput, Allocator, AllocatorFactory, Proposal};
pub use behavior::{BehaviorConfig, BehaviorScore, NEUTRAL};
pub use budget::BudgetTracker;
pub use margin::{MarginAllocator, MarginConfig};
pub use policy::{Budget, MIN_CPU_CORES, MIN_MEMORY_BYTES, PolicyError, WorkloadPolicy};
pub use predictive::{Predictive, PredictiveConfig};
pub use response::{Cooldowns, ResponsePolicy, Rung};
