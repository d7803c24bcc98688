//! The HTTP surface driven through the real router, a real `Shared` and a thread
//! answering commands on the real channel.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use axum::http::{Method, StatusCode};
use common::*;
use presage_server::{OPENAPI_JSON, ROUTES, ServerState, spawn};
use serde_json::Value;

const ENC_NGINX: &str = "system.slice%2Fnginx.service";

/// A concrete URL for a route pattern.
fn concrete(path: &str) -> String {
    let p = path.replace("{id}", ENC_NGINX);
    match p.as_str() {
        "/api/v1/executions" => format!("{p}?code_id=abc123"),
        _ => p,
    }
}

fn body_for(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("POST", "/api/v1/mode") => r#"{"mode":"enforce"}"#,
        ("PUT", _) => r#"{"limits":{"cpu_quota_cores":0.5},"ttl_s":600}"#,
        _ => "",
    }
}

fn method(m: &str) -> Method {
    m.parse().unwrap()
}

fn store() -> (tempfile::TempDir, Box<dyn presage_store::AdminStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = presage_store::StoreUrl::Sqlite(dir.path().join("p.db"));
    // `open` gives `Box<dyn AdminStore>`; AdminStore has Send as a supertrait (through
    // ProfileStore), so the coercion the agent will make is checked here.
    let s: Box<dyn presage_store::AdminStore> = presage_store::open(&url).unwrap();
    (dir, s)
}

#[tokio::test]
async fn every_route_answers_with_the_token() {
    let (_dir, s) = store();
    let f = fixture_with(snapshot(0), Some(TOKEN), 1000, Some(s));
    for (m, path) in ROUTES {
        let a = call_raw(
            &f.app,
            method(m),
            &concrete(path),
            Some(LOCAL),
            Some(TOKEN),
            body_for(m, path).into(),
        )
        .await;
        let expected = if *path == "/api/v1/policies/reload" {
            // The fixture's loop refuses reloads, as with a bad policy file.
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        assert_eq!(a.status, expected, "{m} {path}: {}", a.text());
    }
}

#[tokio::test]
async fn openapi_and_route_table_agree_both_ways() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.0."),
        "{}",
        doc["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, _) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&m.as_str()) {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented routes the router lacks: {unrouted:?}"
    );
    // And every documented route answers (not 404/405) on the real router.
    let f = fixture();
    for (m, path) in &documented {
        let a = call_raw(
            &f.app,
            method(m),
            &concrete(path),
            Some(LOCAL),
            Some(TOKEN),
            body_for(m, path).into(),
        )
        .await;
        assert!(
            a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{m} {path}: {}",
            a.status
        );
    }
    // Every $ref resolves.
    let text = OPENAPI_JSON;
    for part in text.split("\"$ref\": \"#/").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        let mut node = &doc;
        for seg in target.split('/') {
            node = &node[seg];
        }
        assert!(!node.is_null(), "dangling $ref #/{target}");
    }
}

