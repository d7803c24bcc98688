//! The NAB split check of docs/EVALUATION.md: over a small grid of the detector's two
//! main settings (the z threshold and the short window), choose the best on one NAB
//! folder and score that choice on the other, both ways, beside the fixed defaults.
//!
//! `cargo run --release -p presage-sim --example nab_split -- /work/shared/data/nab`

use std::path::PathBuf;

use presage_policy::anomaly::StreamSettings;
use presage_sim::nab::{DetectorSettings, NabSeries, detect, load_corpus, score_corpus};

fn standard(corpus: &[NabSeries], settings: &DetectorSettings) -> f64 {
    let alerts: Vec<Vec<usize>> = corpus
        .iter()
        .map(|s| detect(&s.values, settings).0)
        .collect();
    let (profiles, _) = score_corpus(corpus, &alerts);
    profiles.get("standard").map_or(f64::NAN, |t| t.normalised)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: nab_split NAB_DIR")?);
    let corpus = load_corpus(&dir)?;
    let (aws, known): (Vec<NabSeries>, Vec<NabSeries>) = corpus
        .iter()
        .cloned()
        .partition(|s| s.name.starts_with("realAWSCloudwatch/"));
    let mut grid = Vec::new();
    for z in [3.0, 3.5, 4.0, 4.5, 5.0, 6.0] {
        for short in [3, 6, 10] {
            let d = DetectorSettings::default();
            let s = DetectorSettings {
                z_threshold: z,
                stream: StreamSettings {
                    short_window: short,
                    ..d.stream
                },
                ..d
            };
            grid.push(s);
        }
    }
    let scored: Vec<(DetectorSettings, f64, f64, f64)> = grid
        .iter()
        .map(|s| {
            (
                *s,
                standard(&aws, s),
                standard(&known, s),
                standard(&corpus, s),
            )
        })
        .collect();
    for (s, a, k, all) in &scored {
        println!(
            "z {:.1} short {:>2}: aws {a:5.1} known {k:5.1} all {all:5.1}",
            s.z_threshold, s.stream.short_window
        );
    }
    let best = |pick: fn(&(DetectorSettings, f64, f64, f64)) -> f64| {
        scored
            .iter()
            .max_by(|a, b| pick(a).total_cmp(&pick(b)))
            .copied()
    };
    if let (Some(on_aws), Some(on_known)) = (best(|r| r.1), best(|r| r.2)) {
        println!(
            "chosen on AWS (z {:.1}, short {}): AWS {:.1}, scored on KnownCause {:.1}",
            on_aws.0.z_threshold, on_aws.0.stream.short_window, on_aws.1, on_aws.2
        );
        println!(
            "chosen on KnownCause (z {:.1}, short {}): KnownCause {:.1}, scored on AWS {:.1}",
            on_known.0.z_threshold, on_known.0.stream.short_window, on_known.2, on_known.1
        );
    }
    let d = DetectorSettings::default();
    println!(
        "defaults: AWS {:.1}, KnownCause {:.1}, all {:.1}",
        standard(&aws, &d),
        standard(&known, &d),
        standard(&corpus, &d)
    );
    Ok(())
}
