//! Profile stores that outlive a process (DESIGN.md "Identity and profiles").
//!
//! [`SqliteStore`] is the embedded default: one file (`<data-dir>/presage.db`), WAL
//! journal, versioned migrations run on open, every batch in one transaction — a crash
//! loses at most the batch being written, never the database.

// Tests fail loudly on a broken fixture; the lint guards library code, not them.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod sqlite;

pub use sqlite::{SCHEMA_VERSION, SqliteStore};
