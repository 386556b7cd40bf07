//! The epoch loop shared by every driver. The driver supplies time, progress display,
//! persistence and stop requests through an [`Observer`]; the loop itself touches no file,
//! clock or thread.

use super::artifacts::{Files, checkpoint_files};
use super::class_weights::TaskClassWeights;
use super::log::{EvalLine, LogLine, LogWindow, TrainLine};
use super::results::{
    EpochRecord, EvalRecord, LOSS_CURVE_EVERY, RESULTS_VERSION, RunResults, RunSegment,
    StoppedEarly, Versions,
};
use super::resume::{EpochProgress, resume_files};
use super::{DevMetrics, StepStats, Trainer};
use crate::error::{Error, Result};
use crate::tasks::HeadsConfig;
use crate::tasks::TaskData;
use crate::tasks::own::DataSummary;

/// What a driver provides to [`run`].
pub trait Observer {
    /// Monotonic time in seconds from any origin.
    fn now(&self) -> f64;
    /// An epoch of `steps` optimiser steps starts (1-based `epoch`); `done` of them were done
    /// before a resume.
    fn on_epoch_start(&mut self, _epoch: usize, _steps: usize, _done: usize) {}
    /// A step finished.
    fn on_step(&mut self, _stats: &StepStats) {}
    /// A line for `metrics.jsonl` (every `--logging-steps` steps and every evaluation), to
    /// append as it comes.
    ///
    /// # Errors
    /// Whatever persisting fails with; the run stops with it.
    fn on_log(&mut self, _line: &LogLine) -> Result<()> {
        Ok(())
    }
    /// A batch was skipped because its loss or gradient was not finite.
    fn on_skipped(&mut self, _error: &Error) {}
    /// Dev evaluation starts (in 1-based epoch `epoch`; 0 before training).
    fn on_eval_start(&mut self, _epoch: usize) {}
    /// The evaluation before the first step ([`RunResults::before_training`]) gave `dev`.
    fn on_before_training(&mut self, _dev: &DevMetrics) {}
    /// An evaluation inside an epoch (`--eval-steps`) was recorded (the last of
    /// `results.evaluations`): `results` is the record so far (to persist); `best` holds the
    /// checkpoint files when it is the best so far (to persist as the kept checkpoint).
    ///
    /// # Errors
    /// Whatever persisting fails with; the run stops with it.
    fn on_evaluation(&mut self, results: &RunResults, best: Option<&Files>) -> Result<()>;
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
    /// Own data: the files read and their label counts.
    pub data: Option<DataSummary>,
    /// The class weights of the tasks that have them (`--class-weights`).
    pub class_weights: Vec<TaskClassWeights>,
    /// The positive weights of the multi-label tasks that have them (`--pos-weight`).
    pub pos_weight: Vec<TaskClassWeights>,
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
            let per = Trainer::optimizer_steps_per_epoch(train, cfg).max(1);
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
    let (progress, results) = match resumed {
        Some(r) => (r.progress, continued(r.results, trainer.step, info)),
        None => (
            EpochProgress::default(),
            new_results(trainer, train, dev, info),
        ),
    };
    let no_dev = dev.iter().all(|d| d.examples.is_empty());
    let controls = &trainer.cfg.controls;
    let asks = [
        (
            controls.early_stopping_patience.is_some(),
            "--early-stopping-patience",
        ),
        (controls.eval_steps.is_some(), "--eval-steps"),
    ];
    if let Some((_, flag)) = asks.iter().find(|(on, _)| *on && no_dev) {
        return Err(Error::Invalid(format!(
            "{flag} needs validation examples to evaluate on (none were read: check --max-eval \
             and the validation file)"
        )));
    }
    let cfg = trainer.cfg.clone();
    let mut l = Loop {
        last_checkpoint: (trainer.step > 0).then_some(trainer.step),
        trainer,
        obs,
        progress,
        results,
        dev,
        info,
        per_epoch: Trainer::optimizer_steps_per_epoch(train, &cfg).max(1),
        log_t0: 0.0,
        log_excluded: 0.0,
    };
    l.log_t0 = l.obs.now();
    let before = train.iter().any(|t| t.kind.evaluates_before_training());
    if before && !no_dev && l.trainer.step == 0 && l.results.before_training.is_none() {
        let (m, _) = l.evaluate(0).await?;
        l.obs.on_before_training(&m);
        l.results.before_training = Some(m);
    }
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let epochs = planned_epochs(l.trainer, train);
    for epoch in l.trainer.step / l.per_epoch..epochs {
        if l.trainer.step >= max_steps {
            break;
        }
        // One optimiser step per group of `gradient_accumulation_steps` planned batches.
        let batches = l.trainer.plan_epoch(train, epoch);
        if l.trainer.step == epoch * l.per_epoch {
            l.results.left_out_duplicates += l.trainer.left_out(train, epoch);
        }
        let plan: Vec<&[(usize, Vec<usize>)]> = batches
            .chunks(cfg.controls.gradient_accumulation_steps.max(1))
            .collect();
        let offset = l.trainer.step - epoch * l.per_epoch;
        let end = plan.len().min(offset + (max_steps - l.trainer.step));
        match l.train_steps(epoch, train, &plan, offset, end).await? {
            Stopped::Yes => return Ok(l.results),
            Stopped::Early(dev_metrics, eval_seconds) => {
                // The partial epoch is recorded with the evaluation that stopped the run.
                l.record_epoch(epoch, *dev_metrics, eval_seconds);
                l.results.finished = true;
                l.obs.on_epoch_end(&l.results, None)?;
                return Ok(l.results);
            }
            Stopped::No => {}
        }
        if l.progress.steps == 0 {
            break;
        }
        let (dev_metrics, eval_seconds) = l.evaluate(epoch + 1).await?;
        l.record_epoch(epoch, dev_metrics.clone(), eval_seconds);
        let (best, stop) = l.judge(epoch, dev_metrics, eval_seconds).await?;
        l.results.finished = stop || epoch + 1 == epochs || l.trainer.step >= max_steps;
        l.obs.on_epoch_end(&l.results, best.as_ref())?;
        if stop {
            break;
        }
        if !l.results.finished {
            l.checkpoint().await?;
        }
    }
    Ok(l.results)
}

