//! The epoch loop shared by every driver. The driver supplies time, progress display,
//! persistence and stop requests through an [`Observer`]; the loop itself touches no file,
//! clock or thread.

use super::artifacts::{Files, checkpoint_files};
use super::results::{
    EpochRecord, LOSS_CURVE_EVERY, RESULTS_VERSION, RunResults, RunSegment, Versions,
};
use super::resume::{EpochProgress, resume_files};
use super::{StepStats, Trainer};
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
    /// Own data: the files read and their label counts.
    pub data: Option<DataSummary>,
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
    let (progress, results) = match resumed {
        Some(r) => (r.progress, continued(r.results, trainer.step, info)),
        None => (
            EpochProgress::default(),
            new_results(trainer, train, dev, info),
        ),
    };
    let mut l = Loop {
        last_checkpoint: (trainer.step > 0).then_some(trainer.step),
        trainer,
        obs,
        progress,
        results,
    };
    let cfg = l.trainer.cfg.clone();
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let epochs = planned_epochs(l.trainer, train);
    let per_epoch = Trainer::steps_per_epoch(train, cfg.batch_size).max(1);
    for epoch in l.trainer.step / per_epoch..epochs {
        if l.trainer.step >= max_steps {
            break;
        }
        let plan = l.trainer.plan_epoch(train, epoch);
        let offset = l.trainer.step - epoch * per_epoch;
        let end = plan.len().min(offset + (max_steps - l.trainer.step));
        if l.train_steps(epoch, train, &plan, offset, end).await? == Stopped::Yes {
            return Ok(l.results);
        }
        if l.progress.steps == 0 {
            break;
        }
        l.end_epoch(epoch, dev).await?;
        l.results.finished = epoch + 1 == epochs || l.trainer.step >= max_steps;
        let best = l.best_files(epoch, info).await?;
        l.obs.on_epoch_end(&l.results, best.as_ref())?;
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
        loss_scaler: trainer.scaler,
        data: info.data.clone(),
        segments: Vec::new(),
    }
}

/// Whether the observer stopped the run inside an epoch.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    Yes,
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
        plan: &[(usize, Vec<usize>)],
        offset: usize,
        end: usize,
    ) -> Result<Stopped> {
        let every = self.trainer.cfg.checkpoint_every;
        let epoch_end = self.trainer.step - offset + plan.len();
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
        let p = &mut self.progress;
        if p.window_n > 0 {
            let mean = p.window_sum / p.window_n as f64;
            self.results
                .loss_curve
                .push([self.trainer.step as f64, mean]);
            (p.window_sum, p.window_n) = (0.0, 0);
        }
        Ok(Stopped::No)
    }

    /// One optimiser step on the planned batch `entry`, with its running sums; a non-finite
    /// batch stops the run, or with `skip_nonfinite` is counted and skipped.
    async fn step(&mut self, train: &[TaskData], entry: &(usize, Vec<usize>)) -> Result<()> {
        let batch = self.trainer.batch(train, entry);
        match self.trainer.step(&batch).await {
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
                self.obs.on_step(&stats);
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

    /// Evaluates on `dev` and records epoch `epoch` (0-based); the running sums start again.
    async fn end_epoch(&mut self, epoch: usize, dev: &[TaskData]) -> Result<()> {
        self.obs.on_eval_start(epoch + 1);
        let t1 = self.obs.now();
        let dev_metrics = self.trainer.evaluate(dev).await?;
        let eval_seconds = self.obs.now() - t1;
        let p = &self.progress;
        self.results.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: p.steps,
            train_loss: p.loss_sum / p.steps as f64,
            seconds: p.seconds,
            examples_per_second: p.examples as f64 / p.seconds.max(1e-9),
            eval_seconds,
            dev: dev_metrics,
        });
        self.progress = EpochProgress {
            skipped_batches: p.skipped_batches,
            ..EpochProgress::default()
        };
        self.results.steps = self.trainer.step;
        self.results.peak_memory_bytes = self.obs.peak_memory_bytes();
        Ok(())
    }

    /// The checkpoint files of the model when epoch `epoch` (just recorded) is the best so far
    /// by its primary dev metric.
    async fn best_files(&mut self, epoch: usize, info: &RunInfo) -> Result<Option<Files>> {
        let Some(dev) = self.results.epochs.last().map(|e| e.dev.clone()) else {
            return Ok(None);
        };
        let is_best = self
            .results
            .best
            .as_ref()
            .is_none_or(|b| dev.primary() > b.primary());
        if !is_best {
            return Ok(None);
        }
        self.results.best_epoch = Some(epoch + 1);
        self.results.best = Some(dev);
        let files = checkpoint_files(
            self.trainer.model(),
            &self.trainer.cfg,
            &info.heads,
            &info.model,
            &info.bert_config_json,
        )
        .await?;
        Ok(Some(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{HeadsConfig, PairEncoding, Pooling, Task};

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
