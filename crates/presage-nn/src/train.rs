//! Training: windows sampled from many workloads, AdamW on the pinball loss, a validation
//! split by workload, early stopping on the validation loss.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use presage_core::{QUANTILE_COUNT, QUANTILE_LEVELS};
use presage_sim::trace::{Trace, TraceWorkload};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::cell::{CellKind, Weights};
use crate::dataset::{Dataset, RowSpec};
use crate::error::CandleContext;
use crate::features::{MODEL_RESOURCES, feature_count, feature_names};
use crate::model::{FORMAT, FORMAT_VERSION, ModelHeader, encode};
use crate::net::{MAX_LEVEL_TRAINED_AS, Net, levels_tensor, pinball};
use crate::{NeuralFactory, NnError};

/// How to train. `Default` is the configuration the crate documents and ships.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The recurrent cell.
    pub cell: CellKind,
    /// Hidden units.
    pub hidden: usize,
    /// Steps ahead of each head, increasing (default 1, 3, 12: 5 min, 15 min, 1 h at
    /// 5-minute samples).
    pub horizon_steps: Vec<u32>,
    /// Steps per training window.
    pub window: usize,
    /// Leading steps of a window that warm the state up and are left out of the loss
    /// (inference always runs warm).
    pub burn_in: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    /// Share of the workloads held out for validation.
    pub validation_fraction: f64,
    /// Validation windows, drawn once.
    pub validation_windows: usize,
    /// Half-life of the decayed maximum that normalises each series, in seconds.
    pub scale_half_life_s: f64,
    /// The seed of every random choice (split, initial weights, windows).
    pub seed: u64,
    /// Threads that each take a share of a batch (the gradient is their weighted mean).
    pub threads: usize,
    /// What the traces are, recorded in the model's header.
    pub trained_on: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            cell: CellKind::Gru,
            hidden: 32,
            horizon_steps: vec![1, 3, 12],
            window: 48,
            burn_in: 16,
            batch: 64,
            batches_per_epoch: 200,
            epochs: 20,
            patience: 3,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            validation_fraction: 0.2,
            validation_windows: 1024,
            scale_half_life_s: 2.0 * 86_400.0,
            seed: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            trained_on: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |field, value: String, reason| {
            Err(NnError::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if !(1..=1024).contains(&self.hidden) {
            return bad("hidden", self.hidden.to_string(), "must be in 1..=1024");
        }
        if self.horizon_steps.is_empty()
            || self.horizon_steps[0] == 0
            || self.horizon_steps.windows(2).any(|w| w[0] >= w[1])
        {
            return bad(
                "horizon_steps",
                format!("{:?}", self.horizon_steps),
                "must be positive and increasing",
            );
        }
        if self.burn_in >= self.window {
            return bad(
                "burn_in",
                self.burn_in.to_string(),
                "must be below the window",
            );
        }
        for (field, value) in [
            ("batch", self.batch),
            ("batches_per_epoch", self.batches_per_epoch),
            ("epochs", self.epochs),
            ("validation_windows", self.validation_windows),
            ("threads", self.threads),
        ] {
            if value == 0 {
                return bad(field, "0".into(), "must be at least 1");
            }
        }
        for (field, value) in [
            ("learning_rate", self.learning_rate),
            ("scale_half_life_s", self.scale_half_life_s),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return bad(field, value.to_string(), "must be positive");
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                self.weight_decay.to_string(),
                "must not be negative",
            );
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(
                "validation_fraction",
                self.validation_fraction.to_string(),
                "must be in [0, 1)",
            );
        }
        Ok(())
    }
}

