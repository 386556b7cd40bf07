//! Every setting of a training run ([`TrainConfig`], saved in `results.json`) and the
//! precision a run gets on a device.

use std::sync::Arc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::class_weights::ClassWeights;
use crate::adapter::LoraConfig;
use crate::error::{Error, Result};
use crate::tasks::own::{DataSpec, OwnTask};
use crate::tasks::{Kind, PairEncoding, Pooling, Task};

/// Storage precision of the frozen weights (`--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision ([`crate::model::Bert::into_f16`]): frozen 2-D weights (linear weights,
    /// embedding tables) in f16 storage and f16 activations (LayerNorm computed in f32), with
    /// adapters, heads, biases, LayerNorm parameters, gradients of parameters and AdamW moments
    /// in f32 and dynamic loss scaling ([`LossScaler`]). Needs a wgpu device with f16
    /// ([`crate::kernels::f16_available`]).
    F16,
}

impl Precision {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// The precision a run asking for `requested` gets on `device`: the f16 mode falls back to f32 on
/// devices without it (the CPU backend, a GPU without `shader-f16`), with the reason for the
/// driver to show (it says what runs in f32: training, inference).
pub fn resolve_precision(requested: Precision, device: &Device) -> (Precision, Option<String>) {
    if requested == Precision::F16 && !crate::kernels::f16_available(device) {
        return (
            Precision::F32,
            Some("f16 needs a wgpu device with f16 support (shader-f16)".into()),
        );
    }
    (requested, None)
}

/// Every setting of a training run; serialised into `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Tasks trained together (one for single-task runs, all three for multitask).
    pub tasks: Vec<Task>,
    /// The adapters trained on the frozen encoder, as PEFT's `LoraConfig` (`use_dora` chooses
    /// DoRA over LoRA), or `None` for full fine-tuning (every encoder weight trains).
    pub adapter: Option<LoraConfig>,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step (pairs count once).
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Decoupled weight decay of AdamW.
    pub weight_decay: f64,
    /// Fraction of all steps spent warming up linearly from 0 to `lr`.
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping threshold (as `torch.nn.utils.clip_grad_norm_`); 0 = off.
    pub max_grad_norm: f64,
    /// Token limit per sequence (special tokens included).
    pub max_len: usize,
    /// Seed of weights init, dropout and data order.
    pub seed: u64,
    /// This many optimiser steps in total, overriding `epochs` (transformers' `max_steps`).
    pub max_steps: Option<usize>,
    /// Use at most this many training examples per task.
    pub max_train_examples: Option<usize>,
    /// Use at most this many dev examples per task.
    pub max_eval_examples: Option<usize>,
    /// Sentence pooling.
    pub pooling: Pooling,
    /// Pair encoding.
    pub pair_encoding: PairEncoding,
    /// Dropout before the task heads.
    pub head_dropout: f64,
    /// Group examples of similar length into batches (less padding).
    pub bucket_by_length: bool,
    /// Batch size for evaluation.
    pub eval_batch_size: usize,
    /// Save a resume checkpoint every this many steps (0: only at epoch ends and on stop).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Skip a batch whose loss or gradient is not finite instead of stopping the run.
    #[serde(default)]
    pub skip_nonfinite: bool,
    /// Testing aid: make the loss NaN at this 1-based step (fault injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_nan_at_step: Option<usize>,
    /// Storage precision of the frozen weights.
    #[serde(default)]
    pub precision: Precision,
    /// Own data: the files and what was asked of them (with `tasks` = `[own]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
    /// Own data: the task read from them (kind, classes, columns, metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnTask>,
    /// The adapter folder training started from (`train --init-adapter`: a lorabert checkpoint
    /// or a PEFT adapter folder), as given; `adapter` is then its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_adapter: Option<String>,
    /// When to evaluate and stop, and how the optimiser treats parameter groups (flattened
    /// into the configuration's JSON object).
    #[serde(flatten, default)]
    pub controls: Controls,
}

