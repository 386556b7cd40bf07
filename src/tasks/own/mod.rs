//! Your own data: text classification, pair classification and regression from a table
//! (CSV, TSV, JSON Lines; [`crate::data::table`]). Columns are found by name as transformers'
//! `run_glue.py` finds them (`sentence` or `text`; `sentence1` + `sentence2` for pairs;
//! `label`), the task kind from the label column (classes with their names, transformers'
//! `id2label`; or a real-valued target), a validation split drawn with a seed (stratified for
//! classification) when there is no validation file. Everything takes bytes, so the page can
//! call it with picked files.
//!
//! [`read`] finds the columns and tokenises rows; [`labels`] reads the label column (task kind,
//! targets, label counts) and draws the validation split; [`embedding`] reads embedding pairs;
//! [`tokens`] reads token-classification files (CoNLL, JSON Lines of token lists), which are
//! not tables; this module holds the types and [`load`], which runs them in order.

pub mod embedding;
mod labels;
mod read;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use super::own_task::{Columns, EmbeddingData, EmbeddingLoss, LabelSummary, OwnTask, TaskKind};
pub use labels::{infer_kind, infer_multi_label, rows, split, summarize, target};
pub use read::{file_columns, task_data, unlabelled};

use super::tags::TagScheme;
use super::{PairEncoding, TaskData};
use crate::data::sha256_hex;
use crate::data::table::{Format, Table};
use crate::error::{Error, Result};
use crate::model::BertTokenizer;

/// Integer-valued labels with at most this many distinct values are classes; more are a
/// real-valued target.
pub const MAX_AUTO_CLASSES: usize = 20;

/// `--task-type`: what the label column is, when its values alone do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Classes (strings or integers).
    Classification,
    /// A real number.
    Regression,
    /// Any number of labels per row (a JSON array, a delimited string, or 0/1 columns).
    #[serde(rename = "multi_label")]
    MultiLabel,
    /// Sentence embeddings from pairs (anchor/positive, labelled or scored; [`embedding`]).
    Embedding,
    /// A tag per word, from CoNLL or JSON Lines token files ([`tokens`]).
    #[serde(rename = "token_classification")]
    TokenClassification,
}

/// Names tried, in order, for each column when the user names none (`run_glue.py`'s
/// `sentence`/`sentence1`/`sentence2`/`label`, and the spellings of common public files).
pub const TEXT_NAMES: &[&str] = &["sentence", "text", "sentence1", "question1", "#1 String"];
pub const PAIR_NAMES: &[&str] = &["sentence2", "question2", "#2 String"];
pub const LABEL_NAMES: &[&str] = &["label", "labels", "Quality", "is_duplicate", "score"];

/// What the user asked for: the files' reading, the columns, the task kind and the metric
/// (`None` = detect). Saved in the run's configuration so `--resume` and sweeps read the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// The training file.
    pub train_file: String,
    /// The validation file; without it a split of the training file.
    pub validation_file: Option<String>,
    /// Fraction of the training rows held out for validation when there is no validation file.
    pub validation_split: f64,
    /// The file format; `None` = from the extension.
    pub format: Option<Format>,
    /// Whether the files have no header row (columns are then `0`, `1`, ...).
    pub no_header: bool,
    /// The text column.
    pub text_column: Option<String>,
    /// The second-sentence column (pairs).
    pub text_pair_column: Option<String>,
    /// The label column.
    pub label_column: Option<String>,
    /// Classification or regression.
    pub task_type: Option<TaskType>,
    /// The metric that picks the best epoch (transformers' `metric_for_best_model`).
    pub metric_for_best_model: Option<String>,
    /// A CSV row whose quoted field spans lines is an error (naming the line the quote opened
    /// on) instead of a warning ([`Table::check_quotes`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_quotes: bool,
    /// Multi-label: the separator of a label string (`--label-separator ","`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_separator: Option<String>,
    /// Multi-label: one 0/1 column per label (`--label-columns a,b,c`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_columns: Vec<String>,
    /// Multi-label: the label names, in id order (`--label-names FILE`, one per line), when
    /// the labels are written as ids into them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_names: Option<Vec<String>>,
    /// Multi-label: the probability at or above which a label is predicted (`--threshold`,
    /// in (0, 1); default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Embeddings: the loss (`--loss`; default MultipleNegativesRankingLoss for pairs,
    /// CoSENTLoss for scored pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<EmbeddingLoss>,
    /// Embeddings: the loss's scale (`--scale`; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Embeddings: the range scores are declared in (`--score-range 0,5`; default 0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
    /// Embeddings: the hard-negative columns (`--negative-column`; default every column
    /// named `negative` or `negative_<n>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative_columns: Vec<String>,
    /// Embeddings: `MatryoshkaLoss`'s dimensions (`--matryoshka-dims`; none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matryoshka_dims: Vec<usize>,
    /// Embeddings: `MatryoshkaLoss`'s weights, one per dimension (`--matryoshka-weights`;
    /// default 1 each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matryoshka_weights: Vec<f64>,
    /// Embeddings: a file of extra documents for the retrieval evaluation's corpus
    /// (`--corpus-file`: lines of text, or a table's `text` column), read by the driver
    /// ([`embedding::corpus_examples`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_file: Option<String>,
    /// Token classification: the tagging scheme (`--tag-scheme`; default detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_scheme: Option<TagScheme>,
    /// Token classification: word pieces consecutive windows of a long sentence share
    /// (`--stride`; default [`tokens::DEFAULT_STRIDE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Token classification: a word's later pieces train on its tag too
    /// (`--label-all-tokens`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_all_tokens: bool,
}

