//! The tasks on one shared (adapted) encoder: the task-kind extension point ([`kind::Kind`]),
//! the kinds ([`kinds`], one file each), the encoder with its heads ([`MultitaskModel`]),
//! pooling, losses and metrics.
//!
//! - SST: 5-way sentiment, a linear head on the pooled sentence, cross-entropy.
//! - Paraphrase (Quora): binary, binary cross-entropy on one logit.
//! - STS: similarity 0..5, Pearson correlation; trained with MSE against `label / 5`.
//! - Your own data ([`own`]): classification into the file's classes (cross-entropy over
//!   `num_labels` logits, as transformers' `BertForSequenceClassification`) or regression (MSE
//!   on the raw value), on single sentences or pairs.
//!
//! Pairs are bi-encoded by default (each sentence pooled on its own: paraphrase head on
//! `[u, v, |u−v|, u⊙v]` as Sentence-BERT, STS prediction `cos(u, v)` as sentence-transformers'
//! `CosineSimilarityLoss`), or cross-encoded (`[CLS] a [SEP] b [SEP]`, one linear head).

pub mod examples;
pub mod kind;
pub mod kinds;
pub mod metrics;
pub mod minbert;
pub mod own;
pub mod own_task;
pub mod retrieval;
pub mod tags;

pub use examples::{NO_TAG, Prepared, TaskData, WindowWords};
pub use kind::{Kind, KindMetrics, PredictionRow, Targets};
pub use metrics::{accuracy, overall_score, pearson};

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::Linear;

use crate::model::dropout::Dropout;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::BatchTensors;
use crate::error::{Error, Result};
use crate::model::Bert;
use crate::model::init::InitRng;

/// A minBERT task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// SST-5 sentiment.
    Sst,
    /// Quora paraphrase detection.
    Para,
    /// STS-B similarity.
    Sts,
    /// Your own data (see [`own`]): the run's `OwnTask` says what it is.
    Own,
}

impl Task {
    /// All tasks, in the order of the overall score.
    pub const ALL: [Task; 3] = [Task::Sst, Task::Para, Task::Sts];

    /// `sst`, `para` or `sts`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst => "sst",
            Task::Para => "para",
            Task::Sts => "sts",
            Task::Own => "own",
        }
    }
}

/// How a sentence is reduced to one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token states over real tokens (how all-MiniLM-L6-v2 was trained).
    Mean,
    /// The `[CLS]` state.
    Cls,
    /// The `[CLS]` state through BERT's pooler (`tanh(dense(h[:, 0]))`), as transformers'
    /// `BertForSequenceClassification` feeds its classifier. Needs a checkpoint with a pooler.
    Pooler,
}

impl Pooling {
    /// The pooling of a sentence-transformers `Pooling` module's `config.json` (`bytes`, file
    /// `name`, usually `1_Pooling/config.json`): `pooling_mode_mean_tokens` is [`Pooling::Mean`],
    /// `pooling_mode_cls_token` [`Pooling::Cls`] (sentence-transformers' `Pooling` keys; a
    /// `pooling_mode` string, `mean` or `cls`, is read too).
    ///
    /// With `hidden` (the encoder's `hidden_size`), a `word_embedding_dimension` in the file
    /// must equal it: a Pooling module copied from another model is refused rather than read.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file: not JSON, no mode set, several modes set at once
    /// (sentence-transformers concatenates them), a mode lorabert does not compute (max,
    /// mean_sqrt_len_tokens, weightedmean, lasttoken), or a `word_embedding_dimension` other
    /// than `hidden`.
    pub fn from_sentence_transformers(
        bytes: &[u8],
        name: &str,
        hidden: Option<usize>,
    ) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::config(name, e.to_string()))?;
        let width = v
            .get("word_embedding_dimension")
            .and_then(serde_json::Value::as_u64);
        if let (Some(w), Some(h)) = (width, hidden)
            && w != h as u64
        {
            return Err(Error::config(
                name,
                format!(
                    "word_embedding_dimension {w} but the model's hidden_size is {h}: this \
                     Pooling configuration belongs to another model (fix it, or pass --pooling \
                     mean or --pooling cls)"
                ),
            ));
        }
        if let Some(mode) = v.get("pooling_mode").and_then(serde_json::Value::as_str) {
            return match mode {
                "mean" => Ok(Pooling::Mean),
                "cls" => Ok(Pooling::Cls),
                other => Err(Error::config(
                    name,
                    format!("pooling_mode `{other}`: lorabert pools by mean or cls"),
                )),
            };
        }
        let on: Vec<&str> = v
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        match on[..] {
            ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
            ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
            [] => Err(Error::config(name, "no pooling_mode_* is true")),
            _ => Err(Error::config(
                name,
                format!(
                    "{} set: lorabert pools by one of pooling_mode_mean_tokens or \
                     pooling_mode_cls_token (pass --pooling to choose)",
                    on.join(", ")
                ),
            )),
        }
    }
}

