//! An own-data task as a run trains it and a checkpoint keeps it: what its label column holds
//! ([`TaskKind`]), its columns, its label counts, and the label parsing the own-data kinds
//! ([`super::kinds`]) share. Below both the kinds and the readers of [`super::own`], which
//! re-exports these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tags::TagScheme;
use crate::error::{Error, Result};

/// What the label column holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Classes; `id2label[i]` names class `i` (transformers' `id2label`). Numeric classes are
    /// ordered by value, string classes alphabetically.
    Classification {
        /// Class names by class id.
        id2label: Vec<String>,
    },
    /// A real-valued target, trained with MSE on the raw value (transformers'
    /// `problem_type="regression"`).
    Regression,
    /// Any number of labels per row, out of `id2label` (transformers' `problem_type =
    /// "multi_label_classification"`): one logit per label, `BCEWithLogits`, a label predicted
    /// when its sigmoid probability reaches its threshold.
    #[serde(rename = "multi_label")]
    MultiLabel {
        /// Label names by output index. Numeric labels are ordered by value, string labels
        /// alphabetically, names from `--label-names` in that file's order.
        id2label: Vec<String>,
        /// Labels written as 0-based indices into `id2label` (`--label-names`: GoEmotions'
        /// `3,10`), not as names.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        label_ids: bool,
        /// The probability at or above which a label is predicted (`--threshold`, in (0, 1)).
        threshold: f64,
        /// Per-label thresholds tuned on validation (`--tune-thresholds`), in output order;
        /// empty when not tuned (then `threshold` applies to every label).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        thresholds: Vec<f64>,
    },
    /// Sentence embeddings trained with a contrastive loss (sentence-transformers): no head,
    /// the pooled sentence is the output, evaluated by retrieval or similarity.
    Embedding {
        /// What the rows hold.
        data: EmbeddingData,
        /// The training loss.
        loss: EmbeddingLoss,
        /// The loss's `scale` (the inverse temperature of MultipleNegativesRankingLoss and
        /// CoSENTLoss; sentence-transformers' default 20; unused by CosineSimilarityLoss).
        scale: f64,
        /// `MatryoshkaLoss` around the loss (`--matryoshka-dims`): the embedding's leading
        /// dimensions it is also trained and evaluated at, largest first, with their weights;
        /// empty without it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        matryoshka: Vec<MatryoshkaDim>,
    },
    /// Token classification: one tag per word out of `id2label` (transformers'
    /// `BertForTokenClassification`), words read from CoNLL or JSON Lines files
    /// ([`crate::data::conll`]), each word's tag on its first word piece.
    #[serde(rename = "token_classification")]
    TokenClassification {
        /// Tag names by output index, sorted (`O` first when present).
        id2label: Vec<String>,
        /// How the tags mark entities (detected, or `--tag-scheme`).
        scheme: TagScheme,
        /// Word pieces per window, `[CLS]` and `[SEP]` included (the run's `--max-len`):
        /// longer sentences are split into windows.
        window: usize,
        /// Word pieces that consecutive windows share (`--stride`).
        stride: usize,
        /// A word's later pieces train on its tag too (`--label-all-tokens`, `B-` as `I-`),
        /// not left out of the loss.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        label_all_tokens: bool,
        /// The names of integer tags in JSON Lines, in id order, as training read them
        /// (`--label-names`; empty when the tags were strings): evaluation reads integer tags
        /// by them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        label_names: Vec<String>,
    },
}

/// Metrics of token classification (`seqeval` as transformers' `run_ner.py` reports them:
/// entity-level, micro-averaged over types; token accuracy), in the order they are reported;
/// per-type F1 follows as `f1/<type>`.
pub const TOKEN_METRICS: &[&str] = &["f1", "precision", "recall", "accuracy"];

/// What the rows of an embedding task hold (see [`TaskKind::Embedding`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingData {
    /// `anchor` + `positive` texts, with `negatives` hard-negative columns (0 or more).
    Pairs {
        /// Hard-negative columns per row.
        negatives: usize,
    },
    /// Sentence pairs labelled 1 (duplicates, relevant) or 0 (Quora's `is_duplicate`): the
    /// 1-pairs train as anchor/positive, all texts form the retrieval corpus.
    Labelled,
    /// Sentence pairs with a similarity `score` in `[lo, hi]` (`--score-range`), scaled to
    /// `[0, 1]` as the targets.
    Scored {
        /// The lowest score a row may have.
        lo: f64,
        /// The highest score a row may have.
        hi: f64,
    },
}

