//! The operator's surface of a running `presage agent` managing a real workload: the
//! interface contract (health, workloads, OpenAPI, mode switch behind the token), a
//! manual override reaching the kernel, `/metrics`, and the dashboard rendered by a real
//! headless Chromium (table and chart with data), with a screenshot saved under the
//! target directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use presage_linux::{Cgroup, CgroupManager, Layout};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A response: status and body.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.0 exchange (no keep-alive, no chunking): enough for a test, no client crate.
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Reply {
        status,
        body: body.to_string(),
    }
}

fn wait_for<T>(what: &str, secs: u64, mut ok: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the processes and removes the cgroups, whatever the test's outcome.
struct Guard {
    cgroups: Vec<Cgroup>,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for cg in self.cgroups.iter().rev() {
            let _ = cg.kill();
            for _ in 0..100 {
                if cg.remove().is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn ready() -> Option<Layout> {
    if !Path::new(CHROMIUM).exists() {
        println!("skipped: no {CHROMIUM} (Debian's chromium; .ci/run installs it)");
        return None;
    }
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .ok()
}

/// The headless browser the way this machine allows it: no sandbox as root, no GPU, no
/// background connections (the network is closed), a throwaway profile.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        // Time for the page's first polls and renders; virtual time runs ahead when
        // the page is idle, so this costs little wall time.
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn the_agent_serves_its_api_metrics_and_a_live_dashboard_in_a_real_browser() {
    let Some(layout) = ready() else {
        return;
    };
    let parent = format!("presage/api-{}", std::process::id());
    let leaf = format!("{parent}/web");
    let mut guard = Guard {
        cgroups: vec![
            Cgroup::create(&layout, &parent).unwrap(),
            Cgroup::create(&layout, &leaf).unwrap(),
        ],
        children: Vec::new(),
    };
    let bin = assert_cmd::cargo::cargo_bin("presage");
    let load: Vec<std::ffi::OsString> = [
        bin.to_str().unwrap(),
        "loadgen",
        "--pattern",
        "periodic:period=10,low-cpu=0.05,high-cpu=0.25,low-mem=32M,high-mem=64M,duty=0.5,ramp=1",
        "--duration",
        "300",
    ]
    .iter()
    .map(Into::into)
    .collect();
    guard.children.push(
        presage_agent::run::spawn_in_cgroup(
            &load,
            &bin,
            &presage_agent::run::procs_files(&layout, &leaf),
        )
        .unwrap(),
    );

    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-for-the-test";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let port = free_port();
    let config = dir.path().join("presage.toml");
    let settings = format!(
        "mode = \"recommend\"\ninterval_s = 0.5\ndecide_every_s = 2\nrediscover_every_s = 1\n\
         data_dir = {:?}\n[discovery]\nroots = [\"{parent}/*\"]\n[presage]\nwarmup_s = 10\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n",
        dir.path().display().to_string(),
        token_file.display().to_string(),
    );
    let with_policy = |name: &str, extra: &str| {
        format!(
            "{settings}[[policies]]\nname = \"{name}\"\nmatch = {{ cgroup = \"{parent}/*\" }}\n\
             weight = 2.0\n{extra}"
        )
    };
    std::fs::write(&config, with_policy("web", "")).unwrap();
    guard.children.push(
        Command::new(&bin)
            .args(["agent", "--config"])
            .arg(&config)
            .spawn()
            .unwrap(),
    );

    // The contract: health, a JSON array of workloads, the OpenAPI document.
    wait_for("GET /healthz to answer 200", 60, || {
        TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http(port, "GET", "/healthz", None, None).status == 200).then_some(())
    });
    let id = leaf.clone();
    let encoded = id.replace('/', "%2F");
    let workload = wait_for("the workload with a forecast", 90, || {
        let list = http(port, "GET", "/api/v1/workloads", None, None).json();
        let w = list
            .as_array()?
            .iter()
            .find(|w| w["id"] == id.as_str())?
            .clone();
        (!w["forecast"].as_array()?.is_empty()).then_some(w)
    });
    assert!(
        workload["usage"]["cpu"].as_f64().unwrap() >= 0.0,
        "{workload}"
    );
    assert_eq!(workload["policy_name"], "web", "{workload}");
    let openapi = http(port, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(openapi.status, 200);
    assert!(
        openapi.json()["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.")
    );

    // Mutations need the token.
    let enforce = r#"{"mode":"enforce"}"#;
    assert_eq!(
        http(port, "POST", "/api/v1/mode", None, Some(enforce)).status,
        401
    );
    assert_eq!(
        http(port, "POST", "/api/v1/mode", Some("wrong"), Some(enforce)).status,
        401
    );
    let switched = http(port, "POST", "/api/v1/mode", Some(token), Some(enforce));
    assert_eq!(switched.status, 200, "{}", switched.body);
    let status = http(port, "GET", "/api/v1/status", None, None).json();
    assert_eq!(status["mode"], "enforce", "{status}");
    let bad = http(
        port,
        "POST",
        "/api/v1/mode",
        Some(token),
        Some(r#"{"mode":"loud"}"#),
    );
    assert!((400..500).contains(&bad.status), "{}", bad.body);
    assert!(bad.json()["error"].is_string(), "{}", bad.body);

    // A manual override reaches the kernel, and ends on request.
    let cg = Cgroup::open(&layout, &leaf).unwrap();
    let path = format!("/api/v1/workloads/{encoded}/override");
    let set = http(
        port,
        "PUT",
        &path,
        Some(token),
        Some(r#"{"limits":{"cpu_quota_cores":0.35},"ttl_s":120}"#),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    wait_for("the override's quota in cpu.max", 20, || {
        let q = cg.read_limits().ok()?.cpu_quota_cores()?;
        ((q - 0.35).abs() < 1e-6).then_some(())
    });
    let one = http(
        port,
        "GET",
        &format!("/api/v1/workloads/{encoded}"),
        None,
        None,
    )
    .json();
    assert!(
        one["override_limits"]["expires_at_ms"].as_i64().is_some(),
        "{one}"
    );
    assert_eq!(http(port, "DELETE", &path, Some(token), None).status, 200);

    // Policies reload through the API: a bad file is refused with its line and key, and
    // the old policies stay; a good one moves the workload. SIGHUP does the same.
    let reload = "/api/v1/policies/reload";
    let policy_of = || {
        http(
            port,
            "GET",
            &format!("/api/v1/workloads/{encoded}"),
            None,
            None,
        )
        .json()["policy_name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let bad = with_policy("api", "wieght = 3.0\n");
    let bad_line = bad.lines().position(|l| l.starts_with("wieght")).unwrap() + 1;
    std::fs::write(&config, &bad).unwrap();
    let refused = http(port, "POST", reload, Some(token), None);
    assert_eq!(refused.status, 422, "{}", refused.body);
    let why = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("wieght") && why.contains(&format!("presage.toml:{bad_line}:")),
        "{why}"
    );
    assert_eq!(policy_of(), "web", "the old policies stayed");
    let policies = http(port, "GET", "/api/v1/policies", None, None).json();
    assert!(
        policies["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("wieght")),
        "{policies}"
    );
    std::fs::write(&config, with_policy("api", "")).unwrap();
    let reloaded = http(port, "POST", reload, Some(token), None);
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    wait_for("the reloaded policy on the workload", 10, || {
        (policy_of() == "api").then_some(())
    });
    std::fs::write(&config, with_policy("hup", "")).unwrap();
    let agent_pid = guard.children.last().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &agent_pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("SIGHUP to reload the policies", 20, || {
        (policy_of() == "hup").then_some(())
    });

    // Metrics for the workload and the loop.
    let metrics = http(port, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    let workload_label = format!("workload=\"{id}\"");
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("presage_workload_usage")
                && l.contains(&workload_label)
                && l.contains("resource=\"cpu\"")),
        "no usage series for {id}:\n{}",
        metrics.body
    );
    assert!(metrics.body.contains("presage_loop_ticks_total"));

    // Half a minute of history, so the chart has a shape (and the screenshot says
    // something).
    wait_for("30 s of history", 90, || {
        let h = http(
            port,
            "GET",
            &format!("/api/v1/workloads/{encoded}/history"),
            None,
            None,
        );
        (h.json()["points"].as_array()?.len() >= 60).then_some(())
    });

    // The dashboard in a real browser: the table lists the workload and its chart has
    // points, usage, limit and envelope.
    let url = format!("http://127.0.0.1:{port}/#/workload/{encoded}");
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the table never rendered:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-id=\"{id}\"")),
        "no table row for {id}:\n{dom}"
    );
    for class in ["usage", "limit", "envelope"] {
        assert!(
            dom.contains(&format!("class=\"{class}")),
            "the chart has no {class} path:\n{dom}"
        );
    }
    let points = chart_points(&dom);
    assert!(points >= 2, "the chart has {points} points:\n{dom}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "no screenshot ({size} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("dashboard screenshot: {} ({size} bytes)", shot.display());

    // SIGTERM: the agent stops cleanly.
    let agent = guard.children.last_mut().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = wait_for("the agent to exit", 20, || agent.try_wait().unwrap());
    assert!(exit.success(), "agent exit {exit:?}");
}

/// The largest `data-chart-points` in the DOM.
fn chart_points(dom: &str) -> usize {
    dom.split("data-chart-points=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}
