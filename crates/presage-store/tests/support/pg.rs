//! A real PostgreSQL server for the tests, never a mock.
//!
//! - `PRESAGE_TEST_POSTGRES` (a `postgres://` URL to a maintenance database, e.g. the
//!   CI's own server) is used when set;
//! - else, when PostgreSQL 15's binaries are installed, one server per test process is
//!   started as a direct child (initdb into a temporary directory, a free loopback
//!   port), shared by the tests, and stopped and waited for when the process exits;
//! - else the PostgreSQL tests skip, saying why once on stderr.
//!
//! Each test gets its own database ([`TestDb`]), dropped afterwards, so tests run in
//! parallel on one server without seeing each other's rows.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

/// Where Debian's PostgreSQL 15 puts its server binaries.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The server this process started, stopped at exit.
static OWN_SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The maintenance URL of the server to use, or why there is none.
fn base_url() -> Result<&'static str, &'static str> {
    static BASE: OnceLock<Result<String, String>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        if let Ok(url) = std::env::var("PRESAGE_TEST_POSTGRES") {
            return Ok(url);
        }
        let postgres = Path::new(PG_BIN).join("postgres");
        if !postgres.exists() {
            return Err(format!(
                "{} is not installed and PRESAGE_TEST_POSTGRES is not set",
                postgres.display()
            ));
        }
        // A server that is installed but will not start is a failure, not a skip.
        let server = Server::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        let url = server.url.clone();
        *OWN_SERVER.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        // SAFETY: `stop_own_server` is a plain `extern "C" fn` that catches its own
        // panics; registering it has no other precondition.
        unsafe {
            libc::atexit(stop_own_server);
        }
        Ok(url)
    });
    match base {
        Ok(url) => Ok(url.as_str()),
        Err(why) => {
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| {
                // Straight to the process's stderr: libtest captures `eprintln!`.
                let _ = writeln!(std::io::stderr(), "skipping the PostgreSQL tests: {why}");
            });
            Err(why.as_str())
        }
    }
}

/// Statics are never dropped, so the shared server is stopped here, when the test
/// harness exits (passing or failing).
extern "C" fn stop_own_server() {
    let _ = std::panic::catch_unwind(|| {
        let server = OWN_SERVER.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(server);
    });
}

/// A database of its own for one test, dropped with it.
#[derive(Debug)]
pub(crate) struct TestDb {
    admin: String,
    name: String,
    /// Its URL, without a password unless the server's URL had one.
    pub(crate) url: String,
}

impl TestDb {
    /// A fresh, empty database, or `None` (said why on stderr) without a server.
    pub(crate) fn create(tag: &str) -> Option<TestDb> {
        let admin = base_url().ok()?.to_owned();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "presage_t{}_{}_{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = Client::connect(&admin, NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_dbname(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    /// A plain driver connection to this database, for checks the store API does not
    /// expose (roll-up figures, tampering with the schema version).
    pub(crate) fn client(&self) -> Client {
        Client::connect(&self.url, NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // FORCE: a store the test leaked must not keep the database alive.
        if let Ok(mut c) = Client::connect(&self.admin, NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `url` pointing at database `name` instead (same credentials, host and parameters).
pub(crate) fn with_dbname(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_at(url.find("://").map_or(0, |i| i + 3));
    // As the driver reads it: credentials up to the first `@`, the host up to `/` or `?`.
    let host_from = rest.find('@').map_or(0, |i| i + 1);
    let path_from = rest[host_from..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_from + i);
    let query = rest[path_from..]
        .find('?')
        .map_or("", |i| &rest[path_from + i..]);
    format!("{scheme}{}/{name}{query}", &rest[..path_from])
}

/// A PostgreSQL server run as this process's child.
#[derive(Debug)]
struct Server {
    child: Child,
    url: String,
    /// Holds the cluster and the socket; removed after the server stops.
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("presage-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        // PostgreSQL refuses to run as root; as root, run it (and initdb) as `postgres`,
        // which must then own the directory.
        let as_user = if is_root() {
            let ids =
                user_ids("postgres").ok_or("running as root and there is no postgres user")?;
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .map_err(|e| format!("chown {} to postgres: {e}", dir.path().display()))?;
            Some(ids)
        } else {
            None
        };
        let command = |program: &str| {
            let mut c = Command::new(Path::new(PG_BIN).join(program));
            c.current_dir(dir.path());
            if let Some((uid, gid)) = as_user {
                c.uid(uid).gid(gid);
            }
            c
        };
        let data = dir.path().join("data");
        let started = Instant::now();
        let out = command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let initdb = started.elapsed();
        // A port taken between choosing and binding shows as an early exit: try again.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let log =
                File::create(&log_path).map_err(|e| format!("creating the server log: {e}"))?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("cloning the log handle: {e}"))?;
            let mut child = command("postgres")
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                // Throwaway data: durability costs test time and buys nothing.
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("starting postgres: {e}"))?;
            let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            match wait_ready(&mut child, &url) {
                Ok(()) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL test server on port {port} (initdb {:.1} s, ready after {:.1} s)",
                        initdb.as_secs_f64(),
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(Server {
                        child,
                        url,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    stop(&mut child);
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last = format!("{e}; server log:\n{log}");
                }
            }
        }
        Err(last)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The directory goes after this, with the fields: once the server is down.
        stop(&mut self.child);
    }
}

/// Fast shutdown (SIGINT: roll back, disconnect, exit), so the postmaster reaps its own
/// backends; SIGKILL only if it does not stop in time. Always waited for: nothing else
/// here reaps orphans.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling a child we have not yet waited for, so the pid is still ours.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_ready(child: &mut Child, url: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited early ({status})"));
        }
        match Client::connect(url, NoTls) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("not ready after 30 s: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `/proc/self` belongs to the effective user.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}
