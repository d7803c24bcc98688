//! `/api/v1/openapi.json`: the hand-written OpenAPI 3.0 document of every route,
//! checked against [`crate::ROUTES`] by the tests both ways.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
