//! The agent's HTTP surface (issue 8): a JSON API under `/api/v1`, Prometheus
//! `/metrics`, `/healthz` and a dashboard at `/`.
//!
//! The server never touches the engine. It reads the snapshot and history the control
//! loop publishes in [`presage_agent::surface::Shared`] after every tick, and hands
//! mutations to the loop as [`presage_agent::surface::Command`]s, waiting for the loop's
//! answer off the async workers. Reads are open to loopback peers; mutations — and reads
//! from off the host — need the bearer token. There is no CORS layer: a page on another
//! origin cannot read the API.
//!
//! - [`router`]: the routes of [`ROUTES`] as an [`axum::Router`], for tests and embedding.
//! - [`spawn`]: binds and serves on a runtime of its own, in a background thread.

// Tests fail loudly on a broken fixture; the lint guards library code, not them.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, post, put};
use tokio::sync::watch;

mod auth;
mod cache;
mod dashboard;
mod error;
mod metrics;
mod openapi;
mod query;
mod routes;
mod state;

pub use error::ServerError;
pub use openapi::OPENAPI_JSON;
pub use state::ServerState;

use error::ApiError;
use routes::{read, store, write};

/// The largest request body accepted (413 beyond): the API's bodies are a few hundred
/// bytes, and a small bound keeps a client from making the agent buffer much.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Every route, `(method, path)`: the router is built from this table and the OpenAPI
/// document is tested against it both ways. Paths use axum's `{name}` syntax, which is
/// also OpenAPI's. `GET` routes answer `HEAD` too.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/assets/app.css"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/workloads"),
    ("GET", "/api/v1/workloads/{id}"),
    ("GET", "/api/v1/workloads/{id}/history"),
    ("PUT", "/api/v1/workloads/{id}/override"),
    ("DELETE", "/api/v1/workloads/{id}/override"),
    ("POST", "/api/v1/mode"),
    ("GET", "/api/v1/policies"),
    ("POST", "/api/v1/policies/reload"),
    ("GET", "/api/v1/profiles"),
    ("GET", "/api/v1/executions"),
    ("GET", "/api/v1/decisions"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/responses"),
];

/// The handler of one row of [`ROUTES`] (`None` for a row without one, which a unit
/// test forbids).
fn endpoint(method: &str, path: &str) -> Option<MethodRouter<ServerState>> {
    Some(match (method, path) {
        ("GET", "/") => get(dashboard::index),
        ("GET", "/assets/app.js") => get(dashboard::app_js),
        ("GET", "/assets/app.css") => get(dashboard::app_css),
        ("GET", "/healthz") => get(read::healthz),
        ("GET", "/metrics") => get(metrics::metrics),
        ("GET", "/api/v1/openapi.json") => get(openapi::openapi),
        ("GET", "/api/v1/status") => get(read::status),
        ("GET", "/api/v1/workloads") => get(read::workloads),
        ("GET", "/api/v1/workloads/{id}") => get(read::workload),
        ("GET", "/api/v1/workloads/{id}/history") => get(read::history),
        ("PUT", "/api/v1/workloads/{id}/override") => put(write::put_override),
        ("DELETE", "/api/v1/workloads/{id}/override") => delete(write::delete_override),
        ("POST", "/api/v1/mode") => post(write::set_mode),
        ("GET", "/api/v1/policies") => get(read::policies),
        ("POST", "/api/v1/policies/reload") => post(write::reload_policies),
        ("GET", "/api/v1/profiles") => get(store::profiles),
        ("GET", "/api/v1/executions") => get(store::executions),
        ("GET", "/api/v1/decisions") => get(store::decisions),
        ("GET", "/api/v1/alerts") => get(store::alerts),
        ("GET", "/api/v1/responses") => get(store::responses),
        _ => return None,
    })
}

async fn not_found(request: Request) -> ApiError {
    let path = request.uri().path();
    let mut message = format!("no route {path:?}");
    if path.starts_with("/api/v1/workloads/") {
        message.push_str(
            " (a workload id is one percent-encoded path segment: \
             /api/v1/workloads/system.slice%2Fnginx.service)",
        );
    }
    ApiError::not_found(message)
}

async fn method_not_allowed(request: Request) -> ApiError {
    let path = request.uri().path();
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p)| routes::matches(p, path))
        .map(|(m, _)| *m)
        .collect();
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {path:?} (allowed: {})",
            request.method(),
            allowed.join(", ")
        ),
    )
}

/// The whole surface as a router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: without the peer address every
/// request counts as remote and needs the token.
pub fn router(state: ServerState) -> Router {
    let mut app = Router::new();
    for (method, path) in ROUTES {
        match endpoint(method, path) {
            Some(handler) => app = app.route(path, handler),
            None => tracing::error!(method, path, "API route without a handler; skipped"),
        }
    }
    app.route_layer(from_fn_with_state(state.clone(), auth::guard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

/// How long a stopping server waits for requests in flight (a command waiting on the
/// loop, say) before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A server running in the background; dropping it (or [`ServerHandle::stop`]) stops it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound (the port chosen when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the server thread to end.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // No receiver left means the server already ended; nothing to tell.
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the API server thread panicked");
        }
    }
}

/// Binds `listen` and serves on a dedicated tokio runtime (2 worker threads) in a
/// background thread until the handle is dropped or [`ServerHandle::stop`] is called.
pub fn spawn(listen: &str, state: ServerState) -> Result<ServerHandle, ServerError> {
    let bind = |source| ServerError::Bind {
        listen: listen.to_owned(),
        source,
    };
    // Bound here, not in the thread, so a taken port is an error the caller sees.
    let std_listener = std::net::TcpListener::bind(listen).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let local_addr = std_listener.local_addr().map_err(bind)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("presage-http")
        .enable_all()
        .build()
        .map_err(|source| ServerError::Start {
            what: "runtime",
            source,
        })?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(bind)?
    };
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("presage-http".into())
        .spawn(move || {
            runtime.block_on(serve(listener, state, stopped));
            // Blocking tasks still waiting on the loop are abandoned, not waited for.
            runtime.shutdown_timeout(STOP_GRACE);
        })
        .map_err(|source| ServerError::Start {
            what: "thread",
            source,
        })?;
    tracing::info!(%local_addr, "API server listening");
    Ok(ServerHandle {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    stopped: watch::Receiver<bool>,
) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let signal = wait_for_stop(stopped.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    // Graceful shutdown waits for every connection; a cap keeps a slow client from
    // holding the agent's exit.
    let cap = async {
        wait_for_stop(stopped).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "the API server failed");
            }
        }
        () = cap => tracing::warn!("the API server stopped with requests still in flight"),
    }
}

/// Resolves once the handle asks to stop (or is gone).
async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone: the handle was dropped, which also means stop.
    let _ = stopped.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_appears_once() {
        for (i, (method, path)) in ROUTES.iter().enumerate() {
            assert!(endpoint(method, path).is_some(), "{method} {path}");
            assert!(
                !ROUTES[..i].contains(&(*method, *path)),
                "{method} {path} twice"
            );
        }
    }
}
