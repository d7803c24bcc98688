//! A real `Shared` filled with hand-built data, a thread answering the loop's commands,
//! and a helper driving the router without a socket.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request as HttpRequest, StatusCode};
use presage_agent::Mode;
use presage_agent::surface::{
    Command, CommandError, HistoryPoint, HorizonSummary, LoopStats, Marker, PolicyStatus,
    QuantileSummary, Request, Shared, Snapshot, WorkloadSummary,
};
use presage_core::{Limits, Resource, WorkloadKey};
use presage_policy::WorkloadPolicy;
use presage_server::{ServerState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const TOKEN: &str = "s3cret-token";
pub const NGINX: &str = "system.slice/nginx.service";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn workload(id: &str, risk: f64, score: f64) -> WorkloadSummary {
    let q = |v: f64| QuantileSummary {
        p50: v,
        p90: v * 1.2,
        p95: v * 1.3,
        p99: v * 1.5,
        max: v * 2.0,
    };
    let horizon = |h: u32| HorizonSummary {
        horizon_s: h,
        resources: BTreeMap::from([("cpu".to_string(), q(0.4)), ("memory".to_string(), q(2e8))]),
    };
    let limits = Limits::unlimited()
        .with_hard(Resource::Cpu, 1.0)
        .unwrap()
        .with_hard(Resource::Memory, 1e9)
        .unwrap();
    WorkloadSummary {
        id: id.to_string(),
        key: WorkloadKey::for_code("abc123").unwrap(),
        policy_name: "default".into(),
        policy: WorkloadPolicy::default(),
        usage: BTreeMap::from([("cpu".into(), 0.5), ("memory".into(), 3e8)]),
        sampled_at_ms: now_ms(),
        limits,
        adopted_limits: Limits::unlimited(),
        forecast: vec![horizon(60), horizon(300), horizon(900)],
        risk: BTreeMap::from([("cpu".into(), risk), ("memory".into(), risk / 2.0)]),
        risk_max: risk,
        slack: BTreeMap::from([("cpu".into(), 0.5), ("memory".into(), 0.7)]),
        behavior_score: score,
        anomaly_score: risk / 3.0,
        model: Some("ensemble".into()),
        samples: 42,
        override_limits: None,
    }
}

/// A snapshot of a loop that ticked just now, with `extra` workloads beyond nginx.
pub fn snapshot(extra: usize) -> Snapshot {
    let mut workloads = vec![
        workload(NGINX, 0.3, 60.0),
        workload("user.slice/a", 0.9, 20.0),
    ];
    for i in 0..extra {
        workloads.push(workload(
            &format!("batch.slice/job-{i:04}"),
            i as f64 / (extra as f64 + 1.0),
            50.0,
        ));
    }
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    Snapshot {
        at_ms: now_ms(),
        mode: Mode::Recommend,
        loop_stats: LoopStats {
            ticks: 7,
            interval_s: 1.0,
            last_duration_s: 0.012,
            max_duration_s: 0.05,
            overruns: 1,
            samples_read: 99,
            errors: 2,
        },
        workloads,
        decisions_by_reason: BTreeMap::from([("proactive_raise".into(), 3)]),
        alerts_by_kind: BTreeMap::from([("memory_leak".into(), 1)]),
        webhook: None,
        policies: PolicyStatus {
            source: None,
            names: vec!["default".into()],
            loaded_at_ms: 1,
            last_error: None,
        },
    }
}

/// Answers commands the way the loop does: unknown workloads are not found, a reload
/// is refused (as with a bad policy file).
fn answer(rx: Receiver<Request>) {
    while let Ok(Request { command, reply }) = rx.recv() {
        let outcome = match command {
            Command::SetMode(m) => Ok(json!({"mode": m})),
            Command::Override {
                workload,
                expires_at_ms,
                ..
            } if workload == NGINX => {
                Ok(json!({"workload": workload, "expires_at_ms": expires_at_ms}))
            }
            Command::ClearOverride { workload } if workload == NGINX => {
                Ok(json!({"workload": workload, "cleared": true}))
            }
            Command::Override { workload, .. } | Command::ClearOverride { workload } => {
                Err(CommandError::NotFound(format!("no workload {workload}")))
            }
            Command::ReloadPolicies => {
                Err(CommandError::Rejected("policies.toml line 3: bad".into()))
            }
        };
        let _ = reply.send(outcome);
    }
}

pub struct Fixture {
    pub shared: Arc<Shared>,
    pub app: Router,
    pub state: ServerState,
}

pub fn fixture_with(
    snap: Snapshot,
    token: Option<&str>,
    max_metrics: usize,
    store: Option<Box<dyn presage_store::AdminStore>>,
) -> Fixture {
    let (shared, rx) = Shared::new(snap, 100);
    std::thread::spawn(move || answer(rx));
    let t0 = now_ms() - 60_000;
    let points = (0..5)
        .map(|i| {
            (
                NGINX.to_string(),
                HistoryPoint {
                    t_ms: t0 + i * 10_000,
                    cpu: Some(0.5),
                    cpu_limit: Some(1.0),
                    cpu_p50: Some(0.4),
                    cpu_p99: Some(0.6),
                    memory: Some(3e8),
                    memory_limit: Some(1e9),
                    memory_p50: Some(2e8),
                    memory_p99: Some(3e8),
                },
            )
        })
        .collect();
    let markers = vec![(
        NGINX.to_string(),
        Marker {
            t_ms: t0 + 20_000,
            kind: "decision",
            label: "proactive_raise".into(),
            detail: "cpu 0.50 → cpu 1.00".into(),
        },
    )];
    shared.record(points, markers, &[]);
    let state = ServerState::new(shared.clone(), store, token.map(str::to_owned), max_metrics);
    Fixture {
        shared,
        app: router(state.clone()),
        state,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(snapshot(0), Some(TOKEN), 1000, None)
}

pub const LOCAL: &str = "127.0.0.1:40000";
pub const REMOTE: &str = "192.0.2.7:40000";

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.status, self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub async fn call_raw(
    app: &Router,
    method: Method,
    uri: &str,
    peer: Option<&str>,
    token: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req.body(Body::from(body)).unwrap();
    if let Some(p) = peer {
        let addr: SocketAddr = p.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    call_raw(app, Method::GET, uri, Some(LOCAL), None, Vec::new()).await
}

pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    call_raw(
        app,
        method,
        uri,
        Some(LOCAL),
        token,
        body.as_bytes().to_vec(),
    )
    .await
}
