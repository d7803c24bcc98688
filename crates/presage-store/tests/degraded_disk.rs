//! A full disk or a read-only database: writes wait in memory, nothing fails upwards, and
//! everything lands once the disk is writable again. Real filesystems: a size-limited
//! tmpfs (root only; skipped with the reason otherwise).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use presage_core::{Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey};
use presage_engine::{Profile, ProfileStore, TickWrite};
use presage_store::{AdminStore, FallbackStore, SqliteStore, StoreUrl};

/// A tmpfs of `size` at a new temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: this host refused to mount a tmpfs");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn tick(at_s: i64, n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let mut u = Usage::empty();
            u.set(Resource::Cpu, 0.25).unwrap();
            Sample::new(
                Timestamp::from_unix_secs(at_s),
                WorkloadId::new(format!("w{i}")).unwrap(),
                1000,
                u,
            )
            .unwrap()
        })
        .collect()
}

fn profile(code: &str) -> Profile {
    Profile {
        key: WorkloadKey::new(code, "", "in", "0").unwrap(),
        version: 1,
        samples: 10,
        updated_at: Timestamp::from_unix_secs(1),
        model: None,
    }
}

fn write_ticks(store: &mut FallbackStore, from_s: i64, ticks: i64, per_tick: usize) {
    for t in from_s..from_s + ticks {
        let samples = tick(t, per_tick);
        // The engine never sees a store error: that is the point.
        store
            .record(TickWrite {
                samples: &samples,
                ..TickWrite::default()
            })
            .unwrap();
    }
}

fn raw_rows(db: &Path) -> u64 {
    SqliteStore::open(db).unwrap().counts().unwrap().raw_samples
}

#[test]
fn a_full_disk_is_survived_and_caught_up() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let db = fs.path().join("presage.db");
    let mut store = FallbackStore::with_retry(StoreUrl::Sqlite(db.clone()), Duration::ZERO);
    write_ticks(&mut store, 0, 5, 50);
    assert!(store.is_connected());
    // Fill the disk: the next writes fail (SQLITE_FULL) and wait in memory.
    let filler = fs.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    write_ticks(&mut store, 5, 200, 50);
    store.save(&[profile("saved-while-full")]).unwrap();
    assert!(
        !store.is_connected(),
        "writes to a full disk should have failed"
    );
    // A workload re-adopted meanwhile still starts from what was saved.
    assert!(
        store
            .load(&profile("saved-while-full").key)
            .unwrap()
            .is_some()
    );
    std::fs::remove_file(&filler).unwrap();
    write_ticks(&mut store, 205, 1, 50);
    assert!(store.is_connected());
    assert_eq!(
        raw_rows(&db),
        206 * 50,
        "every tick landed once the disk had room"
    );
    assert_eq!(store.dropped_samples(), 0);
    let mut check = SqliteStore::open(&db).unwrap();
    assert_eq!(check.integrity_check().unwrap(), "ok");
    assert!(
        check
            .load(&profile("saved-while-full").key)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_read_only_database_is_survived_and_caught_up() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let db = fs.path().join("presage.db");
    let mut store = FallbackStore::with_retry(StoreUrl::Sqlite(db.clone()), Duration::ZERO);
    write_ticks(&mut store, 0, 3, 20);
    fs.remount("ro");
    write_ticks(&mut store, 3, 10, 20);
    assert!(
        !store.is_connected(),
        "writes to a read-only filesystem should have failed"
    );
    fs.remount("rw");
    write_ticks(&mut store, 13, 1, 20);
    assert!(store.is_connected());
    assert_eq!(raw_rows(&db), 14 * 20);
}

#[test]
fn a_store_that_cannot_be_opened_starts_in_memory_and_opens_later() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be: opening fails until it is gone.
    let db = dir.path().join("presage.db");
    std::fs::create_dir(&db).unwrap();
    let mut store = FallbackStore::with_retry(StoreUrl::Sqlite(db.clone()), Duration::ZERO);
    assert!(!store.is_connected());
    store.save(&[profile("early")]).unwrap();
    write_ticks(&mut store, 0, 2, 5);
    std::fs::remove_dir(&db).unwrap();
    write_ticks(&mut store, 2, 1, 5);
    assert!(store.is_connected());
    assert_eq!(raw_rows(&db), 15);
    assert!(
        SqliteStore::open(&db)
            .unwrap()
            .load(&profile("early").key)
            .unwrap()
            .is_some()
    );
}
