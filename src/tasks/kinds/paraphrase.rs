//! Quora paraphrase detection (minBERT): one logit on a sentence pair (Sentence-BERT's
//! `[u, v, |u−v|, u⊙v]` when bi-encoded, the pooled pair when cross-encoded), binary
//! cross-entropy, accuracy of `σ(z) > 0.5`.

use burn::nn::Linear;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::sst::accuracy_of;
use super::{apply, features, features_width, value_targets};
use crate::error::Result;
use crate::tasks::kind::Split;
use crate::tasks::kind::{KindMetrics, PredictionRow, SeqCls, Targets};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Task, bce_with_logits};

/// Paraphrase: a head `[features → 1]`, its logit `z`; predictions `σ(z)`.
#[derive(Debug, Clone, Copy)]
pub struct Paraphrase;

impl Kind for Paraphrase {
    fn task(&self) -> Task {
        Task::Para
    }

    fn is_pair(&self) -> bool {
        true
    }

    fn head(&self, hidden: usize, encoding: PairEncoding) -> Option<[usize; 2]> {
        Some([features_width(hidden, true, encoding), 1])
    }

    fn width(&self) -> usize {
        1
    }

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Values(value_targets(labels, 1.0, device))
    }

    fn forward_pooled(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        Some(apply(head, features(model, pooled, true)))
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        let [b, _] = outputs.dims();
        bce_with_logits(outputs.reshape([b]), targets.values())
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        sigmoid(outputs)
    }

    fn label_of(&self, values: &[f32]) -> f64 {
        (values[0] > 0.5) as u8 as f64
    }

    fn class_names(&self) -> Vec<String> {
        vec!["0".into(), "1".into()]
    }

    fn preset_files(&self, split: Split) -> &'static [&'static str] {
        match split {
            Split::Train => &["quora-train.csv", "quora-train-partial.csv"],
            Split::Dev => &["quora-dev.csv"],
            Split::Test => &["quora-test-student.csv"],
        }
    }

    fn minbert_output(&self) -> Option<(&'static str, &'static str)> {
        Some(("para", "Predicted_Is_Paraphrase"))
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        KindMetrics::new("accuracy", vec![("accuracy", accuracy_of(pred, gold))])
    }

    /// Class `1`'s probability is the score; both classes' probabilities are listed.
    fn prediction_row(&self, id: &str, values: &[f32]) -> PredictionRow {
        let p = values[0] as f64;
        PredictionRow {
            id: id.to_string(),
            task: self.name(),
            label: Some(if p >= 1.0 - p { "1" } else { "0" }.to_string()),
            score: p,
            labels: None,
            probabilities: vec![("0".into(), 1.0 - p), ("1".into(), p)],
        }
    }

    /// The logit `z` as two logits `[0, z]`: their softmax is `[1 − σ(z), σ(z)]`.
    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, hidden: usize) -> Result<SeqCls> {
        let mut w = vec![0.0; hidden];
        w.extend(weight);
        Ok(SeqCls {
            id2label: vec!["0".into(), "1".into()],
            regression: false,
            multi_label: false,
            token: false,
            weight: w,
            bias: vec![0.0, bias[0]],
        })
    }
}
