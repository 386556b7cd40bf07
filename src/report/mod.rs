//! The results record of a run (`results.json`), shared by the CLI and (later) the page, sweeps
//! and reports.

pub mod plot;
pub mod share;
pub mod sweep;

use serde::{Deserialize, Serialize};

use crate::train::{DevMetrics, ParamCounts, TrainConfig};

/// Version of the `results.json` layout.
pub const RESULTS_VERSION: u32 = 1;

/// One epoch of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Optimiser steps in this epoch.
    pub steps: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub seconds: f64,
    /// Training throughput, examples per second (a pair counts once).
    pub examples_per_second: f64,
    /// Wall-clock seconds of the dev evaluation.
    pub eval_seconds: f64,
    /// Dev metrics after the epoch.
    pub dev: DevMetrics,
}

/// Library versions a run was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// lorabert.
    pub lorabert: String,
    /// Burn.
    pub burn: String,
    /// tokenizers.
    pub tokenizers: String,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            lorabert: env!("CARGO_PKG_VERSION").to_string(),
            burn: "0.22.1".into(),
            tokenizers: "0.23.2".into(),
        }
    }
}

/// Everything a training run reports; written as `results.json` after every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// [`RESULTS_VERSION`].
    pub results_version: u32,
    /// Base model (folder or name).
    pub model: String,
    /// Backend and device, e.g. `flex (CPU)`.
    pub backend: String,
    /// The full configuration.
    pub config: TrainConfig,
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch whose checkpoint is kept as `best/`.
    pub best_epoch: Option<usize>,
    /// Dev metrics of the best epoch.
    pub best: Option<DevMetrics>,
    /// Trainable and total parameter counts.
    pub params: ParamCounts,
    /// Peak resident memory of the process in bytes (native: `VmHWM`), when known.
    pub peak_memory_bytes: Option<u64>,
    /// Training examples per task that were truncated to `max_len`.
    pub truncated_examples: usize,
    /// Data rows skipped for a missing label (e.g. two rows of `quora-dev.csv`).
    pub skipped_rows: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Whether the run finished all planned steps.
    pub finished: bool,
    /// Library versions.
    pub versions: Versions,
    /// Training-loss curve: `[step, mean loss of the steps since the previous point]`, one point
    /// every [`LOSS_CURVE_EVERY`] steps and at the end of each epoch.
    #[serde(default)]
    pub loss_curve: Vec<[f64; 2]>,
    /// Batches skipped because their loss or gradient was not finite (`--skip-nonfinite`).
    #[serde(default)]
    pub skipped_batches: usize,
    /// The f16 mode's loss scaler after the last step (scale, and optimiser steps skipped for
    /// overflow); `None` in f32. Restored with the run on resume.
    #[serde(default)]
    pub loss_scaler: Option<crate::train::LossScaler>,
}

/// Steps between two points of [`RunResults::loss_curve`].
pub const LOSS_CURVE_EVERY: usize = 10;
