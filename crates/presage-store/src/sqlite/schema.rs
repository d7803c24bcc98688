//! The SQLite schema, one migration per version.

/// The schema version this build writes; older databases are migrated on open, newer ones
/// refused (a downgraded binary must not write a schema it does not know).
pub const SCHEMA_VERSION: i64 = 3;

/// Each step takes the schema from its index to the next version.
pub(super) const MIGRATIONS: &[&str] = &[
    // 0 → 1: profiles keyed by what the code is, and the audit trail.
    "CREATE TABLE profiles (
        code_id TEXT NOT NULL,
        code_version TEXT NOT NULL,
        input_hash TEXT NOT NULL,
        user TEXT NOT NULL,
        version INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        model TEXT,
        PRIMARY KEY (code_id, code_version, input_hash, user)
    );
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX decisions_by_workload ON decisions (workload, at_ms);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX alerts_by_workload ON alerts (workload, at_ms);",
    // 1 → 2: executions, samples at three resolutions, fingerprints for cold starts.
    "CREATE TABLE executions (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        code_id TEXT NOT NULL,
        code_version TEXT NOT NULL,
        input_hash TEXT NOT NULL,
        user TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        exit_status INTEGER,
        samples INTEGER NOT NULL,
        peak TEXT NOT NULL,
        total TEXT NOT NULL,
        prior TEXT,
        prior_error REAL
    );
    CREATE INDEX executions_by_code ON executions (code_id, started_ms);
    CREATE TABLE samples_raw (
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        interval_ms INTEGER NOT NULL,
        cpu REAL, memory REAL, io_read REAL, io_write REAL, net_rx REAL, net_tx REAL
    );
    CREATE INDEX samples_raw_by_workload ON samples_raw (workload, at_ms);
    CREATE INDEX samples_raw_by_time ON samples_raw (at_ms);
    CREATE TABLE samples_rollup (
        resolution_s INTEGER NOT NULL,
        workload TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        n INTEGER NOT NULL,
        cpu_mean REAL, cpu_max REAL,
        memory_mean REAL, memory_max REAL,
        io_read_mean REAL, io_read_max REAL,
        io_write_mean REAL, io_write_max REAL,
        net_rx_mean REAL, net_rx_max REAL,
        net_tx_mean REAL, net_tx_max REAL,
        PRIMARY KEY (resolution_s, workload, bucket_ms)
    );
    CREATE INDEX samples_rollup_by_time ON samples_rollup (resolution_s, bucket_ms);
    CREATE TABLE fingerprints (
        code_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        features TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );",
    // 2 → 3: the behavioural score beside each decision, and the response audit trail
    // (what the anomaly ladder did, to whom, because of which alert and scores, and how
    // it went). Query columns plus the JSON body that is read back.
    "ALTER TABLE decisions ADD COLUMN behavior_score REAL;
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        action TEXT NOT NULL,
        rung INTEGER NOT NULL,
        cpu_cores REAL,
        alert_kind TEXT NOT NULL,
        alert_severity TEXT NOT NULL,
        alert_score REAL,
        behavior_score REAL,
        anomaly_score REAL,
        outcome TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX responses_by_workload ON responses (workload, at_ms);
    CREATE INDEX responses_by_time ON responses (at_ms);",
];