/// The record of a resumed run: what ran before keeps its segment, and the rest of the record
/// describes what runs now (the backend of this process).
fn continued(mut results: RunResults, step: usize, info: &RunInfo) -> RunResults {
    if results.segments.is_empty() {
        results.segments.push(RunSegment {
            start_step: 0,
            backend: results.backend.clone(),
        });
    }
    results.segments.push(RunSegment {
        start_step: step,
        backend: info.backend.clone(),
    });
    results.backend = info.backend.clone();
    results
}

/// The record of a run that starts now.
fn new_results(
    trainer: &Trainer,
    train: &[TaskData],
    dev: &[TaskData],
    info: &RunInfo,
) -> RunResults {
    RunResults {
        results_version: RESULTS_VERSION,
        model: info.model.clone(),
        backend: info.backend.clone(),
        config: trainer.cfg.clone(),
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
        before_training: None,
        left_out_duplicates: 0,
        loss_scaler: trainer.scaler,
        data: info.data.clone(),
        segments: Vec::new(),
        evaluations: Vec::new(),
        best_step: None,
        patience_counter: 0,
        stopped_early: None,
        class_weights: info.class_weights.clone(),
        pos_weight: info.pos_weight.clone(),
    }
}

/// Whether an epoch's steps ended early.
#[derive(Debug)]
enum Stopped {
    /// The observer asked to stop (a resume checkpoint was handed over).
    Yes,
    /// Early stopping, at an evaluation inside the epoch (its metrics and seconds).
    Early(Box<DevMetrics>, f64),
    /// The epoch's steps ran.
    No,
}

/// The state of [`run`] between its steps.
struct Loop<'a> {
    trainer: &'a mut Trainer,
    obs: &'a mut dyn Observer,
    progress: EpochProgress,
    results: RunResults,
    /// Step of the last resume checkpoint handed to the observer.
    last_checkpoint: Option<usize>,
    dev: &'a [TaskData],
    info: &'a RunInfo,
    /// Optimiser steps per epoch.
    per_epoch: usize,
    /// When the open logging window started, and the evaluation seconds inside it.
    log_t0: f64,
    log_excluded: f64,
}

