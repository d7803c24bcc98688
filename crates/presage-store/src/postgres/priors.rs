//! Starting profiles for keys never seen: an earlier version of the same code, else the
//! nearest known code by fingerprint. The choice itself is `crate::prior`'s, shared with
//! SQLite, so every host of a fleet picks the same prior whichever backend it uses.

use postgres::Client;
use presage_core::{Fingerprint, Timestamp, WorkloadKey};
use presage_engine::{Prior, PriorSource, StoreError};

use super::{PROFILE_COLUMNS, pg_err, profile_from};
use crate::json_err;
use crate::prior::{closest_profile, fingerprint_from_row, nearest};

pub(super) fn previous_version(
    client: &mut Client,
    key: &WorkloadKey,
    shown: &str,
) -> Result<Option<Prior>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {PROFILE_COLUMNS} FROM profiles
                 WHERE code_id = $1 AND input_hash = $2 AND user_name = $3 AND code_version <> $4
                 ORDER BY updated_at_ms DESC, code_version DESC LIMIT 1"
            ),
            &[
                &key.code_id(),
                &key.input_hash(),
                &key.user(),
                &key.code_version(),
            ],
        )
        .map_err(pg_err(
            shown,
            format_args!("looking up earlier versions of {key} in table profiles"),
        ))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let profile = profile_from(&row, shown)?;
    Ok(Some(Prior {
        source: PriorSource::PreviousVersion {
            code_version: profile.key.code_version().to_owned(),
        },
        profile,
    }))
}

pub(super) fn neighbour(
    client: &mut Client,
    key: &WorkloadKey,
    fingerprint: &Fingerprint,
    shown: &str,
) -> Result<Option<Prior>, StoreError> {
    let known = fingerprints(client, shown)?;
    let Some((code_id, similarity)) = nearest(
        fingerprint,
        key.code_id(),
        known.iter().map(|(id, fp)| (id.as_str(), fp)),
    ) else {
        return Ok(None);
    };
    let rows = client
        .query(
            &format!("SELECT {PROFILE_COLUMNS} FROM profiles WHERE code_id = $1"),
            &[&code_id],
        )
        .map_err(pg_err(
            shown,
            format_args!("looking up the profiles of neighbour {code_id}"),
        ))?;
    let candidates = rows
        .iter()
        .map(|r| profile_from(r, shown))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(closest_profile(key, candidates).map(|profile| Prior {
        profile,
        source: PriorSource::Neighbour {
            code_id,
            similarity,
        },
    }))
}

/// Every stored fingerprint. Read per cold start, which is rare (a new code id), so
/// there is no cache to keep coherent with the other hosts writing the same table.
fn fingerprints(
    client: &mut Client,
    shown: &str,
) -> Result<Vec<(String, Fingerprint)>, StoreError> {
    let rows = client
        .query(
            "SELECT code_id, kind, size, features FROM fingerprints",
            &[],
        )
        .map_err(pg_err(shown, "listing table fingerprints"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (code_id, kind, size, features) = (|| -> Result<_, postgres::Error> {
            Ok((
                r.try_get::<_, String>(0)?,
                r.try_get::<_, String>(1)?,
                r.try_get::<_, i64>(2)?,
                r.try_get::<_, String>(3)?,
            ))
        })()
        .map_err(pg_err(shown, "reading a row of table fingerprints"))?;
        out.push(fingerprint_from_row(code_id, kind, size, &features)?);
    }
    Ok(out)
}

pub(super) fn save_fingerprint(
    client: &mut Client,
    code_id: &str,
    fp: &Fingerprint,
    now: Timestamp,
    shown: &str,
) -> Result<(), StoreError> {
    let features = serde_json::to_string(&fp.features).map_err(json_err("fingerprint features"))?;
    client
        .execute(
            "INSERT INTO fingerprints (code_id, kind, size, features, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (code_id) DO UPDATE SET kind = excluded.kind, size = excluded.size,
                features = excluded.features, updated_at_ms = excluded.updated_at_ms",
            &[
                &code_id,
                &fp.kind,
                &i64::try_from(fp.size).unwrap_or(i64::MAX),
                &features,
                &now.unix_ms(),
            ],
        )
        .map_err(pg_err(
            shown,
            format_args!("saving the fingerprint of {code_id} into table fingerprints"),
        ))?;
    Ok(())
}
