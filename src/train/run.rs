//! The epoch loop shared by every driver. The driver supplies time, progress display,
//! persistence and stop requests through an [`Observer`]; the loop itself touches no file,
//! clock or thread.

use super::artifacts::{Files, checkpoint_files};
use super::{StepStats, TaskData, Trainer};
use crate::error::Result;
use crate::report::{EpochRecord, LOSS_CURVE_EVERY, RESULTS_VERSION, RunResults, Versions};
use crate::tasks::HeadsConfig;

/// What a driver provides to [`run`].
pub trait Observer {
    /// Monotonic time in seconds from any origin.
    fn now(&self) -> f64;
    /// An epoch of `steps` optimiser steps starts (1-based `epoch`).
    fn on_epoch_start(&mut self, _epoch: usize, _steps: usize) {}
    /// A step finished.
    fn on_step(&mut self, _stats: &StepStats) {}
    /// Dev evaluation starts.
    fn on_eval_start(&mut self, _epoch: usize) {}
    /// An epoch ended: `results` is the record so far (to persist); `best` holds the checkpoint
    /// files when this epoch is the best so far (to persist as the kept checkpoint).
    ///
    /// # Errors
    /// Whatever persisting fails with; the run stops with it.
    fn on_epoch_end(&mut self, results: &RunResults, best: Option<&Files>) -> Result<()>;
    /// Whether the user asked to stop (checked before every step).
    fn should_stop(&self) -> bool {
        false
    }
    /// Peak memory in bytes, if the driver can measure it.
    fn peak_memory_bytes(&self) -> Option<u64> {
        None
    }
}

/// Static facts about a run for its record.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Base model name or folder.
    pub model: String,
    /// Backend description.
    pub backend: String,
    /// The heads' configuration (saved with the checkpoint).
    pub heads: HeadsConfig,
    /// The base model's `config.json` text (saved with full fine-tuning checkpoints).
    pub bert_config_json: String,
}

/// Trains for the configured epochs (or until `max_steps`), evaluating on `dev` after each
/// epoch and handing the best checkpoint's files to the observer.
///
/// # Errors
/// A non-finite loss (naming the step), a failed read-back, or an observer error.
pub async fn run(
    trainer: &mut Trainer,
    train: &[TaskData],
    dev: &[TaskData],
    info: &RunInfo,
    obs: &mut dyn Observer,
) -> Result<RunResults> {
    let cfg = trainer.cfg.clone();
    let mut results = RunResults {
        results_version: RESULTS_VERSION,
        model: info.model.clone(),
        backend: info.backend.clone(),
        config: cfg.clone(),
        epochs: Vec::new(),
        best_epoch: None,
        best: None,
        params: super::count_params(trainer.model()),
        peak_memory_bytes: None,
        truncated_examples: train.iter().chain(dev).map(|t| t.truncated).sum(),
        skipped_rows: train.iter().chain(dev).map(|t| t.skipped_rows).sum(),
        steps: 0,
        finished: false,
        versions: Versions::default(),
        loss_curve: Vec::new(),
    };
    let (mut window_sum, mut window_n) = (0.0, 0usize);
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let epochs = if cfg.max_steps.is_some() {
        // A step budget may span more epochs than configured.
        let per = Trainer::steps_per_epoch(train, cfg.batch_size).max(1);
        cfg.epochs.max(max_steps.div_ceil(per))
    } else {
        cfg.epochs
    };
    let mut stopped = false;
    for epoch in 0..epochs {
        if trainer.step >= max_steps || stopped {
            break;
        }
        let plan = trainer.plan_epoch(train, epoch);
        let steps_this = plan.len().min(max_steps - trainer.step);
        obs.on_epoch_start(epoch + 1, steps_this);
        let t0 = obs.now();
        let (mut loss_sum, mut n_steps, mut n_examples) = (0.0, 0usize, 0usize);
        for entry in plan.iter().take(steps_this) {
            if obs.should_stop() {
                stopped = true;
                break;
            }
            let batch = trainer.batch(train, entry);
            let stats = trainer.step(&batch).await?;
            loss_sum += stats.loss;
            window_sum += stats.loss;
            window_n += 1;
            n_steps += 1;
            if window_n == LOSS_CURVE_EVERY {
                results
                    .loss_curve
                    .push([trainer.step as f64, window_sum / window_n as f64]);
                (window_sum, window_n) = (0.0, 0);
            }
            n_examples += stats.examples;
            obs.on_step(&stats);
        }
        let seconds = obs.now() - t0;
        if window_n > 0 {
            results
                .loss_curve
                .push([trainer.step as f64, window_sum / window_n as f64]);
            (window_sum, window_n) = (0.0, 0);
        }
        if n_steps == 0 {
            break;
        }
        obs.on_eval_start(epoch + 1);
        let t1 = obs.now();
        let dev_metrics = trainer.evaluate(dev).await?;
        let eval_seconds = obs.now() - t1;
        results.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: n_steps,
            train_loss: loss_sum / n_steps as f64,
            seconds,
            examples_per_second: n_examples as f64 / seconds.max(1e-9),
            eval_seconds,
            dev: dev_metrics.clone(),
        });
        results.steps = trainer.step;
        results.peak_memory_bytes = obs.peak_memory_bytes();
        let is_best = results
            .best
            .as_ref()
            .is_none_or(|b| dev_metrics.primary() > b.primary());
        let files = if is_best {
            results.best_epoch = Some(epoch + 1);
            results.best = Some(dev_metrics);
            Some(checkpoint_files(
                trainer.model(),
                &cfg,
                &info.heads,
                &info.model,
                &info.bert_config_json,
            )?)
        } else {
            None
        };
        results.finished = !stopped && (epoch + 1 == epochs || trainer.step >= max_steps);
        obs.on_epoch_end(&results, files.as_ref())?;
    }
    Ok(results)
}
