//! What every handler shares: the agent's [`Shared`] state, the store and the token.

use std::fmt;
use std::sync::{Arc, Mutex};

use presage_agent::surface::Shared;
use presage_store::AdminStore;

/// The store behind a lock: the store's methods take `&mut self` and block, so handlers
/// use it one at a time, from `spawn_blocking`.
pub(crate) type StoreCell = Arc<Mutex<Box<dyn AdminStore>>>;

/// Everything the server needs from the agent. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ServerState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Option<StoreCell>,
    pub(crate) token: Option<String>,
    pub(crate) metrics_max_workloads: usize,
    /// Built once: its only collector reads the snapshot current at each scrape.
    pub(crate) registry: prometheus_client::registry::Registry,
    /// Snapshot-wide responses, encoded once per snapshot.
    pub(crate) cache: crate::cache::Cache,
}

impl ServerState {
    /// The state of a server showing `shared`, listing audit records from `store` (the
    /// store endpoints answer 503 without one), accepting mutations from holders of
    /// `token` (none are accepted without one), and giving per-workload series on
    /// `/metrics` to at most `metrics_max_workloads` workloads.
    pub fn new(
        shared: Arc<Shared>,
        store: Option<Box<dyn AdminStore>>,
        token: Option<String>,
        metrics_max_workloads: usize,
    ) -> ServerState {
        ServerState {
            inner: Arc::new(Inner {
                store: store.map(|s| Arc::new(Mutex::new(s))),
                // An empty token would let an empty `Bearer ` header in.
                token: token.filter(|t| !t.is_empty()),
                metrics_max_workloads,
                cache: crate::cache::Cache::default(),
                registry: crate::metrics::registry(shared.clone(), metrics_max_workloads),
                shared,
            }),
        }
    }
}

impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("ServerState")
            .field("store", &self.inner.store.is_some())
            .field("token", &self.inner.token.as_ref().map(|_| "<set>"))
            .field("metrics_max_workloads", &self.inner.metrics_max_workloads)
            .finish_non_exhaustive()
    }
}
