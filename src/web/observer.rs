//! The page's [`Observer`] of a training run.

use std::future::Future;
use std::pin::Pin;

use burn::tensor::Device;
use wasm_bindgen::JsCast;

use super::STOP;
use super::dom::{doc, log, now, set_html, set_text, status, yield_now};
use crate::report::plot::{Chart, Series, svg};
use crate::train::artifacts::Files;
use crate::train::run::Observer;
use crate::train::{DevMetrics, RunResults, StepStats};

/// Shows a run's progress on the page (bar, rate, loss plot, dev metrics), keeps the best
/// checkpoint's files for "Download adapter", and yields to the browser after every step.
pub struct WebObserver {
    steps: u64,
    done: u64,
    examples: usize,
    t0: f64,
    losses: Vec<f64>,
    /// Wall-clock seconds of each step (from the end of the previous one, or the epoch start),
    /// training and the yield to the browser included.
    step_seconds: Vec<f64>,
    /// When the last step ended (seconds, `performance.now()`).
    last: f64,
    device: Device,
    peak: u64,
    /// The files of the best checkpoint so far.
    pub best_files: Option<Files>,
    label: String,
    /// When the loss plot was last drawn (seconds, `performance.now()`).
    drawn: f64,
}

/// Seconds between redraws of the loss plot while training (the series is kept in full and
/// drawn at the end of each epoch).
const REDRAW_SECONDS: f64 = 0.5;

/// Points drawn of a loss series at most (longer series are averaged in equal buckets).
const MAX_PLOT_POINTS: usize = 400;

/// The per-class F1 values of `dev` (entity types, labels: `f1/<class>` in `results.json`) as
/// "; F1 by class: LOC 0.6364, MISC 1.0000"; empty where there are none.
fn per_class(dev: &DevMetrics) -> String {
    let Some(own) = &dev.own else {
        return String::new();
    };
    let per: Vec<String> = own
        .named()
        .filter_map(|(n, v)| n.strip_prefix("f1/").map(|c| format!("{c} {v:.4}")))
        .collect();
    match per.is_empty() {
        true => String::new(),
        false => format!("; F1 by class: {}", per.join(", ")),
    }
}

impl WebObserver {
    /// An observer of the run `label` on `device` (whose memory pool it samples).
    pub fn new(label: &str, device: &Device) -> Self {
        set_text("dev-before", "");
        WebObserver {
            steps: 0,
            done: 0,
            examples: 0,
            t0: now(),
            losses: Vec::new(),
            step_seconds: Vec::new(),
            last: now(),
            device: device.clone(),
            peak: 0,
            best_files: None,
            label: label.to_string(),
            drawn: f64::NEG_INFINITY,
        }
    }

    /// Draws the loss plot and puts the full series in `#loss-values` and the step times in
    /// `#step-seconds` (JSON arrays, one entry per step).
    fn draw(&mut self) {
        self.drawn = now();
        set_text(
            "loss-values",
            &serde_json::to_string(&self.losses).unwrap_or_default(),
        );
        set_text(
            "step-seconds",
            &serde_json::to_string(&self.step_seconds).unwrap_or_default(),
        );
        let n = self.losses.len();
        let per = n.div_ceil(MAX_PLOT_POINTS).max(1);
        let points: Vec<(f64, f64)> = self
            .losses
            .chunks(per)
            .enumerate()
            .map(|(i, c)| {
                let mid = (i * per) as f64 + (c.len() as f64 + 1.0) / 2.0;
                (mid, c.iter().sum::<f64>() / c.len() as f64)
            })
            .collect();
        let chart = Chart {
            title: format!("training loss: {}", self.label),
            x_label: "step".into(),
            y_label: if per > 1 {
                format!("loss (mean of {per} steps)")
            } else {
                "loss".into()
            },
            series: vec![Series {
                name: self.label.clone(),
                points,
            }],
            log2_x: false,
        };
        if let Ok(s) = svg(&chart, 560, 300) {
            set_html("loss-plot", &s);
        }
    }
}

impl Observer for WebObserver {
    fn now(&self) -> f64 {
        now()
    }

    fn on_epoch_start(&mut self, epoch: usize, steps: usize, done: usize) {
        self.steps = steps as u64;
        self.done = done as u64;
        self.examples = 0;
        self.t0 = now();
        self.last = self.t0;
        status(&format!("{}: epoch {epoch}", self.label));
    }

    fn on_step(&mut self, s: &StepStats) {
        self.done += 1;
        self.examples += s.examples;
        self.losses.push(s.loss);
        let t = now();
        self.step_seconds.push(t - self.last);
        self.last = t;
        if let Some(u) = self.device.memory_pool_usage() {
            self.peak = self.peak.max(u.bytes_reserved);
        }
        let dt = (now() - self.t0).max(1e-9);
        let rate = self.examples as f64 / dt;
        let left = (self.steps.saturating_sub(self.done)) as f64 * dt / (self.done.max(1) as f64);
        if let Some(p) = doc()
            .get_element_by_id("progress")
            .and_then(|e| e.dyn_into::<web_sys::HtmlProgressElement>().ok())
        {
            p.set_max(self.steps.max(1) as f64);
            p.set_value(self.done as f64);
        }
        set_text(
            "rate",
            &format!(
                "step {}/{}, loss {:.4}, {rate:.1} examples/s, ETA {left:.0} s",
                self.done, self.steps, s.loss
            ),
        );
        // O(1) per step on the main thread: the plot is redrawn a few times a second.
        if now() - self.drawn >= REDRAW_SECONDS {
            self.draw();
        }
    }

    fn on_eval_start(&mut self, epoch: usize) {
        status(&format!(
            "{}: evaluating epoch {epoch} on dev ...",
            self.label
        ));
    }

    fn on_before_training(&mut self, dev: &DevMetrics) {
        // Embeddings evaluate the model before training, so the gain is visible.
        let line = format!("{}: epoch 0 (before training): dev {dev}", self.label);
        set_text("dev-before", &line);
        log(&line);
    }

    fn on_epoch_end(&mut self, results: &RunResults, best: Option<&Files>) -> crate::Result<()> {
        self.draw();
        if let Some(e) = results.epochs.last() {
            let txt = format!("{}{}", e.dev, per_class(&e.dev));
            set_text(
                "dev-metric",
                &format!("{}: epoch {}: dev {txt}", self.label, e.epoch),
            );
            log(&format!(
                "{}: epoch {}: train loss {:.4}, {:.1} ex/s, dev {txt}",
                self.label, e.epoch, e.train_loss, e.examples_per_second
            ));
        }
        if let Some(f) = best {
            self.best_files = Some(f.clone());
        }
        Ok(())
    }

    fn on_evaluation(&mut self, results: &RunResults, best: Option<&Files>) -> crate::Result<()> {
        if let Some(e) = results.evaluations.last() {
            let txt = e.dev.to_string();
            set_text(
                "dev-metric",
                &format!("{}: step {}: dev {txt}", self.label, e.step),
            );
            log(&format!("{}: step {}: dev {txt}", self.label, e.step));
        }
        if let Some(f) = best {
            self.best_files = Some(f.clone());
        }
        Ok(())
    }

    fn wants_resume_checkpoints(&self) -> bool {
        false
    }

    fn should_stop(&self) -> bool {
        STOP.with(|s| s.get())
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        (self.peak > 0).then_some(self.peak)
    }

    fn pause(&mut self) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
        Some(yield_now())
    }
}
