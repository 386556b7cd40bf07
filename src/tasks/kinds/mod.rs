//! The task kinds, one file each, and the registry that maps a run's tasks to them ([`of`]).
//!
//! - [`sst`]: SST-5 sentiment, five classes on the pooled sentence;
//! - [`paraphrase`]: Quora paraphrase, one logit on a pair;
//! - [`sts`]: STS-B similarity on 0..5, the cosine of two embeddings or a cross-encoded score;
//! - [`classification`], [`regression`] and [`multi_label`]: your own data's classes,
//!   real-valued target or any number of labels per row, on single texts or pairs;
//! - [`embedding`]: sentence embeddings on your own pairs, sentence-transformers' losses and
//!   evaluators;
//! - [`token`]: a tag per word (named entities) from CoNLL or JSON Lines files, `seqeval`'s
//!   entity metrics.
//!
//! Adding a kind: a new file here implementing [`Kind`] and one line in [`task_kind`] (or, for
//! an own-data label kind, in [`own`]); see "How to add a task kind" in `docs/architecture.md`.

pub mod classification;
pub mod embedding;
pub mod multi_label;
pub mod paraphrase;
pub mod regression;
pub mod sst;
pub mod sts;
pub mod token;

use std::sync::Arc;

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::kind::Kind;
use super::own_task::{OwnTask, TaskKind};
use super::{HeadsConfig, MultitaskModel, PairEncoding, Task, pair_features};
use crate::error::{Error, Result};

/// The kind of `task` in a run or checkpoint described by `heads` (for [`Task::Own`], its
/// own-data task).
///
/// # Errors
/// As [`task_kind`].
pub fn of(task: Task, heads: &HeadsConfig) -> Result<Arc<dyn Kind>> {
    task_kind(task, heads.own.as_ref())
}

/// The registry: the kind of `task` and, for [`Task::Own`], of the own-data task `own`. One
/// line per kind.
///
/// # Errors
/// [`Error::Invalid`] for [`Task::Own`] without an own-data task.
pub fn task_kind(task: Task, own: Option<&OwnTask>) -> Result<Arc<dyn Kind>> {
    Ok(match task {
        Task::Sst => Arc::new(sst::Sst),
        Task::Para => Arc::new(paraphrase::Paraphrase),
        Task::Sts => Arc::new(sts::Sts),
        Task::Own => self::own(own.ok_or_else(|| {
            Error::Invalid(
                "the own-data task is not described (heads_config.json has no `own`)".into(),
            )
        })?),
    })
}

/// The kinds of `tasks` (each once, in the order of [`Task`]: SST, paraphrase, STS, own, the
/// order their heads are initialised and saved in), own data as `own` describes it.
///
/// # Errors
/// As [`task_kind`].
pub fn of_tasks(tasks: &[Task], own: Option<&OwnTask>) -> Result<Vec<Arc<dyn Kind>>> {
    let mut tasks = tasks.to_vec();
    tasks.sort();
    tasks.dedup();
    tasks.into_iter().map(|t| task_kind(t, own)).collect()
}

/// The kind of an own-data task, by what its label column holds.
pub fn own(task: &OwnTask) -> Arc<dyn Kind> {
    match &task.kind {
        TaskKind::Classification { .. } => Arc::new(classification::Classification(task.clone())),
        TaskKind::Regression => Arc::new(regression::Regression(task.clone())),
        TaskKind::MultiLabel { .. } => Arc::new(multi_label::MultiLabel(task.clone())),
        TaskKind::Embedding { .. } => Arc::new(embedding::Embedding(task.clone())),
        TaskKind::TokenClassification { .. } => Arc::new(token::TokenClassification(task.clone())),
    }
}

/// The kind of a minBERT task.
///
/// # Panics
/// For [`Task::Own`] (own data needs its task: [`own`]).
pub fn minbert(task: Task) -> Arc<dyn Kind> {
    match task_kind(task, None) {
        Ok(kind) => kind,
        Err(_) => panic!("own data is not a minBERT task"),
    }
}

/// The head input of a sentence or pair kind from the texts' pooled states
/// ([`MultitaskModel::embed`]): the pooled sentence `[batch, hidden]`, or for bi-encoded pairs
/// (`2·batch` rows) Sentence-BERT's `[u, v, |u−v|, u⊙v]` `[batch, 4·hidden]`; dropout applied.
pub fn features(model: &MultitaskModel, pooled: Tensor<2>, pair: bool) -> Tensor<2> {
    let feats = if pair && model.pair_encoding == PairEncoding::Bi {
        let [u, v] = halves(pooled);
        pair_features(u, v)
    } else {
        pooled
    };
    model.dropout.forward(feats)
}

/// The first and second sentences' rows of a bi-encoded pair batch `[2·batch, h]`.
pub fn halves(pooled: Tensor<2>) -> [Tensor<2>; 2] {
    let [b2, h] = pooled.dims();
    let b = b2 / 2;
    [
        pooled.clone().slice([0..b, 0..h]),
        pooled.slice([b..b2, 0..h]),
    ]
}

/// The head input width of [`features`].
pub fn features_width(hidden: usize, pair: bool, encoding: PairEncoding) -> usize {
    if pair && encoding == PairEncoding::Bi {
        4 * hidden
    } else {
        hidden
    }
}

/// `head` applied to `x` `[batch, in]` → `[batch, out]`.
///
/// # Panics
/// When the model has no head for a kind that has one (a programming error: heads follow the
/// task list).
pub fn apply(head: Option<&Linear>, x: Tensor<2>) -> Tensor<2> {
    let head = head.expect("the model has no head for this task");
    crate::kernels::linear(x, head.weight.val(), head.bias.as_ref().map(|b| b.val()))
}

/// Class ids `[batch]` from the examples' labels (a missing label counts as class 0).
pub fn class_targets(labels: &[f32], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels
        .iter()
        .map(|&l| if l.is_finite() { l as usize as i64 } else { 0 })
        .collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// Real targets `[batch]`, each label divided by `div` (a missing label counts as 0).
pub fn value_targets(labels: &[f32], div: f32, device: &Device) -> Tensor<1> {
    let v: Vec<f32> = labels
        .iter()
        .map(|&l| if l.is_finite() { l / div } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// Mean squared error of `[batch, 1]` outputs against `[batch]` targets.
pub fn mse_loss(outputs: Tensor<2>, targets: Tensor<1>) -> Tensor<1> {
    let [b, _] = outputs.dims();
    (outputs.reshape([b]) - targets).square().mean()
}

/// Class names `0`, `1`, ... `n − 1`.
pub fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}
