//! Whatever a client sends, the router answers without panicking, and never with a 5xx
//! other than the documented 503s.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_string()),
        Just("v1".to_string()),
        Just("workloads".to_string()),
        Just("system.slice%2Fnginx.service".to_string()),
        Just("history".to_string()),
        Just("override".to_string()),
        Just("mode".to_string()),
        Just("policies".to_string()),
        Just("reload".to_string()),
        Just("%FF".to_string()),
        Just("%".to_string()),
        "[a-zA-Z0-9._~%-]{0,12}",
    ]
}

/// Mostly the real routes with their own methods (ids replaced by arbitrary segments),
/// sometimes any method on any path.
fn request() -> impl Strategy<Value = (Method, String)> {
    let routed = (prop::sample::select(presage_server::ROUTES), segment())
        .prop_map(|((m, p), id)| (m.parse().unwrap(), p.replace("{id}", &id)));
    let random = (method(), prop::collection::vec(segment(), 0..6))
        .prop_map(|(m, s)| (m, format!("/{}", s.join("/"))));
    prop_oneof![4 => routed, 1 => random]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("sort"),
        Just("order"),
        Just("limit"),
        Just("offset"),
        Just("from"),
        Just("to"),
        Just("workload"),
        Just("code_id"),
        Just("x"),
    ];
    let val = prop_oneof![
        Just("risk".to_string()),
        Just("asc".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("%FF".to_string()),
        "[a-z0-9%&=+]{0,10}",
    ];
    prop::collection::vec((key, val), 0..4).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(br#"{"mode":"enforce"}"#.to_vec()),
        Just(br#"{"limits":{"cpu_quota_cores":1e308},"ttl_s":1e308}"#.to_vec()),
        Just(
            br#"{"limits":{"memory_max_bytes":-0.0},"expires_at_ms":-9223372036854775808}"#
                .to_vec()
        ),
        Just(br#"{"limits":{"cpu_weight":0},"ttl_s":"NaN"}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9.e-]{0,40}".prop_map(String::into_bytes),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::HEAD),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
    #[test]
    fn the_router_never_panics_or_fails(
        (m, path) in request(),
        q in query(),
        b in body(),
        authed in any::<bool>(),
        local in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // No store: the store routes answer their documented 503.
        let f = fixture();
        let uri = format!("{path}?{q}");
        let Ok(_) = uri.parse::<axum::http::Uri>() else { return Ok(()); };
        let peer = if local { LOCAL } else { REMOTE };
        let token = authed.then_some(TOKEN);
        let a = rt.block_on(call_raw(&f.app, m.clone(), &uri, Some(peer), token, b));
        let store_route = ["profiles", "executions", "decisions", "alerts", "responses"]
            .iter()
            .any(|r| uri.starts_with(&format!("/api/v1/{r}")));
        let documented_503 = a.status == StatusCode::SERVICE_UNAVAILABLE && (store_route || uri.starts_with("/healthz"));
        prop_assert!(!a.status.is_server_error() || documented_503, "{m} {uri}: {} {}", a.status, a.text());
        if a.status.is_client_error() && m != Method::HEAD {
            let v: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| TestCaseError::fail(format!("{m} {uri}: {e}: {}", a.text())))?;
            prop_assert!(v["error"].is_string());
        }
    }
}
