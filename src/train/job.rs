//! One training run, the same for every driver: a configuration, a pretrained model, its
//! encoder and the tokenised data go in; [`Job::run`] trains with the driver's
//! [`Observer`](super::run::Observer) and returns the results record. The CLI and the page only
//! turn their input (flags, page fields; files, fetched or picked bytes) into these, and show
//! and keep what the observer reports (Burn's text-classification example
//! `train(devices, datasets, config, artifact_dir)` has the same shape).

use burn::tensor::Device;

use super::resume::restore_training;
use super::run::{Observer, Resumed, RunInfo, run};
use super::{
    ParamCounts, RunResults, TrainConfig, Trainer, ValidConfig, build_model, count_params,
};
use crate::error::Result;
use crate::model::{Bert, Pretrained};
use crate::tasks::TaskData;

/// A training run ready to start (or to continue from a resume checkpoint).
pub struct Job {
    /// Model, optimiser and schedule.
    pub trainer: Trainer,
    /// Training data, one entry per task of the configuration.
    pub train: Vec<TaskData>,
    /// Dev data, one entry per task.
    pub dev: Vec<TaskData>,
    /// What the results record and checkpoints say about the run.
    pub info: RunInfo,
    resumed: Option<Resumed>,
}

impl Job {
    /// Builds the run of `cfg` (checked once by the driver: [`TrainConfig::validated`]):
    /// adapters (or full fine-tuning) and heads on `bert` (the encoder of `model`, already on
    /// `device`, the autodiff training device), the precision of `cfg`, and the step plan over
    /// `train`. `backend` describes the device for the record.
    ///
    /// # Errors
    /// [`crate::Error::Adapter`] for a target that matches nothing; [`crate::Error::Invalid`]
    /// for an own-data run whose task is unresolved, a pooling the encoder lacks, class or
    /// positive weights that do not fit the tasks ([`super::class_weights::resolve`],
    /// [`super::class_weights::resolve_pos_weight`]), or `--tune-thresholds` without a
    /// multi-label task.
    pub fn new(
        cfg: ValidConfig,
        model: &Pretrained,
        bert: Bert,
        train: Vec<TaskData>,
        dev: Vec<TaskData>,
        backend: &str,
        device: &Device,
    ) -> Result<Self> {
        let cfg = cfg.into_inner();
        let (m, heads) = build_model(bert, &cfg, model.cfg.hidden_size, device)?;
        device.memory_cleanup(); // pages of f32 weights freed by an f16 conversion
        let total = total_steps(&cfg, &train);
        let weights = super::class_weights::resolve(&cfg.controls.class_weights, &train)?;
        let pos = super::class_weights::resolve_pos_weight(&cfg.controls.pos_weight, &train)?;
        // Decision thresholds are multi-label's (the kinds that take positive weights).
        if cfg.controls.tune_thresholds && !train.iter().any(|t| t.kind.takes_pos_weight()) {
            return Err(crate::Error::Invalid(
                "--tune-thresholds applies to multi-label tasks (a threshold per label); this \
                 run's tasks pick the most probable class or predict a value"
                    .into(),
            ));
        }
        let mut trainer = Trainer::new(m, cfg, total, model.pad_id(), device.clone());
        trainer.set_class_weights(weights.clone());
        trainer.set_pos_weight(pos.clone());
        let info = RunInfo {
            model: model.name.clone(),
            backend: backend.to_string(),
            heads,
            bert_config_json: model.config_json.clone(),
            data: None,
            class_weights: weights.into_iter().flatten().collect(),
            pos_weight: pos.into_iter().flatten().collect(),
        };
        Ok(Job {
            trainer,
            train,
            dev,
            info,
            resumed: None,
        })
    }

    /// Starts the heads from a checkpoint's (`heads_config.json` bytes `config`, `heads.safetensors`
    /// bytes `weights`; `train --init-adapter`) when they are the heads this run trains: the same
    /// tasks, pooling, pair encoding, hidden size and own-data task kind (classes in the same
    /// order). Returns whether they were loaded; `Ok(false)` leaves the fresh heads.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an invalid `heads_config.json`; the head loading errors
    /// ([`super::artifacts::load_heads`]) when the files disagree with their config.
    pub fn init_heads(&mut self, config: &[u8], weights: &[u8]) -> Result<bool> {
        use super::artifacts::{load_heads, names};
        let saved: crate::tasks::HeadsConfig = serde_json::from_slice(config)
            .map_err(|e| crate::Error::config(names::HEADS_CONFIG, format!("invalid: {e}")))?;
        let ours = &self.info.heads;
        let same = saved.tasks == ours.tasks
            && saved.pooling == ours.pooling
            && saved.pair_encoding == ours.pair_encoding
            && saved.hidden_size == ours.hidden_size
            && saved.own.as_ref().map(|o| &o.kind) == ours.own.as_ref().map(|o| &o.kind);
        if !same {
            return Ok(false);
        }
        let model = load_heads(self.trainer.model().clone(), weights, names::HEADS)?;
        self.trainer.set_model(model);
        Ok(true)
    }

    /// Trainable and total parameters of the model being trained.
    pub fn params(&self) -> ParamCounts {
        count_params(self.trainer.model())
    }

    /// Restores the state saved in a resume checkpoint (`get(name)` gives a file's bytes, `None`
    /// when absent), so that [`run`](Self::run) continues where the interrupted run stopped.
    ///
    /// # Errors
    /// See [`restore_training`]; [`crate::Error::Config`] when own data files differ from those
    /// the run began with.
    pub fn resume_from(
        &mut self,
        get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
    ) -> Result<()> {
        let (progress, results) = restore_training(&mut self.trainer, get)?;
        if let (Some(now), Some(then)) = (&self.info.data, &results.data) {
            let changed = |what: &str, file: &str| {
                Err(crate::Error::config(
                    file,
                    format!(
                        "the {what} file changed since this run began (its SHA-256 differs): a resumed run must read the same data; start a new run"
                    ),
                ))
            };
            if now.train_sha256 != then.train_sha256 {
                return changed("training", &now.train_file);
            }
            if now.validation_sha256 != then.validation_sha256 {
                return changed("validation", &now.validation);
            }
        }
        self.resumed = Some(Resumed { progress, results });
        Ok(())
    }

    /// Trains to the end (or until the observer asks to stop), evaluating after every epoch;
    /// see [`run`].
    ///
    /// # Errors
    /// See [`run`].
    pub async fn run(&mut self, obs: &mut dyn Observer) -> Result<RunResults> {
        let resumed = self.resumed.take();
        run(
            &mut self.trainer,
            &self.train,
            &self.dev,
            &self.info,
            obs,
            resumed,
        )
        .await
    }
}

/// Optimiser steps a run of `cfg` plans over `train` (for the learning-rate schedule):
/// `max_steps` when given (it overrides `epochs`, as transformers' `max_steps` overrides
/// `num_train_epochs`: the run goes on into further epochs until it is reached, see
/// [`super::run::planned_epochs`]), else `epochs` passes; at least 1.
pub fn total_steps(cfg: &TrainConfig, train: &[TaskData]) -> usize {
    let per_epoch = Trainer::optimizer_steps_per_epoch(train, cfg);
    cfg.max_steps.unwrap_or(per_epoch * cfg.epochs).max(1)
}
