//! Predictions and dev metrics of a trained model, read back asynchronously.

use burn::tensor::Device;
use burn::tensor::activation::{sigmoid, softmax};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kernels::read_f32;
use crate::tasks::metrics::{
    CONSTANT_TOLERANCE, f1_binary, f1_macro, is_constant, matthews, mse, spearman,
};
use crate::tasks::own::{OwnTask, TaskKind};
use crate::tasks::{
    MultitaskModel, OwnLabels, Task, TaskBatch, TaskData, accuracy, overall_score, pearson,
};

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
    /// Own data: the metrics of its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnMetrics>,
    /// What to know about these numbers (e.g. constant predictions, whose correlations are
    /// reported as 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Dev metrics of an own-data task: classification accuracy, F1 (binary: of class 1), macro-F1
/// and Matthews correlation; regression Pearson, Spearman and MSE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnMetrics {
    /// The metric that picks the best epoch (`mse`: the lowest).
    pub metric_for_best_model: String,
    /// Accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// F1 of class 1 (binary classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Macro-averaged F1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_macro: Option<f64>,
    /// Matthews correlation coefficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<f64>,
    /// Pearson correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spearman: Option<f64>,
    /// Mean squared error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
}

impl OwnMetrics {
    /// The metrics of `pred` against `gold`: class ids for classification (`classes` of them),
    /// values for regression; `metric` picks the best epoch.
    pub fn of(pred: &[f64], gold: &[f64], kind: &TaskKind, metric: &str) -> Self {
        let mut m = OwnMetrics {
            metric_for_best_model: metric.to_string(),
            ..OwnMetrics::default()
        };
        match kind {
            TaskKind::Classification { id2label } => {
                let ids = |v: &[f64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
                let (p, g) = (ids(pred), ids(gold));
                let n = id2label.len();
                m.accuracy = Some(accuracy(&p, &g));
                m.f1 = (n == 2).then(|| f1_binary(&p, &g));
                m.f1_macro = Some(f1_macro(&p, &g, n));
                m.mcc = Some(matthews(&p, &g, n));
            }
            TaskKind::Regression => {
                m.pearson = Some(pearson(pred, gold));
                m.spearman = Some(spearman(pred, gold));
                m.mse = Some(mse(pred, gold));
            }
        }
        m
    }

    /// The metrics present, by name, in the order of the task kind's list.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        [
            ("accuracy", self.accuracy),
            ("f1", self.f1),
            ("f1_macro", self.f1_macro),
            ("mcc", self.mcc),
            ("pearson", self.pearson),
            ("spearman", self.spearman),
            ("mse", self.mse),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect()
    }

    /// The value of `metric_for_best_model`, negated for `mse` (larger is better).
    pub fn primary(&self) -> f64 {
        let v = self
            .named()
            .into_iter()
            .find(|(n, _)| *n == self.metric_for_best_model)
            .map_or(f64::NEG_INFINITY, |(_, v)| v);
        if self.metric_for_best_model == "mse" {
            -v
        } else {
            v
        }
    }
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
            shown.extend(o.named().iter().map(|(n, v)| format!("{n} {v:.4}")));
        }
        f.write_str(&shown.join(", "))
    }
}

/// Raw predictions of one task, in example order: SST class probabilities `[n·5]`, paraphrase
/// probabilities `[n]`, STS scores on the 0..5 scale `[n]`, own data class probabilities
/// `[n·classes]` or regression values `[n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The task.
    pub task: Task,
    /// Example ids.
    pub ids: Vec<String>,
    /// Values as described above (row-major for class probabilities).
    pub values: Vec<f32>,
    /// Values per example: the number of classes, or 1.
    pub width: usize,
}

impl Predictions {
    /// Predicted labels: the argmax class (SST, own classification), paraphrase `p > 0.5`
    /// (0/1), the STS score or regression value.
    pub fn labels(&self) -> Vec<f64> {
        match self.task {
            Task::Sst | Task::Own if self.width > 1 => self
                .values
                .chunks(self.width)
                .map(|p| {
                    p.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                            if v > best.1 { (i, v) } else { best }
                        })
                        .0 as f64
                })
                .collect(),
            Task::Para => self
                .values
                .iter()
                .map(|&p| (p > 0.5) as u8 as f64)
                .collect(),
            _ => self.values.iter().map(|&v| v as f64).collect(),
        }
    }
}

/// One prediction as `lorabert predict` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionRow {
    /// The input's id.
    pub id: String,
    /// The task (`sst`, `para`, `sts`, or the own task's name).
    pub task: String,
    /// The predicted class name (classification tasks: SST `0`..`4`, paraphrase `0`/`1`, own
    /// data its `id2label`); absent for STS and regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The predicted class's probability (paraphrase: of class `1`), or the value (STS on
    /// 0..5, regression).
    pub score: f64,
    /// Probabilities by class, in class order (classification).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_map")]
    pub probabilities: Vec<(String, f64)>,
}

fn as_map<S: serde::Serializer>(v: &[(String, f64)], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, p) in v {
        m.serialize_entry(k, p)?;
    }
    m.end()
}

