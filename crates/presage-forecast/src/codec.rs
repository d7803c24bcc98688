//! Compact encodings of the long numeric arrays in saved states (serde `with` modules).
//!
//! A profile is loaded every time a workload starts, and as JSON number arrays an hour of
//! one-second samples made the live ensemble's state ~216 KB of text: parsing the
//! numbers back (and the `serde_json::Value` tree they make) cost milliseconds a profile.
//! Here each long array is one base64 string (standard alphabet, padded) of
//! little-endian bytes, which JSON parses as a single token:
//!
//! - [`f64s`]: 8 bytes per value, the IEEE-754 bits. Lossless, including −0, infinities
//!   and NaN payloads, so a restored model is bit-for-bit the one saved.
//! - [`i64s`]: integers that step nearly regularly (timestamps, sorted indices). Stored
//!   as the first value, then the change of each step from the step before it (delta of
//!   delta), each as a zigzag LEB128 varint: a series sampled every second is one byte a
//!   value (jitter of up to ±63 ms included), and any `i64` sequence round-trips exactly
//!   (the arithmetic wraps, so no difference overflows).
//! - [`timed`]: `(unix ms, value)` pairs split into `{"at_ms": i64s, "value": f64s}`.
//! - [`f64_array`] and [`f64_pairs`]: `[f64; N]` and `(f64, f64)` pairs as [`f64s`].
//! - [`histogram`]: a whole histogram checkpoint (layout, decay, reference time, total and
//!   buckets) as one string.
//!
//! The short ones are packed too because what costs when parsing is less the bytes than
//! the nodes: every JSON object becomes a `BTreeMap` with a `String` per key, every number
//! a node, and with ~80 histograms in the live ensemble's state their small objects took
//! half its parse.
//!
//! **The previous layout is still read.** Every decoder also accepts the plain JSON array
//! the same field held before (numbers, or `[key, value]` pairs), so one state struct
//! reads both its current and its previous version; the families bump their state
//! version for the new layout (an older build then refuses the state cleanly rather than
//! misreading it) and accept both (see `StateView::decode_versions`).

use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serializer};

/// `values` as the base64 text of their little-endian IEEE-754 bits.
fn encode_f64s(values: impl IntoIterator<Item = f64>) -> String {
    let values = values.into_iter();
    let mut bytes = Vec::with_capacity(8 * values.size_hint().0);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    STANDARD.encode(bytes)
}

pub(crate) fn decode_f64s<C: FromIterator<f64>>(text: &str) -> Result<C, String> {
    let bytes = base64_bytes(text)?;
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "{} bytes of packed f64s are not a whole number of 8-byte values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_le_bytes(b)
        })
        .collect())
}

/// `values` as zigzag LEB128 varints of their deltas of deltas, in base64.
fn encode_i64s(values: impl IntoIterator<Item = i64>) -> String {
    let mut w = Writer::default();
    w.deltas(values);
    w.finish()
}

fn decode_i64s<C: FromIterator<i64>>(text: &str) -> Result<C, String> {
    let bytes = base64_bytes(text)?;
    let mut r = Reader::new(&bytes);
    Ok(r.deltas(None)?.into_iter().collect())
}

fn base64_bytes(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("invalid base64 ({e})"))
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Packed bytes being written.
#[derive(Debug, Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn f64(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// LEB128: seven bits a byte, low first, the high bit set on all but the last.
    fn varint(&mut self, mut z: u64) {
        while z >= 0x80 {
            self.bytes.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.bytes.push(z as u8);
    }

    fn signed(&mut self, v: i64) {
        self.varint(zigzag(v));
    }

    /// Each value's step from the previous one, less the step before that.
    fn deltas(&mut self, values: impl IntoIterator<Item = i64>) {
        let (mut prev, mut step) = (0i64, 0i64);
        for (i, v) in values.into_iter().enumerate() {
            let delta = v.wrapping_sub(prev);
            self.signed(delta.wrapping_sub(step));
            // The first value is stored whole; the second as its step from the first.
            if i > 0 {
                step = delta;
            }
            prev = v;
        }
    }

    fn finish(self) -> String {
        STANDARD.encode(self.bytes)
    }
}

