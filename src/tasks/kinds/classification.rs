//! Classification on your own data: the file's classes (transformers' `id2label`) on single
//! texts or pairs, cross-entropy over `num_labels` logits as `BertForSequenceClassification`,
//! accuracy, F1 (binary: of class 1), macro-F1 and Matthews correlation (scikit-learn's).

use std::collections::BTreeMap;

use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::{apply, class_targets, features, features_width};
use crate::error::{Error, Result};
use crate::tasks::kind::{KindMetrics, SeqCls, Targets, argmax};
use crate::tasks::metrics::{f1_binary, f1_macro, matthews};
use crate::tasks::own_task::{LabelSummary, OwnTask};
use crate::tasks::own_task::{number, numeric_class};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Task, accuracy};

/// Own-data classification: the own task whose kind is [`TaskKind::Classification`].
#[derive(Debug, Clone)]
pub struct Classification(pub OwnTask);

impl Classification {
    fn id2label(&self) -> &[String] {
        self.0.kind.id2label()
    }
}

/// Whether an own task takes pairs (`true`) or single texts: its own shape, or either for a
/// sequence-classification adapter made elsewhere (`pairs_optional`).
pub fn own_takes(task: &OwnTask, pairs: bool) -> bool {
    !pairs || task.is_pair() || task.pairs_optional
}

impl Kind for Classification {
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

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Classes(class_targets(labels, device))
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
        self.id2label().to_vec()
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        let ids = |v: &[f64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
        let (p, g) = (ids(pred), ids(gold));
        let n = self.id2label().len();
        let mut values = vec![("accuracy", accuracy(&p, &g))];
        if n == 2 {
            values.push(("f1", f1_binary(&p, &g)));
        }
        values.push(("f1_macro", f1_macro(&p, &g, n)));
        values.push(("mcc", matthews(&p, &g, n)));
        KindMetrics::new(&self.0.metric_for_best_model, values)
    }

    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        Ok(SeqCls {
            id2label: self.class_names(),
            regression: false,
            multi_label: false,
            token: false,
            weight,
            bias,
        })
    }

    /// The class id of a label: numeric labels by value (`1.0` is class `1`) when all classes
    /// are numbers, else the label as written.
    fn target(&self, label: &str, source: &str, line: u64) -> Result<f32> {
        let column = &self.0.columns.label;
        let id2label = self.id2label();
        let name = match number(label, source, line, column)? {
            Some(v) if id2label.iter().all(|l| l.parse::<f64>().is_ok()) => numeric_class(v),
            _ => label.to_string(),
        };
        id2label
            .iter()
            .position(|l| *l == name)
            .map(|i| i as f32)
            .ok_or_else(|| {
                Error::data(
                    source,
                    line,
                    format!(
                        "column `{column}`: label `{label}` does not occur in the training data (its classes: {})",
                        id2label.join(", ")
                    ),
                )
            })
    }

    fn stratum(&self, target: f32) -> Option<i64> {
        Some(target as i64)
    }

    fn summarize(&self, targets: &[f32], _: &[Vec<u32>]) -> LabelSummary {
        let mut counts = BTreeMap::new();
        for &t in targets {
            *counts
                .entry(self.id2label()[t as usize].clone())
                .or_default() += 1;
        }
        LabelSummary {
            rows: targets.len(),
            counts,
            range: None,
            labels_per_row: None,
            entities: None,
        }
    }
}