impl Predictions {
    /// The predictions as named rows: class names from `own`'s `id2label` for own data.
    pub fn rows(&self, own: Option<&OwnTask>) -> Vec<PredictionRow> {
        let names: Vec<String> = match (self.task, own.map(|o| &o.kind)) {
            (Task::Own, Some(TaskKind::Classification { id2label })) => id2label.clone(),
            (Task::Sst, _) => (0..5).map(|c| c.to_string()).collect(),
            (Task::Para, _) => vec!["0".into(), "1".into()],
            _ => Vec::new(),
        };
        let task = match (self.task, own) {
            (Task::Own, Some(o)) => o.name.clone(),
            (t, _) => t.name().to_string(),
        };
        let w = self.width.max(1);
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let v: Vec<f64> = self.values[i * w..(i + 1) * w]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let probs: Vec<f64> = match (self.task, names.len()) {
                    (Task::Para, _) => vec![1.0 - v[0], v[0]],
                    (_, 0) => Vec::new(),
                    _ => v.clone(),
                };
                let best = (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b]));
                PredictionRow {
                    id: id.clone(),
                    task: task.clone(),
                    label: best.map(|b| names[b].clone()),
                    score: match (self.task, best) {
                        (Task::Para, _) => v[0],
                        (_, Some(b)) => probs[b],
                        (_, None) => v[0],
                    },
                    probabilities: names.iter().cloned().zip(probs).collect(),
                }
            })
            .collect()
    }
}

/// Runs `model` (inference mode: pass `model.valid()`) over `data` in batches.
///
/// # Errors
/// [`Error::Invalid`] when a read-back fails.
pub async fn predict(
    model: &MultitaskModel,
    data: &TaskData,
    batch_size: usize,
    pad_id: u32,
) -> Result<Predictions> {
    let device = model_device(model);
    let stride = match (&data.task, &data.own) {
        (Task::Sst, _) => 5,
        (Task::Own, Some(kind)) => kind.outputs(),
        _ => 1,
    };
    let mut values = vec![0f32; data.examples.len() * stride];
    // Batches of similar length (less padding); outputs are put back in file order.
    let mut order: Vec<usize> = (0..data.examples.len()).collect();
    order.sort_by_key(|&i| data.examples[i].len());
    for idx in order.chunks(batch_size.max(1)) {
        let batch = data.batch(idx, pad_id, &device);
        let out: Vec<f32> = match &batch {
            TaskBatch::Sst { x, .. } => read_f32(softmax(model.sst_logits(x), 1)).await?,
            TaskBatch::Pair {
                task: Task::Para,
                x,
                ..
            } => read_f32(sigmoid(model.pair_scores(Task::Para, x))).await?,
            TaskBatch::Pair { task, x, .. } => {
                read_f32(model.pair_scores(*task, x).mul_scalar(5.0)).await?
            }
            TaskBatch::Own { x, labels } => {
                let out = model.own_outputs(x);
                match labels {
                    OwnLabels::Classes(_) => read_f32(softmax(out, 1)).await?,
                    OwnLabels::Values(_) => read_f32(out).await?,
                }
            }
        };
        for (k, &i) in idx.iter().enumerate() {
            values[i * stride..(i + 1) * stride]
                .copy_from_slice(&out[k * stride..(k + 1) * stride]);
        }
    }
    Ok(Predictions {
        task: data.task,
        ids: data.examples.iter().map(|e| e.id.clone()).collect(),
        values,
        width: stride,
    })
}

/// The device a model's parameters live on.
pub fn model_device(model: &MultitaskModel) -> Device {
    model.bert.embeddings.word_embeddings.weight.val().device()
}

/// Scores predictions against the gold labels of `data`: accuracy, or Pearson for STS and
/// own-data regression.
pub fn score(p: &Predictions, data: &TaskData) -> f64 {
    let gold: Vec<f64> = data.examples.iter().map(|e| e.label as f64).collect();
    let pred = p.labels();
    match p.task {
        Task::Sts => pearson(&pred, &gold),
        Task::Own if p.width == 1 => pearson(&pred, &gold),
        _ => {
            let pr: Vec<usize> = pred.iter().map(|&x| x as usize).collect();
            let gd: Vec<usize> = gold.iter().map(|&x| x as usize).collect();
            accuracy(&pr, &gd)
        }
    }
}

/// A note when real-valued predictions (STS, own-data regression) are constant up to rounding:
/// their correlations are undefined and reported as 0.
pub fn constant_note(p: &Predictions) -> Option<String> {
    let real = p.task == Task::Sts || (p.task == Task::Own && p.width == 1);
    let values: Vec<f64> = p.values.iter().map(|&v| v as f64).collect();
    (real && is_constant(&values)).then(|| {
        format!(
            "{}: the {} predictions are constant (spread under {CONSTANT_TOLERANCE} relative): Pearson and Spearman are undefined, reported as 0",
            p.task.name(),
            values.len()
        )
    })
}

/// The own-data metrics of predictions `p` against the gold labels of `data`.
pub fn own_metrics(p: &Predictions, data: &TaskData, task: &OwnTask) -> OwnMetrics {
    let gold: Vec<f64> = data.examples.iter().map(|e| e.label as f64).collect();
    OwnMetrics::of(&p.labels(), &gold, &task.kind, &task.metric_for_best_model)
}

/// Dev metrics of `model` (pass `model.valid()`) on each task of `dev`.
///
/// # Errors
/// [`Error::Invalid`] when a read-back fails.
pub async fn evaluate(
    model: &MultitaskModel,
    dev: &[TaskData],
    batch_size: usize,
    pad_id: u32,
) -> Result<DevMetrics> {
    let mut m = DevMetrics::default();
    for d in dev {
        let p = predict(model, d, batch_size, pad_id).await?;
        if let Some(note) = constant_note(&p) {
            m.notes.push(note);
        }
        match (&d.task, &model.own_task) {
            (Task::Own, Some(t)) => m.own = Some(own_metrics(&p, d, t)),
            _ => m.record(d.task, score(&p, d)),
        }
    }
    Ok(m)
}