/// One dimension of `MatryoshkaLoss` (sentence-transformers): the loss is also computed on
/// the first `dim` components of every embedding, times `weight`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatryoshkaDim {
    /// Leading components kept (1 ..= the model's hidden size).
    pub dim: usize,
    /// The weight of the loss at this dimension (`matryoshka_weights`, default 1).
    pub weight: f64,
}

/// `MatryoshkaLoss`'s dimensions from `--matryoshka-dims` and `--matryoshka-weights` (one per
/// dimension, default 1 each), sorted largest first as sentence-transformers sorts them.
///
/// # Errors
/// [`Error::Invalid`] for a dimension of 0 or given twice, a weight that is not a positive
/// finite number, or a weight count that differs from the dimension count.
pub fn matryoshka_dims(dims: &[usize], weights: &[f64]) -> Result<Vec<MatryoshkaDim>> {
    if !weights.is_empty() && weights.len() != dims.len() {
        return Err(Error::Invalid(format!(
            "--matryoshka-weights has {} values for {} --matryoshka-dims; give one weight per \
             dimension, or none (each 1)",
            weights.len(),
            dims.len()
        )));
    }
    let mut out: Vec<MatryoshkaDim> = Vec::with_capacity(dims.len());
    for (i, &dim) in dims.iter().enumerate() {
        let weight = weights.get(i).copied().unwrap_or(1.0);
        if dim == 0 || out.iter().any(|m| m.dim == dim) {
            return Err(Error::Invalid(format!(
                "--matryoshka-dims: {dim} is {}; give distinct dimensions from 1 to the \
                 model's hidden size (384 for all-MiniLM-L6-v2), e.g. 384,256,128,64",
                if dim == 0 {
                    "not a dimension"
                } else {
                    "given twice"
                }
            )));
        }
        if !(weight.is_finite() && weight > 0.0) {
            return Err(Error::Invalid(format!(
                "--matryoshka-weights: {weight} (for dimension {dim}) must be a positive number"
            )));
        }
        out.push(MatryoshkaDim { dim, weight });
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.dim));
    Ok(out)
}

/// The loss of an embedding task, with sentence-transformers' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingLoss {
    /// `MultipleNegativesRankingLoss`: cross-entropy of each anchor's scaled cosines to every
    /// positive (and hard negative) of the batch, its own positive the target.
    Mnrl,
    /// `MultipleNegativesSymmetricRankingLoss`: the mean of the above and the same from each
    /// positive to the batch's anchors.
    MnrlSymmetric,
    /// `CoSENTLoss`: `log(1 + Σ exp(scale·(cos_i − cos_j)))` over the pairs with
    /// `score_i < score_j`.
    Cosent,
    /// `CosineSimilarityLoss`: the mean squared error of the cosine against the score.
    Cosine,
}

impl EmbeddingLoss {
    /// sentence-transformers' class name.
    pub fn class_name(self) -> &'static str {
        match self {
            EmbeddingLoss::Mnrl => "MultipleNegativesRankingLoss",
            EmbeddingLoss::MnrlSymmetric => "MultipleNegativesSymmetricRankingLoss",
            EmbeddingLoss::Cosent => "CoSENTLoss",
            EmbeddingLoss::Cosine => "CosineSimilarityLoss",
        }
    }

    /// Whether it contrasts each anchor with the batch's other positives (in-batch negatives:
    /// needs two examples or more per batch, and no text twice in one).
    pub fn in_batch(self) -> bool {
        matches!(self, EmbeddingLoss::Mnrl | EmbeddingLoss::MnrlSymmetric)
    }
}

/// Retrieval metrics of an embedding task (sentence-transformers'
/// `InformationRetrievalEvaluator`, cosine), in the order they are reported.
pub const RETRIEVAL_METRICS: &[&str] = &[
    "ndcg@10",
    "mrr@10",
    "map@100",
    "recall@1",
    "recall@5",
    "recall@10",
    "accuracy@1",
    "accuracy@10",
];

impl TaskKind {
    /// Number of classes (1 output for regression).
    pub fn outputs(&self) -> usize {
        match self {
            TaskKind::Classification { id2label }
            | TaskKind::MultiLabel { id2label, .. }
            | TaskKind::TokenClassification { id2label, .. } => id2label.len(),
            TaskKind::Regression => 1,
            TaskKind::Embedding { .. } => 0,
        }
    }

