//! STS-B similarity (minBERT): the cosine of the two sentences' embeddings (bi-encoded, as
//! sentence-transformers' `CosineSimilarityLoss`) or a regression output on the pair
//! (cross-encoded), trained with MSE against `label / 5`, reported on 0..5, Pearson.

use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::{apply, features, halves, mse_loss, value_targets};
use crate::error::Result;
use crate::tasks::kind::Split;
use crate::tasks::kind::{KindMetrics, SeqCls, Targets};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Task, cosine, pearson};

/// STS: no head when bi-encoded (the cosine), `[hidden → 1]` when cross-encoded.
#[derive(Debug, Clone, Copy)]
pub struct Sts;

impl Kind for Sts {
    fn task(&self) -> Task {
        Task::Sts
    }

    fn is_pair(&self) -> bool {
        true
    }

    fn head(&self, hidden: usize, encoding: PairEncoding) -> Option<[usize; 2]> {
        (encoding == PairEncoding::Cross).then_some([hidden, 1])
    }

    fn width(&self) -> usize {
        1
    }

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Values(value_targets(labels, 5.0, device))
    }

    fn forward_pooled(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        Some(match model.pair_encoding {
            PairEncoding::Cross => apply(head, features(model, pooled, true)),
            PairEncoding::Bi => {
                let [u, v] = halves(pooled);
                let [b, _] = u.dims();
                cosine(u, v).reshape([b, 1])
            }
        })
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        mse_loss(outputs, targets.values())
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        outputs.mul_scalar(5.0)
    }

    fn label_of(&self, values: &[f32]) -> f64 {
        values[0] as f64
    }

    fn real_valued(&self) -> bool {
        true
    }

    fn preset_files(&self, split: Split) -> &'static [&'static str] {
        match split {
            Split::Train => &["sts-train.csv"],
            Split::Dev => &["sts-dev.csv"],
            Split::Test => &["sts-test-student.csv"],
        }
    }

    fn minbert_output(&self) -> Option<(&'static str, &'static str)> {
        Some(("sts", "Predicted_Similiarity"))
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        KindMetrics::new("pearson", vec![("pearson", pearson(pred, gold))])
    }

    /// The regression output times 5: the similarity on the 0–5 scale.
    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        Ok(SeqCls {
            id2label: vec!["similarity".into()],
            regression: true,
            multi_label: false,
            token: false,
            weight: weight.iter().map(|x| x * 5.0).collect(),
            bias: bias.iter().map(|x| x * 5.0).collect(),
        })
    }
}