impl DataSpec {
    /// Whether the spec asks for an embedding task: `--task-type embedding`, `--loss`,
    /// `--scale`, `--score-range` or `--negative-column`.
    pub fn asks_embedding(&self) -> bool {
        self.task_type == Some(TaskType::Embedding)
            || self.loss.is_some()
            || self.scale.is_some()
            || self.score_range.is_some()
            || !self.negative_columns.is_empty()
            || !self.matryoshka_dims.is_empty()
            || !self.matryoshka_weights.is_empty()
            || self.corpus_file.is_some()
    }

    /// Whether the spec asks for multi-label classification: `--task-type multi-label`, a
    /// label separator, label columns or label names.
    pub fn asks_multi_label(&self) -> bool {
        self.task_type == Some(TaskType::MultiLabel)
            || self.label_separator.is_some()
            || !self.label_columns.is_empty()
            || self.label_names.is_some()
    }
}

/// One row of own data: where it is, its id (an `id` column, else the line), its text and its
/// label as written.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnRow {
    /// 1-based line in its file.
    pub line: u64,
    /// The row's `id` field, or its line number.
    pub id: String,
    /// The text.
    pub text: String,
    /// The second sentence of a pair.
    pub text_pair: Option<String>,
    /// The label as written (trimmed); empty where the file has none.
    pub label: String,
    /// Embeddings: the hard negatives (trimmed), in column order; empty for other kinds.
    pub negatives: Vec<String>,
}

/// The rows of one file with the columns they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnRows {
    /// The file (quoted in errors).
    pub source: String,
    /// Rows with a label (all rows when reading unlabelled input).
    pub rows: Vec<OwnRow>,
    /// Lines skipped because their label was empty.
    pub skipped_lines: Vec<u64>,
}

/// What a run learnt about its data, for `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The training file.
    pub train_file: String,
    /// Where the validation rows came from: the validation file, or the split.
    pub validation: String,
    /// The format read.
    pub format: Format,
    /// Label counts of the training rows.
    pub train: LabelSummary,
    /// Label counts of the validation rows.
    pub validation_labels: LabelSummary,
    /// Rows skipped for an empty label, training and validation together.
    pub skipped_rows: usize,
    /// Rows whose text (or either text of a pair) is empty, training and validation together.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub empty_texts: usize,
    /// SHA-256 of the training file's bytes (hex): a resumed run refuses a changed file.
    #[serde(default)]
    pub train_sha256: String,
    /// SHA-256 of the validation file's bytes, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_sha256: Option<String>,
    /// Warnings about the files (CSV rows whose quoted fields span lines), for the drivers to
    /// print.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A run's own data, ready to train on.
#[derive(Debug, Clone)]
pub struct OwnData {
    /// The task (kind, classes, columns).
    pub task: OwnTask,
    /// Tokenised training rows.
    pub train: TaskData,
    /// Tokenised validation rows.
    pub dev: TaskData,
    /// For the record.
    pub summary: DataSummary,
}

/// The stem of a file name (`data/reviews.csv` → `reviews`).
fn stem(path: &str) -> String {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    base.rsplit_once('.').map_or(base, |(s, _)| s).to_string()
}

