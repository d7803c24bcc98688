//! Helpers shared by the integration tests.

// Each test binary uses part of the helpers.
#![allow(dead_code, unused_macros)]

#[macro_use]
pub(crate) mod backend;
pub(crate) mod pg;
