//! The terminal side of `lorabert train`: Ctrl-C as a request to stop at a checkpoint, and the
//! [`Observer`] that shows progress and keeps the run's files in its folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::io;
use crate::train::artifacts::Files;
use crate::train::run::Observer;
use crate::train::{RunResults, StepStats};

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
        }
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
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        eprintln!("evaluating on dev ...");
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