/// How sentence pairs are fed to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairEncoding {
    /// Each sentence encoded separately (Sentence-BERT).
    Bi,
    /// Both sentences in one sequence with token types.
    Cross,
}

/// Task-head hyper-parameters, saved beside the adapter as `heads_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadsConfig {
    /// Which heads exist.
    pub tasks: Vec<Task>,
    /// Sentence pooling.
    pub pooling: Pooling,
    /// Pair encoding.
    pub pair_encoding: PairEncoding,
    /// Dropout before each head.
    pub head_dropout: f64,
    /// Hidden size of the encoder.
    pub hidden_size: usize,
    /// The own-data task (kind, classes, columns), when `tasks` holds [`Task::Own`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<own::OwnTask>,
}

impl HeadsConfig {
    /// The kinds of its tasks, in the order of [`Task`] (SST, paraphrase, STS, own): the
    /// order their heads are initialised and saved in.
    ///
    /// # Errors
    /// As [`kinds::of_tasks`].
    pub fn kinds(&self) -> Result<Vec<Arc<dyn Kind>>> {
        kinds::of_tasks(&self.tasks, self.own.as_ref())
    }
}

/// The shared encoder and the task heads; the module the optimiser updates.
#[derive(Module, Debug)]
pub struct MultitaskModel {
    /// The (adapted) encoder.
    pub bert: Bert,
    /// The task heads, in the order of [`HeadsConfig::kinds`] (each `[in → out]` as its
    /// kind's [`Kind::head`] says; a kind without a head has none here), named by
    /// `head_names`.
    pub heads: Vec<Linear>,
    /// Dropout before the heads.
    pub dropout: Dropout,
    /// Sentence pooling.
    #[module(skip)]
    pub pooling: Pooling,
    /// Pair encoding.
    #[module(skip)]
    pub pair_encoding: PairEncoding,
    /// The heads' names ([`Kind::head_name`]: `sst`, `para`, `sts`, `own`), in `heads` order.
    #[module(skip)]
    pub head_names: Vec<&'static str>,
}

/// A task batch on the device: its kind, the tokens (bi-encoded pairs as `2·batch` sequences,
/// all first sentences then all second sentences; cross-encoded pairs and single texts as
/// `batch` sequences) and the kind's targets.
#[derive(Debug, Clone)]
pub struct TaskBatch {
    /// The task kind.
    pub kind: Arc<dyn Kind>,
    /// Tokens.
    pub x: BatchTensors,
    /// Targets `[batch]`.
    pub targets: Targets,
}

impl TaskBatch {
    /// Examples in the batch (a pair counts once).
    pub fn examples(&self) -> usize {
        self.targets.len()
    }
}

/// Checks that heads reading `pooling` can sit on `bert`: [`Pooling::Pooler`] needs BERT's
/// pooler (`pooler.dense`). Every path that builds a [`MultitaskModel`] (a new run, a restored
/// checkpoint) calls it first, so [`MultitaskModel::embed`] cannot meet a missing pooler.
///
/// # Errors
/// [`Error::Invalid`] naming the pooler.
pub fn check_pooling(bert: &Bert, pooling: Pooling) -> Result<()> {
    if pooling == Pooling::Pooler && bert.pooler.is_none() {
        return Err(Error::Invalid(
            "the heads read BERT's pooler output (pooling: pooler), and this base model has no \
             pooler (pooler.dense): use the model the run was trained on (--model), or train \
             with --pooling mean or cls"
                .into(),
        ));
    }
    Ok(())
}