/// The task `table` makes under `spec` and its labelled rows: the columns (named, else found by
/// the usual names), the task kind (forced, else detected from the labels) and the metric that
/// picks the best epoch (asked, else the kind's default). The first half of [`load`]; the page
/// shows it as a summary when a file is picked.
///
/// # Errors
/// As [`Columns::resolve`], [`rows`] and [`infer_kind`]; [`Error::Invalid`] for a metric that is
/// not one of the kind's.
pub fn task_of(table: &Table, spec: &DataSpec) -> Result<(OwnTask, OwnRows)> {
    if embedding::is_embedding(table, spec) {
        if spec.asks_multi_label() || spec.threshold.is_some() {
            return Err(Error::Invalid(
                "--label-separator, --label-columns, --label-names and --threshold are for \
                 multi-label data, not for embedding pairs"
                    .into(),
            ));
        }
        let (kind, columns) = embedding::kind_of(table, spec)?;
        let all = embedding::rows(table, &columns)?;
        return own_task(spec, kind, columns, all);
    }
    let columns = Columns::resolve(table, spec)?;
    let all = rows(table, &columns, true)?;
    let kind = if columns.multi_label.is_some() {
        infer_multi_label(&all, spec)?
    } else if spec.threshold.is_some() {
        return Err(Error::Invalid(
            "--threshold applies to multi-label tasks (a label is predicted when its \
             probability reaches it); this file's labels are one per row"
                .into(),
        ));
    } else {
        infer_kind(&all, &columns.label, spec.task_type)?
    };
    own_task(spec, kind, columns, all)
}

/// The task of `kind` on `columns` with the metric that picks the best epoch: the one asked
/// (`eval_` prefix optional), else the kind's default.
fn own_task(
    spec: &DataSpec,
    kind: TaskKind,
    columns: Columns,
    all: OwnRows,
) -> Result<(OwnTask, OwnRows)> {
    // transformers names metrics `eval_accuracy`, ...: the prefix is optional here.
    let asked = spec
        .metric_for_best_model
        .as_deref()
        .map(|m| m.strip_prefix("eval_").unwrap_or(m).to_string());
    let metric = match &asked {
        Some(m) if kind.has_metric(m) => m.clone(),
        Some(m) => {
            let at_dim = match &kind {
                TaskKind::Embedding { matryoshka, .. } if !matryoshka.is_empty() => {
                    ", or one of them at a --matryoshka-dims dimension, as ndcg@10/dim_64"
                }
                _ => "",
            };
            return Err(Error::Invalid(format!(
                "--metric-for-best-model `{m}` is not a metric of {} (use one of {}{at_dim})",
                kind.name(),
                kind.metric_names().join(", ")
            )));
        }
        None => kind.default_metric().to_string(),
    };
    let task = OwnTask {
        name: stem(&spec.train_file),
        kind,
        columns,
        metric_for_best_model: metric,
        no_header: spec.no_header,
        pairs_optional: false,
    };
    Ok((task, all))
}

/// The labelled rows of `table` for `task` (embedding rows, or [`rows`]).
///
/// # Errors
/// As [`embedding::rows`] and [`rows`].
pub fn task_rows(table: &Table, task: &OwnTask) -> Result<OwnRows> {
    match task.kind {
        TaskKind::Embedding { .. } => embedding::rows(table, &task.columns),
        _ => rows(table, &task.columns, true),
    }
}

