//! Sentence embeddings on your own data, trained as sentence-transformers trains them: no head,
//! the pooled sentence is the output; `MultipleNegativesRankingLoss` (and its symmetric form)
//! on anchor/positive pairs with optional hard negatives, `CoSENTLoss` or
//! `CosineSimilarityLoss` on scored pairs; evaluated by retrieval (`InformationRetrievalEvaluator`)
//! or similarity (`EmbeddingSimilarityEvaluator`) metrics ([`crate::tasks::retrieval`]).
//!
//! A batch of `b` examples of `n` texts each (anchor, positive, then each hard negative) is
//! encoded as `n·b` sequences, role by role; [`Kind::forward`] gives `[b, n·h]`: each example's
//! pooled texts side by side, which is also what evaluation reads back.

use std::collections::{BTreeMap, HashMap};

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::tasks::kind::{KindMetrics, Targets};
use crate::tasks::own_task::{
    EmbeddingData, EmbeddingLoss, LabelSummary, MatryoshkaDim, OwnTask, TaskKind, matryoshka_metric,
};
use crate::tasks::retrieval::{self, cosines, normalized};
use crate::tasks::{Kind, MultitaskModel, PairEncoding, Prepared, Task, cross_entropy};

/// An own-data embedding task: the own task whose kind is `TaskKind::Embedding`.
#[derive(Debug, Clone)]
pub struct Embedding(pub OwnTask);

impl Embedding {
    fn spec(&self) -> (&EmbeddingData, EmbeddingLoss, f64) {
        match &self.0.kind {
            TaskKind::Embedding {
                data, loss, scale, ..
            } => (data, *loss, *scale),
            _ => unreachable!("an embedding kind holds an embedding task"),
        }
    }

    /// `MatryoshkaLoss`'s dimensions, largest first; empty without it.
    fn matryoshka(&self) -> &[MatryoshkaDim] {
        match &self.0.kind {
            TaskKind::Embedding { matryoshka, .. } => matryoshka,
            _ => &[],
        }
    }

    /// The retrieval metrics of `examples` at a dimension `d`, `text(i, j, d)` giving the first
    /// `d` components of text `j` of example `i` (see [`Kind::evaluate`]).
    fn retrieval<'a>(
        &self,
        examples: &'a [Prepared],
        text: impl Fn(usize, usize, usize) -> &'a [f32] + 'a,
    ) -> impl Fn(usize) -> Vec<(&'static str, f64)> + 'a {
        let labelled = matches!(self.spec().0, EmbeddingData::Labelled);
        // Where each text is first seen: (example, role).
        let mut at: HashMap<&[u32], (usize, usize)> = HashMap::new();
        let mut pairs = Vec::new();
        let mut docs = Vec::new();
        for (i, e) in examples.iter().enumerate() {
            let keys = e.texts();
            for (j, k) in keys.iter().enumerate() {
                at.entry(k).or_insert((i, j));
            }
            // A NaN label: documents of a corpus file only (`own::embedding::corpus_examples`).
            let corpus_only = e.label.is_nan();
            if !corpus_only && (!labelled || e.label > 0.5) {
                pairs.push((keys[0], keys[1]));
            }
            let from = if labelled || corpus_only { 0 } else { 1 };
            docs.extend(keys[from..].iter().copied());
        }
        let (r, queries, corpus) = retrieval::build(&pairs, &docs);
        let place =
            |keys: &[&[u32]]| -> Vec<(usize, usize)> { keys.iter().map(|k| at[k]).collect() };
        let (queries, corpus) = (place(&queries), place(&corpus));
        move |d| {
            let gather = |at: &[(usize, usize)]| {
                let v: Vec<f32> = at
                    .iter()
                    .flat_map(|&(i, j)| text(i, j, d).to_vec())
                    .collect();
                normalized(&v, d)
            };
            retrieval::retrieval_metrics(&gather(&queries), &gather(&corpus), d, &r)
        }
    }

    /// The loss on `outputs` (`[b, n·h]`, each example's `n` pooled texts side by side) as
    /// sentence-transformers computes it for the kind's loss (see [`EmbeddingLoss`]).
    fn base_loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        let (_, loss, scale) = self.spec();
        let [b, w] = outputs.dims();
        let n = self.texts();
        let h = w / n;
        let role = |j: usize| unit(outputs.clone().slice([0..b, j * h..(j + 1) * h]));
        match loss {
            EmbeddingLoss::Mnrl | EmbeddingLoss::MnrlSymmetric => {
                let anchors = role(0);
                let candidates = Tensor::cat((1..n).map(role).collect(), 0);
                let scores = anchors.matmul(candidates.transpose()) * scale;
                let forward = cross_entropy(scores.clone(), targets.classes());
                if loss == EmbeddingLoss::Mnrl {
                    return forward;
                }
                let backward =
                    cross_entropy(scores.slice([0..b, 0..b]).transpose(), targets.classes());
                (forward + backward) / 2.0
            }
            EmbeddingLoss::Cosent => {
                let cos = (role(0) * role(1)).sum_dim(1).reshape([b]) * scale;
                let y = targets.values();
                let diff = cos.clone().reshape([b, 1]) - cos.reshape([1, b]);
                let lower = y.clone().reshape([b, 1]).lower(y.reshape([1, b])).float();
                log1p_sum_exp(diff.reshape([b * b]), lower.reshape([b * b]))
            }
            EmbeddingLoss::Cosine => {
                let cos = (role(0) * role(1)).sum_dim(1).reshape([b]);
                (cos - targets.values()).square().mean()
            }
        }
    }

    /// Texts per example: anchor and positive (or the two sentences), then the hard negatives.
    pub fn texts(&self) -> usize {
        match self.spec().0 {
            EmbeddingData::Pairs { negatives } => 2 + negatives,
            EmbeddingData::Labelled | EmbeddingData::Scored { .. } => 2,
        }
    }
}

