//! The one control loop of presage.
//!
//! [`Engine::tick`] takes the samples observed up to `now` and, for each workload, does in
//! order what the seeds' core loop does: update the profile (the forecaster and allocator
//! observe the sample) → forecast → allocate → actuate → score behaviour → respond. The
//! engine never knows whether it runs on a live host or on a recorded trace: that is
//! decided by the [`Source`] that feeds it and the [`Actuator`], [`ProfileStore`] and
//! [`Responder`] it is built with.

mod anomaly;
mod engine;
mod execution;
mod fit;
mod memory_store;
mod profile;
mod report;
mod respond;
mod responder;
mod step;
mod traits;
mod workload;

pub use engine::{Engine, EngineBuilder, EngineConfig, EngineError};
pub use memory_store::MemoryStore;
pub use report::{Issue, Outcome, ResponseEvent, TickReport, anomaly_score_of};
pub use responder::LadderResponder;
pub use traits::{
    ActuationError, Actuator, Batch, Execution, Prior, PriorSource, Profile, ProfileStore,
    RecordOnly, Responder, Response, ResponseInput, Retention, RetentionReport, Source,
    SourceError, StoreError, TickWrite,
};
pub use workload::{WorkloadSpec, WorkloadView};
