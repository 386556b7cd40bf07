//! The record of one run (`results.json`): written by the run loop after every epoch, read by
//! the CLI, the page, sweeps and reports.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::class_weights::TaskClassWeights;
use super::{DevMetrics, LossScaler, ParamCounts, TrainConfig};
use crate::error::{Error, Result};
use crate::tasks::own::DataSummary;

/// Version of the `results.json` layout. 2: `config.adapter` is PEFT's `LoraConfig` (with
/// `use_dora`) or `null` for full fine-tuning; version 1 had `config.adapter` as
/// `"none" | "lora" | "dora"` beside a `config.lora` object ([`RunResults::from_json`] reads
/// both).
pub const RESULTS_VERSION: u32 = 2;

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

/// One evaluation on the dev data: at an epoch end, or every `--eval-steps` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimiser steps taken when it ran.
    pub step: usize,
    /// Epochs done when it ran, fractional inside an epoch (transformers' `state.epoch`).
    pub epoch: f64,
    /// Wall-clock seconds it took.
    pub seconds: f64,
    /// Its dev metrics.
    pub dev: DevMetrics,
}

/// Why and when early stopping ended a run (`--early-stopping-patience`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppedEarly {
    /// Optimiser step of the evaluation that stopped it.
    pub step: usize,
    /// Epochs done then (fractional inside an epoch).
    pub epoch: f64,
    /// The best-model metric, its best value (at `best_step`) and the patience that ran out.
    pub reason: String,
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
    /// Backend and device, e.g. `flex (CPU)`: of the last segment of a resumed run.
    pub backend: String,
    /// The full configuration.
    pub config: TrainConfig,
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch whose checkpoint is kept as `best/` (the epoch it was taken in, when it
    /// comes from an evaluation inside an epoch: see `best_step`).
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
    /// Dev metrics of the model before the first step ("epoch 0"), for kinds that evaluate
    /// then ([`crate::tasks::Kind::evaluates_before_training`]: embeddings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_training: Option<DevMetrics>,
    /// Training examples left out of their epoch, all epochs together, because their texts
    /// clashed with every batch of the epoch (in-batch negatives: [`crate::train::Trainer::left_out`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_out_duplicates: usize,
    /// The f16 mode's loss scaler after the last step (scale, and optimiser steps skipped for
    /// overflow); `None` in f32. Restored with the run on resume.
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
    /// Own data: the files read, the validation split, the label counts of both splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSummary>,
    /// A resumed run's segments, each from the step it started at, with the backend it ran on
    /// (empty for a run that never stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<RunSegment>,
    /// Every evaluation in order: each epoch end's and, with `--eval-steps`, those in between.
    #[serde(default)]
    pub evaluations: Vec<EvalRecord>,
    /// Optimiser step of the evaluation whose checkpoint is kept as `best/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_step: Option<usize>,
    /// Evaluations in a row without improvement by more than `--early-stopping-threshold`
    /// (transformers' `early_stopping_patience_counter`); kept with resume checkpoints.
    #[serde(default)]
    pub patience_counter: usize,
    /// Set when early stopping ended the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<StoppedEarly>,
    /// The class weights each classification task trained with (`--class-weights`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_weights: Vec<TaskClassWeights>,
    /// The positive weights each multi-label task trained with (`--pos-weight`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pos_weight: Vec<TaskClassWeights>,
}

/// One uninterrupted part of a resumed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSegment {
    /// The optimiser step it started from (0 for the first).
    pub start_step: usize,
    /// Its backend, as [`RunResults::backend`].
    pub backend: String,
}

impl RunResults {
    /// Mean training seconds per epoch (evaluation excluded); 0 before the first epoch.
    pub fn mean_seconds_per_epoch(&self) -> f64 {
        let n = self.epochs.len().max(1) as f64;
        self.epochs.iter().map(|e| e.seconds).sum::<f64>() / n
    }

    /// Mean training throughput over the epochs, examples per second.
    pub fn mean_examples_per_second(&self) -> f64 {
        let n = self.epochs.len().max(1) as f64;
        self.epochs
            .iter()
            .map(|e| e.examples_per_second)
            .sum::<f64>()
            / n
    }

    /// Parses a `results.json` of any version so far, upgrading older layouts to the current
    /// one (see [`RESULTS_VERSION`]). `source` (the file) is quoted in errors.
    ///
    /// # Errors
    /// [`Error::Config`] for malformed JSON, a version newer than this build's, or content
    /// that does not fit the layout of its version.
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::config(source, format!("invalid JSON: {e}")))?;
        Self::from_value(v, source)
    }

    /// [`RunResults::from_json`] of a parsed JSON value (e.g. a record inside another file).
    ///
    /// # Errors
    /// As [`RunResults::from_json`].
    pub fn from_value(mut v: Value, source: &str) -> Result<Self> {
        let version = v
            .get("results_version")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if version > RESULTS_VERSION as u64 {
            return Err(Error::config(
                source,
                format!(
                    "results_version {version} is newer than this lorabert's ({RESULTS_VERSION})"
                ),
            ));
        }
        if version == 1 {
            upgrade_v1(&mut v);
        }
        serde_json::from_value(v).map_err(|e| Error::config(source, format!("invalid: {e}")))
    }
}

/// Version 1 → 2: `config.adapter` (`"none"`, `"lora"`, `"dora"`) and `config.lora` become one
/// `config.adapter`: `null`, or the `lora` object with `use_dora` set from the old name.
fn upgrade_v1(v: &mut Value) {
    if let Some(cfg) = v.get_mut("config").and_then(Value::as_object_mut) {
        let kind = cfg
            .get("adapter")
            .and_then(Value::as_str)
            .map(str::to_string);
        let lora = cfg.remove("lora");
        let adapter = match (kind.as_deref(), lora) {
            (Some("lora" | "dora"), Some(mut l)) => {
                if let Some(o) = l.as_object_mut() {
                    o.insert(
                        "use_dora".into(),
                        Value::Bool(kind.as_deref() == Some("dora")),
                    );
                }
                l
            }
            _ => Value::Null,
        };
        cfg.insert("adapter".into(), adapter);
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("results_version".into(), Value::from(RESULTS_VERSION));
    }
}

/// Steps between two points of [`RunResults::loss_curve`].
pub const LOSS_CURVE_EVERY: usize = 10;

fn is_zero(n: &usize) -> bool {
    *n == 0
}
