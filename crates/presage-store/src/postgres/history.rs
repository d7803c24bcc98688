//! Samples at three resolutions, executions, the audit trail, and the retention pass
//! that rolls one resolution into the next, with the semantics of `sqlite/history.rs`.

use crate::rollup::{Cuts, rollup_columns};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, Statement, Transaction};
use presage_core::{Decision, Resource, Sample, Timestamp};
use presage_engine::{Execution, ResponseEvent, Retention, RetentionReport, StoreError};

use super::pg_err;
use crate::{AuditTable, ResponseColumns, json_err};

/// Samples go in by binary COPY: one round trip for the whole tick whatever its size,
/// and no per-row parse or plan (1,000 samples per tick is the expected load).
pub(super) const COPY_SAMPLES: &str = "COPY samples_raw
    (workload, at_ms, interval_ms, cpu, memory, io_read, io_write, net_rx, net_tx)
    FROM STDIN (FORMAT binary)";

/// The column types of [`COPY_SAMPLES`], in its order.
const SAMPLE_TYPES: [Type; 9] = [
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
];

/// Audit rows go in as arrays: one statement and one round trip per table and tick.
pub(super) const INSERT_DECISIONS: &str = "INSERT INTO decisions
    (workload, at_ms, body, behavior_score)
    SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::DOUBLE PRECISION[])";
pub(super) const INSERT_RESPONSE: &str = "INSERT INTO responses (workload, at_ms, action, rung,
    cpu_cores, alert_kind, alert_severity, alert_score, behavior_score, anomaly_score, outcome,
    body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(super) const INSERT_ALERTS: &str = "INSERT INTO alerts (workload, at_ms, body)
    SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[])";

/// The key of the advisory lock that serialises retention passes. Every agent of a fleet
/// runs them over the whole shared database; two at once would both roll up the raw rows
/// their snapshots still see and count them twice. Any fixed number distinct from the
/// migration lock; this one is "retain" in ASCII.
const RETENTION_LOCK: i64 = 0x7265_7461_696e;

pub(super) fn insert_samples(
    tx: &mut Transaction<'_>,
    copy: &Statement,
    samples: &[Sample],
    shown: &str,
) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Ok(());
    }
    let fail = || pg_err(shown, "copying samples into table samples_raw");
    let sink = tx.copy_in(copy).map_err(fail())?;
    let mut writer = BinaryCopyInWriter::new(sink, &SAMPLE_TYPES);
    for s in samples {
        let u = |r: Resource| s.usage().get(r);
        writer
            .write(&[
                &s.workload().as_str(),
                &s.at().unix_ms(),
                &i64::from(s.interval_ms()),
                &u(Resource::Cpu),
                &u(Resource::Memory),
                &u(Resource::IoRead),
                &u(Resource::IoWrite),
                &u(Resource::NetRx),
                &u(Resource::NetTx),
            ])
            .map_err(pg_err(
                shown,
                format_args!(
                    "copying a sample of {} into table samples_raw",
                    s.workload()
                ),
            ))?;
    }
    writer.finish().map_err(fail())?;
    Ok(())
}

/// Appends decisions, each as its JSON body with the behavioural score beside it.
pub(super) fn insert_decisions(
    tx: &mut Transaction<'_>,
    insert: &Statement,
    decisions: &[Decision],
    shown: &str,
) -> Result<(), StoreError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let mut workloads = Vec::with_capacity(decisions.len());
    let mut ats = Vec::with_capacity(decisions.len());
    let mut bodies = Vec::with_capacity(decisions.len());
    let mut scores = Vec::with_capacity(decisions.len());
    for d in decisions {
        let workload = d.workload.as_str();
        bodies.push(
            serde_json::to_string(d).map_err(json_err(format!("one of {workload}'s decisions")))?,
        );
        workloads.push(workload);
        ats.push(d.at.unix_ms());
        scores.push(d.behavior_score);
    }
    tx.execute(insert, &[&workloads, &ats, &bodies, &scores])
        .map_err(pg_err(
            shown,
            format_args!("recording {} rows into table decisions", decisions.len()),
        ))?;
    Ok(())
}

