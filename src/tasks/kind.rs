//! The task-kind extension point: what one kind of task (SST's five classes, a paraphrase
//! logit, STS similarity, classification or regression on your own data, ...) owns, in the
//! spirit of PEFT's `LoraVariant` and transformers' `AutoModelFor*` families.
//!
//! A [`Kind`] owns, for its kind: its data (the minBERT preset files it reads, or how an own-data
//! label becomes a target, with the summary, stratification and label checks), its head
//! (shape, forward, loss), what `predict` reports (probabilities or values, class names, a
//! [`PredictionRow`]), its metrics and the best-model metric ([`KindMetrics`]), and what
//! `export --format transformers` writes ([`SeqCls`]). The trainer, evaluation, the CLI and the
//! page only call these methods; the kinds themselves are in [`super::kinds`], one file each,
//! registered in [`super::kinds::task_kind`] (and [`super::kinds::own`] for own-data label
//! kinds), through which every checkpoint's `heads_config.json` is mapped to them. The recipe is
//! in `docs/architecture.md`.

use std::fmt::Debug;

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use super::own_task::LabelSummary;
use super::{MultitaskModel, PairEncoding, Prepared, Task};
use crate::data::BatchTensors;
use crate::error::{Error, Result};

/// A task kind (see the module documentation). Implementations are small values (the classes,
/// the pair encoding) shared as `Arc<dyn Kind>` by the data, the batches and the predictions.
pub trait Kind: Debug + Send + Sync {
    /// Which slot of the run the kind fills: a minBERT task, or [`Task::Own`] for any kind
    /// trained on a person's own data (its metrics go to `DevMetrics::own`).
    fn task(&self) -> Task;

    /// The name in messages, prediction rows and the page (`sst`, `para`, `sts`, or the own
    /// task's name: its training file's stem).
    fn name(&self) -> String {
        self.task().name().to_string()
    }