/// The training controls people know from transformers' `TrainingArguments` and
/// `EarlyStoppingCallback`, and PEFT's `create_loraplus_optimizer`; every field defaults to
/// "off", which trains exactly as before they existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Controls {
    /// Evaluate also every this many optimiser steps (`--eval-steps`, as transformers'
    /// `eval_steps` with `eval_strategy="steps"`), besides at every epoch end; `None` evaluates
    /// at epoch ends only. An epoch end that falls on a multiple is evaluated once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<usize>,
    /// Stop after this many evaluations in a row without improvement of the best-model metric
    /// (`--early-stopping-patience`, transformers' `EarlyStoppingCallback`); `None` never
    /// stops early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<usize>,
    /// How much better than the best so far an evaluation must be to count as an
    /// improvement (`--early-stopping-threshold`, in the metric's units; default 0).
    pub early_stopping_threshold: f64,
    /// A training line in `metrics.jsonl` every this many optimiser steps (`--logging-steps`,
    /// transformers' `logging_steps`).
    pub logging_steps: usize,
    /// Micro-batches whose gradients add up to one optimiser step
    /// (`--gradient-accumulation-steps`, transformers' `gradient_accumulation_steps`): the
    /// same update as one batch of all their examples (each micro-batch's mean loss weighted
    /// by its share of the examples). 1 = off.
    pub gradient_accumulation_steps: usize,
    /// LoRA+ (`--loraplus-lr-ratio`, PEFT's `create_loraplus_optimizer`): `lora_B` and every
    /// 1-D parameter (biases, LayerNorm, DoRA's magnitude) learn at this multiple of the
    /// learning rate, everything else at the rate. `None` = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loraplus_lr_ratio: Option<f64>,
    /// Class weights of the cross-entropy of classification tasks (`--class-weights`); the
    /// weights each task got are in `results.json`'s `class_weights`.
    pub class_weights: ClassWeights,
    /// Each label's positive weight in the binary cross-entropy of multi-label tasks
    /// (`--pos-weight`, `BCEWithLogitsLoss`'s `pos_weight`): `balanced` is `negatives /
    /// positives` of each label in the training rows; the weights used are in `results.json`'s
    /// `pos_weight`.
    pub pos_weight: ClassWeights,
    /// Tune each label's decision threshold of multi-label tasks on the validation data at
    /// every evaluation (`--tune-thresholds`): the F1-maximising one on a grid of 0.05 steps;
    /// the best checkpoint keeps them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tune_thresholds: bool,
    /// Where the native program also reports the `metrics.jsonl` lines (`--report-to`,
    /// transformers' `report_to`): `tensorboard` (event files in `OUT/tb/`). The page keeps
    /// its own plots.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub report_to: Vec<String>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            eval_steps: None,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            logging_steps: super::log::DEFAULT_LOGGING_STEPS,
            gradient_accumulation_steps: 1,
            loraplus_lr_ratio: None,
            class_weights: ClassWeights::None,
            pos_weight: ClassWeights::None,
            tune_thresholds: false,
            report_to: Vec::new(),
        }
    }
}

impl Controls {
    /// Checks the controls' ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.eval_steps == Some(0) {
            return bad("--eval-steps must be >= 1 (leave it out to evaluate at epoch ends only)");
        }
        if self.early_stopping_patience == Some(0) {
            return bad("--early-stopping-patience must be >= 1");
        }
        if !(self.early_stopping_threshold.is_finite() && self.early_stopping_threshold >= 0.0) {
            return bad("--early-stopping-threshold must be a finite number >= 0");
        }
        if self.logging_steps == 0 {
            return bad("--logging-steps must be >= 1");
        }
        if let Some(r) = self.report_to.iter().find(|r| *r != "tensorboard") {
            return Err(Error::Invalid(format!(
                "--report-to {r}: lorabert reports to `tensorboard` (or `none`)"
            )));
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("--gradient-accumulation-steps must be >= 1");
        }
        if self
            .loraplus_lr_ratio
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            return bad("--loraplus-lr-ratio must be a finite number > 0");
        }
        Ok(())
    }
}

fn default_checkpoint_every() -> usize {
    100
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            tasks: vec![Task::Sst],
            adapter: Some(LoraConfig {
                r: 1,
                lora_alpha: 8.0,
                ..LoraConfig::default()
            }),
            epochs: 3,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            max_len: 128,
            seed: 42,
            max_steps: None,
            max_train_examples: None,
            max_eval_examples: None,
            pooling: Pooling::Mean,
            pair_encoding: PairEncoding::Bi,
            head_dropout: 0.1,
            bucket_by_length: true,
            eval_batch_size: 128,
            checkpoint_every: default_checkpoint_every(),
            skip_nonfinite: false,
            debug_nan_at_step: None,
            precision: Precision::F32,
            data: None,
            own: None,
            init_adapter: None,
            controls: Controls::default(),
        }
    }
}

