//! Predictions and dev metrics of a trained model, read back asynchronously.

use std::sync::Arc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tasks::metrics::{CONSTANT_TOLERANCE, is_constant};
use crate::tasks::{Kind, MultitaskModel, Task, TaskData, overall_score};
pub use crate::tasks::{KindMetrics, PredictionRow};

/// Dev metrics; a field is present when that task was evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevMetrics {
    /// SST accuracy.
    pub sst_acc: Option<f64>,
    /// Paraphrase accuracy.
    pub para_acc: Option<f64>,
    /// STS Pearson correlation.
    pub sts_pearson: Option<f64>,
    /// `mean(sst, para, (sts + 1) / 2)`, when all three are present.
    pub overall: Option<f64>,
    /// Own data: the metrics of its kind ([`Kind::metrics`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<KindMetrics>,
    /// What to know about these numbers (e.g. constant predictions, whose correlations are
    /// reported as 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Multi-label with `--tune-thresholds`: each label's threshold tuned on these
    /// predictions (`own` holds the metrics at them; `untuned` those at the task's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f64>>,
    /// Multi-label with `--tune-thresholds`: the metrics at the task's threshold(s) before
    /// tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untuned: Option<KindMetrics>,
}

impl DevMetrics {
    /// Records `task`'s dev score (accuracy, or Pearson for STS); the overall score follows
    /// once all three tasks are recorded.
    pub fn record(&mut self, task: Task, score: f64) {
        match task {
            Task::Sst => self.sst_acc = Some(score),
            Task::Para => self.para_acc = Some(score),
            Task::Sts => self.sts_pearson = Some(score),
            Task::Own => {}
        }
        if let (Some(a), Some(b), Some(c)) = (self.sst_acc, self.para_acc, self.sts_pearson) {
            self.overall = Some(overall_score(a, b, c));
        }
    }

    /// The number to select the best epoch by: the overall score, or the only metric present
    /// (own data: its `metric_for_best_model`, negated for `mse`).
    pub fn primary(&self) -> f64 {
        if let Some(o) = &self.own {
            return o.primary();
        }
        self.overall
            .or(self.sst_acc)
            .or(self.para_acc)
            .or(self.sts_pearson)
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// The name of the metric [`primary`](Self::primary) reads: `overall`, `sst_acc`,
    /// `para_acc`, `sts_pearson`, or own data's `metric_for_best_model`.
    pub fn metric_name(&self) -> &str {
        if let Some(o) = &self.own {
            return &o.metric_for_best_model;
        }
        [
            (self.overall, "overall"),
            (self.sst_acc, "sst_acc"),
            (self.para_acc, "para_acc"),
            (self.sts_pearson, "sts_pearson"),
        ]
        .into_iter()
        .find_map(|(v, n)| v.map(|_| n))
        .unwrap_or("none")
    }

    /// The value of the metric [`primary`](Self::primary) reads, as reported (not negated).
    pub fn best_model_value(&self) -> f64 {
        match &self.own {
            Some(o) => o.get(&o.metric_for_best_model).unwrap_or(f64::NAN),
            None => self.primary(),
        }
    }
}

impl std::fmt::Display for DevMetrics {
    /// `SST accuracy 0.4512, Quora accuracy 0.7810, STS Pearson 0.8123, overall 0.7130`, with
    /// the metrics present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            ("SST accuracy", self.sst_acc),
            ("Quora accuracy", self.para_acc),
            ("STS Pearson", self.sts_pearson),
            ("overall", self.overall),
        ];
        let mut shown: Vec<String> = parts
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n} {v:.4}")))
            .collect();
        if let Some(o) = &self.own {
            // Per-label values (`f1/<label>`) are in results.json, not on one line.
            shown.extend(
                o.named()
                    .filter(|(n, _)| !n.contains('/'))
                    .map(|(n, v)| format!("{n} {v:.4}")),
            );
        }
        if let Some(u) = &self.untuned {
            let m = &u.metric_for_best_model;
            if let Some(v) = u.get(m) {
                shown.push(format!("(tuned thresholds; {m} {v:.4} before tuning)"));
            }
        }
        f.write_str(&shown.join(", "))
    }
}

/// Raw predictions of one task, in example order, as its kind reports them
/// ([`Kind::predictions`]): SST class probabilities `[n·5]`, paraphrase probabilities `[n]`,
/// STS scores on the 0..5 scale `[n]`, own data class probabilities `[n·classes]` or
/// regression values `[n]`.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// The task kind.
    pub kind: Arc<dyn Kind>,
    /// Example ids.
    pub ids: Vec<String>,
    /// Values as described above (row-major for class probabilities).
    pub values: Vec<f32>,
    /// Values per example: the number of classes, or 1 (embeddings: texts × hidden size).
    pub width: usize,
}

impl Predictions {
    /// The task slot of its kind.
    pub fn task(&self) -> Task {
        self.kind.task()
    }

    /// Predicted labels, one per example ([`Kind::label_of`]): the argmax class (SST, own
    /// classification), paraphrase `p > 0.5` (0/1), the STS score or regression value.
    pub fn labels(&self) -> Vec<f64> {
        self.values
            .chunks(self.width.max(1))
            .map(|v| self.kind.label_of(v))
            .collect()
    }

