//! `kill -9` of a writer in the middle of its writes, again and again: the database
//! opens, passes `PRAGMA integrity_check`, and has lost at most the tick being written.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use presage_store::{AdminStore, SqliteStore};

const WORKLOADS: u64 = 300;

/// Starts a writer appending ticks from `start_s`, lets it commit about `ticks` of them,
/// kills it with SIGKILL and returns the last tick it reported committed.
fn write_then_kill(db: &std::path::Path, start_s: i64, ticks: u64) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presage"))
        .args([
            "bench",
            "store",
            "--unpaced",
            "--print-ticks",
            "--profiles",
            "0",
        ])
        .args([
            "--workloads",
            &WORKLOADS.to_string(),
            "--seconds",
            "1000000",
        ])
        .args(["--start-s", &start_s.to_string()])
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut last = 0;
    let mut line = String::new();
    while last < ticks {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "writer ended early");
        last = line.trim().trim_start_matches("tick ").parse().unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Ticks reported after the one we stopped reading at were committed too.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    rest.lines()
        .rev()
        .find_map(|l| l.trim().trim_start_matches("tick ").parse().ok())
        .unwrap_or(last)
}

#[test]
fn kill_9_mid_write_keeps_the_database_sound_and_loses_at_most_one_tick() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presage.db");
    let mut committed = 0u64;
    for round in 0..6u64 {
        let reported = write_then_kill(
            &db,
            1_700_000_000 + round as i64 * 10_000_000,
            5 + round * 7,
        );
        let mut store = SqliteStore::open(&db).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok", "round {round}");
        let rows = store.counts().unwrap().raw_samples;
        assert_eq!(
            rows % WORKLOADS,
            0,
            "round {round}: a partial tick of {rows} rows"
        );
        let ticks = rows / WORKLOADS - committed;
        // The tick being written when the kill landed may or may not have committed.
        assert!(
            ticks == reported || ticks == reported + 1,
            "round {round}: {ticks} ticks stored, {reported} reported committed"
        );
        committed += ticks;
    }
    assert!(committed >= 5 + 12 + 19 + 26 + 33 + 40);
}