impl MultitaskModel {
    /// Builds the heads of `cfg`'s task kinds ([`HeadsConfig::kinds`], in that order) on
    /// `bert` ([`with_kinds`](Self::with_kinds)).
    ///
    /// # Errors
    /// As [`HeadsConfig::kinds`].
    pub fn new(bert: Bert, cfg: &HeadsConfig, rng: &mut InitRng, device: &Device) -> Result<Self> {
        Ok(Self::with_kinds(bert, &cfg.kinds()?, cfg, rng, device))
    }

    /// Builds the heads of `kinds` (in that order; `cfg.tasks` is not read) on `bert`, each
    /// `U(−1/√in, 1/√in)` for weight and bias (as Burn's and PyTorch's default `Linear` init)
    /// from the host generator of [`crate::model::init`]; pooling, pair encoding, head dropout
    /// and hidden size from `cfg`.
    pub fn with_kinds(
        bert: Bert,
        kinds: &[Arc<dyn Kind>],
        cfg: &HeadsConfig,
        rng: &mut InitRng,
        device: &Device,
    ) -> Self {
        let mut heads = Vec::new();
        let mut head_names = Vec::new();
        for kind in kinds {
            if let Some([d_in, d_out]) = kind.head(cfg.hidden_size, cfg.pair_encoding) {
                let (w, b) = rng.linear(d_in, d_out, device);
                heads.push(Linear {
                    weight: Param::from_tensor(w),
                    bias: Some(Param::from_tensor(b)),
                });
                head_names.push(kind.head_name());
            }
        }
        MultitaskModel {
            bert,
            heads,
            dropout: Dropout::new(cfg.head_dropout, "heads.dropout"),
            pooling: cfg.pooling,
            pair_encoding: cfg.pair_encoding,
            head_names,
        }
    }

    /// The head named `name` ([`Kind::head_name`]), if the model has it.
    pub fn head(&self, name: &str) -> Option<&Linear> {
        self.head_names
            .iter()
            .position(|n| *n == name)
            .map(|i| &self.heads[i])
    }

    /// The task heads under the names their tensors have in `heads.safetensors`.
    pub fn named_heads(&self) -> impl Iterator<Item = (&'static str, &Linear)> {
        self.head_names.iter().copied().zip(&self.heads)
    }

    /// [`named_heads`](Self::named_heads), mutable.
    pub fn named_heads_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut Linear)> {
        self.head_names.iter().copied().zip(&mut self.heads)
    }

    /// Encodes and pools: `[batch, seq]` tokens → `[batch, hidden]`.
    ///
    /// # Panics
    /// With [`Pooling::Pooler`] on an encoder without a pooler (refused when the model is built).
    pub fn embed(&self, x: &BatchTensors) -> Tensor<2> {
        let hidden = self
            .bert
            .forward(x.ids.clone(), x.type_ids.clone(), x.mask.clone());
        match self.pooling {
            Pooling::Pooler => self
                .bert
                .pool(hidden)
                .expect("pooler pooling needs a checkpoint with a pooler"),
            other => pool(hidden, x.mask.clone(), other),
        }
    }

    /// Raw outputs `[batch, width]` of `kind` on `x` (logits, a score or a value; see
    /// [`Kind::forward`]).
    pub fn outputs(&self, kind: &dyn Kind, x: &BatchTensors) -> Tensor<2> {
        kind.forward(self, self.head(kind.head_name()), x)
    }

    /// Mean training loss of one batch (scalar `[1]`), as its kind computes it.
    pub fn loss(&self, batch: &TaskBatch) -> Tensor<1> {
        let kind = batch.kind.as_ref();
        kind.loss(self.outputs(kind, &batch.x), &batch.targets)
    }
}

/// Sentence-BERT's pair features `[u, v, |u−v|, u⊙v]`: `[batch, h]` each → `[batch, 4·h]`.
pub fn pair_features(u: Tensor<2>, v: Tensor<2>) -> Tensor<2> {
    Tensor::cat(
        vec![u.clone(), v.clone(), (u.clone() - v.clone()).abs(), u * v],
        1,
    )
}

/// Pools `[batch, seq, hidden]` with `mask` `[batch, seq]` into `[batch, hidden]`
/// ([`Pooling::Pooler`] needs the encoder: see [`MultitaskModel::embed`]; here it is the
/// `[CLS]` state).
///
/// # Panics
/// When `mask` is not `[batch, seq]` for `hidden`.
pub fn pool(hidden: Tensor<3>, mask: Tensor<2>, pooling: Pooling) -> Tensor<2> {
    let [b, s, h] = hidden.dims();
    match pooling {
        Pooling::Cls | Pooling::Pooler => hidden.slice([0..b, 0..1]).reshape([b, h]),
        Pooling::Mean => {
            let m = mask.reshape([b, s, 1]);
            let summed = (hidden * m.clone()).sum_dim(1).reshape([b, h]);
            let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
            summed / count
        }
    }
}

