//! Multi-label classification on your own data: any number of labels per text (or pair) out
//! of the file's labels, as transformers' `BertForSequenceClassification` with `problem_type =
//! "multi_label_classification"`: one logit per label, `BCEWithLogitsLoss` (with `pos_weight`
//! under `--pos-weight`), a label predicted when its sigmoid probability reaches its threshold
//! (`--threshold`, or per label as `--tune-thresholds` tuned them on validation). Metrics as
//! scikit-learn's on indicator matrices ([`multi_label_scores`]).

use std::collections::BTreeMap;

use burn::nn::Linear;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

use super::classification::own_takes;
use super::{apply, features, features_width};
use crate::error::{Error, Result};
use crate::tasks::kind::{KindMetrics, SeqCls, Targets, Tuned};
use crate::tasks::metrics::multi_label_scores;
use crate::tasks::own_task::{LabelSummary, OwnTask, TaskKind, numeric_class};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, PredictionRow, Prepared, Task};

/// The thresholds `--tune-thresholds` tries for each label: 0.05, 0.10, ..., 0.95.
pub const TUNING_GRID: [f64; 19] = [
    0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80,
    0.85, 0.90, 0.95,
];

/// Own-data multi-label classification: the own task whose kind is [`TaskKind::MultiLabel`].
#[derive(Debug, Clone)]
pub struct MultiLabel(pub OwnTask);

impl MultiLabel {
    fn id2label(&self) -> &[String] {
        self.0.kind.id2label()
    }

    /// Each label's decision threshold: the tuned ones when the task has them, else the one
    /// threshold for all.
    pub fn thresholds(&self) -> Vec<f64> {
        match &self.0.kind {
            TaskKind::MultiLabel {
                thresholds,
                threshold,
                ..
            } => {
                if thresholds.len() == self.id2label().len() {
                    thresholds.clone()
                } else {
                    vec![*threshold; self.id2label().len()]
                }
            }
            _ => vec![0.5; self.id2label().len()],
        }
    }

    fn base_threshold(&self) -> f64 {
        match &self.0.kind {
            TaskKind::MultiLabel { threshold, .. } => *threshold,
            _ => 0.5,
        }
    }

    /// The gold indicator matrix `[rows, labels]` of the labelled `examples` and the indices
    /// of those examples (rows without labels, `label` NaN, are left out).
    fn gold(&self, examples: &[Prepared]) -> (Vec<bool>, Vec<usize>) {
        let k = self.id2label().len();
        let mut gold = Vec::new();
        let mut rows = Vec::new();
        for (i, e) in examples.iter().enumerate() {
            if !e.label.is_finite() {
                continue;
            }
            let start = gold.len();
            gold.resize(start + k, false);
            for &l in &e.label_ids {
                if (l as usize) < k {
                    gold[start + l as usize] = true;
                }
            }
            rows.push(i);
        }
        (gold, rows)
    }

    /// The metrics of probabilities `values` against `examples` with `thresholds`.
    fn metrics_at(&self, values: &[f32], examples: &[Prepared], thresholds: &[f64]) -> KindMetrics {
        let k = self.id2label().len();
        let (gold, rows) = self.gold(examples);
        let pred: Vec<bool> = rows
            .iter()
            .flat_map(|&i| (0..k).map(move |l| values[i * k + l] as f64 >= thresholds[l]))
            .collect();
        let s = multi_label_scores(&pred, &gold, k);
        let mut values = vec![
            ("f1_micro".to_string(), s.f1_micro),
            ("f1_macro".to_string(), s.f1_macro),
            ("precision_micro".to_string(), s.precision_micro),
            ("recall_micro".to_string(), s.recall_micro),
            ("subset_accuracy".to_string(), s.subset_accuracy),
            ("hamming_loss".to_string(), s.hamming_loss),
        ];
        values.extend(
            self.id2label()
                .iter()
                .zip(&s.f1_per_label)
                .map(|(name, &f)| (format!("f1/{name}"), f)),
        );
        KindMetrics {
            metric_for_best_model: self.0.metric_for_best_model.clone(),
            values,
        }
    }

