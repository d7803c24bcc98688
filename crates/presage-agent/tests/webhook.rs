//! Webhook delivery against a real HTTP server on loopback that each test controls: a
//! receiver that is down, slow, failing or flooded never blocks the caller, and every
//! outcome is counted.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use presage_agent::{WebhookAlert, WebhookConfig, WebhookSink, WebhookStats};
use presage_core::{Alert, AlertKind, Severity, Timestamp, WorkloadId};
use presage_engine::{Outcome, Response, ResponseEvent};
use presage_policy::Rung;

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: String,
}

/// A server answering each request with the next status of `statuses` (the last one
/// repeats) after `delay`, reporting what it received.
fn server(statuses: Vec<u16>, delay: Duration) -> (String, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let status = statuses[i.min(statuses.len() - 1)];
            let tx = tx.clone();
            // One thread per connection, so a slow answer does not hold the next one.
            thread::spawn(move || {
                if let Some(seen) = read_request(&conn) {
                    let _ = tx.send(seen);
                }
                thread::sleep(delay);
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (url, rx)
}

fn read_request(conn: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        head,
        body: String::from_utf8(body).ok()?,
    })
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        webhook_url: Some(url.to_owned()),
        queue: 16,
        timeout_ms: 300,
        connect_timeout_ms: 300,
        max_attempts: 3,
        backoff_ms: 20,
        backoff_max_ms: 100,
        host: Some("node-7".into()),
    }
}

fn event() -> ResponseEvent {
    let workload = WorkloadId::new("system.slice/miner.service").unwrap();
    let at = Timestamp::from_unix_secs(1_700_000_000);
    ResponseEvent {
        workload: workload.clone(),
        at,
        response: Response::Webhook,
        rung: Rung::Webhook,
        alert: Alert {
            workload,
            at,
            kind: AlertKind::Anomaly,
            severity: Severity::Critical,
            score: 0.97,
            message: "CPU far above its profile".into(),
        },
        behavior_score: 88.5,
        anomaly_score: Some(0.97),
        outcome: Outcome::Deferred,
        message: "left to the harness".into(),
    }
}

/// Waits until `done(stats)` or 10 s, returning the last stats.
fn wait_for(sink: &WebhookSink, done: impl Fn(&WebhookStats) -> bool) -> WebhookStats {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let s = sink.stats();
        if done(&s) || Instant::now() > until {
            return s;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn delivers_the_alert_as_json() {
    let (url, seen) = server(vec![200], Duration::ZERO);
    let sink = WebhookSink::start(&config(&url)).unwrap().unwrap();
    assert!(sink.offer(&event()));
    let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(got.head.starts_with("POST /hook "), "{}", got.head);
    assert!(
        got.head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        got.head
    );
    let body: WebhookAlert = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body, WebhookAlert::new("node-7", &event()));
    let raw: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(raw["host"], "node-7");
    assert_eq!(raw["workload"], "system.slice/miner.service");
    assert_eq!(raw["rung"], "webhook");
    assert_eq!(raw["response"]["action"], "webhook");
    assert_eq!(raw["alert"]["kind"], "anomaly");
    assert_eq!(raw["behavior_score"], 88.5);
    assert_eq!(raw["anomaly_score"], 0.97);
    let stats = wait_for(&sink, |s| s.sent == 1);
    assert_eq!(
        stats,
        WebhookStats {
            sent: 1,
            ..WebhookStats::default()
        }
    );
}

#[test]
fn a_server_that_is_down_costs_retries_then_a_counted_failure_never_a_wait() {
    // Bound then closed: connection refused.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let sink = WebhookSink::start(&config(&url)).unwrap().unwrap();
    let start = Instant::now();
    assert!(sink.offer(&event()));
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "offer waited {:?}",
        start.elapsed()
    );
    let stats = wait_for(&sink, |s| s.failed == 1);
    assert_eq!(
        stats,
        WebhookStats {
            failed: 1,
            retried: 2,
            ..WebhookStats::default()
        }
    );
}

#[test]
fn a_slow_server_times_out_without_blocking_the_caller() {
    let (url, seen) = server(vec![200], Duration::from_secs(3));
    let mut c = config(&url);
    c.max_attempts = 1;
    let sink = WebhookSink::start(&c).unwrap().unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        assert!(sink.offer(&event()));
    }
    assert!(start.elapsed() < Duration::from_millis(50));
    seen.recv_timeout(Duration::from_secs(5)).unwrap();
    // Three attempts of at most ~300 ms each, far less than the server's 3 s.
    let stats = wait_for(&sink, |s| s.failed == 3);
    assert_eq!(stats.failed, 3, "{stats:?}");
    assert_eq!(stats.sent, 0);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "timed out after {:?}",
        start.elapsed()
    );
}

#[test]
fn server_errors_are_retried_with_backoff_until_it_recovers() {
    let (url, seen) = server(vec![500, 503, 200], Duration::ZERO);
    let mut c = config(&url);
    c.max_attempts = 5;
    c.backoff_ms = 100;
    c.backoff_max_ms = 1_000;
    let sink = WebhookSink::start(&c).unwrap().unwrap();
    assert!(sink.offer(&event()));
    let stats = wait_for(&sink, |s| s.sent == 1);
    assert_eq!(
        stats,
        WebhookStats {
            sent: 1,
            retried: 2,
            ..WebhookStats::default()
        }
    );
    let mut times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let s = seen.recv_timeout(Duration::from_secs(1)).unwrap();
        times.push(Instant::now());
        bodies.push(s.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "same alert each time"
    );
    // A client error is not retried.
    let (url, _seen) = server(vec![404], Duration::ZERO);
    let sink = WebhookSink::start(&config(&url)).unwrap().unwrap();
    sink.offer(&event());
    let stats = wait_for(&sink, |s| s.failed == 1);
    assert_eq!(stats.retried, 0, "{stats:?}");
}

#[test]
fn backoff_spaces_the_retries() {
    let (url, seen) = server(vec![500, 500, 200], Duration::ZERO);
    let mut c = config(&url);
    c.max_attempts = 3;
    c.backoff_ms = 200;
    c.backoff_max_ms = 1_000;
    let sink = WebhookSink::start(&c).unwrap().unwrap();
    sink.offer(&event());
    let mut at = Vec::new();
    for _ in 0..3 {
        seen.recv_timeout(Duration::from_secs(5)).unwrap();
        at.push(Instant::now());
    }
    // 200 ms, then 400 ms (a little slack for the scheduler).
    assert!(
        at[1] - at[0] >= Duration::from_millis(180),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_millis(360),
        "{:?}",
        at[2] - at[1]
    );
    assert_eq!(wait_for(&sink, |s| s.sent == 1).sent, 1);
}

#[test]
fn a_full_queue_drops_and_counts() {
    // The worker is held by a 2 s answer; the queue holds 2 more.
    let (url, _seen) = server(vec![200], Duration::from_secs(2));
    let mut c = config(&url);
    c.queue = 2;
    c.timeout_ms = 5_000;
    let sink = WebhookSink::start(&c).unwrap().unwrap();
    let start = Instant::now();
    let accepted = (0..10).filter(|_| sink.offer(&event())).count() as u64;
    assert!(start.elapsed() < Duration::from_millis(50));
    let stats = sink.stats();
    assert!((2..=3).contains(&accepted), "accepted {accepted}");
    assert_eq!(stats.dropped, 10 - accepted, "{stats:?}");
    // Closing abandons what is left without waiting for the slow receiver.
    let start = Instant::now();
    sink.close(Duration::from_millis(100));
    assert!(start.elapsed() < Duration::from_secs(1));
}
