//! Errors: [`ApiError`], the JSON body every refused request gets, and [`ServerError`],
//! why the server could not start.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use presage_agent::surface::CommandError;
use serde::Serialize;

/// Why [`crate::spawn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("binding the API listener to {listen:?}: {source}")]
    Bind {
        /// The address asked for.
        listen: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be started.
    #[error("starting the API server's {what}: {source}")]
    Start {
        /// What failed to start.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// A refused request: its status and the JSON body `{"error": …, "field": …}`.
///
/// Every error path of the router ends here, so a client always gets JSON it can parse
/// and a message that names what to fix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 naming the query parameter or body field at fault.
    pub(crate) fn bad_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme is expected.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::NotFound(m) => ApiError::not_found(m),
            CommandError::Rejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            CommandError::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        // A path that routed but whose segment does not decode (bad UTF-8 after
        // percent-decoding): the client's fault, whatever status axum would pick.
        ApiError::bad_field("id", format!("bad path segment: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query string: {}", r.body_text()),
        )
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        // 413 when the body is over the limit; 400 for a body that could not be read.
        let status = match r.status() {
            s if s.is_client_error() => s,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("reading the body: {}", r.body_text()))
    }
}
