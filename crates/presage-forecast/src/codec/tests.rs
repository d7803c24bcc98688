use std::collections::VecDeque;

use presage_core::{Resource, Timestamp};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::histogram;
use crate::{DecayingHistogram, ExponentialBuckets, HistogramCheckpoint};

/// Every encoding on one struct, as the state structs use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Packed {
    #[serde(with = "super::f64s")]
    values: VecDeque<f64>,
    #[serde(with = "super::i64s")]
    times: Vec<i64>,
    #[serde(with = "super::timed")]
    window: VecDeque<(i64, f64)>,
    #[serde(with = "super::f64_array")]
    fixed: [f64; 3],
    #[serde(with = "super::f64_pairs")]
    pairs: VecDeque<(f64, f64)>,
}

fn round_trip(p: &Packed) -> Packed {
    let text = serde_json::to_string(p).expect("encode");
    serde_json::from_str(&text).expect("decode")
}

/// Bit patterns, so NaNs compare by payload.
fn bits(v: &VecDeque<f64>) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn odd_floats_and_extreme_integers_round_trip_exactly() {
    let p = Packed {
        values: [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
        ]
        .into_iter()
        .chain([f64::from_bits(0x7ff8_0000_dead_beef), 0.1 + 0.2, f64::MAX])
        .collect(),
        times: vec![
            i64::MIN,
            i64::MAX,
            0,
            -1,
            i64::MAX,
            i64::MIN,
            1_700_000_000_000,
        ],
        window: VecDeque::from([(i64::MAX, -1.5), (i64::MIN, f64::NAN)]),
        fixed: [-0.0, f64::MAX, 1e-300],
        pairs: VecDeque::from([(0.5, -0.25), (f64::INFINITY, 3.0)]),
    };
    let back = round_trip(&p);
    assert_eq!(bits(&back.values), bits(&p.values));
    assert_eq!(back.times, p.times);
    assert_eq!(back.fixed.map(f64::to_bits), p.fixed.map(f64::to_bits));
    assert_eq!(back.pairs, p.pairs);
    assert_eq!(back.window[0], p.window[0]);
    assert_eq!(back.window[1].0, i64::MIN);
    assert!(back.window[1].1.is_nan());
}

#[test]
fn empty_arrays_round_trip() {
    let p = Packed {
        values: VecDeque::new(),
        times: Vec::new(),
        window: VecDeque::new(),
        fixed: [0.0; 3],
        pairs: VecDeque::new(),
    };
    assert_eq!(round_trip(&p), p);
}

#[test]
fn a_regular_clock_costs_about_a_byte_a_timestamp() {
    // Every second, with a few milliseconds of jitter, as the agent samples.
    let times: Vec<i64> = (0..1800i64)
        .map(|i| 1_700_000_000_000 + 1000 * i + (i * 7919) % 11 - 5)
        .collect();
    let text = serde_json::to_string(&json!({"t": super::encode_i64s(times.iter().copied())}))
        .expect("encode");
    // 1800 bytes of varints (a few more for the first two) in base64: 4/3 of that.
    assert!(text.len() < 2500, "{} chars", text.len());
    let back: Vec<i64> =
        super::decode_i64s(&super::encode_i64s(times.iter().copied())).expect("decode");
    assert_eq!(back, times);
}