impl Loop<'_> {
    /// Hands a resume checkpoint of the run so far to the observer, if it keeps them.
    async fn checkpoint(&mut self) -> Result<()> {
        if !self.obs.wants_resume_checkpoints() {
            return Ok(());
        }
        self.results.steps = self.trainer.step;
        let files = resume_files(self.trainer, &self.progress, &self.results).await?;
        self.obs
            .on_resume_checkpoint(self.trainer.step, &files, &self.results)?;
        self.last_checkpoint = Some(self.trainer.step);
        Ok(())
    }

    /// Steps `offset..end` of epoch `epoch`'s `plan`, with periodic resume checkpoints; on a
    /// stop request, a resume checkpoint and [`Stopped::Yes`].
    async fn train_steps(
        &mut self,
        epoch: usize,
        train: &[TaskData],
        plan: &[&[(usize, Vec<usize>)]],
        offset: usize,
        end: usize,
    ) -> Result<Stopped> {
        let every = self.trainer.cfg.checkpoint_every;
        let epoch_end = self.trainer.step - offset + plan.len();
        // The step after which the epoch's own evaluation runs.
        let last = self.trainer.step - offset + end;
        self.obs.on_epoch_start(epoch + 1, end, offset);
        let mut t0 = self.obs.now();
        for entry in &plan[offset..end] {
            if self.obs.should_stop() {
                self.progress.seconds += self.obs.now() - t0;
                self.results.peak_memory_bytes = self.obs.peak_memory_bytes();
                self.results.steps = self.trainer.step;
                self.checkpoint().await?;
                return Ok(Stopped::Yes);
            }
            self.step(train, entry).await?;
            if let Some(p) = self.obs.pause() {
                p.await;
            }
            let step = self.trainer.step;
            if self
                .trainer
                .cfg
                .controls
                .eval_steps
                .is_some_and(|n| step.is_multiple_of(n))
                && step != last
            {
                self.progress.seconds += self.obs.now() - t0;
                let (dev, seconds) = self.evaluate(epoch + 1).await?;
                let (best, stop) = self.judge(epoch, dev.clone(), seconds).await?;
                self.obs.on_evaluation(&self.results, best.as_ref())?;
                if stop {
                    self.close_loss_window();
                    return Ok(Stopped::Early(Box::new(dev), seconds));
                }
                t0 = self.obs.now();
            }
            if every > 0
                && self.obs.wants_resume_checkpoints()
                && step.is_multiple_of(every)
                && step != epoch_end
            {
                self.progress.seconds += self.obs.now() - t0;
                self.checkpoint().await?;
                t0 = self.obs.now();
            }
        }
        self.progress.seconds += self.obs.now() - t0;
        self.close_loss_window();
        Ok(Stopped::No)
    }

    /// Ends the loss curve's open window with a point at the current step.
    fn close_loss_window(&mut self) {
        let p = &mut self.progress;
        if p.window_n > 0 {
            let mean = p.window_sum / p.window_n as f64;
            self.results
                .loss_curve
                .push([self.trainer.step as f64, mean]);
            (p.window_sum, p.window_n) = (0.0, 0);
        }
    }

    /// One optimiser step on the planned batches `entry` (one, or those whose gradients add
    /// up), with its running sums; a non-finite batch stops the run, or with `skip_nonfinite`
    /// is counted and skipped.
    async fn step(&mut self, train: &[TaskData], entry: &[(usize, Vec<usize>)]) -> Result<()> {
        let batches: Vec<_> = entry.iter().map(|e| self.trainer.batch(train, e)).collect();
        match self.trainer.step_accumulated(&batches).await {
            Ok(stats) => {
                let p = &mut self.progress;
                p.loss_sum += stats.loss;
                p.window_sum += stats.loss;
                p.window_n += 1;
                p.steps += 1;
                p.examples += stats.examples;
                if p.window_n == LOSS_CURVE_EVERY {
                    let mean = p.window_sum / LOSS_CURVE_EVERY as f64;
                    self.results
                        .loss_curve
                        .push([self.trainer.step as f64, mean]);
                    (p.window_sum, p.window_n) = (0.0, 0);
                }
                p.log.loss_sum += stats.loss;
                p.log.steps += 1;
                p.log.examples += stats.examples;
                self.obs.on_step(&stats);
                // A line at every multiple of `logging_steps`, or at the first trained step
                // after it when that step was skipped (`--skip-nonfinite`).
                let n = self.trainer.cfg.controls.logging_steps;
                if self.trainer.step / n > self.progress.log.start / n {
                    self.log_training(&stats)?;
                }
            }
            Err(Error::NonFinite { step, what, .. }) => {
                let e = Error::NonFinite {
                    step,
                    what,
                    last_checkpoint_step: self.last_checkpoint,
                };
                if !self.trainer.cfg.skip_nonfinite {
                    return Err(e);
                }
                self.progress.skipped_batches += 1;
                self.results.skipped_batches = self.progress.skipped_batches;
                self.obs.on_skipped(&e);
                self.trainer.skip_step();
            }
            Err(e) => return Err(e),
        }
        self.results.loss_scaler = self.trainer.scaler;
        Ok(())
    }

    /// Evaluates on the dev data now, in 1-based epoch `epoch`: the metrics and the seconds it
    /// took.
    async fn evaluate(&mut self, epoch: usize) -> Result<(DevMetrics, f64)> {
        self.obs.on_eval_start(epoch);
        let t1 = self.obs.now();
        let dev_metrics = self.trainer.evaluate(self.dev).await?;
        let seconds = self.obs.now() - t1;
        self.log_excluded += seconds;
        Ok((dev_metrics, seconds))
    }

    /// Hands the training line of the logging window that ends with the step of `last` to
    /// the observer; the window starts again.
    fn log_training(&mut self, last: &StepStats) -> Result<()> {
        let step = self.trainer.step;
        let w = std::mem::replace(
            &mut self.progress.log,
            LogWindow {
                start: step,
                ..LogWindow::default()
            },
        );
        let now = self.obs.now();
        let seconds = (now - self.log_t0 - self.log_excluded).max(1e-9);
        (self.log_t0, self.log_excluded) = (now, 0.0);
        self.obs.on_log(&LogLine::Train(TrainLine {
            step,
            epoch: step as f64 / self.per_epoch as f64,
            loss: w.loss_sum / w.steps.max(1) as f64,
            learning_rate: last.lr,
            grad_norm: last.grad_norm,
            examples_per_second: w.examples as f64 / seconds,
        }))
    }

    /// Records epoch `epoch` (0-based) with its evaluation; the running sums start again.
    fn record_epoch(&mut self, epoch: usize, dev: DevMetrics, eval_seconds: f64) {
        let p = &self.progress;
        self.results.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: p.steps,
            train_loss: p.loss_sum / p.steps.max(1) as f64,
            seconds: p.seconds,
            examples_per_second: p.examples as f64 / p.seconds.max(1e-9),
            eval_seconds,
            dev,
        });
        self.progress = EpochProgress {
            skipped_batches: p.skipped_batches,
            log: p.log.clone(),
            ..EpochProgress::default()
        };
        self.results.steps = self.trainer.step;
        self.results.peak_memory_bytes = self.obs.peak_memory_bytes();
    }

    /// Records an evaluation made in 0-based epoch `epoch` after the current step: whether it
    /// is the best so far (then its checkpoint files), and whether early stopping ends the run
    /// here (patience counted as transformers' `EarlyStoppingCallback` counts it, against the
    /// best before this evaluation).
    async fn judge(
        &mut self,
        epoch: usize,
        dev: DevMetrics,
        seconds: f64,
    ) -> Result<(Option<Files>, bool)> {
        let step = self.trainer.step;
        let epochs_done = step as f64 / self.per_epoch as f64;
        let record = EvalRecord {
            step,
            epoch: epochs_done,
            seconds,
            dev: dev.clone(),
        };
        self.obs.on_log(&LogLine::Eval(EvalLine::of(&record)))?;
        self.results.evaluations.push(record);
        self.results.steps = step;
        let controls = &self.trainer.cfg.controls;
        let before = self.results.best.as_ref().map(DevMetrics::primary);
        if improves(before, dev.primary(), controls.early_stopping_threshold) {
            self.results.patience_counter = 0;
        } else {
            self.results.patience_counter += 1;
        }
        let stop = controls
            .early_stopping_patience
            .is_some_and(|p| self.results.patience_counter >= p);
        if stop {
            self.results.stopped_early = Some(StoppedEarly {
                step,
                epoch: epochs_done,
                reason: format!(
                    "{} evaluation{} in a row without improving {} by more than {} on its best, \
                     {} at step {}",
                    self.results.patience_counter,
                    if self.results.patience_counter == 1 {
                        ""
                    } else {
                        "s"
                    },
                    dev.metric_name(),
                    controls.early_stopping_threshold,
                    self.results
                        .best
                        .as_ref()
                        .map_or(f64::NAN, DevMetrics::best_model_value),
                    self.results.best_step.unwrap_or(0),
                ),
            });
        }
        if before.is_some_and(|b| dev.primary() <= b) {
            return Ok((None, stop));
        }
        let heads = tuned_heads(&self.info.heads, dev.thresholds.as_deref());
        self.results.best_epoch = Some(epoch + 1);
        self.results.best_step = Some(step);
        self.results.best = Some(dev);
        let files = checkpoint_files(
            self.trainer.model(),
            &self.trainer.cfg,
            &heads,
            &self.info.model,
            &self.info.bert_config_json,
        )
        .await?;
        Ok((Some(files), stop))
    }
}

