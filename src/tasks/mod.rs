//! The tasks on one shared (adapted) encoder: heads, losses and metrics.
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
pub mod metrics;
pub mod minbert;
pub mod own;

pub use examples::{Prepared, TaskData};
pub use metrics::{accuracy, overall_score, pearson};

use burn::module::{Module, Param};
use burn::nn::Linear;

use crate::model::dropout::Dropout;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::BatchTensors;
use crate::error::{Error, Result};
use crate::model::Bert;

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

/// The shared encoder and the task heads; the module the optimiser updates.
#[derive(Module, Debug)]
pub struct MultitaskModel {
    /// The (adapted) encoder.
    pub bert: Bert,
    /// SST head `[hidden → 5]`.
    pub sst: Option<Linear>,
    /// Paraphrase head: `[4·hidden → 1]` (bi) or `[hidden → 1]` (cross).
    pub para: Option<Linear>,
    /// STS head `[hidden → 1]` (cross only; bi uses the cosine).
    pub sts: Option<Linear>,
    /// Own-data head `[features → outputs]`: features `4·hidden` for bi-encoded pairs
    /// (`[u, v, |u−v|, u⊙v]`), else `hidden`; outputs the number of classes, or 1 for
    /// regression.
    pub own: Option<Linear>,
    /// Dropout before the heads.
    pub dropout: Dropout,
    /// Sentence pooling.
    #[module(skip)]
    pub pooling: Pooling,
    /// Pair encoding.
    #[module(skip)]
    pub pair_encoding: PairEncoding,
    /// The own-data task of the `own` head.
    #[module(skip)]
    pub own_task: Option<own::OwnTask>,
}

/// A task batch on the device, with its labels.
#[derive(Debug, Clone)]
pub enum TaskBatch {
    /// SST sentences and labels `[batch]` (0..=4).
    Sst {
        /// Tokens.
        x: BatchTensors,
        /// Class ids.
        labels: Tensor<1, Int>,
    },
    /// Sentence pairs: bi-encoded as one batch of `2·batch` sequences (all first sentences, then
    /// all second sentences), or cross-encoded as `batch` pair sequences; labels `[batch]`.
    Pair {
        /// Which pair task.
        task: Task,
        /// Tokens.
        x: BatchTensors,
        /// Targets: 0/1 for paraphrase, `similarity / 5` for STS.
        labels: Tensor<1>,
    },
    /// Own data: sentences (`batch` sequences) or pairs (as [`TaskBatch::Pair`]), with class
    /// ids or regression targets `[batch]`.
    Own {
        /// Tokens.
        x: BatchTensors,
        /// Targets.
        labels: OwnLabels,
    },
}

/// The targets of an own-data batch.
#[derive(Debug, Clone)]
pub enum OwnLabels {
    /// Class ids `[batch]`.
    Classes(Tensor<1, Int>),
    /// Regression targets `[batch]`.
    Values(Tensor<1>),
}

