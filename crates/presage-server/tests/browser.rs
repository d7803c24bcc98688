//! The dashboard in a real headless Chromium: the table renders, and opening a workload
//! through the URL hash draws both charts with usage, limit, envelope and markers.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;

use common::*;
use presage_server::spawn;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn dashboard_renders_table_and_charts_in_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let f = fixture();
    let handle = spawn("127.0.0.1:0", f.state.clone()).unwrap();
    let url = format!(
        "http://{}/#/workload/system.slice%2Fnginx.service",
        handle.local_addr()
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-ready=\"1\""),
        "table never rendered:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dom.matches("class=\"workload").count(), 2, "{dom}");
    assert!(
        dom.contains("data-id=\"system.slice/nginx.service\""),
        "{dom}"
    );
    for chart in ["chart-cpu", "chart-memory"] {
        let at = dom
            .find(&format!("id=\"{chart}\""))
            .unwrap_or_else(|| panic!("no #{chart}"));
        let rest = &dom[at..];
        let end = rest.find("</figure>").unwrap();
        let part = &rest[..end];
        assert!(part.contains("data-chart-points=\"5\""), "{chart}: {part}");
        for class in ["usage", "limit", "envelope", "marker-decision"] {
            assert!(
                part.contains(&format!("class=\"{class}\"")),
                "{chart} lacks .{class}: {part}"
            );
        }
        assert!(
            part.contains("proactive_raise"),
            "{chart}: marker title missing"
        );
    }
    assert!(dom.contains("recommend"), "mode not shown");
    handle.stop();
}
