//! The lines of `metrics.jsonl` ([`LogLine`]): one per logging step (`--logging-steps`, the
//! training loss, learning rate and gradient norm, as transformers' `Trainer` logs them) and
//! one per evaluation (every metric, prefixed `eval_` as transformers prefixes them), handed
//! to the driver as the run goes ([`super::run::Observer::on_log`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::evaluate::DevMetrics;
use super::results::EvalRecord;

/// Steps between two training lines when `--logging-steps` is not given.
pub const DEFAULT_LOGGING_STEPS: usize = 50;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogLine {
    /// Training since the previous training line.
    Train(TrainLine),
    /// An evaluation.
    Eval(EvalLine),
}

impl LogLine {
    /// The optimiser step the line was written after.
    pub fn step(&self) -> usize {
        match self {
            LogLine::Train(t) => t.step,
            LogLine::Eval(e) => e.step,
        }
    }
}

/// Training since the previous training line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLine {
    /// Optimiser steps done.
    pub step: usize,
    /// Epochs done, fractional inside an epoch.
    pub epoch: f64,
    /// Mean training loss of the steps since the previous training line.
    pub loss: f64,
    /// Learning rate of the last step.
    pub learning_rate: f64,
    /// Global gradient norm of the last step, before clipping.
    pub grad_norm: f64,
    /// Training examples per second since the previous line (evaluation excluded; after a
    /// resume, from the resume).
    pub examples_per_second: f64,
}

/// An evaluation: its metrics as `eval_<name>` (own data: `eval_<metric>`; minBERT:
/// `eval_sst_acc`, `eval_para_acc`, `eval_sts_pearson`, `eval_overall`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    /// Optimiser steps done.
    pub step: usize,
    /// Epochs done, fractional inside an epoch.
    pub epoch: f64,
    /// Seconds the evaluation took.
    pub eval_seconds: f64,
    /// The metrics, `eval_`-prefixed.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

impl EvalLine {
    /// The line of an evaluation record.
    pub fn of(e: &EvalRecord) -> Self {
        EvalLine {
            step: e.step,
            epoch: e.epoch,
            eval_seconds: e.seconds,
            metrics: eval_metrics(&e.dev),
        }
    }
}

/// The numbers of `dev`, each named `eval_<name>`.
fn eval_metrics(dev: &DevMetrics) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (name, v) in [
        ("sst_acc", dev.sst_acc),
        ("para_acc", dev.para_acc),
        ("sts_pearson", dev.sts_pearson),
        ("overall", dev.overall),
    ] {
        if let Some(v) = v {
            m.insert(format!("eval_{name}"), v);
        }
    }
    if let Some(own) = &dev.own {
        for (name, v) in &own.values {
            m.insert(format!("eval_{name}"), *v);
        }
    }
    m
}

/// The running sums of the current logging window (kept with resume checkpoints, so the line
/// after a resume averages the same steps as without the interruption).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogWindow {
    /// Sum of the step losses.
    pub loss_sum: f64,
    /// Steps.
    pub steps: usize,
    /// Examples.
    pub examples: usize,
    /// The optimiser step it started after (the previous training line's).
    #[serde(default)]
    pub start: usize,
}
