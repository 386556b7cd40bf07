//! `lorabert train` after its flags are resolved: the [`Plan`] they make, the run's first line,
//! and the run itself with its outcome (finished, or stopped with the command that continues
//! it).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::progress::{CliObserver, stop_on_signal};
use crate::train::{Job, RunResults, TrainConfig, ValidConfig};

/// What the flags resolve to before any file is read: the validated configuration, folders,
/// device, and the command to resume with.
pub(super) struct Plan {
    /// The run's configuration (the saved one with `--resume`), validated.
    pub(super) cfg: ValidConfig,
    /// The run folder.
    pub(super) out: PathBuf,
    /// The base model's folder.
    pub(super) model_dir: PathBuf,
    /// The minBERT folder (none for own data).
    pub(super) data_dir: Option<PathBuf>,
    /// The training device.
    pub(super) device: Device,
    /// `--init-adapter` of a fresh run (a resumed run starts from its own weights).
    pub(super) init: Option<PathBuf>,
    /// The command that continues this run.
    pub(super) resume_hint: String,
}

/// The run's first line: tasks, model, adapter, parameters, steps, backend, precision, folder.
pub(super) fn announce(job: &Job, plan: &Plan, backend: &str) {
    let cfg = &job.trainer.cfg;
    let counts = job.params();
    eprintln!(
        "training {} on {} with {} (trainable {} of {} parameters), {} steps on {} in {}; output {}",
        cfg.task_names(),
        plan.model_dir.display(),
        cfg.adapter_name(),
        counts.trainable,
        counts.total,
        job.trainer.total_steps,
        backend,
        cfg.precision.name(),
        plan.out.display()
    );
    for w in &job.info.class_weights {
        let pairs: Vec<String> = w
            .labels
            .iter()
            .zip(&w.weights)
            .map(|(l, w)| format!("{l} {w:.4}"))
            .collect();
        eprintln!("class weights of {}: {}", w.task, pairs.join(", "));
    }
}

/// Trains `job` to its end or to a stop (`step_delay`: a pause after every step, a testing
/// aid): a finished run drops its resume checkpoint and prints
/// its summary; a stopped one says how to continue ([`super::Outcome::Stopped`]).
///
/// # Errors
/// The run's errors; a non-finite loss or gradient names the checkpoint and the resume command.
pub(super) fn run_job(
    mut job: Job,
    plan: &Plan,
    step_delay: Option<std::time::Duration>,
) -> Result<super::Outcome> {
    let (out, resume_hint) = (&plan.out, &plan.resume_hint);
    let cfg = job.trainer.cfg.clone();
    let mut obs = CliObserver::new(out.clone(), stop_on_signal()?);
    obs.step_delay = step_delay;
    obs.open_metrics(job.trainer.step)?;
    if cfg.controls.report_to.iter().any(|r| r == "tensorboard") {
        obs.tensorboard = Some(super::tensorboard::EventWriter::create(&out.join("tb"))?);
    }
    let results = match pollster::block_on(job.run(&mut obs)) {
        Ok(r) => r,
        Err(
            e @ crate::Error::NonFinite {
                last_checkpoint_step: Some(_),
                ..
            },
        ) => {
            bail!(
                "{e} (saved in {}); fix the cause, then continue with `{resume_hint}`, or rerun with --skip-nonfinite",
                out.join("resume").display(),
            )
        }
        Err(e) => return Err(e.into()),
    };
    if !results.finished {
        if let Some(bar) = obs.bar.take() {
            bar.abandon();
        }
        eprintln!(
            "stopped at step {}; checkpoint in {}; continue with `{resume_hint}`",
            results.steps,
            out.join("resume").display(),
        );
        return Ok(super::Outcome::Stopped);
    }
    let _ = std::fs::remove_dir_all(out.join("resume"));
    summarize(&results, &cfg, out);
    Ok(super::Outcome::Finished)
}

/// The end-of-run summary: truncations, skipped batches, f16 overflows, the best epoch.
fn summarize(results: &RunResults, cfg: &TrainConfig, out: &Path) {
    if results.truncated_examples > 0 || results.skipped_batches > 0 {
        eprintln!(
            "{} examples were truncated to --max-len {}; {} batches skipped as non-finite",
            results.truncated_examples, cfg.max_len, results.skipped_batches
        );
    }
    if let Some(s) = results.loss_scaler.filter(|s| s.overflow_steps > 0) {
        eprintln!(
            "f16: {} steps skipped for gradient overflow (loss scale now {})",
            s.overflow_steps, s.scale
        );
    }
    if let Some(b) = &results.best {
        eprintln!(
            "best epoch {} (step {}): {b}; checkpoint in {}",
            results.best_epoch.unwrap_or(0),
            results.best_step.unwrap_or(results.steps),
            out.join("best").display()
        );
    }
}
