//! The network in candle, for training: candle's `GRU`/`LSTM` over a window, a linear
//! quantile head over `[hidden state, input]`, and the pinball loss.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{GRU, GRUConfig, LSTM, LSTMConfig, Linear, Module, RNN, VarBuilder, VarMap};
use presage_core::{QUANTILE_COUNT, QUANTILE_LEVELS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::NnError;
use crate::cell::{CellKind, Weights, tensor_shapes};
use crate::error::CandleContext;

/// The level the `max` output is trained at: the pinball loss at level 1 only ever pushes
/// up, so "max" becomes the 99.95th percentile.
pub(crate) const MAX_LEVEL_TRAINED_AS: f64 = 0.9995;

/// The levels the outputs are trained at, lowest first.
pub(crate) fn training_levels() -> [f64; QUANTILE_COUNT] {
    let mut levels = QUANTILE_LEVELS;
    levels[QUANTILE_COUNT - 1] = MAX_LEVEL_TRAINED_AS;
    levels
}

enum Rnn {
    Gru(GRU),
    Lstm(LSTM),
}

/// The trainable network and the variables it owns.
pub(crate) struct Net {
    varmap: VarMap,
    rnn: Rnn,
    head: Linear,
    kind: CellKind,
    input: usize,
    hidden: usize,
    horizons: usize,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("kind", &self.kind)
            .field("input", &self.input)
            .field("hidden", &self.hidden)
            .field("horizons", &self.horizons)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// A network with weights drawn from `seed` (candle cannot seed its CPU generator, so
    /// the initial values are drawn here and written over candle's).
    pub(crate) fn new(
        kind: CellKind,
        input: usize,
        hidden: usize,
        horizons: usize,
        seed: u64,
    ) -> Result<Self, NnError> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let rnn = match kind {
            CellKind::Gru => Rnn::Gru(
                candle_nn::gru(input, hidden, GRUConfig::default(), vb.pp("rnn"))
                    .during("building the GRU")?,
            ),
            CellKind::Lstm => Rnn::Lstm(
                candle_nn::lstm(input, hidden, LSTMConfig::default(), vb.pp("rnn"))
                    .during("building the LSTM")?,
            ),
        };
        let head = candle_nn::linear(hidden + input, horizons * QUANTILE_COUNT, vb.pp("head"))
            .during("building the quantile head")?;
        let net = Net {
            varmap,
            rnn,
            head,
            kind,
            input,
            hidden,
            horizons,
        };
        net.set_weights(&initial_weights(kind, input, hidden, horizons, seed))?;
        Ok(net)
    }

    /// Every trainable variable.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.varmap.all_vars()
    }

    /// The normalised quantiles for a window batch `x` of shape `[batch, steps, input]`:
    /// `[batch, steps, horizons, levels]`, non-decreasing along the last axis.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hs: Vec<Tensor> = match &self.rnn {
            Rnn::Gru(g) => g.seq(x)?.into_iter().map(|s| s.h).collect(),
            Rnn::Lstm(l) => l.seq(x)?.into_iter().map(|s| s.h).collect(),
        };
        let h = Tensor::stack(&hs, 1)?;
        let z = Tensor::cat(&[&h, x], 2)?;
        let raw = self
            .head
            .forward(&z)?
            .reshape((b, t, self.horizons, QUANTILE_COUNT))?;
        let current = x.narrow(2, 0, 1)?.unsqueeze(3)?;
        let first = raw.narrow(3, 0, 1)?.broadcast_add(&current)?;
        let steps = softplus(&raw.narrow(3, 1, QUANTILE_COUNT - 1)?)?;
        Tensor::cat(&[&first, &steps], 3)?.cumsum(3)
    }

    /// The current weights as plain vectors.
    pub(crate) fn weights(&self) -> Result<Weights, NnError> {
        let data = self.varmap.data().lock().map_err(|_| NnError::Corrupt {
            origin: "training state".into(),
            message: "the variable map lock was poisoned".into(),
        })?;
        let shapes = tensor_shapes(self.kind, self.input, self.hidden, self.horizons);
        let mut out: [Vec<f32>; 6] = Default::default();
        for ((name, _), slot) in shapes.iter().zip(out.iter_mut()) {
            let var = data.get(*name).ok_or_else(|| NnError::Corrupt {
                origin: "training state".into(),
                message: format!("variable {name} missing"),
            })?;
            *slot = var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .during("reading the weights")?;
        }
        Ok(Weights::from_tensors(
            self.kind,
            self.input,
            self.hidden,
            self.horizons,
            out,
        ))
    }

    /// Overwrites every variable with `weights` (same shapes).
    pub(crate) fn set_weights(&self, weights: &Weights) -> Result<(), NnError> {
        let data = self.varmap.data().lock().map_err(|_| NnError::Corrupt {
            origin: "training state".into(),
            message: "the variable map lock was poisoned".into(),
        })?;
        let shapes = tensor_shapes(self.kind, self.input, self.hidden, self.horizons);
        for ((name, shape), values) in shapes.iter().zip(weights.tensors()) {
            let var = data.get(*name).ok_or_else(|| NnError::Corrupt {
                origin: "training state".into(),
                message: format!("variable {name} missing"),
            })?;
            let t = Tensor::from_slice(values, shape.as_slice(), &Device::Cpu)
                .during("writing the weights")?;
            var.set(&t).during("writing the weights")?;
        }
        Ok(())
    }
}