    /// `classification`, `regression`, `multi-label`, `embedding` or `token-classification`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "classification",
            TaskKind::Regression => "regression",
            TaskKind::MultiLabel { .. } => "multi-label",
            TaskKind::Embedding { .. } => "embedding",
            TaskKind::TokenClassification { .. } => "token-classification",
        }
    }

    /// The class (label) names, in output order; empty for regression and embeddings.
    pub fn id2label(&self) -> &[String] {
        match self {
            TaskKind::Classification { id2label }
            | TaskKind::MultiLabel { id2label, .. }
            | TaskKind::TokenClassification { id2label, .. } => id2label,
            TaskKind::Regression | TaskKind::Embedding { .. } => &[],
        }
    }

    /// The kind in messages: `classification with 3 classes (a, b, c)`, `regression`,
    /// `multi-label with 28 labels (admiration, ...)` (at most 20 names listed).
    pub fn describe(&self) -> String {
        let names = |what: &str, v: &[String]| {
            let mut shown: Vec<&str> = v.iter().take(20).map(String::as_str).collect();
            if v.len() > 20 {
                shown.push("...");
            }
            format!("{} {what} ({})", v.len(), shown.join(", "))
        };
        match self {
            TaskKind::Classification { id2label } => {
                format!("classification with {}", names("classes", id2label))
            }
            TaskKind::Regression => "regression".into(),
            TaskKind::MultiLabel { id2label, .. } => {
                format!("multi-label with {}", names("labels", id2label))
            }
            TaskKind::Embedding {
                data,
                loss,
                scale,
                matryoshka,
            } => {
                let rows = match data {
                    EmbeddingData::Pairs { negatives: 0 } => "anchor/positive pairs".to_string(),
                    EmbeddingData::Pairs { negatives } => {
                        format!("anchor/positive pairs with {negatives} hard negative(s)")
                    }
                    EmbeddingData::Labelled => "labelled pairs (1 = positive)".to_string(),
                    EmbeddingData::Scored { lo, hi } => format!("scored pairs ({lo}..{hi})"),
                };
                let scale = if *loss == EmbeddingLoss::Cosine {
                    String::new()
                } else {
                    format!(", scale {scale}")
                };
                let wrapped = if matryoshka.is_empty() {
                    loss.class_name().to_string()
                } else {
                    let dims: Vec<String> = matryoshka.iter().map(|m| m.dim.to_string()).collect();
                    format!(
                        "MatryoshkaLoss({}, dims {})",
                        loss.class_name(),
                        dims.join(",")
                    )
                };
                format!("embedding: {rows}, {wrapped}{scale}")
            }
            TaskKind::TokenClassification {
                id2label, scheme, ..
            } => format!(
                "token classification with {}, {}",
                names("tags", id2label),
                scheme.name()
            ),
        }
    }

    /// The metric that picks the best epoch unless the user names one: `accuracy`,
    /// `pearson`, `f1_micro`, or for embeddings `ndcg@10` (retrieval) or `spearman` (scored
    /// pairs, as sentence-transformers' evaluators name their primary metrics).
    pub fn default_metric(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "accuracy",
            TaskKind::Regression => "pearson",
            TaskKind::MultiLabel { .. } => "f1_micro",
            TaskKind::Embedding {
                data: EmbeddingData::Scored { .. },
                ..
            } => "spearman",
            TaskKind::Embedding { .. } => "ndcg@10",
            TaskKind::TokenClassification { .. } => "f1",
        }
    }

    /// The metrics of this kind, by their names in results and `--metric-for-best-model`.
    pub fn metric_names(&self) -> &'static [&'static str] {
        match self {
            TaskKind::Classification { id2label } if id2label.len() == 2 => {
                &["accuracy", "f1", "f1_macro", "mcc"]
            }
            TaskKind::Classification { .. } => &["accuracy", "f1_macro", "mcc"],
            TaskKind::Regression => &["pearson", "spearman", "mse"],
            TaskKind::MultiLabel { .. } => &[
                "f1_micro",
                "f1_macro",
                "precision_micro",
                "recall_micro",
                "subset_accuracy",
                "hamming_loss",
            ],
            TaskKind::Embedding {
                data: EmbeddingData::Scored { .. },
                ..
            } => &["pearson", "spearman"],
            TaskKind::Embedding { .. } => RETRIEVAL_METRICS,
            TaskKind::TokenClassification { .. } => TOKEN_METRICS,
        }
    }

    /// Whether `name` is a metric this kind reports: one of [`Self::metric_names`] or, for an
    /// embedding task with `MatryoshkaLoss`, one of them at a smaller dimension
    /// (`ndcg@10/dim_64`, see [`matryoshka_metric`]).
    pub fn has_metric(&self, name: &str) -> bool {
        let names = self.metric_names();
        if names.contains(&name) {
            return true;
        }
        let TaskKind::Embedding { matryoshka, .. } = self else {
            return false;
        };
        matryoshka
            .iter()
            .any(|m| names.iter().any(|n| matryoshka_metric(n, m.dim) == name))
    }
}

