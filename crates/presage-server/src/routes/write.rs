//! The mutating endpoints. Each becomes a [`Command`] the control loop carries out at
//! its next tick; the handler waits for the loop's answer off the async workers.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use presage_agent::Mode;
use presage_agent::surface::Command;
use presage_core::{Limits, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::query::{Params, RawParams};
use crate::routes::read::{now_ms, workload_id};
use crate::state::ServerState;

/// How long a request waits for the loop; a policy reload reads and checks a file, so
/// a few ticks' worth.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest and longest override: long enough to matter, short enough that a
/// forgotten one ends within a week.
const MIN_TTL_S: f64 = 1.0;
const MAX_TTL_S: f64 = 7.0 * 24.0 * 3600.0;

/// Decodes a JSON body, naming the field at fault: 400 for bad JSON, 422 for a
/// well-formed body of the wrong shape (wrong types, unknown or missing fields).
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request needs a JSON body",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let status = match inner.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut err = ApiError::new(status, format!("bad JSON body: {inner}"));
        if path != "." {
            err.field = Some(path);
        }
        err
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))?;
    Ok(value)
}

/// Hands `command` to the loop and turns its answer into a response.
async fn send(state: &ServerState, command: Command) -> Result<Response, ApiError> {
    let shared = state.inner.shared.clone();
    let outcome = tokio::task::spawn_blocking(move || shared.send(command, COMMAND_TIMEOUT))
        .await
        .map_err(|e| ApiError::internal(format!("the command did not finish: {e}")))?;
    Ok(Json(outcome?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: Mode,
}

pub(crate) async fn set_mode(
    State(state): State<ServerState>,
    raw: RawParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    let ModeBody { mode } = parse(body)?;
    send(&state, Command::SetMode(mode)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    limits: Limits,
    #[serde(default)]
    ttl_s: Option<f64>,
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

impl OverrideBody {
    /// When the override ends, checked against the bounds.
    fn expiry(&self, now_ms: i64) -> Result<i64, ApiError> {
        let unprocessable = |field: &str, message: String| {
            ApiError::bad_field(field, message).with_status(StatusCode::UNPROCESSABLE_ENTITY)
        };
        let bounds = format!("from {MIN_TTL_S} s to {} days ahead", MAX_TTL_S / 86_400.0);
        match (self.ttl_s, self.expires_at_ms) {
            (Some(ttl), None) => {
                if !(MIN_TTL_S..=MAX_TTL_S).contains(&ttl) {
                    return Err(unprocessable(
                        "ttl_s",
                        format!("ttl_s must be {bounds}, not {ttl}"),
                    ));
                }
                Ok(now_ms.saturating_add((ttl * 1000.0) as i64))
            }
            (None, Some(at)) => {
                let ahead_s = at.saturating_sub(now_ms) as f64 / 1000.0;
                if !(MIN_TTL_S..=MAX_TTL_S).contains(&ahead_s) {
                    return Err(unprocessable(
                        "expires_at_ms",
                        format!("expires_at_ms must be {bounds} (it is {ahead_s:.0} s ahead)"),
                    ));
                }
                Ok(at)
            }
            (Some(_), Some(_)) => Err(unprocessable(
                "ttl_s",
                "give ttl_s or expires_at_ms, not both".into(),
            )),
            (None, None) => Err(unprocessable(
                "ttl_s",
                "an override needs an end: ttl_s (seconds) or expires_at_ms".into(),
            )),
        }
    }
}

pub(crate) async fn put_override(
    State(state): State<ServerState>,
    path: Result<Path<String>, PathRejection>,
    raw: RawParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let workload = workload_id(path)?;
    Params::new(raw, &[])?;
    let body: OverrideBody = parse(body)?;
    let expires_at_ms = body.expiry(now_ms())?;
    let limited = Resource::ALL.iter().any(|r| body.limits.hard(*r).is_some());
    if !limited {
        return Err(ApiError::bad_field(
            "limits",
            "an override needs at least one hard limit (cpu_quota_cores, memory_max_bytes, …)",
        )
        .with_status(StatusCode::UNPROCESSABLE_ENTITY));
    }
    send(
        &state,
        Command::Override {
            workload,
            limits: body.limits,
            expires_at_ms,
        },
    )
    .await
}

pub(crate) async fn delete_override(
    State(state): State<ServerState>,
    path: Result<Path<String>, PathRejection>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    let workload = workload_id(path)?;
    Params::new(raw, &[])?;
    send(&state, Command::ClearOverride { workload }).await
}

pub(crate) async fn reload_policies(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    send(&state, Command::ReloadPolicies).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Result<Bytes, BytesRejection> {
        Ok(Bytes::from(text.to_owned()))
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let e = parse::<OverrideBody>(body(r#"{"limits":{"cpu_quota_cores":"x"},"ttl_s":5}"#))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("limits.cpu_quota_cores"), "{e:?}");
        let e = parse::<ModeBody>(body(r#"{"mode":"enforce","x":1}"#))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains('x'), "{e:?}");
        let e = parse::<ModeBody>(body(r#"{"mode":"#)).err().unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse::<ModeBody>(body(r#"{"mode":"enforce"} trailing"#))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse::<ModeBody>(body("")).is_err());
    }

    #[test]
    fn override_expiry_is_bounded() {
        let b = |ttl: Option<f64>, at: Option<i64>| OverrideBody {
            limits: Limits::unlimited(),
            ttl_s: ttl,
            expires_at_ms: at,
        };
        assert_eq!(b(Some(600.0), None).expiry(1_000).unwrap(), 601_000);
        assert_eq!(b(None, Some(61_000)).expiry(1_000).unwrap(), 61_000);
        assert!(b(Some(0.5), None).expiry(0).is_err());
        assert!(b(Some(f64::NAN), None).expiry(0).is_err());
        assert!(b(Some(8.0 * 86_400.0), None).expiry(0).is_err());
        assert!(b(None, Some(500)).expiry(1_000).is_err());
        assert!(b(None, None).expiry(0).is_err());
        assert!(b(Some(5.0), Some(10_000)).expiry(0).is_err());
    }
}