/// Appends audited responses (a few per alert at most: one statement each).
pub(super) fn insert_responses(
    tx: &mut Transaction<'_>,
    insert: &Statement,
    responses: &[ResponseEvent],
    shown: &str,
) -> Result<(), StoreError> {
    for e in responses {
        let c = ResponseColumns::of(e)?;
        tx.execute(
            insert,
            &[
                &e.workload.as_str(),
                &e.at.unix_ms(),
                &c.action,
                &c.rung,
                &c.cpu_cores,
                &c.alert_kind,
                &c.alert_severity,
                &c.alert_score,
                &c.behavior_score,
                &c.anomaly_score,
                &c.outcome,
                &c.body,
            ],
        )
        .map_err(pg_err(
            shown,
            format_args!(
                "recording a response to {} into table responses",
                e.workload
            ),
        ))?;
    }
    Ok(())
}

/// The row ids and JSON bodies of one audit table, oldest first; only `workload`'s when
/// given.
pub(super) fn audit_bodies(
    client: &mut Client,
    table: AuditTable,
    workload: Option<&str>,
    shown: &str,
) -> Result<Vec<(i64, String)>, StoreError> {
    let name = table.name();
    let rows = client
        .query(
            &format!(
                "SELECT id, body FROM {name} WHERE $1::TEXT IS NULL OR workload = $1
                 ORDER BY at_ms, id"
            ),
            &[&workload],
        )
        .map_err(pg_err(shown, format_args!("listing table {name}")))?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)
                    .map_err(pg_err(shown, format_args!("reading a row of {name}")))?,
                r.try_get(1)
                    .map_err(pg_err(shown, format_args!("reading a row of {name}")))?,
            ))
        })
        .collect()
}

/// Appends audit rows (decisions or alerts) to `table`, each as its JSON body.
pub(super) fn audit<T: serde::Serialize>(
    tx: &mut Transaction<'_>,
    insert: &Statement,
    table: &str,
    rows: &[T],
    shown: &str,
    head: impl Fn(&T) -> (&str, Timestamp),
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut workloads = Vec::with_capacity(rows.len());
    let mut ats = Vec::with_capacity(rows.len());
    let mut bodies = Vec::with_capacity(rows.len());
    for row in rows {
        let (workload, at) = head(row);
        bodies.push(
            serde_json::to_string(row).map_err(json_err(format!("one of {workload}'s {table}")))?,
        );
        workloads.push(workload);
        ats.push(at.unix_ms());
    }
    tx.execute(insert, &[&workloads, &ats, &bodies])
        .map_err(pg_err(
            shown,
            format_args!("recording {} rows into table {table}", rows.len()),
        ))?;
    Ok(())
}

pub(super) fn insert_execution(
    client: &mut Client,
    e: &Execution,
    shown: &str,
) -> Result<(), StoreError> {
    let peak = serde_json::to_string(&e.peak).map_err(json_err("execution peaks"))?;
    let total = serde_json::to_string(&e.total).map_err(json_err("execution totals"))?;
    let prior = e
        .prior
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(json_err("execution prior"))?;
    client
        .execute(
            "INSERT INTO executions (workload, code_id, code_version, input_hash, user_name,
                started_ms, ended_ms, exit_status, samples, peak, total, prior, prior_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &e.workload.as_str(),
                &e.key.code_id(),
                &e.key.code_version(),
                &e.key.input_hash(),
                &e.key.user(),
                &e.started.unix_ms(),
                &e.ended.unix_ms(),
                &e.exit_status,
                &i64::try_from(e.samples).unwrap_or(i64::MAX),
                &peak,
                &total,
                &prior,
                &e.prior_error,
            ],
        )
        .map_err(pg_err(
            shown,
            format_args!(
                "recording an execution of {} into table executions",
                e.workload
            ),
        ))?;
    Ok(())
}

/// The recorded runs of `code_id`, oldest first.
pub(super) fn executions(
    client: &mut Client,
    code_id: &str,
    shown: &str,
) -> Result<Vec<Execution>, StoreError> {
    let rows = client
        .query(
            "SELECT workload, code_id, code_version, input_hash, user_name, started_ms, ended_ms,
                exit_status, samples, peak, total, prior, prior_error
             FROM executions WHERE code_id = $1 ORDER BY started_ms, id",
            &[&code_id],
        )
        .map_err(pg_err(
            shown,
            format_args!("listing the executions of {code_id}"),
        ))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let row = (|| -> Result<crate::ExecutionRow, postgres::Error> {
            Ok(crate::ExecutionRow {
                workload: r.try_get(0)?,
                key: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?],
                started_ms: r.try_get(5)?,
                ended_ms: r.try_get(6)?,
                exit_status: r.try_get(7)?,
                samples: r.try_get(8)?,
                peak: r.try_get(9)?,
                total: r.try_get(10)?,
                prior: r.try_get(11)?,
                prior_error: r.try_get(12)?,
            })
        })()
        .map_err(pg_err(shown, "reading a row of table executions"))?;
        out.push(row.decode()?);
    }
    Ok(out)
}