    /// The name of its head's tensors in `heads.safetensors` (`sst.weight`, ...).
    fn head_name(&self) -> &'static str {
        self.task().name()
    }

    /// Whether its examples are sentence pairs.
    fn is_pair(&self) -> bool;

    /// Whether it takes inputs of this shape in `predict --sentence` and the page's Try it:
    /// pairs (`true`) or single texts.
    fn takes(&self, pairs: bool) -> bool {
        pairs == self.is_pair()
    }

    /// Its head's `[in, out]` on an encoder of `hidden` units with pairs encoded as `encoding`;
    /// `None` when it has no trained head (bi-encoded STS: the cosine of the two embeddings).
    fn head(&self, hidden: usize, encoding: PairEncoding) -> Option<[usize; 2]>;

    /// Values per example in its predictions: the number of classes, or 1.
    fn width(&self) -> usize;

    /// The device targets of a batch from its examples' labels (`Prepared::label`: a class id
    /// or a value as the file gives it, `NaN` where the file has none).
    fn targets(&self, labels: &[f32], device: &Device) -> Targets;

    /// The device targets of a batch of `examples`: [`targets`](Self::targets) of their
    /// `label`s, unless the kind reads more of them (multi-label: their `label_ids`).
    fn batch_targets(&self, examples: &[&Prepared], device: &Device) -> Targets {
        let labels: Vec<f32> = examples.iter().map(|e| e.label).collect();
        self.targets(&labels, device)
    }

    /// Raw outputs `[batch, width]` of `model` on `x` through `head` (logits, a score or a
    /// regression value), before any activation. `x` holds `2·batch` sequences for
    /// bi-encoded pairs (all first sentences, then all second sentences). By default
    /// [`forward_pooled`](Self::forward_pooled) of the texts' pooled states
    /// ([`MultitaskModel::embed`]); kinds whose outputs are not made from pooled texts (per
    /// token) override it.
    ///
    /// # Panics
    /// When the kind overrides neither this nor [`forward_pooled`](Self::forward_pooled) (a
    /// programming error).
    fn forward(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        x: &BatchTensors,
    ) -> Tensor<2> {
        match self.forward_pooled(model, head, model.embed(x)) {
            Some(out) => out,
            None => panic!(
                "task kind {} defines neither forward nor forward_pooled",
                self.name()
            ),
        }
    }

    /// [`forward`](Self::forward) from the pooled states of the batch's texts, `[texts·batch,
    /// hidden]` laid out as `x` (a bi-encoded pair's first sentences, then its second
    /// sentences, then each column of hard negatives), when the outputs are made from them
    /// alone; `None` otherwise (the default: per-token kinds). Evaluation uses it to encode
    /// each distinct text once, in batches of texts of similar length
    /// ([`crate::train::evaluate::predict`]).
    fn forward_pooled(
        &self,
        _model: &MultitaskModel,
        _head: Option<&Linear>,
        _pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        None
    }

    /// The mean training loss `[1]` of `outputs` (from [`forward`](Self::forward)) against
    /// `targets`.
    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1>;

    /// What predictions report, `[batch, width]`: class probabilities, or values on the
    /// file's scale.
    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2>;

    /// One example's predicted label from its `width` prediction values: a class id, or the
    /// value itself.
    fn label_of(&self, values: &[f32]) -> f64;

    /// Whether its predictions are real values (regression, similarity), whose correlations
    /// are undefined when they are constant.
    fn real_valued(&self) -> bool {
        false
    }

    /// Whether its loss is a softmax cross-entropy over [`class_names`](Self::class_names)
    /// that `--class-weights` can weight ([`Targets::cross_entropy`]).
    fn takes_class_weights(&self) -> bool {
        false
    }

    /// Whether its loss is a per-label binary cross-entropy that `--pos-weight` can weight
    /// (`BCEWithLogitsLoss(pos_weight=...)`: [`Targets::with_pos_weight`]).
    fn takes_pos_weight(&self) -> bool {
        false
    }

    /// Whether no text may appear twice in one training batch (in-batch negatives: a text
    /// that is another example's positive would be a false negative). The batches are then
    /// drawn as sentence-transformers' `NoDuplicatesBatchSampler` draws them
    /// ([`crate::data::no_duplicate_batches`]).
    fn distinct_batches(&self) -> bool {
        false
    }

    /// Whether a run evaluates it once before the first step (an "epoch 0" line, as
    /// sentence-transformers users run their evaluator on the base model) so that the gain
    /// from training shows.
    fn evaluates_before_training(&self) -> bool {
        false
    }

    /// The class names of its outputs, in output order; empty for real values.
    fn class_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Its metrics of predicted labels `pred` against `gold` (both as [`label_of`](Self::label_of)
    /// gives them), the best-model metric named.
    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics;

    /// Its metrics of prediction values `values` (`[n, width]` row-major, from
    /// [`predictions`](Self::predictions)) against `examples` (`n`, in the same order): by
    /// default [`metrics`](Self::metrics) of each row's [`label_of`](Self::label_of) against
    /// the examples' `label`; a kind whose gold is more than one number (multi-label) reads
    /// the examples itself.
    fn evaluate(&self, values: &[f32], examples: &[Prepared]) -> KindMetrics {
        let pred: Vec<f64> = values
            .chunks(self.width().max(1))
            .map(|v| self.label_of(v))
            .collect();
        let gold: Vec<f64> = examples.iter().map(|e| e.label as f64).collect();
        self.metrics(&pred, &gold)
    }

    /// Decision thresholds tuned on `values` against `examples` (as for
    /// [`evaluate`](Self::evaluate); `--tune-thresholds`): one per output, with the metrics
    /// at them; `None` for kinds without thresholds (all but multi-label).
    fn tune_thresholds(&self, values: &[f32], examples: &[Prepared]) -> Option<Tuned> {
        let _ = (values, examples);
        None
    }

    /// One prediction as `predict` prints it, from the example's `width` prediction values.
    fn prediction_row(&self, id: &str, values: &[f32]) -> PredictionRow {
        let names = self.class_names();
        let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        let probs = if names.is_empty() {
            Vec::new()
        } else {
            v.clone()
        };
        let best = (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b]));
        PredictionRow {
            id: id.to_string(),
            task: self.name(),
            label: best.map(|b| names[b].clone()),
            score: best.map_or(v[0], |b| probs[b]),
            labels: None,
            probabilities: names.into_iter().zip(probs).collect(),
        }
    }

    /// Its head as transformers' `BertForSequenceClassification.classifier` from the trained
    /// head's weight `[out, in]` (row-major, `in = hidden`) and bias `[out]`, so that the
    /// exported model's outputs are what `predict` reports.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the kind does not export as sequence classification.
    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, hidden: usize) -> Result<SeqCls> {
        let _ = (weight, bias, hidden);
        Err(Error::Invalid(format!(
            "the `{}` head does not export as BertForSequenceClassification",
            self.name()
        )))
    }

    /// A minBERT preset's file names for `split`, most preferred first (none for other kinds).
    fn preset_files(&self, split: Split) -> &'static [&'static str] {
        let _ = split;
        &[]
    }

    /// A minBERT preset's prediction file: its name stem and the starter code's column header
    /// (`sst`, `Predicted_Sentiment`); `None` for kinds without one.
    fn minbert_output(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Own data: the target of a row's label as written (`label`, trimmed), at `line` of
    /// `source`, for `Prepared::label`.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file, line and label column; [`Error::Invalid`] for a kind
    /// that does not read own data.
    fn target(&self, label: &str, source: &str, line: u64) -> Result<f32> {
        let _ = label;
        Err(Error::data(
            source,
            line,
            format!("the `{}` task does not read own-data labels", self.name()),
        ))
    }

    /// Own data: the class to stratify the validation split by, from a target; `None` draws
    /// the split at random.
    fn stratum(&self, target: f32) -> Option<i64> {
        let _ = target;
        None
    }

    /// Own data: the ids of a row's labels (multi-label; ascending, each once), from its label
    /// as written (for multi-label, a JSON array of label names or ids, as
    /// [`super::own::rows`] writes it), at `line` of `source`, for `Prepared::label_ids`;
    /// empty for single-label kinds.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file, line and label column (a label that is not one of the
    /// task's, a malformed list).
    fn target_ids(&self, label: &str, source: &str, line: u64) -> Result<Vec<u32>> {
        let _ = (label, source, line);
        Ok(Vec::new())
    }

    /// Own data: the label summary of a split's targets (rows per class, or the range) and,
    /// for multi-label, each row's label ids.
    fn summarize(&self, targets: &[f32], label_ids: &[Vec<u32>]) -> LabelSummary {
        let _ = label_ids;
        LabelSummary {
            rows: targets.len(),
            counts: Default::default(),
            range: None,
            labels_per_row: None,
            entities: None,
        }
    }
}