impl TaskBatch {
    /// Examples in the batch (a pair counts once).
    pub fn examples(&self) -> usize {
        match self {
            TaskBatch::Sst { labels, .. } => labels.dims()[0],
            TaskBatch::Pair { labels, .. } => labels.dims()[0],
            TaskBatch::Own {
                labels: OwnLabels::Classes(l),
                ..
            } => l.dims()[0],
            TaskBatch::Own {
                labels: OwnLabels::Values(l),
                ..
            } => l.dims()[0],
        }
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
    /// Builds heads for `cfg.tasks` on `bert`, each `U(−1/√in, 1/√in)` for weight and bias (as
    /// Burn's and PyTorch's default `Linear` init) from the host generator of
    /// [`crate::model::init`], drawn in the order sst, para, sts, own.
    pub fn new(bert: Bert, cfg: &HeadsConfig, device: &Device) -> Self {
        let h = cfg.hidden_size;
        let has = |t| cfg.tasks.contains(&t);
        let para_in = match cfg.pair_encoding {
            PairEncoding::Bi => 4 * h,
            PairEncoding::Cross => h,
        };
        let head = |d_in: usize, d_out: usize| {
            let (w, b) = crate::model::init::linear(d_in, d_out, device);
            Linear {
                weight: Param::from_tensor(w),
                bias: Some(Param::from_tensor(b)),
            }
        };
        let sst = has(Task::Sst).then(|| head(h, 5));
        let para = has(Task::Para).then(|| head(para_in, 1));
        let sts = (has(Task::Sts) && cfg.pair_encoding == PairEncoding::Cross).then(|| head(h, 1));
        let own = cfg.own.as_ref().filter(|_| has(Task::Own)).map(|t| {
            let d_in = if t.is_pair() { para_in } else { h };
            head(d_in, t.kind.outputs())
        });
        MultitaskModel {
            bert,
            sst,
            para,
            sts,
            own,
            dropout: Dropout::new(cfg.head_dropout),
            pooling: cfg.pooling,
            pair_encoding: cfg.pair_encoding,
            own_task: cfg.own.clone().filter(|_| has(Task::Own)),
        }
    }

    /// The task heads under the names their tensors have in `heads.safetensors`: `sst`,
    /// `para`, `sts`, `own`.
    pub fn heads(&self) -> [(&'static str, &Option<Linear>); 4] {
        [
            ("sst", &self.sst),
            ("para", &self.para),
            ("sts", &self.sts),
            ("own", &self.own),
        ]
    }

    /// [`heads`](Self::heads), mutable.
    pub fn heads_mut(&mut self) -> [(&'static str, &mut Option<Linear>); 4] {
        [
            ("sst", &mut self.sst),
            ("para", &mut self.para),
            ("sts", &mut self.sts),
            ("own", &mut self.own),
        ]
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

    /// SST logits `[batch, 5]`.
    ///
    /// # Panics
    /// If the model has no SST head (a programming error: heads follow the task list).
    pub fn sst_logits(&self, x: &BatchTensors) -> Tensor<2> {
        let head = self.sst.as_ref().expect("model has no SST head");
        apply_head(head, self.dropout.forward(self.embed(x)))
    }

    /// Pair scores `[batch]`: paraphrase logits, or STS predictions (cosine in `[-1, 1]` for
    /// bi-encoding, a regression output for cross-encoding) on the `label / 5` scale.
    ///
    /// # Panics
    /// If the needed head is missing (a programming error).
    pub fn pair_scores(&self, task: Task, x: &BatchTensors) -> Tensor<1> {
        let pooled = self.embed(x);
        match self.pair_encoding {
            PairEncoding::Cross => {
                let head = match task {
                    Task::Para => self.para.as_ref(),
                    _ => self.sts.as_ref(),
                }
                .expect("model has no head for this pair task");
                let out = apply_head(head, self.dropout.forward(pooled));
                let [b, _] = out.dims();
                out.reshape([b])
            }
            PairEncoding::Bi => {
                let [b2, h] = pooled.dims();
                let b = b2 / 2;
                let u = pooled.clone().slice([0..b, 0..h]);
                let v = pooled.slice([b..b2, 0..h]);
                match task {
                    Task::Para => {
                        let head = self.para.as_ref().expect("model has no paraphrase head");
                        apply_head(head, self.dropout.forward(pair_features(u, v))).reshape([b])
                    }
                    _ => cosine(u, v),
                }
            }
        }
    }

    /// Own-data outputs `[batch, outputs]`: class logits, or the regression value (`outputs`
    /// = 1). Sentences are pooled; bi-encoded pairs (`2·batch` sequences, first sentences
    /// then second) give `[u, v, |u−v|, u⊙v]`; cross-encoded pairs are one sequence each.
    ///
    /// # Panics
    /// If the model has no own-data head (a programming error: heads follow the task list).
    pub fn own_outputs(&self, x: &BatchTensors) -> Tensor<2> {
        let head = self.own.as_ref().expect("model has no own-data head");
        let pair = self.own_task.as_ref().is_some_and(|t| t.is_pair());
        let pooled = self.embed(x);
        let feats = if pair && self.pair_encoding == PairEncoding::Bi {
            let [b2, h] = pooled.dims();
            let b = b2 / 2;
            let u = pooled.clone().slice([0..b, 0..h]);
            pair_features(u, pooled.slice([b..b2, 0..h]))
        } else {
            pooled
        };
        apply_head(head, self.dropout.forward(feats))
    }

    /// Mean training loss of one batch (scalar `[1]`).
    pub fn loss(&self, batch: &TaskBatch) -> Tensor<1> {
        match batch {
            TaskBatch::Sst { x, labels } => cross_entropy(self.sst_logits(x), labels.clone()),
            TaskBatch::Pair {
                task: Task::Para,
                x,
                labels,
            } => bce_with_logits(self.pair_scores(Task::Para, x), labels.clone()),
            TaskBatch::Pair { task, x, labels } => {
                let d = self.pair_scores(*task, x) - labels.clone();
                d.square().mean()
            }
            TaskBatch::Own { x, labels } => {
                let out = self.own_outputs(x);
                match labels {
                    OwnLabels::Classes(l) => cross_entropy(out, l.clone()),
                    OwnLabels::Values(v) => {
                        let [b, _] = out.dims();
                        (out.reshape([b]) - v.clone()).square().mean()
                    }
                }
            }
        }
    }
}

/// A task head `x·W + b` on `x` `[batch, in]` → `[batch, out]`, as `Linear::forward`, through
/// [`crate::kernels::linear`] (the same product op as the encoder's layers).
fn apply_head(head: &Linear, x: Tensor<2>) -> Tensor<2> {
    crate::kernels::linear(x, head.weight.val(), head.bias.as_ref().map(|b| b.val()))
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

/// Mean binary cross-entropy with logits (numerically stable form, as
/// `torch.nn.functional.binary_cross_entropy_with_logits`): `max(z,0) − z·y + log(1 + e^{−|z|})`.
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let relu = logits.clone().clamp_min(0.0);
    let soft = (logits.clone().abs().neg().exp() + 1.0).log();
    (relu - logits * targets + soft).mean()
}

/// Class-id tensor `[n]` from host labels.
pub fn int_labels(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// Float tensor `[n]` from host values.
pub fn float_labels(labels: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device)
}
