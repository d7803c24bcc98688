//! The weights file: safetensors with a JSON header under the `presage` metadata key.
//!
//! The header says what the tensors mean (cell, sizes, feature layout, quantile levels,
//! horizons, normalisation); a build refuses a file whose header it does not match rather
//! than forecasting nonsense from it.

use std::collections::HashMap;
use std::path::Path;

use presage_core::QUANTILE_LEVELS;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::NnError;
use crate::cell::{CellKind, Weights, tensor_shapes};
use crate::features::{MODEL_RESOURCES, feature_names};

/// The value of [`ModelHeader::format`].
pub const FORMAT: &str = "presage-nn";
/// The header and tensor layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The metadata key the header is stored under.
const METADATA_KEY: &str = "presage";
/// The largest hidden size a file may claim (a guard against absurd allocations).
const MAX_HIDDEN: usize = 1024;

/// What a weights file holds, stored beside its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the build that wrote it.
    pub version: u32,
    /// The recurrent cell.
    pub cell: CellKind,
    /// Hidden units.
    pub hidden: usize,
    /// The input layout, one name per input (see `features.rs`).
    pub features: Vec<String>,
    /// The steps ahead each head forecasts, increasing.
    pub horizon_steps: Vec<u32>,
    /// The quantile levels of each head's outputs ([`QUANTILE_LEVELS`]).
    pub levels: Vec<f64>,
    /// The level the `max` output was trained at (the pinball loss at level 1 has no
    /// minimum, so "max" is a very high quantile instead).
    pub max_level_trained_as: f64,
    /// The resources the model forecasts, by name.
    pub resources: Vec<String>,
    /// Half-life of the decayed maximum that normalises each series, in seconds.
    pub scale_half_life_s: f64,
    /// What it was trained on (trace specs), for people.
    pub trained_on: Vec<String>,
    /// The training seed.
    pub seed: u64,
    /// Mean pinball loss on the held-out workloads at the kept epoch.
    pub validation_pinball: Option<f64>,
}

impl ModelHeader {
    /// Checks that this build can run the model the header describes.
    fn check(&self, origin: &str) -> Result<(), NnError> {
        let incompatible = |field, found: String, expected: String| NnError::Incompatible {
            origin: origin.to_owned(),
            field,
            found,
            expected,
        };
        if self.format != FORMAT {
            return Err(incompatible("format", self.format.clone(), FORMAT.into()));
        }
        if self.version != FORMAT_VERSION {
            return Err(incompatible(
                "version",
                self.version.to_string(),
                FORMAT_VERSION.to_string(),
            ));
        }
        if self.levels != QUANTILE_LEVELS {
            return Err(incompatible(
                "levels",
                format!("{:?}", self.levels),
                format!("{QUANTILE_LEVELS:?}"),
            ));
        }
        let resources: Vec<&str> = MODEL_RESOURCES.iter().map(|r| r.name()).collect();
        if self.resources != resources {
            return Err(incompatible(
                "resources",
                format!("{:?}", self.resources),
                format!("{resources:?}"),
            ));
        }
        let corrupt = |message: String| NnError::Corrupt {
            origin: origin.to_owned(),
            message,
        };
        if self.horizon_steps.is_empty()
            || self.horizon_steps[0] == 0
            || self.horizon_steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(corrupt(format!(
                "horizon_steps {:?} must be positive and increasing",
                self.horizon_steps
            )));
        }
        let expected = feature_names(&self.horizon_steps);
        if self.features != expected {
            return Err(incompatible(
                "features",
                format!("{:?}", self.features),
                format!("{expected:?}"),
            ));
        }
        if self.hidden == 0 || self.hidden > MAX_HIDDEN {
            return Err(corrupt(format!(
                "hidden size {} is outside 1..={MAX_HIDDEN}",
                self.hidden
            )));
        }
        if !(self.scale_half_life_s.is_finite() && self.scale_half_life_s > 0.0) {
            return Err(corrupt(format!(
                "scale_half_life_s {} must be positive",
                self.scale_half_life_s
            )));
        }
        Ok(())
    }
}

/// A model ready to run: its header, its weights and a fingerprint of the weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadedModel {
    pub(crate) header: ModelHeader,
    pub(crate) weights: Weights,
    /// FNV-1a of the tensors: a saved hidden state is only meaningful for these weights.
    pub(crate) fingerprint: String,
}

impl LoadedModel {
    pub(crate) fn from_file(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|source| NnError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a weights file held in memory; `origin` names it in errors.
    pub(crate) fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, NnError> {
        let corrupt = |message: String| NnError::Corrupt {
            origin: origin.to_owned(),
            message,
        };
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
        let text = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| corrupt(format!("no {METADATA_KEY:?} header in the metadata")))?;
        let header: ModelHeader = serde_json::from_str(text)
            .map_err(|e| corrupt(format!("header does not parse: {e}")))?;
        header.check(origin)?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
        let input = header.features.len();
        let horizons = header.horizon_steps.len();
        let shapes = tensor_shapes(header.cell, input, header.hidden, horizons);
        let mut data: [Vec<f32>; 6] = Default::default();
        for ((name, shape), slot) in shapes.iter().zip(data.iter_mut()) {
            let view = tensors
                .tensor(name)
                .map_err(|e| corrupt(format!("tensor {name}: {e}")))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
                return Err(corrupt(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            *slot = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if slot.iter().any(|v| !v.is_finite()) {
                return Err(corrupt(format!("tensor {name} holds a NaN or infinity")));
            }
        }
        let weights = Weights::from_tensors(header.cell, input, header.hidden, horizons, data);
        Ok(LoadedModel {
            fingerprint: fingerprint(&weights),
            header,
            weights,
        })
    }
}

/// Writes `header` and `weights` as a safetensors file image.
pub(crate) fn encode(header: &ModelHeader, weights: &Weights) -> Result<Vec<u8>, NnError> {
    let origin = "model being saved";
    let shapes = tensor_shapes(
        weights.kind,
        weights.input,
        weights.hidden,
        weights.horizons,
    );
    let bytes: Vec<Vec<u8>> = weights
        .tensors()
        .iter()
        .map(|t| t.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(shapes.len());
    for ((name, shape), data) in shapes.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| NnError::Corrupt {
                origin: origin.into(),
                message: format!("tensor {name}: {e}"),
            })?;
        views.push((*name, view));
    }
    let text = serde_json::to_string(header).map_err(|e| NnError::Corrupt {
        origin: origin.into(),
        message: format!("header: {e}"),
    })?;
    let metadata = HashMap::from([(METADATA_KEY.to_owned(), text)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| NnError::Corrupt {
        origin: origin.into(),
        message: e.to_string(),
    })
}

fn fingerprint(weights: &Weights) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for tensor in weights.tensors() {
        for byte in tensor.iter().flat_map(|v| v.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
