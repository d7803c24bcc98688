//! The trained network in plain `f32` Rust, for inference.
//!
//! A candle op costs microseconds of dispatch whatever its size; one recurrent step is a
//! few thousand multiply-adds, so doing it by hand is two orders of magnitude cheaper.
//! The gate order and bias layout follow candle's `GRU`/`LSTM` (PyTorch's): GRU gates
//! r, z, n with the recurrent bias of n inside the reset product; LSTM gates i, f, g, o.
//! A test in `net.rs` runs both implementations on the same weights and inputs.

use presage_core::QUANTILE_COUNT;
use serde::{Deserialize, Serialize};

/// The recurrent cell of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Gated recurrent unit: three gates, one state vector. Cheaper; the default.
    Gru,
    /// Long short-term memory: four gates, a hidden and a cell state.
    Lstm,
}

impl CellKind {
    /// Gates per hidden unit (rows of the weight matrices per unit).
    pub(crate) const fn gates(self) -> usize {
        match self {
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// The name used on the command line and as the forecaster's name.
    pub const fn name(self) -> &'static str {
        match self {
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
        }
    }
}

/// The tensors of a model, row-major, with the shapes candle uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weights {
    pub(crate) kind: CellKind,
    pub(crate) input: usize,
    pub(crate) hidden: usize,
    pub(crate) horizons: usize,
    /// `[gates·hidden, input]`.
    pub(crate) w_ih: Vec<f32>,
    /// `[gates·hidden, hidden]`.
    pub(crate) w_hh: Vec<f32>,
    /// `[gates·hidden]`.
    pub(crate) b_ih: Vec<f32>,
    /// `[gates·hidden]`.
    pub(crate) b_hh: Vec<f32>,
    /// `[horizons·levels, hidden + input]`: the head reads the hidden state and the input.
    pub(crate) head_w: Vec<f32>,
    /// `[horizons·levels]`.
    pub(crate) head_b: Vec<f32>,
}

