//! Predictions and dev metrics of a trained model, read back asynchronously.

use burn::tensor::Device;
use burn::tensor::activation::{sigmoid, softmax};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kernels::read_f32;
use crate::tasks::{MultitaskModel, Task, TaskBatch, TaskData, accuracy, overall_score, pearson};

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
}

impl DevMetrics {
    /// Records `task`'s dev score (accuracy, or Pearson for STS); the overall score follows
    /// once all three tasks are recorded.
    pub fn record(&mut self, task: Task, score: f64) {
        match task {
            Task::Sst => self.sst_acc = Some(score),
            Task::Para => self.para_acc = Some(score),
            Task::Sts => self.sts_pearson = Some(score),
        }
        if let (Some(a), Some(b), Some(c)) = (self.sst_acc, self.para_acc, self.sts_pearson) {
            self.overall = Some(overall_score(a, b, c));
        }
    }

    /// The number to select the best epoch by: the overall score, or the only metric present.
    pub fn primary(&self) -> f64 {
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
        let shown: Vec<String> = parts
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n} {v:.4}")))
            .collect();
        f.write_str(&shown.join(", "))
    }
}

/// Raw predictions of one task, in example order: SST class probabilities `[n·5]`, paraphrase
/// probabilities `[n]`, STS scores on the 0..5 scale `[n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The task.
    pub task: Task,
    /// Example ids.
    pub ids: Vec<String>,
    /// Values as described above (row-major for SST).
    pub values: Vec<f32>,
}

impl Predictions {
    /// Predicted labels: SST argmax class, paraphrase `p > 0.5` (0/1), STS score.
    pub fn labels(&self) -> Vec<f64> {
        match self.task {
            Task::Sst => self
                .values
                .chunks(5)
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
            Task::Sts => self.values.iter().map(|&v| v as f64).collect(),
        }
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
    let stride = if data.task == Task::Sst { 5 } else { 1 };
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
    })
}

/// The device a model's parameters live on.
pub fn model_device(model: &MultitaskModel) -> Device {
    model.bert.embeddings.word_embeddings.weight.val().device()
}

/// Scores predictions against the gold labels of `data`.
pub fn score(p: &Predictions, data: &TaskData) -> f64 {
    let gold: Vec<f64> = data.examples.iter().map(|e| e.label as f64).collect();
    let pred = p.labels();
    match p.task {
        Task::Sts => pearson(&pred, &gold),
        _ => {
            let pr: Vec<usize> = pred.iter().map(|&x| x as usize).collect();
            let gd: Vec<usize> = gold.iter().map(|&x| x as usize).collect();
            accuracy(&pr, &gd)
        }
    }
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
        m.record(d.task, score(&p, d));
    }
    Ok(m)
}
