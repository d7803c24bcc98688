//! Samples at three resolutions, executions, and the retention pass that rolls one
//! resolution into the next.

use crate::rollup::{Cuts, rollup_columns};
use presage_core::{Resource, Sample};
use presage_engine::{Execution, Retention, RetentionReport, StoreError};
use rusqlite::{Transaction, params};

use super::err;
use crate::json_err;

pub(super) fn insert_samples(tx: &Transaction<'_>, samples: &[Sample]) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO samples_raw (workload, at_ms, interval_ms, cpu, memory, io_read, io_write, net_rx, net_tx)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(err("recording samples"))?;
    for s in samples {
        let u = |r: Resource| s.usage().get(r);
        stmt.execute(params![
            s.workload().as_str(),
            s.at().unix_ms(),
            s.interval_ms(),
            u(Resource::Cpu),
            u(Resource::Memory),
            u(Resource::IoRead),
            u(Resource::IoWrite),
            u(Resource::NetRx),
            u(Resource::NetTx),
        ])
        .map_err(err(format!("recording a sample of {}", s.workload())))?;
    }
    Ok(())
}

pub(super) fn insert_execution(tx: &Transaction<'_>, e: &Execution) -> Result<(), StoreError> {
    let peak = serde_json::to_string(&e.peak).map_err(json_err("execution peaks"))?;
    let total = serde_json::to_string(&e.total).map_err(json_err("execution totals"))?;
    let prior = e
        .prior
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(json_err("execution prior"))?;
    tx.execute(
        "INSERT INTO executions (workload, code_id, code_version, input_hash, user, started_ms, ended_ms,
            exit_status, samples, peak, total, prior, prior_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            e.workload.as_str(),
            e.key.code_id(),
            e.key.code_version(),
            e.key.input_hash(),
            e.key.user(),
            e.started.unix_ms(),
            e.ended.unix_ms(),
            e.exit_status,
            i64::try_from(e.samples).unwrap_or(i64::MAX),
            peak,
            total,
            prior,
            e.prior_error,
        ],
    )
    .map_err(err(format!("recording an execution of {}", e.workload)))?;
    Ok(())
}

/// How an existing bucket absorbs a late batch: means weighted by count (a resource
/// absent on one side takes the other's), maxima the larger.
fn merge_on_conflict() -> String {
    Resource::ALL
        .iter()
        .map(|r| {
            format!(
                "{0}_mean = CASE WHEN {0}_mean IS NULL THEN excluded.{0}_mean
                    WHEN excluded.{0}_mean IS NULL THEN {0}_mean
                    ELSE ({0}_mean * n + excluded.{0}_mean * excluded.n) / (n + excluded.n) END,
                 {0}_max = MAX(COALESCE({0}_max, excluded.{0}_max), COALESCE(excluded.{0}_max, {0}_max))",
                r.name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn retain(
    tx: &Transaction<'_>,
    now_ms: i64,
    retention: &Retention,
) -> Result<RetentionReport, StoreError> {
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
            "INSERT INTO samples_rollup (resolution_s, workload, bucket_ms, n, {cols})
             SELECT 60, workload, (at_ms / 60000) * 60000, COUNT(*), {raw_select}
             FROM samples_raw WHERE at_ms < ?1 GROUP BY workload, at_ms / 60000
             ON CONFLICT (resolution_s, workload, bucket_ms) DO UPDATE SET {merge}, n = n + excluded.n"
        ),
        params![raw_cut],
    )
    .map_err(err("rolling raw samples up to 1-minute"))?;
    let raw_rolled = tx
        .execute("DELETE FROM samples_raw WHERE at_ms < ?1", params![raw_cut])
        .map_err(err("deleting rolled-up raw samples"))?;

    let minute_cut = cuts.minute;
    let minute_select = Resource::ALL
        .iter()
        .map(|r| format!("SUM({0}_mean * n) / SUM(CASE WHEN {0}_mean IS NULL THEN 0 ELSE n END), MAX({0}_max)", r.name()))
        .collect::<Vec<_>>()
        .join(", ");
    tx.execute(
        &format!(
            "INSERT INTO samples_rollup (resolution_s, workload, bucket_ms, n, {cols})
             SELECT 300, workload, (bucket_ms / 300000) * 300000, SUM(n), {minute_select}
             FROM samples_rollup WHERE resolution_s = 60 AND bucket_ms < ?1
             GROUP BY workload, bucket_ms / 300000
             ON CONFLICT (resolution_s, workload, bucket_ms) DO UPDATE SET {merge}, n = n + excluded.n"
        ),
        params![minute_cut],
    )
    .map_err(err("rolling 1-minute samples up to 5-minute"))?;
    let minute_rolled = tx
        .execute(
            "DELETE FROM samples_rollup WHERE resolution_s = 60 AND bucket_ms < ?1",
            params![minute_cut],
        )
        .map_err(err("deleting rolled-up 1-minute samples"))?;

    let expired = tx
        .execute(
            "DELETE FROM samples_rollup WHERE resolution_s = 300 AND bucket_ms < ?1",
            params![cuts.expire],
        )
        .map_err(err("expiring 5-minute samples"))?;
    Ok(RetentionReport {
        raw_rolled: raw_rolled as u64,
        minute_rolled: minute_rolled as u64,
        expired: expired as u64,
    })
}

/// The recorded runs of `code_id`, oldest first.
pub(super) fn executions(
    conn: &rusqlite::Connection,
    code_id: &str,
) -> Result<Vec<Execution>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT workload, code_id, code_version, input_hash, user, started_ms, ended_ms,
                exit_status, samples, peak, total, prior, prior_error
             FROM executions WHERE code_id = ?1 ORDER BY started_ms, id",
        )
        .map_err(err("listing executions"))?;
    let rows = stmt
        .query_map(params![code_id], |r| {
            Ok(crate::ExecutionRow {
                workload: r.get(0)?,
                key: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                started_ms: r.get(5)?,
                ended_ms: r.get(6)?,
                exit_status: r.get(7)?,
                samples: r.get(8)?,
                peak: r.get(9)?,
                total: r.get(10)?,
                prior: r.get(11)?,
                prior_error: r.get(12)?,
            })
        })
        .map_err(err(format!("listing the executions of {code_id}")))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(err("reading an execution"))?.decode()?);
    }
    Ok(out)
}