/// Per-output decision thresholds tuned on validation ([`Kind::tune_thresholds`]) and the
/// metrics at them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuned {
    /// One threshold per output, in output order.
    pub thresholds: Vec<f64>,
    /// The kind's metrics at those thresholds.
    pub metrics: KindMetrics,
}

/// The device targets of a batch.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class ids `[batch]`.
    Classes(Tensor<1, Int>),
    /// Class ids `[batch]` with each example's class weight `[batch]` (`--class-weights`)
    /// and their sum (the batch's share of a step's loss under gradient accumulation).
    WeightedClasses {
        /// Class ids `[batch]`.
        classes: Tensor<1, Int>,
        /// Each example's class weight `[batch]`.
        weights: Box<Tensor<1>>,
        /// The sum of `weights`.
        total: f64,
    },
    /// Real-valued targets `[batch]`.
    Values(Tensor<1>),
    /// Multi-label targets `[batch, labels]` (1 where the example has the label, else 0), with
    /// each label's positive weight `[labels]` (`--pos-weight`, `BCEWithLogitsLoss`'s
    /// `pos_weight`) when given.
    Labels {
        /// 0/1 per example and label `[batch, labels]`.
        y: Tensor<2>,
        /// Each label's positive weight `[labels]`.
        pos_weight: Option<Box<Tensor<1>>>,
    },
    /// Token classification: each word piece's tag id `[batch·seq]`, 1 where the piece is in
    /// the loss and 0 where it is left out `[batch·seq]` (PyTorch's `ignore_index`: later
    /// pieces of a word, special tokens, padding), the pieces in the loss, and the examples.
    Tokens {
        /// Tag id per piece `[batch·seq]` (0 where left out).
        classes: Tensor<1, Int>,
        /// 1 for pieces in the loss, else 0 `[batch·seq]`.
        mask: Box<Tensor<1>>,
        /// The sum of `mask`.
        labelled: f64,
        /// Examples (windows) in the batch.
        examples: usize,
    },
}

