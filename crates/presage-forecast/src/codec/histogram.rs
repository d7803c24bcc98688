//! A whole [`HistogramCheckpoint`] as one packed string (see the parent module for why).
//!
//! Bytes, in order: the layout's first bucket width and ratio (f64) and bucket count
//! (varint); the half-life in ms (zigzag varint, 0 for none: a half-life is at least
//! 1 ms); the reference time in ms (zigzag varint); the total weight (f64); the number of
//! buckets held (varint), their indices (deltas of deltas, as in [`super::i64s`]) and
//! their weights (f64). Every f64 is its IEEE-754 bits, so the round trip is exact.

use super::*;
use crate::{ExponentialBuckets, HistogramCheckpoint};

/// `c` as packed base64.
pub(crate) fn pack(c: &HistogramCheckpoint) -> String {
    let mut w = Writer::default();
    let (first, ratio, count) = c.layout.parts();
    w.f64(first);
    w.f64(ratio);
    w.varint(count as u64);
    // `Some(0)` would read back as `None`; no histogram has it (restoring refuses it).
    w.signed(c.half_life_ms.unwrap_or(0));
    w.signed(c.reference_ms);
    w.f64(c.total_weight);
    w.varint(c.buckets.len() as u64);
    // An index past i64 (none is: layouts have at most 2^16 buckets) is refused on restore.
    w.deltas(
        c.buckets
            .iter()
            .map(|&(i, _)| i64::try_from(i).unwrap_or(i64::MAX)),
    );
    for &(_, weight) in &c.buckets {
        w.f64(weight);
    }
    w.finish()
}

/// The checkpoint packed in `text`; the histogram checks its values when built from it.
pub(crate) fn unpack(text: &str) -> Result<HistogramCheckpoint, String> {
    let bytes = base64_bytes(text)?;
    let mut r = Reader::new(&bytes);
    let first = r.f64()?;
    let ratio = r.f64()?;
    let count = usize::try_from(r.varint()?).map_err(|e| format!("bucket count: {e}"))?;
    let half_life_ms = Some(r.signed()?).filter(|&h| h != 0);
    let reference_ms = r.signed()?;
    let total_weight = r.f64()?;
    let held = usize::try_from(r.varint()?).map_err(|e| format!("buckets held: {e}"))?;
    let buckets = r
        .deltas(Some(held))?
        .into_iter()
        .map(|i| {
            let index = usize::try_from(i).map_err(|_| format!("bucket index {i} is negative"))?;
            Ok((index, r.f64()?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if !r.is_empty() {
        return Err(format!(
            "{} bytes left over after a packed histogram",
            r.rest.len()
        ));
    }
    Ok(HistogramCheckpoint {
        layout: ExponentialBuckets::from_parts(first, ratio, count),
        half_life_ms,
        reference_ms,
        total_weight,
        buckets,
    })
}

/// A packed checkpoint, or the checkpoint object earlier versions wrote.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<HistogramCheckpoint, D::Error> {
    d.deserialize_any(CheckpointVisitor)
}

struct CheckpointVisitor;

impl<'de> Visitor<'de> for CheckpointVisitor {
    type Value = HistogramCheckpoint;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a packed histogram (or the checkpoint object of earlier versions)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HistogramCheckpoint, E> {
        unpack(text).map_err(|e| E::custom(format!("packed histogram: {e}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HistogramCheckpoint, A::Error> {
        HistogramCheckpoint::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}
