//! SST-5 sentiment (minBERT): five classes on the pooled sentence, cross-entropy, accuracy.

use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::{apply, class_targets, features, numbered};
use crate::error::Result;
use crate::tasks::kind::Split;
use crate::tasks::kind::{KindMetrics, SeqCls, Targets, argmax};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Task, accuracy};

/// SST-5: a linear head `[hidden → 5]` on the pooled sentence.
#[derive(Debug, Clone, Copy)]
pub struct Sst;

impl Kind for Sst {
    fn task(&self) -> Task {
        Task::Sst
    }

    fn is_pair(&self) -> bool {
        false
    }

    fn head(&self, hidden: usize, _: PairEncoding) -> Option<[usize; 2]> {
        Some([hidden, 5])
    }

    fn width(&self) -> usize {
        5
    }

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Classes(class_targets(labels, device))
    }

    fn forward_pooled(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        Some(apply(head, features(model, pooled, false)))
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        targets.cross_entropy(outputs)
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        softmax(outputs, 1)
    }

    fn label_of(&self, values: &[f32]) -> f64 {
        argmax(values) as f64
    }

    fn takes_class_weights(&self) -> bool {
        true
    }

    fn class_names(&self) -> Vec<String> {
        numbered(5)
    }

    fn preset_files(&self, split: Split) -> &'static [&'static str] {
        match split {
            Split::Train => &["ids-sst-train.csv"],
            Split::Dev => &["ids-sst-dev.csv"],
            Split::Test => &["ids-sst-test-student.csv"],
        }
    }

    fn minbert_output(&self) -> Option<(&'static str, &'static str)> {
        Some(("sst", "Predicted_Sentiment"))
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        KindMetrics::new("accuracy", vec![("accuracy", accuracy_of(pred, gold))])
    }

    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        Ok(SeqCls {
            id2label: numbered(bias.len()),
            regression: false,
            multi_label: false,
            token: false,
            weight,
            bias,
        })
    }
}

/// Accuracy of class ids given as `f64`.
pub fn accuracy_of(pred: &[f64], gold: &[f64]) -> f64 {
    let ids = |v: &[f64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
    accuracy(&ids(pred), &ids(gold))
}
