//! The terminal side of `lorabert train`: Ctrl-C as a request to stop at a checkpoint, and the
//! [`Observer`] that shows progress and keeps the run's files in its folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::io;
use super::tensorboard::EventWriter;
use crate::train::artifacts::Files;
use crate::train::log::LogLine;
use crate::train::run::Observer;
use crate::train::{DevMetrics, RunResults, StepStats};

/// The run folder's log of training lines and evaluations, one JSON object per line.
pub(super) const METRICS: &str = "metrics.jsonl";

/// A stop flag set by Ctrl-C or SIGTERM (a second one exits at once).
pub(super) fn stop_on_signal() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nstop requested: finishing the current step and saving a checkpoint ...");
    })
    .context("cannot install the Ctrl-C/SIGTERM handler")?;
    Ok(stop)
}

/// Shows progress on the terminal (a bar, or a line every 50 steps in a log) and keeps the
/// run's files in its folder: `results.json`, `best/`, `resume/`.
pub(super) struct CliObserver {
    start: Instant,
    out: PathBuf,
    pub(super) bar: Option<ProgressBar>,
    ema_loss: Option<f64>,
    examples: usize,
    epoch_start: Instant,
    stop: Arc<AtomicBool>,
    /// `metrics.jsonl`, open for appending ([`CliObserver::open_metrics`]).
    metrics: Option<std::fs::File>,
    /// TensorBoard's event file (`--report-to tensorboard`).
    pub(super) tensorboard: Option<EventWriter>,
    /// A pause after every step (`--debug-step-delay-ms`, a testing aid).
    pub(super) step_delay: Option<std::time::Duration>,
}

impl CliObserver {
    /// An observer writing into the run folder `out`, stopping when `stop` is set.
    pub(super) fn new(out: PathBuf, stop: Arc<AtomicBool>) -> Self {
        CliObserver {
            start: Instant::now(),
            out,
            bar: None,
            ema_loss: None,
            examples: 0,
            epoch_start: Instant::now(),
            stop,
            metrics: None,
            tensorboard: None,
            step_delay: None,
        }
    }

    /// Opens the run's `metrics.jsonl` for appending from optimiser step `step` on (0 for a new
    /// run, the checkpoint's step on `--resume`): the lines of later steps, written after the
    /// checkpoint by the interrupted run, and a line a crash cut short are dropped first (the
    /// file replaced atomically), so the resumed run appends no step twice.
    ///
    /// # Errors
    /// When the file cannot be read, replaced or opened (naming it).
    pub(super) fn open_metrics(&mut self, step: usize) -> Result<()> {
        let path = self.out.join(METRICS);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                        .is_some_and(|s| s as usize <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            io::write_atomic(&path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        self.metrics = Some(file);
        Ok(())
    }

    /// `results.json`, replaced atomically.
    fn write_results(&self, results: &RunResults) -> crate::Result<()> {
        let json = serde_json::to_vec_pretty(results)
            .map_err(|e| crate::Error::Invalid(format!("results.json: {e}")))?;
        io::write_atomic(&self.out.join("results.json"), &json)
    }
}

impl Observer for CliObserver {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn on_epoch_start(&mut self, epoch: usize, steps: usize, done: usize) {
        let bar = ProgressBar::new(steps as u64);
        bar.set_position(done as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
        self.examples = 0;
        self.epoch_start = Instant::now();
    }

    fn on_step(&mut self, s: &StepStats) {
        if let Some(d) = self.step_delay {
            std::thread::sleep(d);
        }
        self.examples += s.examples;
        let ema = self.ema_loss.map_or(s.loss, |e| 0.95 * e + 0.05 * s.loss);
        self.ema_loss = Some(ema);
        if let Some(bar) = &self.bar {
            let rate = self.examples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {ema:.4} lr {:.2e} {rate:.1} ex/s", s.lr));
            bar.inc(1);
            if bar.is_hidden() && bar.position() % 50 == 0 {
                // Not a terminal (a log file): print a line now and then instead of the bar.
                eprintln!(
                    "step {}/{}: loss {ema:.4} lr {:.2e} {rate:.1} ex/s",
                    bar.position(),
                    bar.length().unwrap_or(0),
                    s.lr
                );
            }
        }
    }

    fn on_eval_start(&mut self, _epoch: usize) {
        match &self.bar {
            // An evaluation inside the epoch (`--eval-steps`): the bar goes on after it.
            Some(bar) if bar.position() < bar.length().unwrap_or(0) => {
                bar.suspend(|| eprintln!("evaluating on dev ..."));
            }
            _ => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
                eprintln!("evaluating on dev ...");
            }
        }
    }

    fn on_before_training(&mut self, dev: &DevMetrics) {
        eprintln!("epoch 0 (before training): dev {dev}");
    }

    fn on_epoch_end(&mut self, results: &RunResults, best: Option<&Files>) -> crate::Result<()> {
        let e = results.epochs.last();
        if let Some(e) = e {
            eprintln!(
                "epoch {}: train loss {:.4}, {:.1} ex/s, dev {}",
                e.epoch, e.train_loss, e.examples_per_second, e.dev
            );
            for n in &e.dev.notes {
                eprintln!("note: {n}");
            }
        }
        if let Some(s) = &results.stopped_early {
            eprintln!(
                "early stopping at step {} (epoch {:.2}): {}",
                s.step, s.epoch, s.reason
            );
        }
        if let Some(files) = best {
            io::write_dir_atomic(&self.out.join("best"), files)?;
        }
        self.write_results(results)
    }

    fn on_evaluation(&mut self, results: &RunResults, best: Option<&Files>) -> crate::Result<()> {
        if let Some(e) = results.evaluations.last() {
            let line = format!("step {} (epoch {:.2}): dev {}", e.step, e.epoch, e.dev);
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        if let Some(files) = best {
            io::write_dir_atomic(&self.out.join("best"), files)?;
        }
        self.write_results(results)
    }

    fn on_resume_checkpoint(
        &mut self,
        _step: usize,
        files: &Files,
        results: &RunResults,
    ) -> crate::Result<()> {
        io::write_dir_atomic(&self.out.join("resume"), files)?;
        self.write_results(results)
    }

    fn on_log(&mut self, line: &LogLine) -> crate::Result<()> {
        use std::io::Write;
        if let Some(tb) = self.tensorboard.as_mut() {
            tb.log(line)
                .map_err(|e| crate::Error::Invalid(format!("{e:#}")))?;
        }
        let Some(f) = self.metrics.as_mut() else {
            return Ok(());
        };
        let mut text = serde_json::to_string(line)
            .map_err(|e| crate::Error::Invalid(format!("{METRICS}: {e}")))?;
        text.push('\n');
        f.write_all(text.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| crate::Error::io("append to", self.out.join(METRICS).display(), e))
    }

    fn on_skipped(&mut self, e: &crate::Error) {
        eprintln!("skipped: {e}");
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        io::peak_rss_bytes()
    }
}
