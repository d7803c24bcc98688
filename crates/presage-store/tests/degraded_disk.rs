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
    // Room for SQLite's WAL to reach its auto-checkpoint size (1,000 pages) with space
    // to spare, so only the filler makes the disk full.
    let Some(fs) = Tmpfs::mount("16m") else {
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
    assert!(store.is_connected(), "{:?}", store.last_error());
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

/// A read-only bind mount of `source` at a new directory (a remount of a mount with
/// files open for writing is refused with EBUSY, so the database is read-only from the
/// agent's start, as on a host whose state volume came up read-only).
struct ReadOnlyView {
    dir: tempfile::TempDir,
}

impl ReadOnlyView {
    fn of(source: &Path) -> ReadOnlyView {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("mount")
                .args(args)
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount {args:?}");
        };
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "bind mount");
        run(&["-o", "remount,bind,ro"]);
        ReadOnlyView { dir }
    }

    fn make_writable(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,bind,rw"])
            .arg(self.dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount rw");
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_read_only_database_is_survived_and_caught_up() {
    // The bind mount itself needs root; the tmpfs guard says so when it is missing.
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    {
        let mut s = FallbackStore::with_retry(
            StoreUrl::Sqlite(fs.path().join("presage.db")),
            Duration::ZERO,
        );
        write_ticks(&mut s, 0, 3, 20);
        assert!(s.is_connected());
    }
    let view = ReadOnlyView::of(fs.path());
    let db = view.dir.path().join("presage.db");
    let mut store = FallbackStore::with_retry(StoreUrl::Sqlite(db.clone()), Duration::ZERO);
    write_ticks(&mut store, 3, 10, 20);
    store.save(&[profile("saved-while-read-only")]).unwrap();
    assert!(
        !store.is_connected(),
        "writes to a read-only database should have failed"
    );
    view.make_writable();
    write_ticks(&mut store, 13, 1, 20);
    assert!(store.is_connected(), "{:?}", store.last_error());
    assert_eq!(raw_rows(&db), 14 * 20);
    assert!(
        SqliteStore::open(&db)
            .unwrap()
            .load(&profile("saved-while-read-only").key)
            .unwrap()
            .is_some()
    );
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