#[test]
fn the_previous_plain_arrays_are_still_read() {
    let legacy = json!({
        "values": [1.5, -2.0, 1e300],
        "times": [1_700_000_000_000i64, 1_700_000_001_000i64],
        "window": [[1_700_000_000_000i64, 0.25], [1_700_000_001_000i64, 0.125]],
        "fixed": [1.0, 2.0, 3.0],
        "pairs": [[0.5, 0.25], [1.0, 2.0]],
    });
    let p: Packed = serde_json::from_value(legacy).expect("legacy decodes");
    assert_eq!(p.values, VecDeque::from([1.5, -2.0, 1e300]));
    assert_eq!(p.times, vec![1_700_000_000_000, 1_700_000_001_000]);
    assert_eq!(
        p.window,
        VecDeque::from([(1_700_000_000_000, 0.25), (1_700_000_001_000, 0.125)])
    );
    assert_eq!(p.fixed, [1.0, 2.0, 3.0]);
    assert_eq!(p.pairs, VecDeque::from([(0.5, 0.25), (1.0, 2.0)]));
    // And the new layout reads back what the legacy one held.
    assert_eq!(round_trip(&p), p);
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_error(field: &str, value: serde_json::Value) -> String {
    let mut v = serde_json::to_value(Packed {
        values: VecDeque::from([1.0]),
        times: vec![1],
        window: VecDeque::from([(1, 1.0)]),
        fixed: [1.0; 3],
        pairs: VecDeque::from([(1.0, 2.0)]),
    })
    .expect("encode");
    v[field] = value.clone();
    match serde_json::from_value::<Packed>(v) {
        Ok(p) => panic!("{field} = {value}: decoded {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_packed_fields_are_refused_saying_why() {
    let cases = [
        ("values", json!("not base64!"), "invalid base64"),
        ("values", json!("AAAA"), "whole number of 8-byte values"),
        // 0x80: a varint whose continuation never comes.
        ("times", json!("gA=="), "end mid-value"),
        // Nine continuation bytes, then more than the 64th bit.
        (
            "times",
            json!(b64(&[[0xff; 9].as_slice(), &[2]].concat())),
            "overflows 64 bits",
        ),
        ("times", json!(42), "base64 of delta-coded varints"),
        (
            "fixed",
            json!([1.0, 2.0]),
            "invalid length 2, expected 3 values",
        ),
        (
            "pairs",
            json!(b64(&[0; 8])),
            "1 packed values are not whole pairs",
        ),
        (
            "window",
            json!({"at_ms": "AA==", "value": ""}),
            "1 at_ms but 0 value",
        ),
        ("window", json!({"at_ms": "AA=="}), "missing field `value`"),
        (
            "window",
            json!({"at_ms": "", "value": "", "extra": ""}),
            "unexpected or repeated field \"extra\"",
        ),
    ];
    for (field, value, expected) in cases {
        let err = decode_error(field, value.clone());
        assert!(err.contains(expected), "{field} = {value}: {err}");
    }
}

proptest! {
    #[test]
    fn any_arrays_round_trip(
        values in prop::collection::vec(any::<f64>(), 0..64),
        times in prop::collection::vec(any::<i64>(), 0..64),
        steps in prop::collection::vec((0i64..5_000, any::<f64>()), 0..64),
        start in any::<i64>(),
    ) {
        let mut t = start;
        let window: VecDeque<(i64, f64)> = steps
            .iter()
            .map(|&(dt, v)| {
                t = t.wrapping_add(dt);
                (t, v)
            })
            .collect();
        let pairs = steps.iter().map(|&(dt, v)| (v, dt as f64)).collect();
        let fixed = [start as f64, -(start as f64), 0.5];
        let p = Packed { values: values.into(), times, window, fixed, pairs };
        let back = round_trip(&p);
        prop_assert_eq!(bits(&back.values), bits(&p.values));
        prop_assert_eq!(&back.times, &p.times);
        let pair_bits = |w: &VecDeque<(i64, f64)>| -> Vec<(i64, u64)> {
            w.iter().map(|&(t, v)| (t, v.to_bits())).collect()
        };
        prop_assert_eq!(pair_bits(&back.window), pair_bits(&p.window));
    }
}

/// A checkpoint's fields with its floats as bits, to compare NaNs and zeros exactly.
type CheckpointBits = (u64, u64, usize, Option<i64>, i64, u64, Vec<(usize, u64)>);

fn checkpoint_bits(c: &HistogramCheckpoint) -> CheckpointBits {
    let (first, ratio, count) = c.layout.parts();
    (
        first.to_bits(),
        ratio.to_bits(),
        count,
        c.half_life_ms,
        c.reference_ms,
        c.total_weight.to_bits(),
        c.buckets.iter().map(|&(i, w)| (i, w.to_bits())).collect(),
    )
}

#[test]
fn a_histogram_is_one_string_that_restores_it_exactly() {
    let layout = crate::resource_layout(Resource::Cpu, 0.05).expect("layout");
    let mut h = DecayingHistogram::new(layout, 3600.0).expect("histogram");
    for i in 0..500 {
        h.add(
            f64::from(i % 37) * 0.013,
            1.0,
            Timestamp::from_unix_secs(1_700_000_000 + 7 * i64::from(i)),
        );
    }
    let value = serde_json::to_value(&h).expect("encode");
    assert!(value.is_string(), "{value}");
    let back: DecayingHistogram = serde_json::from_value(value).expect("decode");
    assert_eq!(back, h);
    // The checkpoint object earlier versions wrote reads back the same.
    let legacy = json!({
        "layout": layout,
        "half_life_ms": 3_600_000,
        "reference_ms": h.checkpoint().reference_ms,
        "total_weight": h.checkpoint().total_weight,
        "buckets": h.checkpoint().buckets,
    });
    let old: DecayingHistogram = serde_json::from_value(legacy).expect("legacy decodes");
    assert_eq!(old, h);
    // Without decay, and empty.
    let flat = DecayingHistogram::new(layout, f64::INFINITY).expect("histogram");
    let back: DecayingHistogram =
        serde_json::from_value(serde_json::to_value(&flat).expect("encode")).expect("decode");
    assert_eq!(back, flat);
}

#[test]
fn corrupt_packed_histograms_are_refused_saying_why() {
    let layout = crate::resource_layout(Resource::Cpu, 0.05).expect("layout");
    let mut h = DecayingHistogram::new(layout, 60.0).expect("histogram");
    h.add(0.5, 1.0, Timestamp::from_unix_secs(1_700_000_000));
    let text = histogram::pack(&h.checkpoint());
    let bytes = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .expect("base64")
    };
    let cases = [
        (b64(&bytes[..bytes.len() - 3]), "end mid-f64"),
        (b64(&[bytes.as_slice(), &[0]].concat()), "1 bytes left over"),
        (b64(&bytes[..20]), "end mid-value"),
    ];
    for (packed, expected) in cases {
        let err = histogram::unpack(&packed).err().unwrap_or_default();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // Valid bytes, invalid histogram: the histogram's own checks still run.
    let mut c = h.checkpoint();
    c.buckets = vec![(100_000, 1.0)];
    let err = serde_json::from_value::<DecayingHistogram>(json!(histogram::pack(&c)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("past the layout's last bucket"), "{err}");
    c.buckets = vec![(0, 1.0)];
    c.half_life_ms = Some(-5);
    let err = serde_json::from_value::<DecayingHistogram>(json!(histogram::pack(&c)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("must be positive"), "{err}");
}

proptest! {
    #[test]
    fn any_checkpoint_round_trips_packed(
        first in any::<f64>(),
        ratio in any::<f64>(),
        count in 0usize..70_000,
        half_life_ms in prop::option::of(any::<i64>().prop_filter("0 means none", |&h| h != 0)),
        reference_ms in any::<i64>(),
        total_weight in any::<f64>(),
        steps in prop::collection::vec((1usize..300, any::<f64>()), 0..80),
    ) {
        let mut index = 0;
        let buckets = steps
            .iter()
            .map(|&(step, w)| {
                index += step;
                (index, w)
            })
            .collect();
        let c = HistogramCheckpoint {
            layout: ExponentialBuckets::from_parts(first, ratio, count),
            half_life_ms,
            reference_ms,
            total_weight,
            buckets,
        };
        let back = histogram::unpack(&histogram::pack(&c)).expect("unpack");
        prop_assert_eq!(checkpoint_bits(&back), checkpoint_bits(&c));
    }
}
