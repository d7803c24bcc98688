//! presage's neural forecaster: one global recurrent network, trained on many workloads'
//! history with a quantile (pinball) loss, run online per workload.
//!
//! # Design
//!
//! **One model for every workload.** Each resource series (CPU and memory of every
//! workload) is normalised by its own *scale*, a decayed maximum of the observed demand
//! (`scale = max(demand, scale·2^(−Δt/half-life), floor)`, half-life 2 days), so a
//! 0.05-core idler and a 32-core database look alike to the network; the scale is given
//! back to it as a workload feature. Demand is [`presage_forecast::demand::observed_demand`],
//! not raw usage: usage above a limit is capped and would teach the model that demand
//! never exceeds the limit.
//!
//! **Inputs per step** (13 with the default three heads; the names are in every model's
//! header and checked at load, see [`feature_names`]): the normalised demand; `ln(scale)`
//! of the workload (÷ 5, against 1 core or 1 GiB); time of day and day of week as sin/cos;
//! the log of the time since the previous sample (gaps show); a one-hot of the resource;
//! for each head, the demand at the same time *yesterday* at that head's target time
//! (kept in 288 five-minute slots, O(1) per sample) and a flag saying whether yesterday is
//! known. The daily lag lets a short training window learn daily patterns that a 48-step
//! (4-hour) back-propagation window could never see.
//!
//! **Network**: a GRU (default) or LSTM ([`CellKind`]) with 32 hidden units, then one
//! linear layer over `[hidden state, input]` emitting, for each of 3 horizons, the 10
//! quantiles of [`presage_core::QUANTILE_LEVELS`] of the normalised demand. The outputs
//! are monotone by construction: the lowest is the current normalised demand plus a
//! learned offset, each next level adds a softplus (`cell.rs`).
//!
//! **Loss**: the pinball loss averaged over the 10 levels, the 3 horizons and every step of
//! a window after a 16-step burn-in. The pinball loss at level 1 has no minimum (it only
//! pushes up), so the `max` output is trained as the 99.95th percentile.
//!
//! **Horizons**: direct heads 1, 3 and 12 steps ahead (5 min, 15 min and 1 h at the
//! 5-minute step of Bitbrains and the synthetic traces). A requested horizon is converted
//! to steps with the workload's typical step; between heads the quantiles are
//! interpolated linearly (which keeps them ordered), below the first head the first is
//! used, beyond the last the last. A model trained at 5-minute steps still runs on 10 s
//! samples, but "12 steps" then means 2 minutes: retrain on data at the agent's rate.
//!
//! **Training** ([`train`]): windows of 48 steps drawn at random (in proportion to series
//! length, never across a gap) from every training workload; AdamW, lr 3·10⁻³, batches of
//! 64 split across threads; an epoch is 200 batches; the workloads are split 80/20 by a
//! seeded shuffle and the validation loss on 1024 fixed held-out windows is reported each
//! epoch; the best epoch is kept and training stops after 3 epochs without improvement.
//! Candle cannot seed its CPU generator, so initial weights are drawn from the seed here:
//! the same seed on the same data gives the same model.
//!
//! **Inference** ([`NeuralFactory`]): candle is not used. The weights are read once into
//! plain `Vec<f32>`s and each sample advances the recurrent state with hand-written
//! matrix-vector products (a few thousand multiply-adds; a candle op costs more than that
//! in dispatch alone). A test runs the plain-Rust cell and candle's forward on the same
//! random weights and inputs and requires them to agree within 10⁻⁴, for both cells.
//! The recurrent state, last input and feature state are the forecaster's saved state.
//!
//! **Weights file**: safetensors, with a JSON [`ModelHeader`] (format version, cell,
//! hidden size, feature names, horizons, levels, resources, normalisation, provenance)
//! under the `presage` metadata key. A file that is not safetensors, lacks the header or
//! has tensors of the wrong shape is [`NnError::Corrupt`]; one written for another layout
//! is [`NnError::Incompatible`]; both name the file.
//!
//! # The default model
//!
//! [`DEFAULT_MODEL`] (`assets/default-gru.safetensors`, about 25 KB) was made with
//!
//! ```text
//! cargo run --release -p presage-cli -- train --trace bitbrains:../shared/data/bitbrains_fastStorage \
//!     --out crates/presage-nn/assets/default-gru.safetensors --seed 1
//! ```
//!
//! on the *dev* part of Bitbrains fastStorage (20 epochs, 4 min on this 2-core machine).
//! A first default trained on [`synthetic_training_traces`] (what `presage train` uses
//! without `--trace`) was poorly calibrated on real VMs — p95 coverage 80 % on Bitbrains
//! Rnd against 95.6 % for the fastStorage-trained one, whose p95 pinball loss there (0.046,
//! a dataset it never saw) is the lowest of every model (`docs/EVALUATION.md`).

mod cell;
mod dataset;
mod error;
mod features;
mod forecaster;
mod model;
mod net;
mod train;

pub use cell::CellKind;
pub use error::NnError;
pub use features::{MODEL_RESOURCES, feature_names};
pub use forecaster::{DEFAULT_MODEL, NeuralFactory};
pub use model::{FORMAT, FORMAT_VERSION, ModelHeader};
pub use train::{EpochReport, TrainConfig, TrainEvent, TrainReport, TrainedModel, train};

use presage_sim::synth::{SynthConfig, generate};
use presage_sim::trace::Trace;

/// The traces `presage train` learns from when given none: the built-in synthetic mix
/// over 14 days, drawn with three seeds (72 workloads), with a label for each.
pub fn synthetic_training_traces() -> Vec<(Trace, String)> {
    [42, 43, 44]
        .into_iter()
        .map(|seed| {
            let config = SynthConfig {
                days: 14,
                seed,
                ..SynthConfig::default_mix()
            };
            (
                generate(&config),
                format!("synthetic:default-mix(days=14,seed={seed})"),
            )
        })
        .collect()
}