impl Targets {
    /// Examples in the batch.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(t) | Targets::WeightedClasses { classes: t, .. } => t.dims()[0],
            Targets::Values(t) => t.dims()[0],
            Targets::Labels { y, .. } => y.dims()[0],
            Targets::Tokens { examples, .. } => *examples,
        }
    }

    /// The batch's weight in a step's mean loss: the sum of its class weights, or its number
    /// of examples (`--gradient-accumulation-steps` weighs each micro-batch's mean loss by its
    /// share of the step's total, so the step's loss is the mean over all of them); token
    /// classification: its pieces in the loss (the step's loss is then the mean over every
    /// labelled piece, as transformers' `num_items_in_batch`).
    pub fn mass(&self) -> f64 {
        match self {
            Targets::WeightedClasses { total, .. } => *total,
            Targets::Tokens { labelled, .. } => *labelled,
            t => t.len() as f64,
        }
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class ids.
    ///
    /// # Panics
    /// For real-valued targets (a kind given another kind's batch: a programming error).
    pub fn classes(&self) -> Tensor<1, Int> {
        match self {
            Targets::Classes(t) | Targets::WeightedClasses { classes: t, .. } => t.clone(),
            Targets::Tokens { classes, .. } => classes.clone(),
            Targets::Values(_) | Targets::Labels { .. } => panic!("class targets expected"),
        }
    }

    /// These multi-label targets with each label's positive weight `weights` (`--pos-weight`);
    /// other targets are returned as they are.
    ///
    /// # Panics
    /// When `weights` does not hold one weight per label.
    pub fn with_pos_weight(self, weights: &[f32]) -> Targets {
        match self {
            Targets::Labels { y, .. } => {
                let k = y.dims()[1];
                assert_eq!(weights.len(), k, "one positive weight per label");
                let w = Tensor::from_data(TensorData::new(weights.to_vec(), [k]), &y.device());
                Targets::Labels {
                    y,
                    pos_weight: Some(Box::new(w)),
                }
            }
            t => t,
        }
    }

    /// These class targets with each example weighted by `weights` (one per example: its
    /// class's weight, `--class-weights`); real-valued targets are returned as they are.
    ///
    /// # Panics
    /// When `weights` does not hold one weight per example.
    pub fn weighted(self, weights: Vec<f32>) -> Targets {
        match self {
            Targets::Classes(t) | Targets::WeightedClasses { classes: t, .. } => {
                let n = t.dims()[0];
                assert_eq!(weights.len(), n, "one class weight per example");
                let total = weights.iter().map(|&w| w as f64).sum();
                let w = Tensor::from_data(TensorData::new(weights, [n]), &t.device());
                Targets::WeightedClasses {
                    classes: t,
                    weights: Box::new(w),
                    total,
                }
            }
            v => v,
        }
    }

    /// The mean cross-entropy of `logits` `[batch, classes]` against these class targets,
    /// weighted as `torch.nn.functional.cross_entropy(weight=w)` weighs it when they carry
    /// class weights ([`crate::tasks::weighted_cross_entropy`]); for token targets `logits` is
    /// `[batch·seq, tags]` and the mean is over the pieces in the loss
    /// ([`crate::tasks::masked_cross_entropy`]).
    ///
    /// # Panics
    /// For real-valued targets (a programming error).
    pub fn cross_entropy(&self, logits: Tensor<2>) -> Tensor<1> {
        match self {
            Targets::Classes(t) => crate::tasks::cross_entropy(logits, t.clone()),
            Targets::WeightedClasses {
                classes, weights, ..
            } => crate::tasks::weighted_cross_entropy(logits, classes.clone(), (**weights).clone()),
            Targets::Tokens {
                classes,
                mask,
                labelled,
                ..
            } => crate::tasks::masked_cross_entropy(
                logits,
                classes.clone(),
                (**mask).clone(),
                *labelled,
            ),
            Targets::Values(_) | Targets::Labels { .. } => panic!("class targets expected"),
        }
    }

    /// The real values.
    ///
    /// # Panics
    /// For class targets (a programming error).
    pub fn values(&self) -> Tensor<1> {
        match self {
            Targets::Values(t) => t.clone(),
            Targets::Classes(_)
            | Targets::WeightedClasses { .. }
            | Targets::Labels { .. }
            | Targets::Tokens { .. } => panic!("real-valued targets expected"),
        }
    }
}