/// What training reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum TrainEvent<'a> {
    /// The data is ready.
    Prepared {
        /// Series (workload × resource) trained on.
        train_series: usize,
        /// Series held out.
        validation_series: usize,
        /// Batches the run will take at most.
        total_batches: usize,
    },
    /// One optimiser step.
    Batch {
        /// The epoch, from 1.
        epoch: usize,
        /// The batch within it, from 1.
        batch: usize,
        /// Its pinball loss.
        loss: f64,
    },
    /// An epoch ended.
    Epoch(&'a EpochReport),
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training pinball loss of its batches.
    pub train_pinball: f64,
    /// Mean pinball loss on the validation windows (normalised units).
    pub validation_pinball: f64,
    /// Share of validation next-step demands at or below the forecast p95.
    pub validation_coverage_p95: f64,
    /// Seconds since training began.
    pub elapsed_s: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    /// Validation pinball loss of the initial (untrained) weights.
    pub initial_validation_pinball: f64,
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Whether training stopped before the last epoch.
    pub stopped_early: bool,
    /// Series trained on.
    pub train_series: usize,
    /// Series validated on.
    pub validation_series: usize,
    /// Whether validation ran on the training workloads (too few to hold any out).
    pub validation_in_sample: bool,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// A trained model: its header, weights and the run's report.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    header: ModelHeader,
    weights: Weights,
    report: TrainReport,
}

impl TrainedModel {
    /// The header written with the weights.
    pub fn header(&self) -> &ModelHeader {
        &self.header
    }

    /// How training went.
    pub fn report(&self) -> &TrainReport {
        &self.report
    }

    /// The weights file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        encode(&self.header, &self.weights)
    }

    /// Writes the weights file to `path`.
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        std::fs::write(path, self.to_bytes()?).map_err(|source| NnError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The model as a forecaster family.
    pub fn factory(&self) -> Result<NeuralFactory, NnError> {
        NeuralFactory::from_bytes(&self.to_bytes()?, "freshly trained model")
    }
}