/// Row-wise cosine similarity of `[batch, h]` tensors → `[batch]` (norms clamped at 1e-8 as
/// `torch.nn.functional.cosine_similarity`).
///
/// # Panics
/// When `u` and `v` differ in shape.
pub fn cosine(u: Tensor<2>, v: Tensor<2>) -> Tensor<1> {
    let [b, _] = u.dims();
    let dot = (u.clone() * v.clone()).sum_dim(1);
    let nu = u.square().sum_dim(1).sqrt().clamp_min(1e-8);
    let nv = v.square().sum_dim(1).sqrt().clamp_min(1e-8);
    (dot / (nu * nv)).reshape([b])
}

/// Mean cross-entropy of `logits` `[batch, classes]` against class ids `[batch]`.
///
/// # Panics
/// When `labels` is not `[batch]` or holds a class id outside `0..classes`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    logp.gather(1, labels.reshape([b, 1])).mean().neg()
}

/// Class-weighted mean cross-entropy of `logits` `[batch, classes]` against class ids
/// `[batch]`, each example weighted by its class's weight `weights` `[batch]`:
/// `Σ wᵢ·nllᵢ / Σ wᵢ`, as `torch.nn.functional.cross_entropy(weight=w, reduction="mean")`.
///
/// # Panics
/// When `labels` or `weights` is not `[batch]`, or a class id is outside `0..classes`.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    weights: Tensor<1>,
) -> Tensor<1> {
    let [b, _] = logits.dims();
    let nll = log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .reshape([b])
        .neg();
    (nll * weights.clone()).sum() / weights.sum()
}

/// Mean cross-entropy of `logits` `[n, classes]` against class ids `[n]` over the rows whose
/// `mask` `[n]` is 1 (`labelled` of them, counted on the host): `Σ maskᵢ·nllᵢ / labelled`, as
/// `torch.nn.functional.cross_entropy(ignore_index=-100)` over token tags (0 when no row is
/// labelled, where PyTorch gives NaN).
///
/// # Panics
/// When `labels` or `mask` is not `[n]`, or a class id is outside `0..classes`.
pub fn masked_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    mask: Tensor<1>,
    labelled: f64,
) -> Tensor<1> {
    let [n, _] = logits.dims();
    let nll = log_softmax(logits, 1)
        .gather(1, labels.reshape([n, 1]))
        .reshape([n])
        .neg();
    (nll * mask).sum() / labelled.max(1.0) as f32
}

/// Mean binary cross-entropy with logits (numerically stable form, as
/// `torch.nn.functional.binary_cross_entropy_with_logits`): `max(z,0) − z·y + log(1 + e^{−|z|})`.
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let relu = logits.clone().clamp_min(0.0);
    let soft = (logits.clone().abs().neg().exp() + 1.0).log();
    (relu - logits * targets + soft).mean()
}

/// Mean binary cross-entropy with logits over every (example, label) cell of `logits`
/// `[batch, labels]` against 0/1 `targets` of the same shape, each label's positive term
/// weighted by `pos_weight` `[labels]` when given: `torch.nn.BCEWithLogitsLoss(pos_weight=w)`
/// (reduction `mean`), in its stable form `(1 − y)·z + (1 + (w − 1)·y)·(log(1 + e^{−|z|}) +
/// max(−z, 0))`.
///
/// # Panics
/// When the shapes differ.
pub fn bce_with_logits_labels(
    logits: Tensor<2>,
    targets: Tensor<2>,
    pos_weight: Option<Tensor<1>>,
) -> Tensor<1> {
    let [_, k] = logits.dims();
    let soft = (logits.clone().abs().neg().exp() + 1.0).log() + logits.clone().neg().clamp_min(0.0);
    let neg = (targets.clone().neg() + 1.0) * logits;
    let pos = match pos_weight {
        Some(w) => (targets * (w.reshape([1, k]) - 1.0) + 1.0) * soft,
        None => soft,
    };
    (neg + pos).mean()
}