/// Reads a run's own data: the training file's bytes, the validation file's (or a split of the
/// training rows), the columns, the task kind and the metric, tokenised for `tok`.
///
/// # Errors
/// The readers' errors naming file, line and column; an unknown metric for the task kind; the
/// errors of [`infer_kind`], [`target`], [`split`].
#[allow(clippy::too_many_arguments)]
pub fn load(
    spec: &DataSpec,
    train_bytes: &[u8],
    validation_bytes: Option<&[u8]>,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    seed: u64,
    max_train: Option<usize>,
    max_eval: Option<usize>,
) -> Result<OwnData> {
    if tokens::is_token_data(spec, train_bytes)? {
        return tokens::load(
            spec,
            train_bytes,
            validation_bytes,
            tok,
            seed,
            max_train,
            max_eval,
        );
    }
    let format = Format::resolve(&spec.train_file, spec.format)?;
    let table = Table::read(train_bytes, &spec.train_file, format, !spec.no_header)?;
    let mut warnings = Vec::new();
    if format == Format::Csv {
        warnings.extend(table.check_quotes(train_bytes, spec.strict_quotes)?);
    }
    let (task, all) = task_of(&table, spec)?;
    let (train, val, validation) = match (&spec.validation_file, validation_bytes) {
        (Some(name), Some(bytes)) => {
            let vf = Format::resolve(name, spec.format)?;
            let vt = Table::read(bytes, name, vf, !spec.no_header)?;
            if vf == Format::Csv {
                warnings.extend(vt.check_quotes(bytes, spec.strict_quotes)?);
            }
            let v = task_rows(&vt, &task)?;
            if v.rows.is_empty() {
                return Err(Error::data(name, 1, "no rows with a label to validate on"));
            }
            (all, v, name.clone())
        }
        _ => {
            let (t, v) = split(all, &task, spec.validation_split, seed)?;
            let how = match task.kind {
                TaskKind::Classification { .. } => "stratified by class",
                _ => "random",
            };
            let n = t.rows.len() + v.rows.len();
            let held = format!(
                "{} of the {n} rows of {} held out ({:.1} %; asked {:.1} %; {how}, seed {seed})",
                v.rows.len(),
                spec.train_file,
                100.0 * v.rows.len() as f64 / n as f64,
                spec.validation_split * 100.0,
            );
            (t, v, held)
        }
    };
    let (train, set_aside) = embedding::trained_rows(train, &task.kind);
    if set_aside > 0 {
        warnings.push(format!(
            "{set_aside} training pairs labelled 0 are not trained on (MultipleNegativesRankingLoss \
             trains on the pairs labelled 1; in validation every text is in the corpus)"
        ));
    }
    if let TaskKind::Embedding { loss, .. } = &task.kind {
        let repeated = embedding::repeated_texts(&train);
        if loss.in_batch() && repeated > 0 {
            warnings.push(format!(
                "{repeated} training rows repeat a text of another row: batches are drawn \
                 without a text twice (no-duplicates sampler), so they wait for later batches"
            ));
        }
    }
    let encoding = match task.kind {
        TaskKind::Embedding { .. } => PairEncoding::Bi,
        _ => encoding,
    };
    let summary = DataSummary {
        train_file: spec.train_file.clone(),
        validation,
        format,
        train: summarize(&train, &task)?,
        validation_labels: summarize(&val, &task)?,
        skipped_rows: train.skipped_lines.len() + val.skipped_lines.len(),
        empty_texts: train
            .rows
            .iter()
            .chain(&val.rows)
            .filter(|r| r.text.is_empty() || r.text_pair.as_ref().is_some_and(|p| p.is_empty()))
            .count(),
        train_sha256: sha256_hex(train_bytes),
        validation_sha256: validation_bytes.map(sha256_hex),
        warnings,
    };
    Ok(OwnData {
        train: task_data(&train, &task, tok, encoding, max_train, true)?,
        dev: task_data(&val, &task, tok, encoding, max_eval, true)?,
        task,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(csv: &str) -> OwnRows {
        let t = Table::read(csv.as_bytes(), "t.csv", Format::Csv, true).unwrap();
        let c = Columns::resolve(&t, &DataSpec::default()).unwrap();
        rows(&t, &c, true).unwrap()
    }

    #[test]
    fn kinds_from_labels() {
        let k = |csv: &str| infer_kind(&rows_of(csv), "label", None).unwrap();
        assert_eq!(
            k("text,label\na,1.0\nb,0\nc,1\n"),
            TaskKind::Classification {
                id2label: vec!["0".into(), "1".into()]
            }
        );
        assert_eq!(
            k("text,label\na,positive\nb,negative\n"),
            TaskKind::Classification {
                id2label: vec!["negative".into(), "positive".into()]
            }
        );
        assert_eq!(k("text,label\na,0.5\nb,3.8\n"), TaskKind::Regression);
        let e = infer_kind(&rows_of("text,label\na,1\nb,nan\n"), "label", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.csv line 3: column `label`: label `nan` is not a finite"),
            "{e}"
        );
        let e = infer_kind(&rows_of("text,label\na,x\nb,x\n"), "label", None).unwrap_err();
        assert!(e.to_string().contains("one class only (`x`)"), "{e}");
    }

    #[test]
    fn stratified_split_keeps_classes_and_is_seeded() {
        let mut csv = String::from("text,label\n");
        for i in 0..100 {
            csv.push_str(&format!("t{i},{}\n", if i % 4 == 0 { "a" } else { "b" }));
        }
        let r = rows_of(&csv);
        let task = OwnTask {
            name: "t".into(),
            kind: infer_kind(&r, "label", None).unwrap(),
            columns: Columns {
                text: "text".into(),
                text_pair: None,
                label: "label".into(),
                multi_label: None,
                negatives: Vec::new(),
            },
            metric_for_best_model: "accuracy".into(),
            no_header: false,
            pairs_optional: false,
        };
        let (t, v) = split(r.clone(), &task, 0.2, 7).unwrap();
        assert_eq!((t.rows.len(), v.rows.len()), (80, 20));
        assert_eq!(v.rows.iter().filter(|x| x.label == "a").count(), 5);
        let (_, v2) = split(r, &task, 0.2, 7).unwrap();
        assert_eq!(v, v2);
    }
}
