//! Webhook delivery of the response ladder's alerts (issue 7). The control loop only
//! *offers* an alert: a bounded queue takes it or, when full, drops it and counts the drop.
//! One worker thread POSTs the JSON with a connect timeout and an overall timeout, and
//! retries failures with capped exponential backoff up to a number of attempts. A
//! receiver that is down, slow or answering errors therefore costs the loop nothing but
//! a counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use presage_core::{Alert, Timestamp, WorkloadId};
use presage_engine::{Response, ResponseEvent};
use presage_policy::Rung;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::AgentError;

/// Where and how alerts are delivered (`[response]` in the agent config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL alerts are POSTed to (`http://…`); none: the webhook rung only records.
    pub webhook_url: Option<String>,
    /// Alerts waiting for delivery; more are dropped (and counted).
    pub queue: usize,
    /// Milliseconds one attempt may take in all (connect, send, answer).
    pub timeout_ms: u64,
    /// Milliseconds to establish the connection.
    pub connect_timeout_ms: u64,
    /// Attempts per alert, the first included.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled for each further one…
    pub backoff_ms: u64,
    /// …up to this.
    pub backoff_max_ms: u64,
    /// The host name in the payload (default: the kernel's host name).
    pub host: Option<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            webhook_url: None,
            queue: 256,
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            max_attempts: 5,
            backoff_ms: 500,
            backoff_max_ms: 30_000,
            host: None,
        }
    }
}

impl WebhookConfig {
    /// Checks the fields; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.webhook_url
            && !url.starts_with("http://")
        {
            return Err(format!(
                "field `response.webhook_url`: {url:?} is not an http:// URL (this build \
                 delivers plain HTTP only; put a TLS-terminating relay in front for https)"
            ));
        }
        if self.queue == 0 {
            return Err("field `response.queue`: must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("field `response.max_attempts`: must be at least 1".into());
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(
                "fields `response.timeout_ms`, `connect_timeout_ms`: must be positive".into(),
            );
        }
        Ok(())
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u64::MAX);
        Duration::from_millis(
            self.backoff_ms
                .saturating_mul(factor)
                .min(self.backoff_max_ms),
        )
    }
}

/// The JSON body POSTed for one response: what was done, to which workload on which
/// host, because of which alert and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAlert {
    /// Who sends it.
    pub source: String,
    /// The host the workload runs on.
    pub host: String,
    /// The workload.
    pub workload: WorkloadId,
    /// When the response was decided.
    pub at: Timestamp,
    /// The ladder rung.
    pub rung: Rung,
    /// The action (webhook, or the throttle/freeze/kill this notification reports).
    pub response: Response,
    /// The alert that caused it.
    pub alert: Alert,
    /// The behavioural score (0–100, 50 neutral).
    pub behavior_score: f64,
    /// The anomaly score, when the alert came from the anomaly detector.
    pub anomaly_score: Option<f64>,
    /// How carrying the action out went (`ok`, `refused`, `failed`; `deferred` for a
    /// notification only).
    pub outcome: String,
    /// What happened, for humans.
    pub message: String,
}

impl WebhookAlert {
    /// The payload for `event` on `host`.
    pub fn new(host: &str, event: &ResponseEvent) -> WebhookAlert {
        WebhookAlert {
            source: "presage".into(),
            host: host.to_owned(),
            workload: event.workload.clone(),
            at: event.at,
            rung: event.rung,
            response: event.response.clone(),
            alert: event.alert.clone(),
            behavior_score: event.behavior_score,
            anomaly_score: event.anomaly_score,
            outcome: event.outcome.to_string(),
            message: event.message.clone(),
        }
    }
}

