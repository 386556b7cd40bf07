//! The epoch loop shared by every driver. The driver supplies time, progress display,
//! persistence and stop requests through an [`Observer`]; the loop itself touches no file,
//! clock or thread.

use super::artifacts::{Files, checkpoint_files};
use super::resume::{EpochProgress, resume_files};
use super::{StepStats, TaskData, Trainer};
use crate::error::{Error, Result};
use crate::report::{EpochRecord, LOSS_CURVE_EVERY, RESULTS_VERSION, RunResults, Versions};
use crate::tasks::HeadsConfig;

/// What a driver provides to [`run`].
pub trait Observer {
    /// Monotonic time in seconds from any origin.
    fn now(&self) -> f64;
    /// An epoch of `steps` optimiser steps starts (1-based `epoch`); `done` of them were done
    /// before a resume.
    fn on_epoch_start(&mut self, _epoch: usize, _steps: usize, _done: usize) {}
    /// A step finished.
    fn on_step(&mut self, _stats: &StepStats) {}
    /// A batch was skipped because its loss or gradient was not finite.
    fn on_skipped(&mut self, _error: &Error) {}
    /// Dev evaluation starts.
    fn on_eval_start(&mut self, _epoch: usize) {}
    /// An epoch ended: `results` is the record so far (to persist); `best` holds the checkpoint
    /// files when this epoch is the best so far (to persist as the kept checkpoint).
    ///
    /// # Errors
    /// Whatever persisting fails with; the run stops with it.
    fn on_epoch_end(&mut self, results: &RunResults, best: Option<&Files>) -> Result<()>;
    /// A resume checkpoint (files of [`crate::train::resume`]) after `step` steps, to persist.
    ///
    /// # Errors
    /// Whatever persisting fails with; the run stops with it.
    fn on_resume_checkpoint(
        &mut self,
        _step: usize,
        _files: &Files,
        _results: &RunResults,
    ) -> Result<()> {
        Ok(())
    }
    /// Whether the run should build resume checkpoints (see [`Observer::on_resume_checkpoint`]);
    /// a driver with nowhere to keep them (the browser page) returns `false`.
    fn wants_resume_checkpoints(&self) -> bool {
        true
    }
    /// Whether the user asked to stop (checked before every step).
    fn should_stop(&self) -> bool {
        false
    }
    /// Peak memory in bytes, if the driver can measure it.
    fn peak_memory_bytes(&self) -> Option<u64> {
        None
    }
    /// A future awaited after every step, e.g. to yield to the browser's event loop so the
    /// page stays responsive; `None` (the default) continues at once.
    fn pause(&mut self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> {
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

/// Where a resumed run continues from (see [`crate::train::resume::restore_training`]).
#[derive(Debug, Clone)]
pub struct Resumed {
    /// Running sums of the interrupted epoch.
    pub progress: EpochProgress,
    /// Results recorded before the interruption.
    pub results: RunResults,
}

/// Number of epochs a run spans (a step budget may need more than `cfg.epochs`).
pub fn planned_epochs(trainer: &Trainer, train: &[TaskData]) -> usize {
    let cfg = &trainer.cfg;
    match cfg.max_steps {
        Some(max) => {
            let per = Trainer::steps_per_epoch(train, cfg.batch_size).max(1);
            cfg.epochs.max(max.div_ceil(per))
        }
        None => cfg.epochs,
    }
}

/// Trains for the configured epochs (or until `max_steps`), evaluating on `dev` after each
/// epoch, handing the best checkpoint's files and periodic resume checkpoints to the observer.
/// With `resumed`, continues at `trainer.step` (restored by the caller) inside its epoch.
///
/// # Errors
/// [`Error::NonFinite`] for a non-finite loss or gradient (unless `skip_nonfinite`), naming the
/// step and the last resume checkpoint; a failed read-back; an observer error.
pub async fn run(
    trainer: &mut Trainer,
    train: &[TaskData],
    dev: &[TaskData],
    info: &RunInfo,
    obs: &mut dyn Observer,
    resumed: Option<Resumed>,
) -> Result<RunResults> {
    let cfg = trainer.cfg.clone();
    let (mut progress, mut results) = match resumed {
        Some(r) => (r.progress, r.results),
        None => (
            EpochProgress::default(),
            RunResults {
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
                skipped_batches: 0,
                loss_scaler: trainer.scaler,
            },
        ),
    };
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let epochs = planned_epochs(trainer, train);
    let per_epoch = Trainer::steps_per_epoch(train, cfg.batch_size).max(1);
    let mut last_checkpoint: Option<usize> = (trainer.step > 0).then_some(trainer.step);
    let start_epoch = trainer.step / per_epoch;
    for epoch in start_epoch..epochs {
        if trainer.step >= max_steps {
            break;
        }
        let plan = trainer.plan_epoch(train, epoch);
        let offset = trainer.step - epoch * per_epoch;
        let end = plan.len().min(offset + (max_steps - trainer.step));
        obs.on_epoch_start(epoch + 1, end, offset);
        let mut t0 = obs.now();
        for entry in &plan[offset..end] {
            if obs.should_stop() {
                progress.seconds += obs.now() - t0;
                results.steps = trainer.step;
                results.peak_memory_bytes = obs.peak_memory_bytes();
                if obs.wants_resume_checkpoints() {
                    let files = resume_files(trainer, &progress, &results).await?;
                    obs.on_resume_checkpoint(trainer.step, &files, &results)?;
                }
                return Ok(results);
            }
            let batch = trainer.batch(train, entry);
            match trainer.step(&batch).await {
                Ok(stats) => {
                    progress.loss_sum += stats.loss;
                    progress.window_sum += stats.loss;
                    progress.window_n += 1;
                    progress.steps += 1;
                    progress.examples += stats.examples;
                    if progress.window_n == LOSS_CURVE_EVERY {
                        results.loss_curve.push([
                            trainer.step as f64,
                            progress.window_sum / LOSS_CURVE_EVERY as f64,
                        ]);
                        (progress.window_sum, progress.window_n) = (0.0, 0);
                    }
                    obs.on_step(&stats);
                }
                Err(Error::NonFinite { step, what, .. }) => {
                    let e = Error::NonFinite {
                        step,
                        what,
                        last_checkpoint_step: last_checkpoint,
                    };
                    if !cfg.skip_nonfinite {
                        return Err(e);
                    }
                    progress.skipped_batches += 1;
                    results.skipped_batches = progress.skipped_batches;
                    obs.on_skipped(&e);
                    trainer.skip_step();
                }
                Err(e) => return Err(e),
            }
            results.loss_scaler = trainer.scaler;
            if let Some(p) = obs.pause() {
                p.await;
            }
            let at_epoch_end = trainer.step == epoch * per_epoch + plan.len();
            if cfg.checkpoint_every > 0
                && obs.wants_resume_checkpoints()
                && trainer.step.is_multiple_of(cfg.checkpoint_every)
                && !at_epoch_end
            {
                progress.seconds += obs.now() - t0;
                results.steps = trainer.step;
                let files = resume_files(trainer, &progress, &results).await?;
                obs.on_resume_checkpoint(trainer.step, &files, &results)?;
                last_checkpoint = Some(trainer.step);
                t0 = obs.now();
            }
        }
        progress.seconds += obs.now() - t0;
        if progress.window_n > 0 {
            results.loss_curve.push([
                trainer.step as f64,
                progress.window_sum / progress.window_n as f64,
            ]);
            (progress.window_sum, progress.window_n) = (0.0, 0);
        }
        if progress.steps == 0 {
            break;
        }
        obs.on_eval_start(epoch + 1);
        let t1 = obs.now();
        let dev_metrics = trainer.evaluate(dev).await?;
        let eval_seconds = obs.now() - t1;
        results.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: progress.steps,
            train_loss: progress.loss_sum / progress.steps as f64,
            seconds: progress.seconds,
            examples_per_second: progress.examples as f64 / progress.seconds.max(1e-9),
            eval_seconds,
            dev: dev_metrics.clone(),
        });
        let skipped = progress.skipped_batches;
        progress = EpochProgress {
            skipped_batches: skipped,
            ..EpochProgress::default()
        };
        results.steps = trainer.step;
        results.peak_memory_bytes = obs.peak_memory_bytes();
        let is_best = results
            .best
            .as_ref()
            .is_none_or(|b| dev_metrics.primary() > b.primary());
        let files = if is_best {
            results.best_epoch = Some(epoch + 1);
            results.best = Some(dev_metrics);
            Some(
                checkpoint_files(
                    trainer.model(),
                    &cfg,
                    &info.heads,
                    &info.model,
                    &info.bert_config_json,
                )
                .await?,
            )
        } else {
            None
        };
        results.finished = epoch + 1 == epochs || trainer.step >= max_steps;
        obs.on_epoch_end(&results, files.as_ref())?;
        if !results.finished && obs.wants_resume_checkpoints() {
            let files = resume_files(trainer, &progress, &results).await?;
            obs.on_resume_checkpoint(trainer.step, &files, &results)?;
            last_checkpoint = Some(trainer.step);
        }
    }
    Ok(results)
}