    /// A label name or id as written (`names`) → its id, at `line` of `source`.
    fn id_of(&self, written: &str, source: &str, line: u64) -> Result<u32> {
        let id2label = self.id2label();
        let label_ids = matches!(
            self.0.kind,
            TaskKind::MultiLabel {
                label_ids: true,
                ..
            }
        );
        if let Some(i) = id2label.iter().position(|l| l == written) {
            return Ok(i as u32);
        }
        if label_ids {
            if let Ok(i) = written.parse::<usize>()
                && i < id2label.len()
            {
                return Ok(i as u32);
            }
        } else if let Ok(v) = written.parse::<f64>() {
            let name = numeric_class(v);
            if let Some(i) = id2label.iter().position(|l| *l == name) {
                return Ok(i as u32);
            }
        }
        let column = describe_columns(&self.0);
        let hint = if !label_ids && written.contains([',', ';', '|']) {
            " (several labels in one field: split them with --label-separator)"
        } else {
            ""
        };
        Err(Error::data(
            source,
            line,
            if label_ids {
                format!(
                    "{column}: label `{written}` is neither an id (0..{}) nor a name of the {} label names{hint}",
                    id2label.len(),
                    id2label.len()
                )
            } else {
                format!(
                    "{column}: label `{written}` does not occur in the training data (its labels: {}){hint}",
                    shorten(id2label)
                )
            },
        ))
    }
}

