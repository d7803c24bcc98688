//! The read-only JSON endpoints: health, workloads, history, status and policies, all
//! answered from the loop's latest snapshot without waiting on the loop.

use std::cmp::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use presage_agent::surface::{Snapshot, WorkloadSummary};
use serde_json::{Value, json};

use crate::cache::Kind;
use crate::error::ApiError;
use crate::query::{Params, RawParams};
use crate::state::ServerState;

/// The default window of `/history`: the last 15 minutes.
const HISTORY_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The loop counts as stalled after this many intervals without a tick…
const STALE_INTERVALS: f64 = 3.0;
/// …but never sooner than this, so a sub-second interval does not flap the probe.
const STALE_FLOOR_MS: i64 = 5_000;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The workload id of a path, percent-decoded (it is a cgroup path with slashes).
pub(crate) fn workload_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path?;
    if id.is_empty() {
        return Err(ApiError::bad_field("id", "the workload id is empty"));
    }
    Ok(id)
}

fn unknown_workload(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no managed workload {id:?} (ids are cgroup paths, percent-encoded in the URL: \
         system.slice%2Fnginx.service)"
    ))
}

pub(crate) async fn healthz(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    let snap = state.inner.shared.snapshot();
    let now = now_ms();
    let age_ms = now - snap.at_ms;
    let interval_ms = (snap.loop_stats.interval_s * 1000.0 * STALE_INTERVALS) as i64;
    let bound = interval_ms.max(STALE_FLOOR_MS);
    let body = |status: &str, error: Option<String>| {
        json!({
            "status": status,
            "error": error,
            "mode": snap.mode,
            "ticks": snap.loop_stats.ticks,
            "last_tick_at_ms": snap.at_ms,
            "age_ms": age_ms,
            "stale_after_ms": bound,
        })
    };
    if snap.loop_stats.ticks == 0 {
        let why = "the control loop has not completed a tick yet".to_string();
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("starting", Some(why))),
        )
            .into_response());
    }
    if age_ms > bound {
        let why = format!(
            "the control loop's last tick was {:.1} s ago (more than {:.1} s)",
            age_ms as f64 / 1000.0,
            bound as f64 / 1000.0
        );
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("stalled", Some(why))),
        )
            .into_response());
    }
    Ok(Json(body("ok", None)).into_response())
}

/// The sort keys of `/workloads`.
const SORTS: [&str; 5] = ["id", "risk", "score", "anomaly", "slack"];

/// The largest slack of a workload (−1 without any limit, so unlimited sorts below 0).
fn slack_key(w: &WorkloadSummary) -> f64 {
    w.slack.values().copied().fold(-1.0, f64::max)
}

fn compare(sort: &str, a: &WorkloadSummary, b: &WorkloadSummary) -> Ordering {
    let by = match sort {
        "risk" => a.risk_max.total_cmp(&b.risk_max),
        "score" => a.behavior_score.total_cmp(&b.behavior_score),
        "anomaly" => a.anomaly_score.total_cmp(&b.anomaly_score),
        "slack" => slack_key(a).total_cmp(&slack_key(b)),
        _ => Ordering::Equal,
    };
    // Ties (and `id`) by id, so pages are stable between polls.
    by.then_with(|| a.id.cmp(&b.id))
}

pub(crate) async fn workloads(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &["sort", "order", "limit", "offset"])?;
    let sort = params.choice("sort", &SORTS)?.unwrap_or("id");
    let default_order = if sort == "id" { "asc" } else { "desc" };
    let order = params
        .choice("order", &["asc", "desc"])?
        .unwrap_or(default_order);
    let limit = params
        .number::<usize>("limit", 0, 100_000)?
        .unwrap_or(usize::MAX);
    let offset = params
        .number::<usize>("offset", 0, usize::MAX)?
        .unwrap_or(0);
    let snap = state.inner.shared.snapshot();
    if sort == "id" && order == "asc" && limit == usize::MAX && offset == 0 {
        // The snapshot keeps workloads ordered by id: the whole list as it is.
        let body = state.inner.cache.get(Kind::WholeList, &snap, || {
            serde_json::to_vec(&snap.workloads)
                .map(Bytes::from)
                .map_err(|e| ApiError::internal(format!("encoding the workloads: {e}")))
        })?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let mut list: Vec<&WorkloadSummary> = snap.workloads.iter().collect();
    list.sort_by(|a, b| {
        let o = compare(sort, a, b);
        if order == "desc" { o.reverse() } else { o }
    });
    let page: Vec<&WorkloadSummary> = list.into_iter().skip(offset).take(limit).collect();
    Ok(Json(page).into_response())
}

pub(crate) async fn workload(
    State(state): State<ServerState>,
    path: Result<Path<String>, PathRejection>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let id = workload_id(path)?;
    Params::new(raw, &[])?;
    let snap = state.inner.shared.snapshot();
    let w = snap.workload(&id).ok_or_else(|| unknown_workload(&id))?;
    Ok(Json(w).into_response())
}

pub(crate) async fn history(
    State(state): State<ServerState>,
    path: Result<Path<String>, PathRejection>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let id = workload_id(path)?;
    let params = Params::new(raw, &["from", "to"])?;
    let to = params
        .number::<i64>("to", 0, i64::MAX / 2)?
        .unwrap_or_else(now_ms);
    let from = params
        .number::<i64>("from", 0, i64::MAX / 2)?
        .unwrap_or(to.saturating_sub(HISTORY_WINDOW_MS));
    if from > to {
        return Err(ApiError::bad_field(
            "from",
            format!("from ({from}) is after to ({to})"),
        ));
    }
    let known = state.inner.shared.snapshot().workload(&id).is_some();
    let (points, markers) = match state.inner.shared.history(&id, from, to) {
        Some(found) => found,
        // Adopted but not yet sampled: an empty chart, not an error.
        None if known => (Vec::new(), Vec::new()),
        None => return Err(unknown_workload(&id)),
    };
    Ok(Json(json!({
        "workload": id,
        "from_ms": from,
        "to_ms": to,
        "points": points,
        "markers": markers,
    }))
    .into_response())
}

/// The snapshot without its workloads, plus how many there are.
pub(crate) fn status_value(snap: &Snapshot) -> Result<Value, ApiError> {
    // Field by field: encoding the whole snapshot only to drop its workloads cost
    // hundreds of milliseconds at 1,000 workloads.
    let value = json!({
        "at_ms": snap.at_ms,
        "mode": snap.mode,
        "loop": snap.loop_stats,
        "decisions_by_reason": snap.decisions_by_reason,
        "alerts_by_kind": snap.alerts_by_kind,
        "webhook": snap.webhook,
        "policies": snap.policies,
        "workload_count": snap.workloads.len(),
    });
    Ok(value)
}

pub(crate) async fn status(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    let snap = state.inner.shared.snapshot();
    Ok(Json(status_value(&snap)?).into_response())
}

pub(crate) async fn policies(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    let snap = state.inner.shared.snapshot();
    let workloads: Vec<Value> = snap
        .workloads
        .iter()
        .map(|w| json!({"id": w.id, "policy_name": w.policy_name, "policy": w.policy}))
        .collect();
    Ok(Json(json!({"status": snap.policies, "workloads": workloads})).into_response())
}
