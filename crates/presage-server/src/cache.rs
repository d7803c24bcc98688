//! Responses that depend only on the snapshot, encoded once per snapshot.
//!
//! The snapshot changes once per tick; dashboards and scrapers ask for the same whole
//! list and the same `/metrics` many times in between. Encoding 1,000 workloads costs
//! milliseconds, handing out the same bytes again costs nothing (`Bytes` clones share
//! the buffer), so at 1,000 workloads this is the difference between hundreds and
//! thousands of requests per second.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use presage_agent::surface::Snapshot;

/// What is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/api/v1/workloads` with no parameters.
    WholeList,
    /// `/metrics`.
    Metrics,
}

#[derive(Debug, Default)]
struct Entry {
    of: Option<Arc<Snapshot>>,
    bytes: Bytes,
}

/// One entry per kind, valid for one snapshot.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    whole_list: Mutex<Entry>,
    metrics: Mutex<Entry>,
}

impl Cache {
    /// The bytes of `kind` for `snapshot`, encoding them with `build` when the cached ones
    /// belong to an older snapshot. Concurrent requests for a stale entry wait for one
    /// encoding rather than each doing it.
    pub(crate) fn get<E>(
        &self,
        kind: Kind,
        snapshot: &Arc<Snapshot>,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let cell = match kind {
            Kind::WholeList => &self.whole_list,
            Kind::Metrics => &self.metrics,
        };
        let mut entry = cell.lock().unwrap_or_else(PoisonError::into_inner);
        if entry.of.as_ref().is_some_and(|s| Arc::ptr_eq(s, snapshot)) {
            return Ok(entry.bytes.clone());
        }
        let bytes = build()?;
        *entry = Entry {
            of: Some(snapshot.clone()),
            bytes: bytes.clone(),
        };
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presage_agent::Mode;

    #[test]
    fn one_encoding_per_snapshot() {
        let cache = Cache::default();
        let a = Arc::new(Snapshot::empty(Mode::Observe, 1.0));
        let b = Arc::new(Snapshot::empty(Mode::Observe, 1.0));
        let mut builds = 0;
        let mut get = |s: &Arc<Snapshot>, text: &'static str| {
            cache
                .get::<()>(Kind::Metrics, s, || {
                    builds += 1;
                    Ok(Bytes::from_static(text.as_bytes()))
                })
                .unwrap()
        };
        assert_eq!(get(&a, "one"), "one");
        assert_eq!(get(&a, "two"), "one", "same snapshot: cached");
        assert_eq!(get(&b, "three"), "three", "new snapshot: encoded again");
        assert_eq!(builds, 2);
        assert!(cache.get::<()>(Kind::WholeList, &a, || Err(())).is_err());
    }
}