/// Delivery counters, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Alerts the receiver accepted (a 2xx answer).
    pub sent: u64,
    /// Alerts given up on after the last attempt (or a non-retryable answer).
    pub failed: u64,
    /// Retries made (attempts after the first).
    pub retried: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WebhookStats {
        WebhookStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The delivery queue and its worker thread.
#[derive(Debug)]
pub struct WebhookSink {
    queue: Option<SyncSender<String>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    host: String,
}

impl WebhookSink {
    /// Starts the worker for `config`; `None` when no URL is configured.
    pub fn start(config: &WebhookConfig) -> Result<Option<WebhookSink>, AgentError> {
        config.validate().map_err(|message| AgentError::Config {
            file: "<config>".into(),
            message,
        })?;
        let Some(url) = config.webhook_url.clone() else {
            return Ok(None);
        };
        let (queue, rx) = sync_channel(config.queue);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            url,
            config: config.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
                .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
                // Status codes are judged here (retry 5xx, give up on most 4xx).
                .http_status_as_error(false)
                .build()
                .into(),
        };
        let worker = std::thread::Builder::new()
            .name("presage-webhook".into())
            .spawn(move || worker.run(&rx))
            .map_err(|source| AgentError::Io {
                context: "starting the webhook thread".into(),
                source,
            })?;
        Ok(Some(WebhookSink {
            queue: Some(queue),
            counters,
            stop,
            worker: Some(worker),
            host: config.host.clone().unwrap_or_else(host_name),
        }))
    }

    /// The host name the payloads carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Queues `event` for delivery without ever waiting: `false` when it was dropped
    /// (queue full, or the worker gone), which is counted.
    pub fn offer(&self, event: &ResponseEvent) -> bool {
        self.offer_alert(&WebhookAlert::new(&self.host, event))
    }

    /// [`WebhookSink::offer`] for a payload built elsewhere.
    pub fn offer_alert(&self, alert: &WebhookAlert) -> bool {
        let body = match serde_json::to_string(alert) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "webhook payload did not serialise; dropped");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let sent = match &self.queue {
            Some(q) => match q.try_send(body) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The counters now.
    pub fn stats(&self) -> WebhookStats {
        self.counters.snapshot()
    }

    /// Stops taking alerts and waits up to `grace` for the queue to drain; what is still
    /// queued or retrying then is abandoned (the agent is exiting). Returns the counters.
    pub fn close(mut self, grace: Duration) -> WebhookStats {
        self.queue = None;
        let deadline = Instant::now() + grace;
        if let Some(worker) = self.worker.take() {
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        self.counters.snapshot()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        // No join: an attempt in flight may take its whole timeout, and a process that is
        // exiting must not wait for a receiver that is down.
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Worker {
    url: String,
    config: WebhookConfig,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    agent: ureq::Agent,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Retry(String),
    GiveUp(String),
}

impl Worker {
    fn run(&self, rx: &Receiver<String>) {
        while let Ok(body) = rx.recv() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.deliver(&body);
        }
    }

    fn deliver(&self, body: &str) {
        let mut attempt = 1;
        let reason = loop {
            match self.attempt(body) {
                Attempt::Delivered => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    debug!(url = %self.url, attempt, "webhook delivered");
                    return;
                }
                Attempt::GiveUp(reason) => break reason,
                Attempt::Retry(reason) => {
                    if attempt >= self.config.max_attempts || !self.pause(attempt) {
                        break reason;
                    }
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
            }
        };
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        warn!(url = %self.url, attempts = attempt, %reason, "webhook delivery failed");
    }

    fn attempt(&self, body: &str) -> Attempt {
        let answer = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body);
        match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Attempt::Delivered,
                    // Overloaded or timed out on its side: worth another try.
                    408 | 429 | 500..=599 => Attempt::Retry(format!("HTTP {status}")),
                    // A wrong URL or a rejected payload does not fix itself.
                    _ => Attempt::GiveUp(format!("HTTP {status}")),
                }
            }
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    /// Sleeps the backoff before retry `attempt`, in slices so a stop is noticed;
    /// `false` when stopped.
    fn pause(&self, attempt: u32) -> bool {
        let until = Instant::now() + self.config.backoff(attempt);
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        !self.stop.load(Ordering::Relaxed)
    }
}

/// The kernel's host name (what an operator knows the machine by).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let c = WebhookConfig {
            backoff_ms: 100,
            backoff_max_ms: 1_000,
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|r| c.backoff(r).as_millis() as u64).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(c.backoff(200).as_millis(), 1_000, "no overflow");
    }

    #[test]
    fn bad_settings_are_named() {
        let https = WebhookConfig {
            webhook_url: Some("https://hooks.example/x".into()),
            ..WebhookConfig::default()
        };
        assert!(https.validate().unwrap_err().contains("webhook_url"));
        let zero = WebhookConfig {
            queue: 0,
            ..WebhookConfig::default()
        };
        assert!(zero.validate().unwrap_err().contains("queue"));
        assert!(
            WebhookSink::start(&WebhookConfig::default())
                .unwrap()
                .is_none(),
            "no URL, no worker"
        );
    }
}
