//! Regression on your own data: one real-valued output on single texts or pairs, MSE on the
//! raw value (transformers' `problem_type="regression"`), Pearson, Spearman and MSE.

use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::classification::own_takes;
use super::{apply, features, features_width, mse_loss, value_targets};
use crate::error::{Error, Result};
use crate::tasks::kind::{KindMetrics, SeqCls, Targets};
use crate::tasks::metrics::{mse, spearman};
use crate::tasks::own_task::number;
use crate::tasks::own_task::{LabelSummary, OwnTask};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Task, pearson};

/// Own-data regression: the own task whose kind is `TaskKind::Regression`.
#[derive(Debug, Clone)]
pub struct Regression(pub OwnTask);

impl Kind for Regression {
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
        Some([features_width(hidden, self.is_pair(), encoding), 1])
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
        Some(apply(head, features(model, pooled, self.is_pair())))
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        mse_loss(outputs, targets.values())
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        outputs
    }

    fn label_of(&self, values: &[f32]) -> f64 {
        values[0] as f64
    }

    fn real_valued(&self) -> bool {
        true
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        KindMetrics::new(
            &self.0.metric_for_best_model,
            vec![
                ("pearson", pearson(pred, gold)),
                ("spearman", spearman(pred, gold)),
                ("mse", mse(pred, gold)),
            ],
        )
    }

    /// One output named after the label column (`LABEL_0` when it has no name).
    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        let label = &self.0.columns.label;
        let name = if label.is_empty() { "LABEL_0" } else { label };
        Ok(SeqCls {
            id2label: vec![name.to_string()],
            regression: true,
            multi_label: false,
            token: false,
            weight,
            bias,
        })
    }

    fn target(&self, label: &str, source: &str, line: u64) -> Result<f32> {
        let column = &self.0.columns.label;
        number(label, source, line, column)?
            .map(|v| v as f32)
            .ok_or_else(|| {
                Error::data(
                    source,
                    line,
                    format!("column `{column}`: label `{label}` is not a number"),
                )
            })
    }

    fn summarize(&self, targets: &[f32], _: &[Vec<u32>]) -> LabelSummary {
        let range = (!targets.is_empty()).then(|| {
            let v: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            [mean, min, max]
        });
        LabelSummary {
            rows: targets.len(),
            counts: Default::default(),
            range,
            labels_per_row: None,
            entities: None,
        }
    }
}