/// Each row of `x` (`[rows, width]`) scaled to unit length (norms clamped at 1e-12, as
/// `torch.nn.functional.normalize`).
fn unit(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `log(1 + Σ exp(v))` over the entries of `v` (`[n]`) that `keep` (`[n]`, 1 or 0) marks: the
/// log-sum-exp of `[0, v...]` that `CoSENTLoss` takes, stable (the largest term taken out).
fn log1p_sum_exp(v: Tensor<1>, keep: Tensor<1>) -> Tensor<1> {
    let masked = v.clone() * keep.clone() + (keep.clone().neg() + 1.0) * -1e4;
    let m = masked.clone().max().clamp_min(0.0).detach();
    let [n] = masked.dims();
    let sum = (masked - m.clone().expand([n])).exp().sum() + m.clone().neg().exp();
    sum.log() + m
}

impl Kind for Embedding {
    fn task(&self) -> Task {
        Task::Own
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }

    fn is_pair(&self) -> bool {
        true
    }

    fn takes(&self, _pairs: bool) -> bool {
        false
    }

    fn head(&self, _hidden: usize, _encoding: PairEncoding) -> Option<[usize; 2]> {
        None
    }

    fn width(&self) -> usize {
        self.texts()
    }

    /// Scored pairs: the scores scaled to `[0, 1]` (the cosine's target in
    /// `CosineSimilarityLoss`; CoSENT reads only their order); otherwise each anchor's own
    /// positive, its index in the batch.
    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        match self.spec() {
            (EmbeddingData::Scored { .. }, ..) => Targets::Values(Tensor::from_data(
                TensorData::new(labels.to_vec(), [labels.len()]),
                device,
            )),
            _ => {
                let ids: Vec<i64> = (0..labels.len() as i64).collect();
                Targets::Classes(Tensor::<1, Int>::from_data(
                    TensorData::new(ids, [labels.len()]),
                    device,
                ))
            }
        }
    }

    fn forward_pooled(
        &self,
        _: &MultitaskModel,
        _: Option<&Linear>,
        pooled: Tensor<2>,
    ) -> Option<Tensor<2>> {
        let [rows, h] = pooled.dims();
        let n = self.texts();
        let b = rows / n;
        Some(
            pooled
                .reshape([n, b, h])
                .swap_dims(0, 1)
                .reshape([b, n * h]),
        )
    }

    /// sentence-transformers' losses on the batch's embeddings (see [`EmbeddingLoss`]); with
    /// `MatryoshkaLoss`, the weighted sum of the loss on each dimension's leading components
    /// of every embedding (sentence-transformers' `MatryoshkaLoss`, all dimensions each step).
    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        let dims = self.matryoshka();
        if dims.is_empty() {
            return self.base_loss(outputs, targets);
        }
        let [b, w] = outputs.dims();
        let n = self.texts();
        let h = w / n;
        let mut total: Option<Tensor<1>> = None;
        for m in dims {
            let cut = if m.dim >= h {
                outputs.clone()
            } else {
                let d = m.dim;
                outputs
                    .clone()
                    .reshape([b, n, h])
                    .slice([0..b, 0..n, 0..d])
                    .reshape([b, n * d])
            };
            let l = self.base_loss(cut, targets) * m.weight;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        total.unwrap_or_else(|| self.base_loss(outputs, targets))
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        outputs
    }

    /// The cosine of the example's first two texts.
    fn label_of(&self, values: &[f32]) -> f64 {
        let h = values.len() / self.texts();
        cosines(&values[..h], &values[h..2 * h], h)[0]
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        KindMetrics::new(
            &self.0.metric_for_best_model,
            vec![
                ("pearson", crate::tasks::pearson(pred, gold)),
                ("spearman", crate::tasks::metrics::spearman(pred, gold)),
            ],
        )
    }

    /// Scored pairs: the similarity metrics of the pairs' cosines against their scores.
    /// Otherwise retrieval: queries are the anchors (labelled pairs: the first sentences of
    /// the pairs labelled 1), the corpus every positive and hard negative (labelled pairs:
    /// every text of the file), relevant are each query's positives (a query's own text is
    /// left out of its ranking), and every text of the corpus-only examples a corpus file adds
    /// (`NaN` label); texts are the same when their tokens are. With
    /// `MatryoshkaLoss`, the same metrics follow on the first `d` components of the embeddings
    /// for each smaller dimension `d`, named `<metric>/dim_<d>` (as sentence-transformers'
    /// evaluators with `truncate_dim`).
    fn evaluate(&self, values: &[f32], examples: &[Prepared]) -> KindMetrics {
        let n = self.texts();
        let stride = values.len() / examples.len().max(1);
        let h = stride / n;
        // Text `j` of example `i`, its first `d` components.
        let text = |i: usize, j: usize, d: usize| {
            let at = i * stride + j * h;
            &values[at..at + d]
        };
        let smaller = self.matryoshka().iter().map(|m| m.dim).filter(|&d| d < h);
        let dims: Vec<usize> = std::iter::once(h).chain(smaller).collect();
        let at_dim: Box<dyn Fn(usize) -> Vec<(&'static str, f64)> + '_> =
            if let EmbeddingData::Scored { .. } = self.spec().0 {
                let gold: Vec<f64> = examples.iter().map(|e| e.label as f64).collect();
                Box::new(move |d| {
                    let role = |j: usize| -> Vec<f32> {
                        (0..examples.len())
                            .flat_map(|i| text(i, j, d).to_vec())
                            .collect()
                    };
                    retrieval::similarity_metrics(&role(0), &role(1), d, &gold)
                })
            } else {
                Box::new(self.retrieval(examples, text))
            };
        let mut out = Vec::new();
        for (k, &d) in dims.iter().enumerate() {
            for (name, v) in at_dim(d) {
                let name = if k == 0 {
                    name.to_string()
                } else {
                    matryoshka_metric(name, d)
                };
                out.push((name, v));
            }
        }
        KindMetrics {
            metric_for_best_model: self.0.metric_for_best_model.clone(),
            values: out,
        }
    }

    fn distinct_batches(&self) -> bool {
        self.spec().1.in_batch()
    }

    fn evaluates_before_training(&self) -> bool {
        true
    }

    fn target(&self, label: &str, source: &str, line: u64) -> Result<f32> {
        let column = &self.0.columns.label;
        let err = |what: String| Error::data(source, line, format!("column `{column}`: {what}"));
        match self.spec().0 {
            EmbeddingData::Pairs { .. } => Ok(1.0),
            EmbeddingData::Labelled => match label.parse::<f64>() {
                Ok(v) if v == 0.0 || v == 1.0 => Ok(v as f32),
                _ => Err(err(format!(
                    "label `{label}` is not 0 or 1 (pairs for embeddings are labelled 1 for \
                     duplicates or relevant, 0 otherwise)"
                ))),
            },
            EmbeddingData::Scored { lo, hi } => match label.parse::<f64>() {
                Ok(v) if v.is_finite() && (*lo..=*hi).contains(&v) => {
                    Ok(((v - lo) / (hi - lo)) as f32)
                }
                Ok(v) if v.is_finite() => Err(err(format!(
                    "score {label} is outside the declared range {lo}..{hi} (set it with \
                     --score-range LO,HI; in the page, the score range field)"
                ))),
                _ => Err(err(format!("score `{label}` is not a finite number"))),
            },
        }
    }

    fn summarize(&self, targets: &[f32], _: &[Vec<u32>]) -> LabelSummary {
        let mut counts = BTreeMap::new();
        let mut range = None;
        match self.spec().0 {
            EmbeddingData::Pairs { .. } => {}
            EmbeddingData::Labelled => {
                for &t in targets {
                    *counts.entry(format!("{t}")).or_insert(0) += 1;
                }
            }
            EmbeddingData::Scored { lo, hi } => {
                let v: Vec<f64> = targets.iter().map(|&t| lo + t as f64 * (hi - lo)).collect();
                if !v.is_empty() {
                    let mean = v.iter().sum::<f64>() / v.len() as f64;
                    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    range = Some([mean, min, max]);
                }
            }
        }
        LabelSummary {
            rows: targets.len(),
            counts,
            range,
            labels_per_row: None,
            entities: None,
        }
    }
}