/// A head as transformers' `BertForSequenceClassification.classifier` computes it (see
/// [`Kind::seq_cls`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqCls {
    /// Label names by output index (`id2label`); one entry for regression.
    pub id2label: Vec<String>,
    /// One real-valued output (`problem_type: regression`) instead of classes.
    pub regression: bool,
    /// Independent labels (`problem_type: multi_label_classification`: a sigmoid per label).
    pub multi_label: bool,
    /// A tag per word piece: transformers' `BertForTokenClassification.classifier` on the last
    /// hidden state of every piece (no pooler), not a sequence classifier.
    pub token: bool,
    /// Classifier weight `[labels, hidden]`, row-major.
    pub weight: Vec<f32>,
    /// Classifier bias `[labels]`.
    pub bias: Vec<f32>,
}

/// Dev metrics of one task, by name, in the kind's order, with the metric that picks the best
/// epoch (transformers' `metric_for_best_model`). Serialised as one JSON object:
/// `{"metric_for_best_model": "accuracy", "accuracy": 0.91, ...}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindMetrics {
    /// The metric that picks the best epoch.
    pub metric_for_best_model: String,
    /// The metrics by name, in the kind's order.
    pub values: Vec<(String, f64)>,
}

impl KindMetrics {
    /// Metrics `values` with `metric` picking the best epoch.
    pub fn new(metric: &str, values: Vec<(&str, f64)>) -> Self {
        KindMetrics {
            metric_for_best_model: metric.to_string(),
            values: values
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        }
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The metrics, by name, in the kind's order.
    pub fn named(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// The value of `metric_for_best_model`, negated where lower is better
    /// ([`greater_is_better`]) so that larger is always better; −∞ when absent.
    pub fn primary(&self) -> f64 {
        let m = &self.metric_for_best_model;
        match self.get(m) {
            Some(v) if greater_is_better(m) => v,
            Some(v) => -v,
            None => f64::NEG_INFINITY,
        }
    }
}

/// Whether a larger value of metric `name` is better: all but errors and losses (`mse`, names
/// ending in `loss`), as transformers' `greater_is_better` defaults by the name.
pub fn greater_is_better(name: &str) -> bool {
    !(name == "mse" || name.ends_with("loss"))
}

impl Serialize for KindMetrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.values.len() + 1))?;
        m.serialize_entry("metric_for_best_model", &self.metric_for_best_model)?;
        for (k, v) in &self.values {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for KindMetrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KindMetrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of metric values with metric_for_best_model")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<KindMetrics, A::Error> {
                let mut out = KindMetrics::default();
                while let Some(k) = map.next_key::<String>()? {
                    if k == "metric_for_best_model" {
                        out.metric_for_best_model = map.next_value()?;
                    } else if let Some(v) = map.next_value::<Option<f64>>()? {
                        // A non-finite value is written as `null`: absent, as before.
                        out.values.push((k, v));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
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
    /// 0..5, regression); multi-label: the highest label probability.
    pub score: f64,
    /// Multi-label: the labels at or over their thresholds, most probable first (possibly
    /// none); absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
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

/// The index of the largest value (the first among equals); 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// A split of a data set (the minBERT presets: which file holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Dev (the evaluation split).
    Dev,
    /// Test (no labels).
    Test,
}

impl Split {
    /// `train`, `dev` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_their_order_and_json_layout() {
        let m = KindMetrics::new(
            "mse",
            vec![("pearson", 0.5), ("spearman", 0.25), ("mse", 2.0)],
        );
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"metric_for_best_model":"mse","pearson":0.5,"spearman":0.25,"mse":2.0}"#
        );
        let back: KindMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        // Lower is better for errors and losses, so the primary value is negated.
        assert_eq!(m.primary(), -2.0);
        let acc = KindMetrics::new("accuracy", vec![("accuracy", 0.75)]);
        assert_eq!(acc.primary(), 0.75);
        assert!(!greater_is_better("hamming_loss") && greater_is_better("f1_macro"));
        // A non-finite value written as `null` reads back as absent; a missing metric is -inf.
        let old: KindMetrics =
            serde_json::from_str(r#"{"metric_for_best_model":"pearson","pearson":null}"#).unwrap();
        assert_eq!(old.get("pearson"), None);
        assert_eq!(old.primary(), f64::NEG_INFINITY);
    }
}
