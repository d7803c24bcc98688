//! Quick iteration on the NAB detector: scores the corpus under the default settings
//! with `key=value` overrides, without rebuilding the CLI.
//!
//! `cargo run --release -p presage-sim --example nab_sweep -- /work/shared/data/nab z=3 s2=1 v=1`
//!
//! Keys: z, refr, short, long, scale, warmup, hl, maxp, cycles, s2 (0/1), v (per series).

use std::path::PathBuf;

use presage_sim::nab::{DetectorSettings, detect, load_corpus, score_corpus};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: nab_sweep NAB_DIR [key=value]…")?);
    let mut s = DetectorSettings::default();
    let mut verbose = false;
    for arg in args {
        let (key, value) = arg.split_once('=').ok_or("overrides are key=value")?;
        let v: f64 = value.parse()?;
        match key {
            "z" => s.z_threshold = v,
            "refr" => s.refractory_steps = v as usize,
            "short" => s.stream.short_window = v as usize,
            "long" => s.stream.long_window = v as usize,
            "scale" => s.stream.scale_window = v as usize,
            "warmup" => s.stream.warmup = v as usize,
            "hl" => s.stream.level_half_life = v,
            "maxp" => s.stream.max_period = v as usize,
            "cycles" => s.stream.cycles = v as usize,
            "s2" => s.stream.second_season = v != 0.0,
            "v" => verbose = v != 0.0,
            _ => return Err(format!("unknown key {key}").into()),
        }
    }
    let corpus = load_corpus(&dir)?;
    let alerts: Vec<Vec<usize>> = corpus.iter().map(|c| detect(&c.values, &s).0).collect();
    let (profiles, series) = score_corpus(&corpus, &alerts);
    if verbose {
        for r in &series {
            println!(
                "{:<58} det {:>2} tp {} fp {:>2} miss {} raw {:6.2}",
                r.name,
                r.detections,
                r.true_positives,
                r.false_positives,
                r.missed_windows,
                r.raw_standard
            );
        }
    }
    let get = |k: &str| profiles.get(k).map_or(f64::NAN, |t| t.normalised);
    println!(
        "standard {:.1} low_fp {:.1} low_fn {:.1}",
        get("standard"),
        get("reward_low_fp"),
        get("reward_low_fn")
    );
    Ok(())
}