/// The name of metric `name` computed on the first `dim` components of the embeddings
/// (`ndcg@10/dim_64`), as `MatryoshkaLoss` runs report them beside the full-size metrics.
pub fn matryoshka_metric(name: &str, dim: usize) -> String {
    format!("{name}/dim_{dim}")
}

/// How a multi-label row's labels are written (see [`Columns::multi_label`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiLabelColumns {
    /// The separator of a label string (`--label-separator ","`: `billing,urgent`, GoEmotions'
    /// `3,10`); `None`: the label field holds a JSON array or one label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// One 0/1 column per label (`--label-columns a,b,c`), the column names being the label
    /// names; empty when the labels are in the label column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// The columns a task reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    /// The text (first sentence of a pair).
    pub text: String,
    /// The second sentence of a pair.
    pub text_pair: Option<String>,
    /// The label.
    pub label: String,
    /// Multi-label: how the labels are written; `None` for single-label kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelColumns>,
    /// Embeddings: the hard-negative columns (`negative`, `negative_1`, ...), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<String>,
}

impl Columns {
    /// The columns read, in words, as the CLI and the page print them: "texts `text`, label
    /// `sentiment`", "pairs `anchor` + `positive` with hard negatives `negative`" (no label part
    /// where there is none: embedding pairs).
    pub fn describe(&self) -> String {
        let mut s = match &self.text_pair {
            Some(p) => format!("pairs `{}` + `{p}`", self.text),
            None => format!("texts `{}`", self.text),
        };
        if !self.negatives.is_empty() {
            s.push_str(&format!(
                " with hard negatives `{}`",
                self.negatives.join("`, `")
            ));
        }
        if !self.label.is_empty() {
            s.push_str(&format!(", label `{}`", self.label));
        }
        s
    }
}

/// An own-data task as a run trains it and a checkpoint keeps it (in `heads_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnTask {
    /// Its name: the training file's stem.
    pub name: String,
    /// Classes or regression.
    pub kind: TaskKind,
    /// The columns read.
    pub columns: Columns,
    /// The metric that picks the best epoch.
    pub metric_for_best_model: String,
    /// Whether its files had no header row (columns named `0`, `1`, ...).
    #[serde(default)]
    pub no_header: bool,
    /// Whether it takes single texts and cross-encoded pairs alike (a sequence-classification
    /// adapter made elsewhere: its head reads one sequence either way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pairs_optional: bool,
}

impl OwnTask {
    /// Whether it reads sentence pairs.
    pub fn is_pair(&self) -> bool {
        self.columns.text_pair.is_some()
    }

    /// `label2id` (transformers' name): class name → class id.
    pub fn label2id(&self) -> BTreeMap<String, usize> {
        self.kind
            .id2label()
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect()
    }
}

/// Label counts of a split (classification: rows per class name; regression: rows, mean,
/// minimum, maximum), as printed and stored in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    /// Rows.
    pub rows: usize,
    /// Rows per class name (classification).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, usize>,
    /// Mean, minimum and maximum of the target (regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 3]>,
    /// Multi-label: the mean number of labels per row (`counts` then counts rows with each
    /// label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_per_row: Option<f64>,
    /// Token classification: the entities decoded from the tags (`rows` then counts sentences
    /// and `counts` entities per type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<usize>,
}

impl std::fmt::Display for LabelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.entities {
            Some(e) => write!(f, "{} sentences, {e} entities", self.rows)?,
            None => write!(f, "{} rows", self.rows)?,
        }
        if let Some(m) = self.labels_per_row {
            write!(f, ", {m:.3} labels per row")?;
        }
        if let Some([mean, min, max]) = self.range {
            write!(f, ", mean {mean:.4}, min {min:.4}, max {max:.4}")?;
        }
        let mut counts: Vec<String> = self
            .counts
            .iter()
            .take(20)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if self.counts.len() > 20 {
            counts.push(format!(
                "and {} more {}",
                self.counts.len() - 20,
                if self.labels_per_row.is_some() {
                    "labels"
                } else if self.entities.is_some() {
                    "entity types"
                } else {
                    "classes"
                }
            ));
        }
        if !counts.is_empty() {
            write!(f, " ({})", counts.join(", "))?;
        }
        Ok(())
    }
}

/// A label as a finite number, if it is one.
///
/// # Errors
/// [`Error::Data`] for `nan`, `inf` and the like: a label must be finite.
pub fn number(label: &str, source: &str, line: u64, column: &str) -> Result<Option<f64>> {
    match label.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(Error::data(
            source,
            line,
            format!("column `{column}`: label `{label}` is not a finite number"),
        )),
        Err(_) => Ok(None),
    }
}

/// The class name of a numeric label: integers without a fraction (`1.0` is class `1`).
pub fn numeric_class(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
