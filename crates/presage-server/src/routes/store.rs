//! The audit listings read from the profile store: profiles, executions, decisions,
//! alerts and responses, newest first.

use std::sync::PoisonError;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use presage_store::AdminStore;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::{Params, RawParams};
use crate::state::ServerState;

/// Rows listed when `limit` is not given…
const DEFAULT_LIMIT: usize = 100;
/// …and the most one request may ask for.
const MAX_LIMIT: usize = 10_000;

/// Runs `f` on the store off the async workers (the store blocks on disk or network).
async fn with_store<T, F>(state: &ServerState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn AdminStore) -> Result<T, presage_engine::StoreError> + Send + 'static,
{
    let Some(cell) = state.inner.store.clone() else {
        return Err(ApiError::unavailable(
            "no profile store is open (the agent runs without one)",
        ));
    };
    let joined = tokio::task::spawn_blocking(move || {
        // A panic in another request's store call must not lock everyone out.
        let mut store = cell.lock().unwrap_or_else(PoisonError::into_inner);
        f(store.as_mut())
    })
    .await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "API store read failed");
            Err(ApiError::unavailable(format!("reading the store: {e}")))
        }
        Err(e) => Err(ApiError::internal(format!(
            "the store read did not finish: {e}"
        ))),
    }
}

/// Newest first, at most `limit`.
fn newest<T: Serialize>(mut rows: Vec<T>, limit: usize) -> Result<Response, ApiError> {
    rows.reverse();
    rows.truncate(limit);
    Ok(Json(rows).into_response())
}

fn limit_of(params: &Params) -> Result<usize, ApiError> {
    Ok(params
        .number("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT))
}

pub(crate) async fn profiles(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &["limit"])?;
    let limit = limit_of(&params)?;
    let mut profiles = with_store(&state, |s| s.profiles()).await?;
    profiles.sort_by_key(|p| p.updated_at.unix_ms());
    // The forecaster's state can be megabytes of numbers; a listing names the model only.
    let rows: Vec<Value> = profiles
        .into_iter()
        .map(|p| {
            json!({
                "key": p.key,
                "version": p.version,
                "samples": p.samples,
                "updated_at_ms": p.updated_at.unix_ms(),
                "model": p.model.as_ref().map(|m| json!({"model": m.model, "version": m.version})),
            })
        })
        .collect();
    newest(rows, limit)
}

pub(crate) async fn executions(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &["code_id", "limit"])?;
    let limit = limit_of(&params)?;
    let Some(code_id) = params.text("code_id")?.map(str::to_owned) else {
        return Err(ApiError::bad_field("code_id", "code_id is required"));
    };
    let rows = with_store(&state, move |s| s.executions(&code_id)).await?;
    newest(rows, limit)
}

/// `?workload=&limit=` of the three audit listings.
fn audit_params(raw: RawParams) -> Result<(Option<String>, usize), ApiError> {
    let params = Params::new(raw, &["workload", "limit"])?;
    Ok((
        params.text("workload")?.map(str::to_owned),
        limit_of(&params)?,
    ))
}

pub(crate) async fn decisions(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let (workload, limit) = audit_params(raw)?;
    newest(
        with_store(&state, move |s| s.decisions(workload.as_deref())).await?,
        limit,
    )
}

pub(crate) async fn alerts(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let (workload, limit) = audit_params(raw)?;
    newest(
        with_store(&state, move |s| s.alerts(workload.as_deref())).await?,
        limit,
    )
}

pub(crate) async fn responses(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let (workload, limit) = audit_params(raw)?;
    newest(
        with_store(&state, move |s| s.responses(workload.as_deref())).await?,
        limit,
    )
}
