//! The live harness of presage: the engine of `presage-engine` driving real cgroups
//! through `presage-linux`.
//!
//! - [`Agent`]: discovery → sampling → engine → actuation, with an adoption
//!   [`Ledger`] on disk so shutdown (or the next start, after a crash) puts back the
//!   limits each workload had before presage.
//! - [`run`]: the `presage run` supervisor — a command in a fresh cgroup, managed from its
//!   first instant, with an execution summary at exit.
//! - [`AgentConfig`]: TOML over embedded defaults.
//! - [`WebhookSink`]: the response ladder's alerts POSTed from a bounded queue by a
//!   worker thread, so a receiver that is down or slow never blocks the loop.

// Tests fail loudly on a broken fixture; the lint guards library code, not them.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actuator;
mod agent;
mod config;
mod error;
mod fingerprint;
mod identity;
mod ledger;
mod log;
pub mod policies;
mod registration;
pub mod run;
mod sampler;
mod summary;
pub mod surface;
mod webhook;

pub use actuator::{CgroupActuator, Registry, WriteLog, write_limits};
pub use agent::{
    Agent, AgentTick, Explicit, LoopHooks, Persistence, PolicyChange, ReloadSummary,
    apply_initial_limits, build_policy, decision_log_path, file_budget, now,
};
pub use config::{
    AgentConfig, ApiConfig, ConfigErrors, ConfigProblem, DEFAULT_CONFIG_TOML, Mode,
    default_data_dir,
};
pub use error::AgentError;
pub use fingerprint::{FingerprintCache, MAX_IMPORTS, fingerprint_of_file};
pub use identity::{CodeIdCache, code_id_of_file, exe_of_process, input_hash};
pub use ledger::{Adoption, Ledger};
pub use log::{DecisionLog, count_for};
pub use registration::{Registration, pid_file, running_agent};
pub use sampler::{Reading, Round, Sampler};
pub use summary::{ExecutionSummary, SummaryBuilder};
pub use webhook::{WebhookAlert, WebhookConfig, WebhookSink, WebhookStats};