/// The label column(s) in messages: `column `labels`` or `columns `a`, `b``.
fn describe_columns(task: &OwnTask) -> String {
    match &task.columns.multi_label {
        Some(m) if !m.columns.is_empty() => format!(
            "columns {}",
            m.columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("column `{}`", task.columns.label),
    }
}

/// At most 20 names, comma-separated.
fn shorten(names: &[String]) -> String {
    let mut v: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
    if names.len() > 20 {
        v.push("...");
    }
    v.join(", ")
}

/// The labels of a row as [`crate::tasks::own::rows`] writes them: a JSON array of strings.
///
/// # Errors
/// [`Error::Data`] at `line` of `source` when `label` is not such an array.
pub fn written_labels(label: &str, source: &str, line: u64) -> Result<Vec<String>> {
    serde_json::from_str(label).map_err(|e| {
        Error::data(
            source,
            line,
            format!("the labels `{label}` are not a list of labels: {e}"),
        )
    })
}

/// Each label's F1-maximising threshold on the grid [`TUNING_GRID`] (ties: the one nearest to
/// `base`), for probabilities `values` `[rows, labels]` against the gold indicator matrix
/// `gold` of the same shape.
pub fn tune(values: &[f32], gold: &[bool], labels: usize, base: f64) -> Vec<f64> {
    let rows = gold.len() / labels.max(1);
    (0..labels)
        .map(|l| {
            let mut best = (f64::NEG_INFINITY, base);
            for &t in &TUNING_GRID {
                let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
                for r in 0..rows {
                    let p = values[r * labels + l] as f64 >= t;
                    match (p, gold[r * labels + l]) {
                        (true, true) => tp += 1.0,
                        (true, false) => fp += 1.0,
                        (false, true) => fn_ += 1.0,
                        (false, false) => {}
                    }
                }
                let d = 2.0 * tp + fp + fn_;
                let f1 = if d == 0.0 { 0.0 } else { 2.0 * tp / d };
                let closer = (t - base).abs() < (best.1 - base).abs();
                if f1 > best.0 || (f1 == best.0 && closer) {
                    best = (f1, t);
                }
            }
            best.1
        })
        .collect()
}

impl Kind for MultiLabel {
    fn task(&self) -> Task {
        Task::Own
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }

    fn is_pair(&self) -> bool {
        self.0.is_pair()
    }

    fn takes(&self, pairs: bool) -> bool {
        own_takes(&self.0, pairs)
    }

    fn head(&self, hidden: usize, encoding: PairEncoding) -> Option<[usize; 2]> {
        Some([
            features_width(hidden, self.is_pair(), encoding),
            self.id2label().len(),
        ])
    }

    fn width(&self) -> usize {
        self.id2label().len()
    }

    /// Without label sets (`labels` alone): no label anywhere. Batches are built by
    /// [`batch_targets`](Kind::batch_targets).
    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        let k = self.id2label().len();
        Targets::Labels {
            y: Tensor::zeros([labels.len(), k], device),
            pos_weight: None,
        }
    }

    fn batch_targets(&self, examples: &[&Prepared], device: &Device) -> Targets {
        let k = self.id2label().len();
        let mut y = vec![0f32; examples.len() * k];
        for (i, e) in examples.iter().enumerate() {
            for &l in &e.label_ids {
                if (l as usize) < k {
                    y[i * k + l as usize] = 1.0;
                }
            }
        }
        Targets::Labels {
            y: Tensor::from_data(TensorData::new(y, [examples.len(), k]), device),
            pos_weight: None,
        }
    }

    fn forward_pooled(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        Some(apply(head, features(model, pooled, self.is_pair())))
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        match targets {
            Targets::Labels { y, pos_weight } => crate::tasks::bce_with_logits_labels(
                outputs,
                y.clone(),
                pos_weight.as_deref().cloned(),
            ),
            _ => panic!("multi-label targets expected"),
        }
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        sigmoid(outputs)
    }

    /// The number of labels at or over their thresholds (the scalar form; metrics read the
    /// label sets through [`evaluate`](Kind::evaluate)).
    fn label_of(&self, values: &[f32]) -> f64 {
        let t = self.thresholds();
        values
            .iter()
            .zip(&t)
            .filter(|(v, t)| **v as f64 >= **t)
            .count() as f64
    }

    fn takes_pos_weight(&self) -> bool {
        true
    }

    fn class_names(&self) -> Vec<String> {
        self.id2label().to_vec()
    }

    /// Not used: a label count says nothing about which labels; [`evaluate`](Kind::evaluate)
    /// computes the metrics from the label sets. The metric names with no values.
    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        let _ = (pred, gold);
        KindMetrics::new(&self.0.metric_for_best_model, Vec::new())
    }

    /// Micro and macro F1, micro precision and recall, subset accuracy, Hamming loss, then
    /// each label's F1 as `f1/<label>`, at the task's thresholds.
    fn evaluate(&self, values: &[f32], examples: &[Prepared]) -> KindMetrics {
        self.metrics_at(values, examples, &self.thresholds())
    }

    fn tune_thresholds(&self, values: &[f32], examples: &[Prepared]) -> Option<Tuned> {
        let k = self.id2label().len();
        let (gold, rows) = self.gold(examples);
        let probs: Vec<f32> = rows
            .iter()
            .flat_map(|&i| values[i * k..(i + 1) * k].iter().copied())
            .collect();
        let thresholds = tune(&probs, &gold, k, self.base_threshold());
        let metrics = self.metrics_at(values, examples, &thresholds);
        Some(Tuned {
            thresholds,
            metrics,
        })
    }

    /// Every label's probability; `labels` those at or over their thresholds, most probable
    /// first; the score is the highest probability.
    fn prediction_row(&self, id: &str, values: &[f32]) -> PredictionRow {
        let names = self.id2label();
        let t = self.thresholds();
        let mut over: Vec<usize> = (0..values.len())
            .filter(|&l| values[l] as f64 >= t[l])
            .collect();
        over.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        PredictionRow {
            id: id.to_string(),
            task: self.name(),
            label: None,
            score: values.iter().fold(0.0f32, |m, &v| m.max(v)) as f64,
            labels: Some(over.iter().map(|&l| names[l].clone()).collect()),
            probabilities: names
                .iter()
                .zip(values)
                .map(|(n, &v)| (n.clone(), v as f64))
                .collect(),
        }
    }

    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        Ok(SeqCls {
            id2label: self.class_names(),
            regression: false,
            multi_label: true,
            token: false,
            weight,
            bias,
        })
    }

    /// The number of labels of the row (its label ids are [`target_ids`](Kind::target_ids)).
    fn target(&self, label: &str, source: &str, line: u64) -> Result<f32> {
        Ok(self.target_ids(label, source, line)?.len() as f32)
    }

    fn target_ids(&self, label: &str, source: &str, line: u64) -> Result<Vec<u32>> {
        let mut ids = written_labels(label, source, line)?
            .iter()
            .map(|l| self.id_of(l, source, line))
            .collect::<Result<Vec<u32>>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn summarize(&self, targets: &[f32], label_ids: &[Vec<u32>]) -> LabelSummary {
        let names = self.id2label();
        let mut counts = BTreeMap::new();
        for ids in label_ids {
            for &l in ids {
                if let Some(n) = names.get(l as usize) {
                    *counts.entry(n.clone()).or_default() += 1;
                }
            }
        }
        let total: usize = label_ids.iter().map(Vec::len).sum();
        LabelSummary {
            rows: targets.len(),
            counts,
            range: None,
            labels_per_row: Some(total as f64 / targets.len().max(1) as f64),
            entities: None,
        }
    }
}
