//! The live end-to-end tests on this host's real cgroups that take minutes of wall time
//! but little CPU: the anomaly scenarios, the comparison with the threshold rule, and
//! the dashboard in a real browser. They share one test binary so `cargo test` runs them
//! side by side (test binaries run one after another; tests within one run in parallel),
//! which makes the suite minutes shorter and each scenario a run on a busy host, as in
//! production. Each runs as root and skips with the reason otherwise.

#![allow(clippy::unwrap_used)]

#[path = "real_live/anomaly.rs"]
mod anomaly;
#[path = "real_live/compare.rs"]
mod compare;
#[path = "real_live/dashboard.rs"]
mod dashboard;