/// Packed bytes being read; every read checks there is enough left.
#[derive(Debug)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn f64(&mut self) -> Result<f64, String> {
        let Some((head, rest)) = self.rest.split_first_chunk::<8>() else {
            return Err("packed bytes end mid-f64".into());
        };
        self.rest = rest;
        Ok(f64::from_le_bytes(*head))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut z = 0u64;
        for (i, &b) in self.rest.iter().enumerate().take(10) {
            // The tenth byte holds the 64th bit alone.
            if i == 9 && b > 1 {
                return Err("a packed integer overflows 64 bits".into());
            }
            z |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(z);
            }
        }
        Err("packed integers end mid-value".into())
    }

    fn signed(&mut self) -> Result<i64, String> {
        self.varint().map(unzigzag)
    }

    /// `n` values written by [`Writer::deltas`], or all that are left.
    fn deltas(&mut self, n: Option<usize>) -> Result<Vec<i64>, String> {
        // At least a byte a value: a corrupt count cannot make us allocate past the input.
        let mut out = Vec::with_capacity(n.unwrap_or(usize::MAX).min(self.rest.len()));
        let (mut prev, mut step) = (0i64, 0i64);
        while n.map_or(!self.is_empty(), |n| out.len() < n) {
            let delta = step.wrapping_add(self.signed()?);
            let v = prev.wrapping_add(delta);
            if !out.is_empty() {
                step = delta;
            }
            out.push(v);
            prev = v;
        }
        Ok(out)
    }
}

/// Reads a packed string through `decode`, or the plain JSON array of `T` the previous
/// layout wrote.
struct Packed<C, T> {
    expecting: &'static str,
    decode: fn(&str) -> Result<C, String>,
    item: PhantomData<T>,
}

impl<'de, C: FromIterator<T>, T: Deserialize<'de>> Visitor<'de> for Packed<C, T> {
    type Value = C;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} (or the plain JSON array of earlier versions)",
            self.expecting
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<C, E> {
        (self.decode)(text).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(x) = seq.next_element::<T>()? {
            items.push(x);
        }
        Ok(items.into_iter().collect())
    }
}

/// Sequences of `f64` (`Vec`, `VecDeque`) as base64 of their IEEE-754 bits.
pub(crate) mod f64s {
    use super::*;

    pub(crate) fn serialize<C, S: Serializer>(values: &C, s: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a C: IntoIterator<Item = &'a f64>,
    {
        s.serialize_str(&encode_f64s(values.into_iter().copied()))
    }

    pub(crate) fn deserialize<'de, C, D>(d: D) -> Result<C, D::Error>
    where
        C: FromIterator<f64>,
        D: Deserializer<'de>,
    {
        d.deserialize_any(Packed::<C, f64> {
            expecting: "base64 of little-endian f64s",
            decode: decode_f64s,
            item: PhantomData,
        })
    }
}

/// Sequences of `i64` as base64 of zigzag varints of their deltas of deltas.
pub(crate) mod i64s {
    use super::*;

    pub(crate) fn serialize<C, S: Serializer>(values: &C, s: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a C: IntoIterator<Item = &'a i64>,
    {
        s.serialize_str(&encode_i64s(values.into_iter().copied()))
    }

    pub(crate) fn deserialize<'de, C, D>(d: D) -> Result<C, D::Error>
    where
        C: FromIterator<i64>,
        D: Deserializer<'de>,
    {
        d.deserialize_any(Packed::<C, i64> {
            expecting: "base64 of delta-coded varints",
            decode: decode_i64s,
            item: PhantomData,
        })
    }
}

/// Fixed-size `[f64; N]` arrays as [`f64s`].
pub(crate) mod f64_array {
    use super::*;

    pub(crate) fn serialize<const N: usize, S: Serializer>(
        values: &[f64; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_f64s(values.iter().copied()))
    }

    pub(crate) fn deserialize<'de, const N: usize, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[f64; N], D::Error> {
        let values: Vec<f64> = f64s::deserialize(d)?;
        let n = values.len();
        values
            .try_into()
            .map_err(|_| de::Error::invalid_length(n, &format!("{N} values").as_str()))
    }
}

/// Sequences of `(f64, f64)` as [`f64s`] of the pairs' values in turn.
pub(crate) mod f64_pairs {
    use super::*;

