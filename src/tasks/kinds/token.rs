//! Token classification on your own data: one tag per word (named entities, part-of-speech or
//! chunk tags), as transformers' `BertForTokenClassification`: dropout and a linear head on the
//! last hidden state of every word piece, cross-entropy over the pieces that carry a tag (each
//! word's first piece; with `--label-all-tokens` every piece), the other pieces left out as
//! PyTorch's `ignore_index = -100` leaves them. Evaluated per word on its first piece, entities
//! decoded and scored as `seqeval` does ([`crate::tasks::tags`]), the metrics transformers'
//! `run_ner.py` reports.

use std::collections::BTreeMap;

use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::apply;
use crate::data::BatchTensors;
use crate::error::Result;
use crate::tasks::kind::{KindMetrics, SeqCls, Targets, argmax};
use crate::tasks::own_task::{OwnTask, TaskKind};
use crate::tasks::tags::{TagScheme, scores};
use crate::tasks::{Kind, MultitaskModel, NO_TAG, PairEncoding, Prepared, Task};

/// Own-data token classification: the own task whose kind is
/// [`TaskKind::TokenClassification`].
#[derive(Debug, Clone)]
pub struct TokenClassification(pub OwnTask);

impl TokenClassification {
    fn id2label(&self) -> &[String] {
        self.0.kind.id2label()
    }

    /// Word pieces per window, special tokens included (the predictions' rows are padded to it).
    pub fn window(&self) -> usize {
        match self.0.kind {
            TaskKind::TokenClassification { window, .. } => window,
            _ => 0,
        }
    }

    /// How the tags mark entities.
    pub fn scheme(&self) -> TagScheme {
        match self.0.kind {
            TaskKind::TokenClassification { scheme, .. } => scheme,
            _ => TagScheme::Iob2,
        }
    }

    /// The tag a word without pieces is given: `O` when it is a tag, else tag 0.
    fn outside(&self) -> u32 {
        self.id2label().iter().position(|t| t == "O").unwrap_or(0) as u32
    }

    /// Every word's predicted tag id and its probability, sentence by sentence (in sentence
    /// index order), from the tag probabilities `values` (`[n, window, tags]`, row-major) of
    /// `examples` (the windows); a word without pieces is `O` with probability 1.
    pub fn word_predictions(&self, values: &[f32], examples: &[Prepared]) -> Vec<Vec<(u32, f32)>> {
        let k = self.id2label().len().max(1);
        let w = self.width().max(1);
        let mut sentences: BTreeMap<u32, Vec<(u32, f32)>> = BTreeMap::new();
        for (i, e) in examples.iter().enumerate() {
            let Some(words) = &e.words else { continue };
            let s = sentences.entry(words.sentence).or_default();
            for &piece in &words.pieces {
                let at = i * w + piece as usize * k;
                s.push(match values.get(at..at + k) {
                    Some(p) if piece > 0 => {
                        let best = argmax(p);
                        (best as u32, p[best])
                    }
                    _ => (self.outside(), 1.0),
                });
            }
        }
        sentences.into_values().collect()
    }

    /// The predicted and gold tags of every word of `examples`' sentences, sentence by
    /// sentence, from the tag probabilities `values` (`[n, window, tags]`, row-major).
    pub fn word_tags(&self, values: &[f32], examples: &[Prepared]) -> [Vec<Vec<String>>; 2] {
        let names = self.id2label();
        let name = |id: u32| {
            names
                .get(id as usize)
                .map_or("O", String::as_str)
                .to_string()
        };
        let pred = self
            .word_predictions(values, examples)
            .into_iter()
            .map(|s| s.into_iter().map(|(t, _)| name(t)).collect())
            .collect();
        let mut gold: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for e in examples {
            if let Some(words) = &e.words {
                let g = gold.entry(words.sentence).or_default();
                g.extend(words.gold.iter().map(|&t| {
                    if t == NO_TAG {
                        "O".to_string()
                    } else {
                        name(t)
                    }
                }));
            }
        }
        [pred, gold.into_values().collect()]
    }

    /// The tag names, by id.
    pub fn tags(&self) -> &[String] {
        self.id2label()
    }
}

impl Kind for TokenClassification {
    fn task(&self) -> Task {
        Task::Own
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }

    fn is_pair(&self) -> bool {
        false
    }

    fn head(&self, hidden: usize, _encoding: PairEncoding) -> Option<[usize; 2]> {
        Some([hidden, self.id2label().len()])
    }