/// The tensor names and shapes of a model, in the order they are stored and hashed.
pub(crate) fn tensor_shapes(
    kind: CellKind,
    input: usize,
    hidden: usize,
    horizons: usize,
) -> [(&'static str, Vec<usize>); 6] {
    let g = kind.gates() * hidden;
    let out = horizons * QUANTILE_COUNT;
    [
        ("head.bias", vec![out]),
        ("head.weight", vec![out, hidden + input]),
        ("rnn.bias_hh_l0", vec![g]),
        ("rnn.bias_ih_l0", vec![g]),
        ("rnn.weight_hh_l0", vec![g, hidden]),
        ("rnn.weight_ih_l0", vec![g, input]),
    ]
}

impl Weights {
    /// The tensors in [`tensor_shapes`] order.
    pub(crate) fn tensors(&self) -> [&[f32]; 6] {
        [
            &self.head_b,
            &self.head_w,
            &self.b_hh,
            &self.b_ih,
            &self.w_hh,
            &self.w_ih,
        ]
    }

    /// Builds the weights from tensors in [`tensor_shapes`] order (sizes already checked).
    pub(crate) fn from_tensors(
        kind: CellKind,
        input: usize,
        hidden: usize,
        horizons: usize,
        tensors: [Vec<f32>; 6],
    ) -> Self {
        let [head_b, head_w, b_hh, b_ih, w_hh, w_ih] = tensors;
        Weights {
            kind,
            input,
            hidden,
            horizons,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            head_w,
            head_b,
        }
    }

    /// Length of the recurrent state: `h`, then (LSTM) `c`.
    pub(crate) fn state_len(&self) -> usize {
        match self.kind {
            CellKind::Gru => self.hidden,
            CellKind::Lstm => 2 * self.hidden,
        }
    }

    /// Advances the recurrent `state` (see [`Weights::state_len`]) by one input `x`.
    pub(crate) fn step(&self, x: &[f32], state: &mut [f32]) {
        let hsz = self.hidden;
        let rows = self.kind.gates() * hsz;
        let mut gi = self.b_ih.clone();
        matvec_add(&self.w_ih, x, &mut gi);
        let mut gh = self.b_hh.clone();
        matvec_add(&self.w_hh, &state[..hsz], &mut gh);
        debug_assert_eq!(gi.len(), rows);
        match self.kind {
            CellKind::Gru => {
                for j in 0..hsz {
                    let r = sigmoid(gi[j] + gh[j]);
                    let z = sigmoid(gi[hsz + j] + gh[hsz + j]);
                    let n = (gi[2 * hsz + j] + r * gh[2 * hsz + j]).tanh();
                    state[j] = z * state[j] + (1.0 - z) * n;
                }
            }
            CellKind::Lstm => {
                let (h, c) = state.split_at_mut(hsz);
                for j in 0..hsz {
                    let i = sigmoid(gi[j] + gh[j]);
                    let f = sigmoid(gi[hsz + j] + gh[hsz + j]);
                    let g = (gi[2 * hsz + j] + gh[2 * hsz + j]).tanh();
                    let o = sigmoid(gi[3 * hsz + j] + gh[3 * hsz + j]);
                    c[j] = f * c[j] + i * g;
                    h[j] = o * c[j].tanh();
                }
            }
        }
    }

    /// The normalised quantiles of every horizon, `[horizons][levels]`, from the hidden
    /// part of `state` and the last input `x`.
    pub(crate) fn head(&self, state: &[f32], x: &[f32]) -> Vec<[f32; QUANTILE_COUNT]> {
        let hsz = self.hidden;
        let cols = hsz + self.input;
        let mut out = Vec::with_capacity(self.horizons);
        for k in 0..self.horizons {
            let mut raw = [0.0f32; QUANTILE_COUNT];
            for (j, r) in raw.iter_mut().enumerate() {
                let row = k * QUANTILE_COUNT + j;
                let w = &self.head_w[row * cols..(row + 1) * cols];
                *r = self.head_b[row] + dot(&w[..hsz], &state[..hsz]) + dot(&w[hsz..], x);
            }
            out.push(monotone(raw, x[0]));
        }
        out
    }
}

/// The quantile head's output transform: the lowest level is the current normalised demand
/// plus a learned offset (persistence is the natural prior at one step), each next level
/// adds a softplus, so the levels can never cross.
pub(crate) fn monotone(raw: [f32; QUANTILE_COUNT], current: f32) -> [f32; QUANTILE_COUNT] {
    let mut q = [0.0f32; QUANTILE_COUNT];
    q[0] = current + raw[0];
    for j in 1..QUANTILE_COUNT {
        q[j] = q[j - 1] + softplus(raw[j]);
    }
    q
}

fn matvec_add(m: &[f32], v: &[f32], out: &mut [f32]) {
    let cols = v.len();
    for (o, row) in out.iter_mut().zip(m.chunks_exact(cols)) {
        *o += dot(row, v);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(1 + eˣ)`, computed without overflow for large `x`.
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_monotone_whatever_the_raw_outputs() {
        let raws = [
            [0.0; QUANTILE_COUNT],
            [
                -50.0, 50.0, -50.0, 0.0, -80.0, 3.0, -1.0, 200.0, -200.0, 0.5,
            ],
            [5.0, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6, -1e6],
        ];
        for raw in raws {
            let q = monotone(raw, 0.3);
            assert!(q.windows(2).all(|w| w[1] >= w[0]), "{q:?}");
            assert!(q.iter().all(|v| v.is_finite()), "{q:?}");
            assert_eq!(q[0], 0.3 + raw[0]);
        }
        // softplus(0) = ln 2: the increments of an all-zero output.
        let q = monotone([0.0; QUANTILE_COUNT], 1.0);
        assert!((q[1] - q[0] - std::f32::consts::LN_2).abs() < 1e-6);
        assert!((softplus(100.0) - 100.0).abs() < 1e-4);
        assert!(softplus(-100.0) >= 0.0 && softplus(-100.0) < 1e-30);
    }
}