/// Trains a model on `traces` with `config`, telling `progress` how it goes.
///
/// The workloads are split (by the seed) into training and validation sides; each epoch
/// takes `batches_per_epoch` AdamW steps on random windows of the training side and is
/// scored on fixed windows of the validation side; the best epoch's weights are kept, and
/// training stops after `patience` epochs without improvement. The same seed on the same
/// data gives the same model.
pub fn train(
    traces: &[Trace],
    config: &TrainConfig,
    progress: &dyn Fn(&TrainEvent<'_>),
) -> Result<TrainedModel, NnError> {
    config.validate()?;
    let started = Instant::now();
    let mut workloads: Vec<&TraceWorkload> = traces.iter().flat_map(|t| &t.workloads).collect();
    let mut rng = SmallRng::seed_from_u64(config.seed);
    workloads.shuffle(&mut rng);
    let held_out = if workloads.len() >= 2 {
        ((workloads.len() as f64 * config.validation_fraction).round() as usize).clamp(
            usize::from(config.validation_fraction > 0.0),
            workloads.len() - 1,
        )
    } else {
        0
    };
    let (validation, training) = workloads.split_at(held_out);
    let spec = RowSpec {
        horizon_steps: &config.horizon_steps,
        half_life_s: config.scale_half_life_s,
        window: config.window,
    };
    let train_ds = Dataset::build(training, &spec);
    if train_ds.len() == 0 {
        return Err(NnError::NoData(format!(
            "none of {} training workloads has {} consecutive points of cpu or memory",
            training.len(),
            config.window + *config.horizon_steps.last().unwrap_or(&1) as usize + 1
        )));
    }
    let val_ds = Dataset::build(validation, &spec);
    let in_sample = val_ds.len() == 0;
    let val_source = if in_sample { &train_ds } else { &val_ds };
    let mut val_rng = SmallRng::seed_from_u64(config.seed ^ 0x5eed_7a11);
    let val_picks: Vec<(usize, usize)> = (0..config.validation_windows)
        .filter_map(|_| val_source.sample(&mut val_rng, config.window))
        .collect();
    if val_picks.is_empty() {
        return Err(NnError::NoData(
            "no gap-free validation window could be drawn".into(),
        ));
    }
    progress(&TrainEvent::Prepared {
        train_series: train_ds.len(),
        validation_series: if in_sample { 0 } else { val_ds.len() },
        total_batches: config.epochs * config.batches_per_epoch,
    });

    let input = feature_count(config.horizon_steps.len());
    let net = Net::new(
        config.cell,
        input,
        config.hidden,
        config.horizon_steps.len(),
        config.seed,
    )?;
    let mut opt = AdamW::new(
        net.vars(),
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        },
    )
    .during("creating the optimiser")?;
    let levels = levels_tensor().during("building the levels")?;
    let workers = Workers::new(config.threads)?;
    let (initial_validation_pinball, _) =
        validate(&net, &workers, val_source, &val_picks, config, &levels)?;
    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, Weights)> = None;
    let mut stopped_early = false;
    for epoch in 1..=config.epochs {
        let mut sum = 0.0;
        for batch in 1..=config.batches_per_epoch {
            let picks: Vec<(usize, usize)> = (0..config.batch)
                .filter_map(|_| train_ds.sample(&mut rng, config.window))
                .collect();
            if picks.is_empty() {
                return Err(NnError::NoData(
                    "no gap-free training window could be drawn".into(),
                ));
            }
            let loss = step(&net, &mut opt, &workers, &train_ds, &picks, config, &levels)?;
            sum += loss;
            progress(&TrainEvent::Batch { epoch, batch, loss });
        }
        let (val_loss, coverage) =
            validate(&net, &workers, val_source, &val_picks, config, &levels)?;
        let report = EpochReport {
            epoch,
            train_pinball: sum / config.batches_per_epoch as f64,
            validation_pinball: val_loss,
            validation_coverage_p95: coverage,
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        progress(&TrainEvent::Epoch(&report));
        epochs.push(report);
        let improved = best.as_ref().is_none_or(|(b, _, _)| val_loss < *b);
        if improved {
            best = Some((val_loss, epoch, net.weights()?));
        } else if best
            .as_ref()
            .is_some_and(|(_, e, _)| epoch - e >= config.patience)
        {
            stopped_early = epoch < config.epochs;
            break;
        }
    }
    let (best_loss, best_epoch, weights) = match best {
        Some(b) => b,
        None => (f64::NAN, 0, net.weights()?),
    };
    let header = ModelHeader {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        cell: config.cell,
        hidden: config.hidden,
        features: feature_names(&config.horizon_steps),
        horizon_steps: config.horizon_steps.clone(),
        levels: QUANTILE_LEVELS.to_vec(),
        max_level_trained_as: MAX_LEVEL_TRAINED_AS,
        resources: MODEL_RESOURCES
            .iter()
            .map(|r| r.name().to_owned())
            .collect(),
        scale_half_life_s: config.scale_half_life_s,
        trained_on: config.trained_on.clone(),
        seed: config.seed,
        validation_pinball: best_loss.is_finite().then_some(best_loss),
    };
    Ok(TrainedModel {
        header,
        weights,
        report: TrainReport {
            initial_validation_pinball,
            epochs,
            best_epoch,
            stopped_early,
            train_series: train_ds.len(),
            validation_series: if in_sample { 0 } else { val_ds.len() },
            validation_in_sample: in_sample,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// The inputs and targets of `picks` as tensors.
fn batch_tensors(
    ds: &Dataset,
    picks: &[(usize, usize)],
    window: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    ds.fill(picks, window, &mut x, &mut y);
    let n = picks.len();
    Ok((
        Tensor::from_vec(x, (n, window, ds.input), &Device::Cpu)?,
        Tensor::from_vec(y, (n, window, ds.horizons), &Device::Cpu)?,
    ))
}

/// The forecast quantiles and loss of `picks`, past the burn-in.
fn shard_loss(
    net: &Net,
    ds: &Dataset,
    picks: &[(usize, usize)],
    config: &TrainConfig,
    levels: &Tensor,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (x, y) = batch_tensors(ds, picks, config.window)?;
    let scored = config.window - config.burn_in;
    let q = net.forward(&x)?.narrow(1, config.burn_in, scored)?;
    let y = y.narrow(1, config.burn_in, scored)?;
    let loss = pinball(&q, &y, levels)?;
    Ok((q, y, loss))
}

/// Threads that each run one share of a batch, each in its own one-thread rayon pool:
/// candle asks rayon to parallelise every matrix product, and on matrices this small the
/// waiting in a shared pool cost more than the products (twice the wall time, measured).
struct Workers {
    pools: Vec<rayon::ThreadPool>,
}

impl Workers {
    fn new(threads: usize) -> Result<Self, NnError> {
        let pools = (0..threads)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| NnError::InvalidConfig {
                field: "threads",
                value: threads.to_string(),
                reason: "could not start that many threads",
            })?;
        Ok(Workers { pools })
    }

    /// `f` over one share of `picks` per worker, in order.
    fn run<T: Send>(
        &self,
        picks: &[(usize, usize)],
        f: impl Fn(&[(usize, usize)]) -> candle_core::Result<T> + Sync,
    ) -> Result<Vec<T>, NnError> {
        let shard = picks.len().div_ceil(self.pools.len()).max(1);
        let f = &f;
        std::thread::scope(|scope| {
            let handles: Vec<_> = picks
                .chunks(shard)
                .zip(&self.pools)
                .map(|(part, pool)| scope.spawn(move || pool.install(|| f(part))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(candle_core::Error::Msg("worker panicked".into())))
                        .during("running a training worker")
                })
                .collect()
        })
    }
}

/// One AdamW step on `picks`, split across the workers; returns the batch's loss.
fn step(
    net: &Net,
    opt: &mut AdamW,
    workers: &Workers,
    ds: &Dataset,
    picks: &[(usize, usize)],
    config: &TrainConfig,
    levels: &Tensor,
) -> Result<f64, NnError> {
    let results = workers.run(picks, |part| {
        let (_, _, loss) = shard_loss(net, ds, part, config, levels)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        Ok((value, part.len(), loss.backward()?))
    })?;
    let mut total = 0.0;
    let mut merged: Option<candle_core::backprop::GradStore> = None;
    let vars = net.vars();
    for (loss, n, grads) in results {
        let weight = n as f64 / picks.len() as f64;
        total += loss * weight;
        merged = Some(match merged {
            None => {
                let mut first = grads;
                for v in &vars {
                    if let Some(g) = first.remove(v) {
                        first.insert(v, (g * weight).during("averaging gradients")?);
                    }
                }
                first
            }
            Some(mut acc) => {
                for v in &vars {
                    if let (Some(a), Some(g)) = (acc.get(v), grads.get(v)) {
                        let sum = (a + (g * weight).during("averaging gradients")?)
                            .during("averaging gradients")?;
                        acc.insert(v, sum);
                    }
                }
                acc
            }
        });
    }
    if let Some(grads) = merged {
        opt.step(&grads).during("applying the gradient")?;
    }
    Ok(total)
}

/// Mean validation pinball loss, and the share of one-step targets at or below the p95.
fn validate(
    net: &Net,
    workers: &Workers,
    ds: &Dataset,
    picks: &[(usize, usize)],
    config: &TrainConfig,
    levels: &Tensor,
) -> Result<(f64, f64), NnError> {
    const P95: usize = 4;
    let parts = workers.run(picks, |share| {
        let (mut loss, mut covered, mut n) = (0.0, 0usize, 0usize);
        for part in share.chunks(128) {
            let (q, y, l) = shard_loss(net, ds, part, config, levels)?;
            let horizons = ds.horizons;
            let q = q.flatten_all()?.to_vec1::<f32>()?;
            let y = y.flatten_all()?.to_vec1::<f32>()?;
            covered += y
                .chunks_exact(horizons)
                .zip(q.chunks_exact(horizons * QUANTILE_COUNT))
                .filter(|(y, q)| y[0] <= q[P95])
                .count();
            n += y.len() / horizons;
            loss += f64::from(l.to_scalar::<f32>()?) * part.len() as f64;
        }
        Ok((loss, covered, n))
    })?;
    let (mut loss, mut covered, mut n) = (0.0, 0usize, 0usize);
    for (l, c, k) in parts {
        loss += l;
        covered += c;
        n += k;
    }
    Ok((loss / picks.len() as f64, covered as f64 / n.max(1) as f64))
}