/// A [`TrainConfig`] that passed [`TrainConfig::validate`]: the only configuration
/// [`crate::train::Job::new`] takes, so a run's options are checked exactly once, where the
/// driver resolves them. Read it as a `TrainConfig` (it derefs to one); the fields `validate`
/// does not check (precision, the own-data task) and the adapter's rank and kind (checked
/// again) can still be set.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(TrainConfig);

impl std::ops::Deref for ValidConfig {
    type Target = TrainConfig;

    fn deref(&self) -> &TrainConfig {
        &self.0
    }
}

impl ValidConfig {
    /// The configuration.
    pub fn into_inner(self) -> TrainConfig {
        self.0
    }

    /// Sets the precision (resolved against the device after the options are checked).
    pub fn set_precision(&mut self, precision: Precision) {
        self.0.precision = precision;
    }

    /// Sets the own-data task (resolved when its data is read).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an embedding task with in-batch negatives
    /// (MultipleNegativesRankingLoss) and `--batch-size 1`: each anchor would have no negative
    /// to be told apart from, and the loss would be 0.
    pub fn set_own(&mut self, own: OwnTask) -> Result<()> {
        if let crate::tasks::own::TaskKind::Embedding { loss, .. } = &own.kind
            && loss.in_batch()
            && self.0.batch_size < 2
        {
            return Err(Error::Invalid(format!(
                "--batch-size {} with {}: the other pairs of a batch are each anchor's \
                 negatives, so a batch needs two pairs or more (sentence-transformers uses 32 \
                 and more)",
                self.0.batch_size,
                loss.class_name()
            )));
        }
        self.0.own = Some(own);
        Ok(())
    }

    /// The same run with the adapter at rank `r`, DoRA or LoRA (a sweep's cell); no change
    /// for full fine-tuning.
    ///
    /// # Errors
    /// As [`LoraConfig::validate`] for the new rank.
    pub fn with_adapter(mut self, r: usize, use_dora: bool) -> Result<Self> {
        if let Some(lora) = &mut self.0.adapter {
            lora.r = r;
            lora.use_dora = use_dora;
            lora.validate()?;
        }
        Ok(self)
    }
}

impl TrainConfig {
    /// [`validate`](Self::validate)s and keeps the proof.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn validated(self) -> Result<ValidConfig> {
        self.validate()?;
        Ok(ValidConfig(self))
    }

    /// Checks option ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.tasks.is_empty() {
            return bad("no task selected");
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("--batch-size must be >= 1");
        }
        if self.max_len < 4 {
            return bad("--max-len must be >= 4 tokens");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr must be > 0");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("--warmup-ratio must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return bad("--head-dropout must be in [0, 1)");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("--epochs must be >= 1");
        }
        if self.max_steps == Some(0) {
            return bad("--max-steps must be >= 1");
        }
        if let Some(lora) = &self.adapter {
            lora.validate()?;
        }
        if self.tasks.contains(&Task::Own) && self.tasks.len() > 1 {
            return bad("own data trains alone, not with the minBERT tasks");
        }
        if self.adapter.is_none() && self.controls.loraplus_lr_ratio.is_some() {
            return bad(
                "--loraplus-lr-ratio applies to LoRA and DoRA adapters (lora_B), not to full \
                 fine-tuning (--adapter none)",
            );
        }
        self.controls.validate()
    }

    /// The kinds of its tasks, in the order of [`Task`] ([`crate::tasks::kinds::task_kind`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] for the own-data task before its data is read (`own` unset).
    pub fn kinds(&self) -> Result<Vec<Arc<dyn Kind>>> {
        crate::tasks::kinds::of_tasks(&self.tasks, self.own.as_ref())
    }

    /// Its tasks' names joined by `+` (an own-data task by its name).
    pub fn task_names(&self) -> String {
        match self.kinds() {
            Ok(kinds) => kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("+"),
            Err(_) => self
                .tasks
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    /// What trains, as sweeps, reports and share links name it: `none` (full fine-tuning),
    /// `lora` or `dora`.
    pub fn adapter_name(&self) -> &'static str {
        match &self.adapter {
            None => "none",
            Some(l) => l.kind().name(),
        }
    }
}