    /// The predictions as named rows ([`Kind::prediction_row`]).
    pub fn rows(&self) -> Vec<PredictionRow> {
        let w = self.width.max(1);
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                self.kind
                    .prediction_row(id, &self.values[i * w..(i + 1) * w])
            })
            .collect()
    }
}

/// Runs `model` (inference mode: pass `model.valid()`) over `data`: the kind's prediction
/// values of every example, in file order. Kinds whose outputs come from pooled texts
/// ([`Kind::forward_pooled`]) encode each distinct text once, in batches of texts of similar
/// length ([`super::texts::pooled_predictions`]); the others run batches of examples of
/// similar length. On the CPU the batches run side by side
/// ([`crate::kernels::batches`]).
///
/// # Errors
/// [`Error::Invalid`](crate::error::Error::Invalid) when a read-back fails.
pub async fn predict(
    model: &MultitaskModel,
    data: &TaskData,
    batch_size: usize,
    pad_id: u32,
) -> Result<Predictions> {
    let device = model_device(model);
    let kind = data.kind.as_ref();
    // Batches of similar length (less padding), longest first (so side-by-side workers end
    // together); outputs are put back in file order.
    let mut order: Vec<usize> = (0..data.examples.len()).collect();
    order.sort_by_key(|&i| data.examples[i].len());
    let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).rev().collect();
    let outs =
        match super::texts::pooled_predictions(model, data, &batches, batch_size, pad_id).await? {
            Some(outs) => outs,
            None => {
                let run = |idx: &[usize]| {
                    let batch = data.batch(idx, pad_id, &device);
                    kind.predictions(model.outputs(kind, &batch.x))
                };
                super::texts::run_batches(&device, &batches, run).await?
            }
        };
    // Values per example as the kind's outputs have them (the number of classes, or an
    // embedding kind's texts times the hidden size).
    let stride = match (batches.first(), outs.first()) {
        (Some(idx), Some(out)) if !idx.is_empty() => out.len() / idx.len(),
        _ => kind.width(),
    };
    let mut values = vec![0f32; data.examples.len() * stride];
    for (idx, out) in batches.iter().zip(&outs) {
        for (k, &i) in idx.iter().enumerate() {
            values[i * stride..(i + 1) * stride]
                .copy_from_slice(&out[k * stride..(k + 1) * stride]);
        }
    }
    Ok(Predictions {
        kind: data.kind.clone(),
        ids: data.examples.iter().map(|e| e.id.clone()).collect(),
        values,
        width: stride,
    })
}

/// The device a model's parameters live on.
pub fn model_device(model: &MultitaskModel) -> Device {
    model.bert.embeddings.word_embeddings.weight.val().device()
}

/// The metrics of predictions `p` against the gold labels of `data` ([`Kind::evaluate`]).
pub fn metrics(p: &Predictions, data: &TaskData) -> KindMetrics {
    p.kind.evaluate(&p.values, &data.examples)
}

/// A note when real-valued predictions (STS, own-data regression) are constant up to rounding:
/// their correlations are undefined and reported as 0.
pub fn constant_note(p: &Predictions) -> Option<String> {
    let values: Vec<f64> = p.values.iter().map(|&v| v as f64).collect();
    (p.kind.real_valued() && is_constant(&values)).then(|| {
        format!(
            "{}: the {} predictions are constant (spread under {CONSTANT_TOLERANCE} relative): Pearson and Spearman are undefined, reported as 0",
            p.task().name(),
            values.len()
        )
    })
}

/// Records the metrics of predictions `p` against `data` in `m`: an own-data kind's metrics as
/// `own`, a minBERT task's score (its best-model metric: accuracy, or Pearson for STS) in its
/// field, with a note when real-valued predictions are constant. With `tune`, a kind with
/// decision thresholds (multi-label) has them tuned on `data` first
/// ([`Kind::tune_thresholds`]): the metrics at the tuned thresholds are recorded, the tuned
/// thresholds and the metrics before tuning beside them.
pub fn record(m: &mut DevMetrics, p: &Predictions, data: &TaskData, tune: bool) {
    if let Some(note) = constant_note(p) {
        m.notes.push(note);
    }
    let mut k = metrics(p, data);
    if let Some(t) = tune
        .then(|| p.kind.tune_thresholds(&p.values, &data.examples))
        .flatten()
    {
        m.thresholds = Some(t.thresholds);
        m.untuned = Some(std::mem::replace(&mut k, t.metrics));
    }
    match p.task() {
        Task::Own => m.own = Some(k),
        task => m.record(task, k.primary()),
    }
}

/// Dev metrics of `model` (pass `model.valid()`) on each task of `dev`, decision thresholds
/// tuned on it first with `tune_thresholds` ([`record`]).
///
/// # Errors
/// [`Error::Invalid`] when a read-back fails.
pub async fn evaluate(
    model: &MultitaskModel,
    dev: &[TaskData],
    batch_size: usize,
    pad_id: u32,
    tune_thresholds: bool,
) -> Result<DevMetrics> {
    let mut m = DevMetrics::default();
    for d in dev {
        let p = predict(model, d, batch_size, pad_id).await?;
        record(&mut m, &p, d, tune_thresholds);
    }
    Ok(m)
}
