//! The peers' allocation rules, re-implemented as baselines (ANCHORS.md): each is one
//! [`crate::AllocatorFactory`] the simulator runs beside presage's own rule.

mod static_alloc;

pub use static_alloc::StaticAllocator;
