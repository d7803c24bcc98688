//! `presage bench api`: the HTTP API under load with N managed workloads. The agent runs
//! its real loop (enforce mode, 1 s interval) on this thread over N cgroups while `wrk`
//! (Debian's package, a separate process on loopback) hammers one GET endpoint at a time;
//! each endpoint's requests/s, latency percentiles and errors are reported beside what
//! the loop did meanwhile (ticks, slowest tick, overruns).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use presage_agent::surface::Surface;
use presage_agent::{Agent, AgentConfig, AgentTick, LoopHooks, Mode, Persistence};
use presage_linux::Layout;

use crate::bench_cmd::Tree;

/// Settings of `presage bench api`.
#[derive(Debug, Parser)]
pub(crate) struct ApiArgs {
    /// Managed workloads (empty cgroups created for the run).
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Seconds of load per endpoint.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Concurrent connections wrk keeps open.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
}

/// What wrk measured on one endpoint.
#[derive(Debug, Default)]
struct Load {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// The loop's ticks during one endpoint's load.
#[derive(Debug, Default, Clone)]
struct LoopWindow {
    ticks: u64,
    max_tick_s: f64,
    max_gap_s: f64,
    overruns: u64,
}

struct BenchHooks {
    surface: Surface,
    window: Arc<std::sync::Mutex<LoopWindow>>,
    last_start: Option<Instant>,
    interval_s: f64,
}

impl LoopHooks for BenchHooks {
    fn on_tick(&mut self, agent: &mut Agent, tick: &AgentTick, took: Duration) {
        self.surface.publish(agent, tick, took);
        let start = Instant::now() - took;
        let gap = self
            .last_start
            .map_or(0.0, |s| start.duration_since(s).as_secs_f64());
        self.last_start = Some(start);
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.ticks += 1;
        w.max_tick_s = w.max_tick_s.max(took.as_secs_f64());
        w.max_gap_s = w.max_gap_s.max(gap);
        w.overruns += u64::from(took.as_secs_f64() > self.interval_s);
    }

    fn idle(&mut self, agent: &mut Agent) {
        self.surface.serve(agent);
    }
}

pub(crate) fn run(args: &ApiArgs) -> Result<()> {
    let wrk = which("wrk").context("`wrk` is not installed (Debian: apt-get install wrk)")?;
    let layout = Layout::detect().context("detecting the cgroup layout")?;
    let (tree, parent_rel) = Tree::create(&layout, args.workloads)?;
    let dir = tempfile::tempdir().context("creating a data dir")?;
    let text = format!(
        "mode = \"enforce\"\nnetwork = false\ninterval_s = 1.0\nrediscover_every_s = 30\n\
         [presage]\nwarmup_s = 0\n[discovery]\nroots = [\"{parent_rel}/*\"]\nskip_empty = false\n"
    );
    let mut config = AgentConfig::from_toml(&text, std::path::Path::new("<bench>"))?;
    config.data_dir = dir.path().to_path_buf();
    config.mode = Mode::Enforce;
    let mut agent = Agent::new(config, Persistence::DataDir(dir.path().to_path_buf()), true)?;
    let surface = Surface::new(Mode::Enforce, 1.0, 900);
    let state = presage_server::ServerState::new(surface.shared(), None, None, 1000);
    let server = presage_server::spawn("127.0.0.1:0", state).context("starting the server")?;
    let base = format!("http://{}", server.local_addr());
    let window = Arc::new(std::sync::Mutex::new(LoopWindow::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = vec![
        "/healthz".to_string(),
        "/api/v1/status".to_string(),
        format!(
            "/api/v1/workloads/{}",
            format!("{parent_rel}/c7").replace('/', "%2F")
        ),
        "/api/v1/workloads?sort=risk&limit=50".to_string(),
        "/api/v1/workloads".to_string(),
        "/metrics".to_string(),
    ];
    let driver = {
        let (window, stop, args) = (
            window.clone(),
            stop.clone(),
            (args.seconds, args.connections, args.threads),
        );
        let base = base.clone();
        std::thread::spawn(move || -> Result<Vec<(String, Load, LoopWindow)>> {
            // Adoption of every cgroup and a few ticks first: the API is measured on a
            // loop in its steady state.
            std::thread::sleep(Duration::from_secs(8));
            let mut out = Vec::new();
            for path in endpoints {
                *window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = LoopWindow::default();
                let load = wrk_run(&wrk, &format!("{base}{path}"), args);
                let w = window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                out.push((path, load?, w));
            }
            stop.store(true, Ordering::Relaxed);
            Ok(out)
        })
    };
    let mut hooks = BenchHooks {
        surface,
        window,
        last_start: None,
        interval_s: 1.0,
    };
    agent.run_until(&stop, &mut hooks);
    let results = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the load driver panicked"))??;
    server.stop();
    agent.shutdown(true);
    drop(tree);
    print_table(args, &results);
    Ok(())
}

fn print_table(args: &ApiArgs, results: &[(String, Load, LoopWindow)]) {
    println!(
        "{} managed workloads; wrk -t{} -c{} -d{}s per endpoint; agent loop at 1 s in enforce mode",
        args.workloads, args.threads, args.connections, args.seconds
    );
    println!(
        "| endpoint | requests/s | p50 ms | p99 ms | errors | loop ticks | slowest tick s | longest tick-to-tick s | overruns |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (path, l, w) in results {
        println!(
            "| `{path}` | {:.0} | {:.2} | {:.2} | {} | {} | {:.3} | {:.3} | {} |",
            l.requests_per_s,
            l.p50_ms,
            l.p99_ms,
            l.errors,
            w.ticks,
            w.max_tick_s,
            w.max_gap_s,
            w.overruns
        );
    }
}

fn which(name: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found on PATH"))
}

fn wrk_run(
    wrk: &std::path::Path,
    url: &str,
    (secs, conns, threads): (u32, u32, u32),
) -> Result<Load> {
    let out = Command::new(wrk)
        .args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
            "--latency".to_string(),
            url.to_string(),
        ])
        .output()
        .with_context(|| format!("running wrk on {url}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "wrk failed on {url}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's report on {url}:\n{text}"))
}

/// The numbers of wrk's `--latency` report.
fn parse_wrk(text: &str) -> Result<Load> {
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", v] => load.requests_per_s = v.parse()?,
            ["50%", v] => load.p50_ms = millis(v)?,
            ["99%", v] => load.p99_ms = millis(v)?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for n in rest.iter().skip(1).step_by(2) {
                    load.errors += n.trim_end_matches(',').parse::<u64>()?;
                }
            }
            _ => {}
        }
    }
    if load.requests_per_s <= 0.0 {
        bail!("no Requests/sec line");
    }
    Ok(load)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`.
fn millis(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("unknown duration {v:?}");
    };
    Ok(num.parse::<f64>()? * scale)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 10s test @ http://127.0.0.1:1/healthz\n  2 threads and 32 connections\n\
          Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.20ms  300.00us   9.00ms   80.00%\n\
          Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     90%    1.50ms\n     99%    2.50ms\n\
          123456 requests in 10.00s, 20.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
          Non-2xx or 3xx responses: 4\nRequests/sec:  12345.60\nTransfer/sec:      2.00MB\n";
        let l = parse_wrk(text).unwrap();
        assert!((l.requests_per_s - 12345.6).abs() < 1e-9);
        assert!((l.p50_ms - 0.812).abs() < 1e-9);
        assert!((l.p99_ms - 2.5).abs() < 1e-9);
        assert_eq!(l.errors, 7);
        assert!(parse_wrk("nothing").is_err());
        assert!(millis("3x").is_err());
    }
}
