//! The point of the product on this host, in short: a periodic load under a static
//! limit at its average, the reactive threshold rule and presage (`presage compare-live`).
//! presage must have no OOM kill, no more throttling (within half a second) and no more
//! allocation than the threshold rule, once it has learnt the load. The full-length run is in
//! docs/EVALUATION.md. Runs as root; skips with the reason otherwise.

use assert_cmd::Command;
use serde_json::Value;

fn can_manage_cgroups() -> bool {
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .is_ok()
}

#[test]
fn presage_beats_the_threshold_rule_on_a_periodic_load() {
    if !can_manage_cgroups() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare.json");
    let output = Command::cargo_bin("presage")
        .unwrap()
        .args([
            "compare-live",
            "--pattern",
            "periodic:period=30,low-cpu=0.1,high-cpu=0.4,low-mem=64M,high-mem=256M,duty=0.3,ramp=3",
            "--duration",
            "180",
            "--warmup",
            "75",
            "--out-json",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    println!("{table}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arms: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let arm = |name: &str| {
        arms.iter()
            .find(|a| a["arm"] == name)
            .unwrap_or_else(|| panic!("no arm {name}"))
            .clone()
    };
    let (presage, threshold, fixed) = (
        arm("presage"),
        arm("reactive threshold"),
        arm("static at the average"),
    );
    let f = |a: &Value, k: &str| a["steady"][k].as_f64().unwrap();
    assert_eq!(
        presage["summary"]["oom_kills"], 0,
        "presage OOM-killed: {table}"
    );
    // In three minutes the threshold rule moves off the provisioned core at most a few
    // times, so it may not throttle at all; presage, already at the load's peak, may lose
    // a few milliseconds at a ramp. Half a second of slack over 180 s keeps the check
    // about the shape, not noise; the 15-minute run in docs/EVALUATION.md shows it
    // strictly.
    assert!(
        f(&presage, "throttled_s") <= f(&threshold, "throttled_s") + 0.5,
        "presage throttled more than the threshold rule: {table}"
    );
    assert!(
        f(&presage, "mean_cpu_limit") <= f(&threshold, "mean_cpu_limit"),
        "{table}"
    );
    assert!(
        f(&presage, "mean_memory_limit") <= f(&threshold, "mean_memory_limit"),
        "{table}"
    );
    // The static limit at the average is the cautionary tale: it throttles and kills.
    assert!(
        f(&fixed, "throttled_s") > f(&presage, "throttled_s"),
        "{table}"
    );
}