    pub(crate) fn serialize<C, S: Serializer>(pairs: &C, s: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a C: IntoIterator<Item = &'a (f64, f64)>,
    {
        s.serialize_str(&encode_f64s(pairs.into_iter().flat_map(|&(a, b)| [a, b])))
    }

    pub(crate) fn deserialize<'de, C, D>(d: D) -> Result<C, D::Error>
    where
        C: FromIterator<(f64, f64)>,
        D: Deserializer<'de>,
    {
        d.deserialize_any(Packed::<C, (f64, f64)> {
            expecting: "base64 of little-endian f64 pairs",
            decode: |text| {
                let values: Vec<f64> = decode_f64s(text)?;
                if !values.len().is_multiple_of(2) {
                    return Err(format!(
                        "{} packed values are not whole pairs",
                        values.len()
                    ));
                }
                Ok(values.chunks_exact(2).map(|p| (p[0], p[1])).collect())
            },
            item: PhantomData,
        })
    }
}

/// How a pair encoding names its object (in messages) and its two fields.
struct PairLayout {
    name: &'static str,
    key: &'static str,
    value: &'static str,
}

fn serialize_pairs<'a, I, S>(layout: &PairLayout, pairs: I, s: S) -> Result<S::Ok, S::Error>
where
    I: IntoIterator<Item = &'a (i64, f64)> + Copy,
    S: Serializer,
{
    let mut st = s.serialize_struct(layout.name, 2)?;
    st.serialize_field(layout.key, &encode_i64s(pairs.into_iter().map(|&(k, _)| k)))?;
    st.serialize_field(
        layout.value,
        &encode_f64s(pairs.into_iter().map(|&(_, v)| v)),
    )?;
    st.end()
}

/// Reads `{key: i64s, value: f64s}`, or the `[key, value]` pairs of the previous layout.
struct PairsVisitor<C> {
    layout: &'static PairLayout,
    out: PhantomData<C>,
}

impl<'de, C: FromIterator<(i64, f64)>> Visitor<'de> for PairsVisitor<C> {
    type Value = C;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let l = self.layout;
        write!(
            f,
            "{} as {{\"{}\": packed, \"{}\": packed}} (or the [{}, {}] pairs of earlier versions)",
            l.name, l.key, l.value, l.key, l.value
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<C, A::Error> {
        let l = self.layout;
        let (mut keys, mut values): (Option<Vec<i64>>, Option<Vec<f64>>) = (None, None);
        while let Some(field) = map.next_key::<String>()? {
            if field == l.key && keys.is_none() {
                keys = Some(map.next_value::<PackedI64s>()?.0);
            } else if field == l.value && values.is_none() {
                values = Some(map.next_value::<PackedF64s>()?.0);
            } else {
                return Err(de::Error::custom(format!(
                    "unexpected or repeated field {field:?} in {}",
                    l.name
                )));
            }
        }
        let keys = keys.ok_or_else(|| de::Error::missing_field(l.key))?;
        let values = values.ok_or_else(|| de::Error::missing_field(l.value))?;
        if keys.len() != values.len() {
            return Err(de::Error::custom(format!(
                "{} has {} {} but {} {}",
                l.name,
                keys.len(),
                l.key,
                values.len(),
                l.value
            )));
        }
        Ok(keys.into_iter().zip(values).collect())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(x) = seq.next_element::<(i64, f64)>()? {
            items.push(x);
        }
        Ok(items.into_iter().collect())
    }
}

struct PackedI64s(Vec<i64>);
struct PackedF64s(Vec<f64>);

impl<'de> Deserialize<'de> for PackedI64s {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64s::deserialize(d).map(PackedI64s)
    }
}

impl<'de> Deserialize<'de> for PackedF64s {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64s::deserialize(d).map(PackedF64s)
    }
}

/// `(unix ms, value)` pairs (`VecDeque<(i64, f64)>`) as `{"at_ms": i64s, "value": f64s}`.
pub(crate) mod timed {
    use super::*;

    static LAYOUT: PairLayout = PairLayout {
        name: "timed values",
        key: "at_ms",
        value: "value",
    };

    pub(crate) fn serialize<C, S: Serializer>(pairs: &C, s: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a C: IntoIterator<Item = &'a (i64, f64)>,
    {
        serialize_pairs(&LAYOUT, pairs, s)
    }

    pub(crate) fn deserialize<'de, C, D>(d: D) -> Result<C, D::Error>
    where
        C: FromIterator<(i64, f64)>,
        D: Deserializer<'de>,
    {
        d.deserialize_any(PairsVisitor::<C> {
            layout: &LAYOUT,
            out: PhantomData,
        })
    }
}

pub(crate) mod histogram;

#[cfg(test)]
mod tests;
