//! What both backends' retention passes share: the roll-up columns and where each pass
//! cuts. Only the SQL dialect of the upsert differs between them.

use presage_core::Resource;
use presage_engine::Retention;

/// `name_mean, name_max` for every resource, in [`Resource::ALL`] order.
pub(crate) fn rollup_columns() -> String {
    Resource::ALL
        .iter()
        .map(|r| format!("{0}_mean, {0}_max", r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a pass at `now_ms` cuts, in ms: raw samples before `raw` roll up to 1-minute
/// buckets, 1-minute buckets before `minute` to 5-minute ones, and 5-minute buckets
/// before `expire` are dropped. The first two are floored to their bucket, so a bucket
/// is never split between two passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cuts {
    pub(crate) raw: i64,
    pub(crate) minute: i64,
    pub(crate) expire: i64,
}

impl Cuts {
    pub(crate) fn at(now_ms: i64, retention: &Retention) -> Cuts {
        Cuts {
            raw: bucket_floor(now_ms.saturating_sub(secs_ms(retention.raw_s)), 60),
            minute: bucket_floor(now_ms.saturating_sub(secs_ms(retention.minute_s)), 300),
            expire: now_ms.saturating_sub(secs_ms(retention.five_minute_s)),
        }
    }
}

fn bucket_floor(cutoff_ms: i64, resolution_s: i64) -> i64 {
    let width = resolution_s * 1000;
    cutoff_ms.div_euclid(width) * width
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_whole_buckets() {
        let keep = Retention {
            raw_s: 120,
            minute_s: 300,
            five_minute_s: 3600,
        };
        let c = Cuts::at(610_500, &keep);
        assert_eq!(
            (c.raw, c.minute, c.expire),
            (480_000, 300_000, 610_500 - 3_600_000)
        );
    }
}