/// PyTorch's recurrent initialisation (uniform ±1/√hidden); a small head whose bias starts
/// every level a little above the last (softplus(−3) ≈ 0.05 of the scale apart).
fn initial_weights(
    kind: CellKind,
    input: usize,
    hidden: usize,
    horizons: usize,
    seed: u64,
) -> Weights {
    let mut rng = SmallRng::seed_from_u64(seed);
    let shapes = tensor_shapes(kind, input, hidden, horizons);
    let mut data: [Vec<f32>; 6] = Default::default();
    let rnn_bound = 1.0 / (hidden as f32).sqrt();
    let head_bound = 0.1 / ((hidden + input) as f32).sqrt();
    for ((name, shape), slot) in shapes.iter().zip(data.iter_mut()) {
        let n: usize = shape.iter().product();
        *slot = match *name {
            "head.bias" => (0..n)
                .map(|i| if i % QUANTILE_COUNT == 0 { 0.0 } else { -3.0 })
                .collect(),
            "head.weight" => (0..n)
                .map(|_| rng.random_range(-head_bound..head_bound))
                .collect(),
            _ => (0..n)
                .map(|_| rng.random_range(-rnn_bound..rnn_bound))
                .collect(),
        };
    }
    Weights::from_tensors(kind, input, hidden, horizons, data)
}

/// `ln(1 + eˣ)` as `max(x, 0) + ln(1 + e^−|x|)`, which neither overflows nor loses the
/// gradient for large `|x|`.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + tail
}

/// The mean pinball loss of quantiles `q` (`[…, levels]`) against targets `y` (`[…]`,
/// one fewer axis) at `levels` (a `[levels]` tensor).
pub(crate) fn pinball(q: &Tensor, y: &Tensor, levels: &Tensor) -> candle_core::Result<Tensor> {
    let u = y.unsqueeze(D::Minus1)?.broadcast_sub(q)?;
    let above = u.broadcast_mul(levels)?;
    let below = u.broadcast_mul(&(levels - 1.0)?)?;
    above.maximum(&below)?.mean_all()
}

/// The levels tensor [`pinball`] takes.
pub(crate) fn levels_tensor() -> candle_core::Result<Tensor> {
    let levels = training_levels().map(|l| l as f32);
    Tensor::from_slice(&levels, QUANTILE_COUNT, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The pinball loss worked by hand: target 1, quantile 0 at level 0.9 costs 0.9 (under
    /// by 1); quantile 3 at level 0.9 costs 0.1 × 2 = 0.2 (over by 2).
    #[test]
    fn pinball_matches_a_hand_computation() -> TestResult {
        let dev = Device::Cpu;
        let levels = Tensor::from_slice(&[0.5f32, 0.9], 2, &dev)?;
        let y = Tensor::from_slice(&[1.0f32, 1.0], 2, &dev)?;
        let q = Tensor::from_slice(&[0.0f32, 0.0, 3.0, 3.0], (2, 2), &dev)?;
        // Row 1 (q = 0, under by 1): 0.5, 0.9. Row 2 (q = 3, over by 2): 1.0, 0.2.
        let loss = pinball(&q, &y, &levels)?.to_scalar::<f32>()?;
        assert!(
            (loss - (0.5 + 0.9 + 1.0 + 0.2) / 4.0).abs() < 1e-6,
            "{loss}"
        );
        let exact = Tensor::from_slice(&[1.0f32, 1.0], (1, 2), &dev)?;
        let one = Tensor::from_slice(&[1.0f32], 1, &dev)?;
        assert_eq!(pinball(&exact, &one, &levels)?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    /// The plain-Rust cell and head must give candle's outputs, for both cells, from
    /// random weights on random inputs; otherwise inference silently runs another model.
    #[test]
    fn plain_rust_step_matches_candle_forward() -> TestResult {
        let (input, hidden, horizons, batch, steps) = (6, 5, 2, 3, 7);
        for kind in [CellKind::Gru, CellKind::Lstm] {
            let net = Net::new(kind, input, hidden, horizons, 11)?;
            // Larger than the initial head, so every term of the head matters.
            let mut w = initial_weights(kind, input, hidden, horizons, 12);
            let mut rng = SmallRng::seed_from_u64(13);
            for v in w.head_w.iter_mut().chain(w.head_b.iter_mut()) {
                *v = rng.random_range(-1.0..1.0);
            }
            net.set_weights(&w)?;
            assert_eq!(net.weights()?, w, "weights round-trip through candle");
            let xs: Vec<f32> = (0..batch * steps * input)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let x = Tensor::from_slice(&xs, (batch, steps, input), &Device::Cpu)?;
            let q = net.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let mut worst = 0.0f32;
            for b in 0..batch {
                let mut state = vec![0.0; w.state_len()];
                for t in 0..steps {
                    let at = (b * steps + t) * input;
                    let xt = &xs[at..at + input];
                    w.step(xt, &mut state);
                    for (k, levels) in w.head(&state, xt).iter().enumerate() {
                        for (j, v) in levels.iter().enumerate() {
                            let i = ((b * steps + t) * horizons + k) * QUANTILE_COUNT + j;
                            worst = worst.max((v - q[i]).abs());
                        }
                    }
                }
            }
            assert!(worst < 1e-4, "{kind:?}: largest difference {worst}");
        }
        Ok(())
    }
}
