//! `/metrics`: the latest snapshot encoded at scrape time by a prometheus-client
//! [`Collector`], so the loop keeps no metric objects and a scrape never waits on it.
//!
//! Every series, its labels and the cardinality bound are listed in docs/METRICS.md.

use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use presage_agent::surface::{Shared, Snapshot, WorkloadSummary};
use presage_core::Resource;
use prometheus_client::collector::Collector;

use crate::cache::Kind;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::query::{Params, RawParams};
use crate::state::ServerState;

/// The OpenMetrics content type prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes the snapshot current at scrape time.
struct SnapshotCollector {
    shared: Arc<Shared>,
    max_workloads: usize,
}

impl fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotCollector")
            .field("max_workloads", &self.max_workloads)
            .finish_non_exhaustive()
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One metric family: its descriptor, then one sample per label set.
fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of one sample without labels (no `{}` on the sample line).
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: M,
) -> fmt::Result {
    value.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

/// The workloads given per-workload series: the riskiest first, then by id; and how
/// many were left out.
pub(crate) fn kept(snap: &Snapshot, max: usize) -> (Vec<&WorkloadSummary>, usize) {
    let mut all: Vec<&WorkloadSummary> = snap.workloads.iter().collect();
    all.sort_by(|a, b| {
        b.risk_max
            .total_cmp(&a.risk_max)
            .then_with(|| a.id.cmp(&b.id))
    });
    let omitted = all.len().saturating_sub(max);
    all.truncate(max);
    (all, omitted)
}

const QUANTILES: [&str; 5] = ["p50", "p90", "p95", "p99", "max"];

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = self.shared.snapshot();
        let (workloads, omitted) = kept(&snap, self.max_workloads);
        let e = &mut encoder;
        let per = |f: &dyn Fn(&'_ WorkloadSummary) -> Vec<(Labels<'_>, f64)>| {
            workloads
                .iter()
                .flat_map(|w| f(w))
                .map(|(l, v)| (l, gauge(v)))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "presage_workload_usage",
            "Latest measured usage (cpu cores, memory bytes, io/net bytes per second).",
            MetricType::Gauge,
            per(&|w| by_resource(w, &w.usage)),
        )?;
        family(
            e,
            "presage_workload_limit",
            "Hard limit in force, in the resource's unit (absent when unlimited).",
            MetricType::Gauge,
            per(&|w| {
                Resource::ALL
                    .iter()
                    .filter_map(|r| {
                        let v = w.limits.hard(*r)?;
                        Some((vec![("workload", w.id.as_str()), ("resource", r.name())], v))
                    })
                    .collect()
            }),
        )?;
        let horizons: Vec<(String, &WorkloadSummary, usize)> = workloads
            .iter()
            .flat_map(|w| {
                (0..w.forecast.len()).map(move |i| (w.forecast[i].horizon_s.to_string(), *w, i))
            })
            .collect();
        let mut forecast = Vec::new();
        for (horizon, w, i) in &horizons {
            for (resource, q) in &w.forecast[*i].resources {
                let values = [q.p50, q.p90, q.p95, q.p99, q.max];
                for (name, v) in QUANTILES.iter().zip(values) {
                    let labels = vec![
                        ("workload", w.id.as_str()),
                        ("resource", resource.as_str()),
                        ("horizon_s", horizon.as_str()),
                        ("quantile", *name),
                    ];
                    forecast.push((labels, gauge(v)));
                }
            }
        }
        family(
            e,
            "presage_workload_forecast",
            "Forecast usage quantile at a horizon, in the resource's unit.",
            MetricType::Gauge,
            forecast,
        )?;
        family(
            e,
            "presage_workload_risk",
            "Estimated probability that usage exceeds the limit within the longest horizon.",
            MetricType::Gauge,
            per(&|w| by_resource(w, &w.risk)),
        )?;
        family(
            e,
            "presage_workload_anomaly_score",
            "Anomaly score (0-1; 0.5 is one component at its threshold).",
            MetricType::Gauge,
            per(&|w| vec![(vec![("workload", w.id.as_str())], w.anomaly_score)]),
        )?;
        family(
            e,
            "presage_workload_behavior_score",
            "Behavioural score (0-100, 50 neutral).",
            MetricType::Gauge,
            per(&|w| vec![(vec![("workload", w.id.as_str())], w.behavior_score)]),
        )?;
        family(
            e,
            "presage_decisions",
            "Limit decisions since the agent started, by reason.",
            MetricType::Counter,
            snap.decisions_by_reason
                .iter()
                .map(|(k, v)| (vec![("reason", k.as_str())], counter(*v))),
        )?;
        family(
            e,
            "presage_alerts",
            "Alerts since the agent started, by kind.",
            MetricType::Counter,
            snap.alerts_by_kind
                .iter()
                .map(|(k, v)| (vec![("kind", k.as_str())], counter(*v))),
        )?;
        let s = &snap.loop_stats;
        let counters = [
            ("presage_loop_ticks", "Control loop ticks run.", s.ticks),
            (
                "presage_loop_overruns",
                "Ticks that took longer than the interval.",
                s.overruns,
            ),
            ("presage_samples_read", "Samples read.", s.samples_read),
            (
                "presage_errors",
                "Problems met (sampling, adoption, store, actuation).",
                s.errors,
            ),
        ];
        for (name, help, v) in counters {
            single(e, name, help, MetricType::Counter, counter(v))?;
        }
        let gauges = [
            (
                "presage_loop_duration_seconds",
                "How long the last tick took.",
                s.last_duration_s,
            ),
            (
                "presage_loop_duration_max_seconds",
                "The longest tick since start.",
                s.max_duration_s,
            ),
            (
                "presage_loop_interval_seconds",
                "The configured seconds between ticks.",
                s.interval_s,
            ),
            (
                "presage_snapshot_timestamp_seconds",
                "When the tick shown ran (unix seconds).",
                snap.at_ms as f64 / 1000.0,
            ),
            (
                "presage_workloads",
                "Managed workloads.",
                snap.workloads.len() as f64,
            ),
            (
                "presage_metrics_workloads_omitted",
                "Workloads left out of the per-workload series (over api.metrics_max_workloads; the riskiest are kept).",
                omitted as f64,
            ),
        ];
        for (name, help, v) in gauges {
            single(e, name, help, MetricType::Gauge, gauge(v))?;
        }
        family(
            e,
            "presage_mode",
            "1 for the mode the agent is in.",
            MetricType::Gauge,
            [(vec![("mode", snap.mode.as_str())], gauge(1.0))],
        )?;
        if let Some(w) = snap.webhook {
            let webhook = [
                (
                    "presage_webhook_sent",
                    "Alerts the webhook receiver accepted.",
                    w.sent,
                ),
                (
                    "presage_webhook_failed",
                    "Alerts given up on after the last attempt.",
                    w.failed,
                ),
                (
                    "presage_webhook_retried",
                    "Webhook retries made.",
                    w.retried,
                ),
                (
                    "presage_webhook_dropped",
                    "Alerts dropped because the webhook queue was full.",
                    w.dropped,
                ),
            ];
            for (name, help, v) in webhook {
                single(e, name, help, MetricType::Counter, counter(v))?;
            }
        }
        Ok(())
    }
}

/// One labelled value per resource of a per-resource map of `w`.
fn by_resource<'a>(
    w: &'a WorkloadSummary,
    values: &'a std::collections::BTreeMap<String, f64>,
) -> Vec<(Vec<(&'static str, &'a str)>, f64)> {
    values
        .iter()
        .map(|(r, v)| {
            (
                vec![("workload", w.id.as_str()), ("resource", r.as_str())],
                *v,
            )
        })
        .collect()
}

/// The registry `/metrics` encodes: one collector reading the shared snapshot.
pub(crate) fn registry(shared: Arc<Shared>, max_workloads: usize) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        shared,
        max_workloads,
    }));
    registry
}

pub(crate) async fn metrics(
    State(state): State<ServerState>,
    raw: RawParams,
) -> Result<Response, ApiError> {
    Params::new(raw, &[])?;
    let snapshot = state.inner.shared.snapshot();
    let text = state.inner.cache.get(Kind::Metrics, &snapshot, || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &state.inner.registry)
            .map_err(|e| ApiError::internal(format!("encoding the metrics: {e}")))?;
        Ok::<_, ApiError>(Bytes::from(text))
    })?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