    /// The tag probabilities of every position of a window: `window × tags`.
    fn width(&self) -> usize {
        self.window() * self.id2label().len()
    }

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Classes(super::class_targets(labels, device))
    }

    /// Each piece's target tag `[batch·seq]` from the examples' `label_ids` (one per piece of
    /// `a`, [`NO_TAG`] where the loss leaves it out), padding left out too.
    fn batch_targets(&self, examples: &[&Prepared], device: &Device) -> Targets {
        let seq = examples
            .iter()
            .map(|e| e.a.ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let n = examples.len() * seq;
        let (mut classes, mut mask) = (vec![0i64; n], vec![0f32; n]);
        for (r, e) in examples.iter().enumerate() {
            for (c, &t) in e.label_ids.iter().enumerate().take(seq) {
                if t != NO_TAG {
                    classes[r * seq + c] = t as i64;
                    mask[r * seq + c] = 1.0;
                }
            }
        }
        let labelled = mask.iter().map(|&m| m as f64).sum();
        Targets::Tokens {
            classes: Tensor::from_data(TensorData::new(classes, [n]), device),
            mask: Box::new(Tensor::from_data(TensorData::new(mask, [n]), device)),
            labelled,
            examples: examples.len(),
        }
    }

    /// Tag logits of every piece, `[batch, seq·tags]`: the encoder's last hidden state
    /// `[batch, seq, hidden]`, dropout, the head.
    fn forward(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        x: &BatchTensors,
    ) -> Tensor<2> {
        let hidden = model
            .bert
            .forward(x.ids.clone(), x.type_ids.clone(), x.mask.clone());
        let [b, s, h] = hidden.dims();
        let feats = model.dropout.forward(hidden.reshape([b * s, h]));
        let logits = apply(head, feats);
        logits.reshape([b, s * self.id2label().len()])
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        let [b, sk] = outputs.dims();
        let k = self.id2label().len().max(1);
        targets.cross_entropy(outputs.reshape([b * sk / k, k]))
    }

    /// Tag probabilities of every piece, padded with zeros to the window:
    /// `[batch, window·tags]`.
    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        let [b, sk] = outputs.dims();
        let k = self.id2label().len().max(1);
        let s = sk / k;
        let probs = softmax(outputs.reshape([b * s, k]), 1).reshape([b, s, k]);
        let window = self.window().max(s);
        let probs = if window > s {
            let pad = Tensor::zeros([b, window - s, k], &probs.device());
            Tensor::cat(vec![probs, pad], 1)
        } else {
            probs
        };
        probs.reshape([b, window * k])
    }

    /// Not a per-example label: the tags are per word ([`TokenClassification::word_tags`]);
    /// the first piece's tag id.
    fn label_of(&self, values: &[f32]) -> f64 {
        let k = self.id2label().len().max(1);
        values.get(k..2 * k).map_or(f64::NAN, |v| argmax(v) as f64)
    }

    fn class_names(&self) -> Vec<String> {
        self.id2label().to_vec()
    }

    /// Token accuracy of predicted tag ids against gold ones (the per-word evaluation is
    /// [`evaluate`](Self::evaluate)).
    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        let same = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
        KindMetrics::new(
            &self.0.metric_for_best_model,
            vec![("accuracy", same as f64 / gold.len().max(1) as f64)],
        )
    }

    /// `seqeval`'s entity-level F1, precision and recall (micro over types), token accuracy,
    /// and each type's F1 as `f1/<type>`, of the words' predicted tags.
    fn evaluate(&self, values: &[f32], examples: &[Prepared]) -> KindMetrics {
        let [pred, gold] = self.word_tags(values, examples);
        let s = scores(&gold, &pred, self.scheme());
        let mut values = vec![
            ("f1".to_string(), s.micro.f1),
            ("precision".to_string(), s.micro.precision),
            ("recall".to_string(), s.micro.recall),
            ("accuracy".to_string(), s.accuracy),
        ];
        values.extend(s.per_type.iter().map(|(t, p)| (format!("f1/{t}"), p.f1)));
        KindMetrics {
            metric_for_best_model: self.0.metric_for_best_model.clone(),
            values,
        }
    }

    fn takes_class_weights(&self) -> bool {
        false
    }

    /// The head as `BertForTokenClassification.classifier` (`id2label` the tags).
    fn seq_cls(&self, weight: Vec<f32>, bias: Vec<f32>, _: usize) -> Result<SeqCls> {
        Ok(SeqCls {
            id2label: self.id2label().to_vec(),
            regression: false,
            multi_label: false,
            token: true,
            weight,
            bias,
        })
    }
}