#[tokio::test]
async fn openapi_is_served_as_json() {
    let f = fixture();
    let a = get(&f.app, "/api/v1/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type().starts_with("application/json"));
    assert_eq!(a.json()["openapi"], "3.0.3");
}

#[tokio::test]
async fn mutations_need_the_right_token() {
    let mutating: Vec<_> = ROUTES.iter().filter(|(m, _)| *m != "GET").collect();
    assert_eq!(mutating.len(), 4);
    let f = fixture();
    let off = fixture_with(snapshot(0), None, 1000, None);
    for (m, path) in mutating {
        let uri = concrete(path);
        let body = body_for(m, path);
        for token in [
            None,
            Some("wrong"),
            Some("s3cret-token-but-longer"),
            Some(""),
        ] {
            let a = send(&f.app, method(m), &uri, token, body).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{m} {path} {token:?}");
            assert!(a.json()["error"].is_string());
            assert_eq!(a.headers["www-authenticate"], "Bearer");
        }
        let a = send(&off.app, method(m), &uri, Some(TOKEN), body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .contains("disabled until"),
            "{}",
            a.text()
        );
    }
    let a = send(
        &f.app,
        Method::POST,
        "/api/v1/mode",
        Some(TOKEN),
        r#"{"mode":"observe"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["mode"], "observe");
}

#[tokio::test]
async fn reads_are_open_to_loopback_only() {
    let f = fixture();
    for peer in ["127.0.0.1:1", "[::1]:1"] {
        let a = call_raw(
            &f.app,
            Method::GET,
            "/api/v1/workloads",
            Some(peer),
            None,
            vec![],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{peer}");
    }
    for peer in [Some(REMOTE), Some("[2001:db8::1]:5"), None] {
        let a = call_raw(&f.app, Method::GET, "/api/v1/workloads", peer, None, vec![]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{peer:?}");
        let a = call_raw(&f.app, Method::GET, "/metrics", peer, Some("nope"), vec![]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{peer:?}");
        let a = call_raw(
            &f.app,
            Method::GET,
            "/api/v1/workloads",
            peer,
            Some(TOKEN),
            vec![],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{peer:?}");
    }
    let off = fixture_with(snapshot(0), None, 1000, None);
    let a = call_raw(
        &off.app,
        Method::GET,
        "/api/v1/status",
        Some(REMOTE),
        None,
        vec![],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("none is configured")
    );
}

#[tokio::test]
async fn workloads_sort_page_and_refuse_bad_queries() {
    let f = fixture_with(snapshot(3), Some(TOKEN), 1000, None);
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ids(get(&f.app, "/api/v1/workloads").await.json());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    let by_risk = ids(get(&f.app, "/api/v1/workloads?sort=risk").await.json());
    assert_eq!(by_risk[0], "user.slice/a");
    let asc = ids(get(
        &f.app,
        "/api/v1/workloads?sort=risk&order=asc&limit=2&offset=1",
    )
    .await
    .json());
    assert_eq!(asc.len(), 2);
    let score = ids(
        get(&f.app, "/api/v1/workloads?sort=score&order=desc&limit=1")
            .await
            .json(),
    );
    assert_eq!(score, vec![NGINX.to_string()]);
    for (q, field) in [
        ("sort=bogus", "sort"),
        ("order=up", "order"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("offset=1.5", "offset"),
        ("colour=red", "colour"),
        ("sort=id&sort=risk", "sort"),
    ] {
        let a = get(&f.app, &format!("/api/v1/workloads?{q}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.json()["field"], field, "{q}: {}", a.text());
    }
}

#[tokio::test]
async fn one_workload_and_its_history() {
    let f = fixture();
    let a = get(&f.app, &format!("/api/v1/workloads/{ENC_NGINX}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["id"], NGINX);
    let a = get(&f.app, "/api/v1/workloads/nope.slice%2Fx").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"].as_str().unwrap().contains("nope.slice/x"));
    // An unencoded slash is another route: 404 JSON with a hint.
    let a = get(&f.app, "/api/v1/workloads/system.slice/nginx.service").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("percent-encoded")
    );
    let h = get(&f.app, &format!("/api/v1/workloads/{ENC_NGINX}/history"))
        .await
        .json();
    assert_eq!(h["points"].as_array().unwrap().len(), 5);
    assert_eq!(h["markers"].as_array().unwrap().len(), 1);
    assert_eq!(h["markers"][0]["kind"], "decision");
    let h = get(
        &f.app,
        &format!("/api/v1/workloads/{ENC_NGINX}/history?from=0&to=1"),
    )
    .await
    .json();
    assert_eq!(h["points"].as_array().unwrap().len(), 0);
    // Known but never sampled: empty, not 404.
    let a = get(&f.app, "/api/v1/workloads/user.slice%2Fa/history").await;
    assert_eq!(a.status, StatusCode::OK);
    for (q, field) in [
        ("from=x", "from"),
        ("from=5&to=1", "from"),
        ("to=-3", "to"),
        ("since=1", "since"),
    ] {
        let a = get(
            &f.app,
            &format!("/api/v1/workloads/{ENC_NGINX}/history?{q}"),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.json()["field"], field, "{q}");
    }
    let a = get(&f.app, "/api/v1/workloads/%FF%FE").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.json()["error"].is_string());
}

#[tokio::test]
async fn status_policies_and_health() {
    let f = fixture();
    let s = get(&f.app, "/api/v1/status").await.json();
    assert_eq!(s["mode"], "recommend");
    assert_eq!(s["workload_count"], 2);
    assert_eq!(s["loop"]["ticks"], 7);
    assert!(s.get("workloads").is_none());
    let p = get(&f.app, "/api/v1/policies").await.json();
    assert_eq!(p["status"]["names"][0], "default");
    assert_eq!(p["workloads"][1]["policy_name"], "default");
    let h = get(&f.app, "/healthz").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text());
    assert_eq!(h.json()["status"], "ok");
    // Never ticked: 503 with why.
    let mut snap = snapshot(0);
    snap.loop_stats.ticks = 0;
    f.shared.publish(snap);
    let h = get(&f.app, "/healthz").await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        h.json()["error"]
            .as_str()
            .unwrap()
            .contains("not completed a tick")
    );
    // Stalled: the last tick a minute ago at a 1 s interval.
    let mut snap = snapshot(0);
    snap.at_ms -= 60_000;
    f.shared.publish(snap);
    let h = get(&f.app, "/healthz").await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.json()["status"], "stalled");
}

#[tokio::test]
async fn store_routes_need_a_store_and_check_their_queries() {
    let f = fixture();
    for uri in [
        "/api/v1/profiles",
        "/api/v1/decisions",
        "/api/v1/alerts?workload=x",
        "/api/v1/responses",
        "/api/v1/executions?code_id=a",
    ] {
        let a = get(&f.app, uri).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(a.json()["error"].as_str().unwrap().contains("store"));
    }
    let (_dir, s) = store();
    let f = fixture_with(snapshot(0), Some(TOKEN), 1000, Some(s));
    let a = get(&f.app, "/api/v1/decisions?workload=x&limit=5").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), Value::Array(vec![]));
    for (uri, field) in [
        ("/api/v1/executions", "code_id"),
        ("/api/v1/executions?code_id=", "code_id"),
        ("/api/v1/decisions?limit=0", "limit"),
        ("/api/v1/alerts?limit=10001", "limit"),
        ("/api/v1/responses?workload=", "workload"),
        ("/api/v1/profiles?workload=x", "workload"),
    ] {
        let a = get(&f.app, uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(a.json()["field"], field, "{uri}");
    }
}

#[tokio::test]
async fn bad_bodies_get_json_errors() {
    let f = fixture();
    let ov = format!("/api/v1/workloads/{ENC_NGINX}/override");
    let cases: &[(&str, &str, StatusCode, Option<&str>)] = &[
        ("/api/v1/mode", "", StatusCode::BAD_REQUEST, None),
        ("/api/v1/mode", "{", StatusCode::BAD_REQUEST, None),
        (
            "/api/v1/mode",
            r#"{"mode":"chaos"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("mode"),
        ),
        (
            "/api/v1/mode",
            r#"{"mode":1}"#,
            // serde_json reports a number where an enum name belongs as a syntax error.
            StatusCode::BAD_REQUEST,
            Some("mode"),
        ),
        (
            "/api/v1/mode",
            r#"{"mode":"observe","extra":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "/api/v1/mode",
            r#"[]"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ];
    for (uri, body, status, field) in cases {
        let a = send(&f.app, Method::POST, uri, Some(TOKEN), body).await;
        assert_eq!(a.status, *status, "{body}: {}", a.text());
        let v = a.json();
        assert!(v["error"].is_string());
        if let Some(field) = field {
            assert_eq!(v["field"], *field, "{body}");
        }
    }
    let put_cases: &[(&str, StatusCode, &str)] = &[
        (
            r#"{"limits":{"cpu_quota_cores":-1},"ttl_s":60}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limits",
        ),
        (
            r#"{"limits":{"cpu_quota_cores":"x"},"ttl_s":60}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limits.cpu_quota_cores",
        ),
        (
            r#"{"limits":{"cpu_cores":1},"ttl_s":60}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limits.cpu_cores",
        ),
        (
            r#"{"limits":{"cpu_quota_cores":1},"ttl_s":0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl_s",
        ),
        (
            r#"{"limits":{"cpu_quota_cores":1},"ttl_s":1e9}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl_s",
        ),
        (
            r#"{"limits":{"cpu_quota_cores":1}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl_s",
        ),
        (
            r#"{"limits":{"cpu_quota_cores":1},"expires_at_ms":5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "expires_at_ms",
        ),
        (
            r#"{"limits":{},"ttl_s":60}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limits",
        ),
    ];
    for (body, status, field) in put_cases {
        let a = send(&f.app, Method::PUT, &ov, Some(TOKEN), body).await;
        assert_eq!(a.status, *status, "{body}: {}", a.text());
        assert_eq!(a.json()["field"], *field, "{body}: {}", a.text());
    }
    // The loop's NotFound → 404; success → 200 with the loop's answer.
    let a = send(
        &f.app,
        Method::PUT,
        "/api/v1/workloads/x.slice%2Fy/override",
        Some(TOKEN),
        r#"{"limits":{"memory_max_bytes":1e9},"ttl_s":60}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(
        &f.app,
        Method::PUT,
        &ov,
        Some(TOKEN),
        r#"{"limits":{"memory_max_bytes":1e9},"expires_at_ms":99999999999999}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let at = now_ms() + 3_600_000;
    let a = send(
        &f.app,
        Method::PUT,
        &ov,
        Some(TOKEN),
        &format!(r#"{{"limits":{{"memory_max_bytes":1e9}},"expires_at_ms":{at}}}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["expires_at_ms"], at);
    let a = send(&f.app, Method::DELETE, &ov, Some(TOKEN), "").await;
    assert_eq!(a.json()["cleared"], true);
    let a = send(
        &f.app,
        Method::DELETE,
        "/api/v1/workloads/zz/override",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(
        &f.app,
        Method::POST,
        "/api/v1/policies/reload",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.json()["error"].as_str().unwrap().contains("line 3"));
}

#[tokio::test]
async fn oversized_bodies_unknown_routes_and_wrong_methods_are_json() {
    let f = fixture();
    let big = format!(r#"{{"mode":"observe","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let a = send(&f.app, Method::POST, "/api/v1/mode", Some(TOKEN), &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.json()["error"].is_string());
    let a = get(&f.app, "/api/v2/nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/v2/nothing")
    );
    let a = send(&f.app, Method::POST, "/api/v1/status", None, "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        a.json()["error"].as_str().unwrap().contains("GET"),
        "{}",
        a.text()
    );
    let a = send(&f.app, Method::GET, "/api/v1/mode", None, "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.json()["error"].as_str().unwrap().contains("POST"));
}

/// Minimal OpenMetrics text parse: every sample's family has HELP and TYPE lines first,
/// every value is a float, and the text ends with `# EOF`.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF");
    let mut typed = BTreeSet::new();
    let mut helped = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_owned();
            let kind = it.next().unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name);
        } else if line == "# EOF" || line.is_empty() {
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            let family = name
                .strip_suffix("_total")
                .filter(|f| typed.contains(*f))
                .unwrap_or(name);
            assert!(
                typed.contains(family) && helped.contains(family),
                "{line}: no HELP/TYPE"
            );
            samples.push((
                name.to_owned(),
                labels.to_owned(),
                value.parse::<f64>().unwrap(),
            ));
        }
    }
    samples
}

fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|s| s.2)
}

#[tokio::test]
async fn metrics_parse_and_are_bounded() {
    let f = fixture_with(snapshot(10), Some(TOKEN), 3, None);
    let a = get(&f.app, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.content_type().starts_with("application/openmetrics-text"),
        "{}",
        a.content_type()
    );
    let text = a.text();
    let s = parse_metrics(&text);
    assert_eq!(value(&s, "presage_loop_ticks_total", ""), Some(7.0));
    assert_eq!(value(&s, "presage_workloads", ""), Some(12.0));
    assert_eq!(
        value(&s, "presage_metrics_workloads_omitted", ""),
        Some(9.0)
    );
    assert_eq!(
        value(
            &s,
            "presage_decisions_total",
            "{reason=\"proactive_raise\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "presage_alerts_total", "{kind=\"memory_leak\"}"),
        Some(1.0)
    );
    assert_eq!(value(&s, "presage_mode", "{mode=\"recommend\"}"), Some(1.0));
    assert_eq!(value(&s, "presage_loop_duration_seconds", ""), Some(0.012));
    // The riskiest three are kept: user.slice/a (0.9) first.
    let workloads: BTreeSet<&str> = s
        .iter()
        .filter(|(n, _, _)| n == "presage_workload_behavior_score")
        .map(|(_, l, _)| l.as_str())
        .collect();
    assert_eq!(workloads.len(), 3, "{workloads:?}");
    assert!(workloads.contains("{workload=\"user.slice/a\"}"));
    assert_eq!(
        value(
            &s,
            "presage_workload_limit",
            "{workload=\"user.slice/a\",resource=\"memory\"}"
        ),
        Some(1e9)
    );
    assert_eq!(
        value(
            &s,
            "presage_workload_usage",
            "{workload=\"user.slice/a\",resource=\"cpu\"}"
        ),
        Some(0.5)
    );
    assert_eq!(
        value(
            &s,
            "presage_workload_forecast",
            "{workload=\"user.slice/a\",resource=\"cpu\",horizon_s=\"300\",quantile=\"p99\"}"
        ),
        Some(0.4 * 1.5)
    );
    let forecast = s
        .iter()
        .filter(|(n, _, _)| n == "presage_workload_forecast")
        .count();
    assert_eq!(forecast, 3 * 3 * 2 * 5);
    // Every documented series appears in docs/METRICS.md.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/METRICS.md"
    ))
    .unwrap();
    for (name, _, _) in &s {
        assert!(
            doc.contains(name.as_str()),
            "{name} is not in docs/METRICS.md"
        );
    }
}

#[tokio::test]
async fn dashboard_assets_have_their_content_types() {
    let f = fixture();
    for (uri, ct, needle) in [
        ("/", "text/html", "id=\"workloads\""),
        ("/assets/app.js", "text/javascript", "dataset.ready"),
        ("/assets/app.css", "text/css", ".envelope"),
    ] {
        let a = get(&f.app, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert!(
            a.content_type().starts_with(ct),
            "{uri}: {}",
            a.content_type()
        );
        assert!(a.text().contains(needle), "{uri}");
    }
    let js = get(&f.app, "/assets/app.js").await.text();
    for hook in [
        "chart-cpu",
        "chart-memory",
        "chartPoints",
        "marker-",
        "\"usage\"",
        "\"limit\"",
        "\"envelope\"",
        "#\\/workload\\/",
    ] {
        assert!(js.contains(hook), "app.js lacks {hook}");
    }
}

#[test]
fn spawn_serves_over_tcp_and_stops() {
    let f = fixture();
    let state: ServerState = f.state.clone();
    let handle = spawn("127.0.0.1:0", state).unwrap();
    let addr = handle.local_addr();
    assert!(addr.port() != 0);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /api/v1/workloads/system.slice%2Fnginx.service HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"id\":\"system.slice/nginx.service\""),
        "{response}"
    );
    // A taken port is an error naming the address.
    let e = spawn(&addr.to_string(), f.state.clone())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&addr.to_string()), "{e}");
    handle.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}
