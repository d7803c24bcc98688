//! Who may do what: reads are open to loopback peers; everything else — mutations, and
//! reads from off the host — needs the bearer token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::ServerState;

/// Middleware on every matched route (unmatched paths and wrong methods get their 404
/// and 405 without it, as they reveal nothing).
pub(crate) async fn guard(
    State(state): State<ServerState>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    // Without ConnectInfo (a router served without it) the peer is unknown: treat it as
    // remote, the safe side.
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    match check(
        state.inner.token.as_deref(),
        request.headers(),
        read,
        loopback,
    ) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn check(
    token: Option<&str>,
    headers: &HeaderMap,
    read: bool,
    loopback: bool,
) -> Result<(), ApiError> {
    if read && loopback {
        return Ok(());
    }
    let Some(token) = token else {
        return Err(ApiError::unauthorized(if read {
            "reads from off the host need the API token, and none is configured \
             (set api.token or api.token_file)"
        } else {
            "mutations are disabled until an API token is configured \
             (set api.token or api.token_file)"
        }));
    };
    let Some(offered) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    if constant_time_eq(offered.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("wrong API token"))
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ, so
/// timing a guess reveals nothing about the token's content.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
        // A prefix padded with the zeros the loop reads past the end is still different.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn reads_from_loopback_are_open_and_the_rest_need_the_token() {
        let none = HeaderMap::new();
        assert!(check(None, &none, true, true).is_ok());
        assert!(check(Some("t"), &none, true, true).is_ok());
        assert!(check(None, &none, true, false).is_err());
        assert!(check(Some("t"), &none, true, false).is_err());
        assert!(check(Some("t"), &with_auth("Bearer t"), true, false).is_ok());
        assert!(check(Some("t"), &with_auth("bearer  t "), false, true).is_ok());
        assert!(check(Some("t"), &with_auth("Bearer u"), false, true).is_err());
        assert!(check(Some("t"), &with_auth("Basic t"), false, true).is_err());
        let e = check(None, &with_auth("Bearer t"), false, true).unwrap_err();
        assert!(e.message.contains("disabled"), "{}", e.message);
    }
}
