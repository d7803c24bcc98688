//! Starting profiles for keys never seen: an earlier version of the same code, else the
//! nearest known code by fingerprint.

use presage_core::{Fingerprint, Timestamp, WorkloadKey};
use presage_engine::{Prior, PriorSource, Profile, StoreError};
use rusqlite::{Connection, params};

use super::{PROFILE_COLUMNS, err, profile_from, row_parts};
use crate::json_err;
use crate::prior::{closest_profile, fingerprint_from_row, nearest};

pub(super) fn previous_version(
    conn: &Connection,
    key: &WorkloadKey,
    path: &std::path::Path,
) -> Result<Option<Prior>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles
             WHERE code_id = ?1 AND input_hash = ?2 AND user = ?3 AND code_version <> ?4
             ORDER BY updated_at_ms DESC, code_version DESC LIMIT 1"
        ))
        .map_err(err("looking up earlier versions"))?;
    let mut rows = stmt
        .query_map(
            params![
                key.code_id(),
                key.input_hash(),
                key.user(),
                key.code_version()
            ],
            row_parts,
        )
        .map_err(err(format!("looking up earlier versions of {key}")))?;
    let Some(row) = rows.next() else {
        return Ok(None);
    };
    let profile = profile_from(row.map_err(err("reading a profile row"))?, path)?;
    Ok(Some(Prior {
        source: PriorSource::PreviousVersion {
            code_version: profile.key.code_version().to_owned(),
        },
        profile,
    }))
}

pub(super) fn neighbour(
    conn: &Connection,
    key: &WorkloadKey,
    fingerprint: &Fingerprint,
    path: &std::path::Path,
) -> Result<Option<Prior>, StoreError> {
    let known = fingerprints(conn)?;
    let Some((code_id, similarity)) = nearest(
        fingerprint,
        key.code_id(),
        known.iter().map(|(id, fp)| (id.as_str(), fp)),
    ) else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles WHERE code_id = ?1"
        ))
        .map_err(err("looking up a neighbour's profiles"))?;
    let rows = stmt
        .query_map(params![code_id], row_parts)
        .map_err(err(format!("looking up the profiles of {code_id}")))?;
    let mut candidates: Vec<Profile> = Vec::new();
    for row in rows {
        candidates.push(profile_from(
            row.map_err(err("reading a profile row"))?,
            path,
        )?);
    }
    Ok(closest_profile(key, candidates).map(|profile| Prior {
        profile,
        source: PriorSource::Neighbour {
            code_id,
            similarity,
        },
    }))
}

/// Every stored fingerprint. Read per cold start, which is rare (a new code id), so
/// there is no cache to keep coherent with other writers of a shared database.
fn fingerprints(conn: &Connection) -> Result<Vec<(String, Fingerprint)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT code_id, kind, size, features FROM fingerprints")
        .map_err(err("listing fingerprints"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(err("listing fingerprints"))?;
    let mut out = Vec::new();
    for row in rows {
        let (code_id, kind, size, features) = row.map_err(err("reading a fingerprint"))?;
        out.push(fingerprint_from_row(code_id, kind, size, &features)?);
    }
    Ok(out)
}

pub(super) fn save_fingerprint(
    conn: &Connection,
    code_id: &str,
    fp: &Fingerprint,
    now: Timestamp,
) -> Result<(), StoreError> {
    let features = serde_json::to_string(&fp.features).map_err(json_err("fingerprint features"))?;
    conn.execute(
        "INSERT INTO fingerprints (code_id, kind, size, features, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (code_id) DO UPDATE SET kind = excluded.kind, size = excluded.size,
            features = excluded.features, updated_at_ms = excluded.updated_at_ms",
        params![
            code_id,
            fp.kind,
            i64::try_from(fp.size).unwrap_or(i64::MAX),
            features,
            now.unix_ms()
        ],
    )
    .map_err(err(format!("saving the fingerprint of {code_id}")))?;
    Ok(())
}