/// How an existing bucket (`r`) absorbs a late batch: means weighted by count (a
/// resource absent on one side takes the other's), maxima the larger (GREATEST skips
/// NULLs, as SQLite's COALESCE dance does).
fn merge_on_conflict() -> String {
    Resource::ALL
        .iter()
        .map(|r| {
            format!(
                "{0}_mean = CASE WHEN r.{0}_mean IS NULL THEN excluded.{0}_mean
                    WHEN excluded.{0}_mean IS NULL THEN r.{0}_mean
                    ELSE (r.{0}_mean * r.n + excluded.{0}_mean * excluded.n) / (r.n + excluded.n) END,
                 {0}_max = GREATEST(r.{0}_max, excluded.{0}_max)",
                r.name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn retain(
    tx: &mut Transaction<'_>,
    now_ms: i64,
    retention: &Retention,
    shown: &str,
) -> Result<RetentionReport, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RETENTION_LOCK])
        .map_err(pg_err(shown, "waiting for the retention lock"))?;
    let cols = rollup_columns();
    let merge = merge_on_conflict();
    let cuts = Cuts::at(now_ms, retention);
    let raw_cut = cuts.raw;
    let raw_select = Resource::ALL
        .iter()
        .map(|r| format!("AVG({0}), MAX({0})", r.name()))
        .collect::<Vec<_>>()
        .join(", ");
    tx.execute(
        &format!(
            "INSERT INTO samples_rollup AS r (resolution_s, workload, bucket_ms, n, {cols})
             SELECT 60, workload, (at_ms / 60000) * 60000, COUNT(*), {raw_select}
             FROM samples_raw WHERE at_ms < $1 GROUP BY workload, (at_ms / 60000) * 60000
             ON CONFLICT (resolution_s, workload, bucket_ms)
             DO UPDATE SET {merge}, n = r.n + excluded.n"
        ),
        &[&raw_cut],
    )
    .map_err(pg_err(
        shown,
        "rolling table samples_raw up into samples_rollup (60 s)",
    ))?;
    let raw_rolled = tx
        .execute("DELETE FROM samples_raw WHERE at_ms < $1", &[&raw_cut])
        .map_err(pg_err(
            shown,
            "deleting rolled-up rows of table samples_raw",
        ))?;

    let minute_cut = cuts.minute;
    // SUM over BIGINT is NUMERIC in PostgreSQL, hence the casts; NULLIF because
    // PostgreSQL raises on a division by zero where SQLite yields NULL (a resource with
    // no value in any of the bucket's minutes).
    let minute_select = Resource::ALL
        .iter()
        .map(|r| {
            format!(
                "SUM({0}_mean * n) / NULLIF(SUM(CASE WHEN {0}_mean IS NULL THEN 0 ELSE n END), 0)::DOUBLE PRECISION,
                 MAX({0}_max)",
                r.name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    tx.execute(
        &format!(
            "INSERT INTO samples_rollup AS r (resolution_s, workload, bucket_ms, n, {cols})
             SELECT 300, workload, (bucket_ms / 300000) * 300000, SUM(n)::BIGINT, {minute_select}
             FROM samples_rollup WHERE resolution_s = 60 AND bucket_ms < $1
             GROUP BY workload, (bucket_ms / 300000) * 300000
             ON CONFLICT (resolution_s, workload, bucket_ms)
             DO UPDATE SET {merge}, n = r.n + excluded.n"
        ),
        &[&minute_cut],
    )
    .map_err(pg_err(
        shown,
        "rolling samples_rollup (60 s) up into samples_rollup (300 s)",
    ))?;
    let minute_rolled = tx
        .execute(
            "DELETE FROM samples_rollup WHERE resolution_s = 60 AND bucket_ms < $1",
            &[&minute_cut],
        )
        .map_err(pg_err(
            shown,
            "deleting rolled-up 60 s rows of samples_rollup",
        ))?;

    let expired = tx
        .execute(
            "DELETE FROM samples_rollup WHERE resolution_s = 300 AND bucket_ms < $1",
            &[&cuts.expire],
        )
        .map_err(pg_err(shown, "expiring 300 s rows of samples_rollup"))?;
    Ok(RetentionReport {
        raw_rolled,
        minute_rolled,
        expired,
    })
}