/// `heads` with its own multi-label task's per-label thresholds set to `tuned`
/// (`--tune-thresholds`: the checkpoint keeps the thresholds its evaluation tuned).
fn tuned_heads(heads: &HeadsConfig, tuned: Option<&[f64]>) -> HeadsConfig {
    let mut heads = heads.clone();
    if let (Some(t), Some(own)) = (tuned, heads.own.as_mut())
        && let crate::tasks::own::TaskKind::MultiLabel { thresholds, .. } = &mut own.kind
    {
        *thresholds = t.to_vec();
    }
    heads
}

/// Whether `value` improves on the best so far, `best` (both larger-is-better), by more than
/// `threshold`: transformers' `EarlyStoppingCallback.check_metric_value` (no best yet counts
/// as an improvement).
pub fn improves(best: Option<f64>, value: f64, threshold: f64) -> bool {
    best.is_none_or(|b| value > b && (value - b).abs() > threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{HeadsConfig, PairEncoding, Pooling, Task};

    #[test]
    fn improvement_is_counted_as_transformers_early_stopping_counts_it() {
        // No best yet: an improvement (the counter starts at 0).
        assert!(improves(None, 0.1, 0.5));
        // Better by more than the threshold.
        assert!(improves(Some(0.80), 0.82, 0.01));
        // Better, but not by more than the threshold; equal; worse.
        assert!(!improves(Some(0.80), 0.805, 0.01));
        assert!(!improves(Some(0.80), 0.80, 0.0));
        assert!(!improves(Some(0.80), 0.79, 0.0));
        // Lower-is-better metrics arrive negated (`KindMetrics::primary`): an MSE from 0.30 to
        // 0.25 is -0.30 -> -0.25.
        assert!(improves(Some(-0.30), -0.25, 0.01));
        assert!(!improves(Some(-0.30), -0.295, 0.01));
    }

    #[test]
    fn a_resumed_run_records_each_segment_backend() {
        let info = |backend: &str| RunInfo {
            model: "m".into(),
            backend: backend.into(),
            heads: HeadsConfig {
                tasks: vec![Task::Sst],
                pooling: Pooling::Mean,
                pair_encoding: PairEncoding::Bi,
                head_dropout: 0.0,
                hidden_size: 4,
                own: None,
            },
            bert_config_json: "{}".into(),
            data: None,
            class_weights: Vec::new(),
            pos_weight: Vec::new(),
        };
        let first = RunResults::from_json(
            br#"{"results_version": 2, "model": "m", "backend": "flex (CPU)",
                "config": {"tasks": ["sst"], "adapter": null, "epochs": 1, "batch_size": 1,
                  "lr": 0.001, "weight_decay": 0.0, "warmup_ratio": 0.1, "max_grad_norm": 1.0,
                  "max_len": 8, "seed": 1, "max_steps": null, "max_train_examples": null,
                  "max_eval_examples": null, "pooling": "mean", "pair_encoding": "bi",
                  "head_dropout": 0.1, "bucket_by_length": true, "eval_batch_size": 1},
                "epochs": [], "best_epoch": null, "best": null,
                "params": {"trainable": 1, "total": 2}, "peak_memory_bytes": null,
                "truncated_examples": 0, "skipped_rows": 0, "steps": 5, "finished": false,
                "versions": {"lorabert": "0.1.0", "burn": "0.22.1", "tokenizers": "0.23.2"}}"#,
            "r.json",
        )
        .unwrap();
        let r = continued(first, 5, &info("wgpu"));
        assert_eq!(r.backend, "wgpu");
        let seg: Vec<(usize, &str)> = r
            .segments
            .iter()
            .map(|s| (s.start_step, s.backend.as_str()))
            .collect();
        assert_eq!(seg, vec![(0, "flex (CPU)"), (5, "wgpu")]);
        let r = continued(r, 9, &info("wgpu"));
        assert_eq!(r.segments.len(), 3);
    }
}
