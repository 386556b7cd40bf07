//! Your own data: text classification, pair classification and regression from a table
//! (CSV, TSV, JSON Lines; [`crate::data::table`]). Columns are found by name as transformers'
//! `run_glue.py` finds them (`sentence` or `text`; `sentence1` + `sentence2` for pairs;
//! `label`), the task kind from the label column (classes with their names, transformers'
//! `id2label`; or a real-valued target), a validation split drawn with a seed (stratified for
//! classification) when there is no validation file. Everything takes bytes, so the page can
//! call it with picked files.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{PairEncoding, Prepared, Task, TaskData};
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
}

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
}

impl TaskKind {
    /// Number of classes (1 output for regression).
    pub fn outputs(&self) -> usize {
        match self {
            TaskKind::Classification { id2label } => id2label.len(),
            TaskKind::Regression => 1,
        }
    }

    /// `classification` or `regression`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "classification",
            TaskKind::Regression => "regression",
        }
    }

    /// The metric that picks the best epoch unless the user names one: `accuracy` or
    /// `pearson`.
    pub fn default_metric(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "accuracy",
            TaskKind::Regression => "pearson",
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
        }
    }
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
        match &self.kind {
            TaskKind::Classification { id2label } => id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i))
                .collect(),
            TaskKind::Regression => BTreeMap::new(),
        }
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
}

impl std::fmt::Display for LabelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows", self.rows)?;
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
            counts.push(format!("and {} more classes", self.counts.len() - 20));
        }
        if !counts.is_empty() {
            write!(f, " ({})", counts.join(", "))?;
        }
        Ok(())
    }
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
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The SHA-256 of `bytes`, hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

impl Columns {
    /// The columns of `table`: those named by the user, else the first of the usual names
    /// found in the header.
    ///
    /// # Errors
    /// [`Error::Data`] at line 1 of the file, listing its columns, when a named column is
    /// absent or no usual name is found.
    pub fn resolve(table: &Table, spec: &DataSpec) -> Result<Columns> {
        let find = |given: &Option<String>, names: &[&str], what: &str| -> Result<String> {
            if let Some(g) = given {
                table.column(g)?;
                return Ok(g.clone());
            }
            names
                .iter()
                .find(|n| table.header.iter().any(|h| h == *n))
                .map(|n| n.to_string())
                .ok_or_else(|| {
                    Error::data(
                        &table.source,
                        1,
                        format!(
                            "no {what} column found (tried {}); the columns are {}; name it with --{}",
                            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                            table.header.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
                            what.replace(' ', "-") + "-column",
                        ),
                    )
                })
        };
        let text = find(&spec.text_column, TEXT_NAMES, "text")?;
        let text_pair = match &spec.text_pair_column {
            Some(p) => {
                table.column(p)?;
                Some(p.clone())
            }
            None if spec.text_column.is_none() => PAIR_NAMES
                .iter()
                .find(|n| table.header.iter().any(|h| h == *n))
                .map(|n| n.to_string()),
            None => None,
        };
        let label = find(&spec.label_column, LABEL_NAMES, "label")?;
        Ok(Columns {
            text,
            text_pair,
            label,
        })
    }
}

/// The rows of `table` in `columns`; with `labelled`, rows whose label is empty are skipped
/// and counted, and a table without the label column is an error.
///
/// # Errors
/// [`Error::Data`] naming the file and line for a column that is missing.
pub fn rows(table: &Table, columns: &Columns, labelled: bool) -> Result<OwnRows> {
    let text = table.column(&columns.text)?;
    let pair = columns
        .text_pair
        .as_ref()
        .map(|p| table.column(p))
        .transpose()?;
    let label = if labelled {
        Some(table.column(&columns.label)?)
    } else {
        table.column(&columns.label).ok()
    };
    if label.is_some_and(|l| l == text || Some(l) == pair) {
        return Err(Error::data(
            &table.source,
            1,
            format!(
                "column `{}` is both text and label: name the text with --text-column",
                columns.label
            ),
        ));
    }
    let id = table.header.iter().position(|h| h == "id");
    let mut out = OwnRows {
        source: table.source.clone(),
        rows: Vec::with_capacity(table.rows.len()),
        skipped_lines: Vec::new(),
    };
    for r in &table.rows {
        let get = |i: usize| r.fields.get(i).map_or("", |s| s.as_str());
        // JSON Lines values that are not text: texts must be there, labels may be null.
        for (c, what) in [(Some(text), "text"), (pair, "text"), (label, "label")] {
            let Some(c) = c else { continue };
            match (r.not_text(c), what) {
                (Some("missing" | "null"), "label") | (None, _) => {}
                (Some(kind), _) => {
                    return Err(Error::data(
                        &table.source,
                        r.line,
                        format!(
                            "column `{}`: expected {}, got {kind}",
                            table.header[c],
                            if what == "text" {
                                "a string"
                            } else {
                                "a string or number"
                            }
                        ),
                    ));
                }
            }
        }
        let lab = label.map_or("", get).trim().to_string();
        if labelled && lab.is_empty() {
            out.skipped_lines.push(r.line);
            continue;
        }
        out.rows.push(OwnRow {
            line: r.line,
            id: id.map_or_else(|| r.line.to_string(), |i| get(i).to_string()),
            text: get(text).trim().to_string(),
            text_pair: pair.map(|p| get(p).trim().to_string()),
            label: lab,
        });
    }
    Ok(out)
}

/// A label as a finite number, if it is one.
///
/// # Errors
/// [`Error::Data`] for `nan`, `inf` and the like: a label must be finite.
fn number(label: &str, source: &str, line: u64, column: &str) -> Result<Option<f64>> {
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
fn numeric_class(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The task kind the training rows' labels say (or `forced` asks for): numbers that are all
/// integers with at most [`MAX_AUTO_CLASSES`] distinct values, or any non-numeric labels, are
/// classes; other numbers a regression target.
///
/// # Errors
/// [`Error::Data`] naming the file, line and column: a non-finite label; a non-numeric label
/// for regression; fewer than two classes; no labelled rows.
pub fn infer_kind(rows: &OwnRows, column: &str, forced: Option<TaskType>) -> Result<TaskKind> {
    let src = rows.source.as_str();
    if rows.rows.is_empty() {
        return Err(Error::data(
            src,
            1,
            "no rows with a label (the file holds only a header?)",
        ));
    }
    let mut numbers = Vec::with_capacity(rows.rows.len());
    let mut first_text = None;
    for r in &rows.rows {
        match number(&r.label, src, r.line, column)? {
            Some(v) => numbers.push(v),
            None => {
                first_text.get_or_insert(r);
            }
        }
    }
    let regression = match (forced, first_text) {
        (Some(TaskType::Regression), Some(r)) => {
            return Err(Error::data(
                src,
                r.line,
                format!(
                    "column `{column}`: label `{}` is not a number (regression)",
                    r.label
                ),
            ));
        }
        (Some(t), _) => t == TaskType::Regression,
        (None, Some(r)) if !numbers.is_empty() => {
            return Err(Error::data(
                src,
                r.line,
                format!(
                    "column `{column}`: label `{}` is not a number, but {} of the {} labels are: fix the row, or say which kind the column is (--task-type classification | regression)",
                    r.label,
                    numbers.len(),
                    rows.rows.len()
                ),
            ));
        }
        (None, Some(_)) => false,
        (None, None) => {
            let mut distinct: Vec<f64> = numbers.clone();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            !(numbers.iter().all(|v| v.fract() == 0.0) && distinct.len() <= MAX_AUTO_CLASSES)
        }
    };
    if regression {
        return Ok(TaskKind::Regression);
    }
    let id2label: Vec<String> = if first_text.is_none() {
        let mut v: Vec<f64> = numbers;
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.into_iter().map(numeric_class).collect()
    } else {
        let mut v: Vec<String> = rows.rows.iter().map(|r| r.label.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    if id2label.len() < 2 {
        return Err(Error::data(
            src,
            rows.rows[0].line,
            format!(
                "column `{column}` holds one class only (`{}`): classification needs at least two",
                id2label.first().map_or("", |s| s.as_str())
            ),
        ));
    }
    Ok(TaskKind::Classification { id2label })
}

/// The training target of `row` for `task`: the class id, or the value.
///
/// # Errors
/// [`Error::Data`] naming the file, line and column: a class the training file does not have
/// (listing those it has), or a non-numeric regression label.
pub fn target(row: &OwnRow, task: &OwnTask, source: &str) -> Result<f32> {
    let column = &task.columns.label;
    let num = number(&row.label, source, row.line, column)?;
    match &task.kind {
        TaskKind::Regression => num.map(|v| v as f32).ok_or_else(|| {
            Error::data(
                source,
                row.line,
                format!("column `{column}`: label `{}` is not a number", row.label),
            )
        }),
        TaskKind::Classification { id2label } => {
            let name = match num {
                Some(v) if id2label.iter().all(|l| l.parse::<f64>().is_ok()) => numeric_class(v),
                _ => row.label.clone(),
            };
            id2label
                .iter()
                .position(|l| *l == name)
                .map(|i| i as f32)
                .ok_or_else(|| {
                    Error::data(
                        source,
                        row.line,
                        format!(
                            "column `{column}`: label `{}` does not occur in the training data (its classes: {})",
                            row.label,
                            id2label.join(", ")
                        ),
                    )
                })
        }
    }
}

/// Label counts of `rows` for `task`.
///
/// # Errors
/// As [`target`].
pub fn summarize(rows: &OwnRows, task: &OwnTask) -> Result<LabelSummary> {
    let mut s = LabelSummary {
        rows: rows.rows.len(),
        counts: BTreeMap::new(),
        range: None,
    };
    let targets = rows
        .rows
        .iter()
        .map(|r| target(r, task, &rows.source))
        .collect::<Result<Vec<f32>>>()?;
    match &task.kind {
        TaskKind::Classification { id2label } => {
            for t in targets {
                *s.counts.entry(id2label[t as usize].clone()).or_default() += 1;
            }
        }
        TaskKind::Regression if !targets.is_empty() => {
            let v: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            s.range = Some([mean, min, max]);
        }
        TaskKind::Regression => {}
    }
    Ok(s)
}

/// Splits `rows` into (train, validation) with `fraction` of them (rounded, at least one)
/// held out, drawn with `seed`; stratified by class for classification (each class keeps at
/// least one training row). Both keep file order.
///
/// # Errors
/// As [`target`]; [`Error::Invalid`] when the fraction leaves no training or no validation row.
pub fn split(
    rows: OwnRows,
    task: &OwnTask,
    fraction: f64,
    seed: u64,
) -> Result<(OwnRows, OwnRows)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Invalid(format!(
            "--validation-split {fraction} must be in (0, 1)"
        )));
    }
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.rows.iter().enumerate() {
        let key = match task.kind {
            TaskKind::Classification { .. } => target(r, task, &rows.source)? as i64,
            TaskKind::Regression => 0,
        };
        groups.entry(key).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut held = vec![false; rows.rows.len()];
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    for (idx, n) in groups.values_mut().zip(allocate(&sizes, fraction)) {
        idx.shuffle(&mut rng);
        for &i in &idx[..n] {
            held[i] = true;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (r, h) in rows.rows.into_iter().zip(held) {
        if h { val.push(r) } else { train.push(r) }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: too few rows ({}) to hold out {fraction} for validation",
            rows.source,
            train.len() + val.len()
        )));
    }
    let train = OwnRows {
        source: rows.source.clone(),
        rows: train,
        skipped_lines: rows.skipped_lines,
    };
    let val = OwnRows {
        source: rows.source,
        rows: val,
        skipped_lines: Vec::new(),
    };
    Ok((train, val))
}

/// Rows held out per group of `sizes` rows: `round(fraction · total)` (at least 1) shared in
/// proportion to the group sizes by largest remainders (as stratified splitting does), each
/// group keeping at least one row for training.
fn allocate(sizes: &[usize], fraction: f64) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let target = ((total as f64 * fraction).round() as usize).max(1);
    let cap = |n: usize| n.saturating_sub(1);
    let mut out: Vec<usize> = sizes
        .iter()
        .map(|&n| ((n as f64 * fraction).floor() as usize).min(cap(n)))
        .collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    let frac = |i: usize| sizes[i] as f64 * fraction - (sizes[i] as f64 * fraction).floor();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    let mut left = target.saturating_sub(out.iter().sum());
    for i in order.into_iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if out[i] < cap(sizes[i]) {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// Tokenises `rows` as task data of `task` (pairs as `encoding` says), at most `limit` rows.
///
/// # Errors
/// As [`target`]; [`Error::Tokenizer`] when tokenisation fails.
pub fn task_data(
    rows: &OwnRows,
    task: &OwnTask,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    limit: Option<usize>,
    labelled: bool,
) -> Result<TaskData> {
    let mut examples = Vec::new();
    let mut truncated = 0;
    for r in rows.rows.iter().take(limit.unwrap_or(usize::MAX)) {
        let (a, b) = match (&r.text_pair, encoding) {
            (None, _) => (tok.encode(&r.text)?, None),
            (Some(p), PairEncoding::Cross) => (tok.encode_pair(&r.text, p)?, None),
            (Some(p), PairEncoding::Bi) => (tok.encode(&r.text)?, Some(tok.encode(p)?)),
        };
        truncated += (a.truncated || b.as_ref().is_some_and(|b| b.truncated)) as usize;
        let label = if labelled {
            target(r, task, &rows.source)?
        } else {
            f32::NAN
        };
        examples.push(Prepared {
            id: r.id.clone(),
            a,
            b,
            label,
        });
    }
    Ok(TaskData {
        task: Task::Own,
        examples,
        truncated,
        skipped_rows: rows.skipped_lines.len(),
        own: Some(task.kind.clone()),
    })
}

/// The columns of a file to predict or evaluate on: those the user names; else those the task
/// was trained on (`trained`) where the file has them; else the usual names. A pair column is
/// looked for when `want_pair`, a label column when `labelled`. Returns notes on each column
/// read under another name than in training.
///
/// # Errors
/// [`Error::Data`] at line 1 listing the file's columns when a column is missing.
pub fn file_columns(
    table: &Table,
    trained: Option<&Columns>,
    given: &Columns,
    want_pair: bool,
    labelled: bool,
) -> Result<(Columns, Vec<String>)> {
    let mut notes = Vec::new();
    let mut pick = |given: &str, trained: Option<&str>, names: &[&str], what: &str| {
        if !given.is_empty() {
            return table.column(given).map(|_| given.to_string());
        }
        let has = |n: &str| table.header.iter().any(|h| h == n);
        if let Some(t) = trained.filter(|t| has(t)) {
            return Ok(t.to_string());
        }
        let found = names.iter().find(|n| has(n)).map(|n| n.to_string());
        match (found, trained) {
            (Some(f), Some(t)) => {
                notes.push(format!(
                    "{}: no column `{t}` (the {what} column in training): reading `{f}`",
                    table.source
                ));
                Ok(f)
            }
            (Some(f), None) => Ok(f),
            (None, _) => Err(Error::data(
                &table.source,
                1,
                format!(
                    "no {what} column{}; the columns are {}; name it with --{what}-column",
                    trained
                        .map(|t| format!(" (`{t}` in training)"))
                        .unwrap_or_default(),
                    table
                        .header
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    };
    let text = pick(
        &given.text,
        trained.map(|c| c.text.as_str()),
        TEXT_NAMES,
        "text",
    )?;
    let text_pair = if want_pair {
        Some(pick(
            given.text_pair.as_deref().unwrap_or(""),
            trained.and_then(|c| c.text_pair.as_deref()),
            PAIR_NAMES,
            "text-pair",
        )?)
    } else {
        None
    };
    let label = if labelled {
        pick(
            &given.label,
            trained.map(|c| c.label.as_str()),
            LABEL_NAMES,
            "label",
        )?
    } else {
        String::new()
    };
    Ok((
        Columns {
            text,
            text_pair,
            label,
        },
        notes,
    ))
}

/// Tokenised unlabelled inputs for `task` (its own-data task `own` for [`Task::Own`]): single
/// sentences for SST and single-text own tasks, pairs for the others (pairs as `encoding`
/// says).
///
/// # Errors
/// [`Error::Invalid`] when the task needs pairs and `rows` have none; [`Error::Tokenizer`].
pub fn unlabelled(
    task: Task,
    own: Option<&OwnTask>,
    rows: &OwnRows,
    tok: &BertTokenizer,
    encoding: PairEncoding,
) -> Result<TaskData> {
    let needs_pair = match task {
        Task::Sst => false,
        Task::Own => own.is_some_and(|o| o.is_pair()),
        Task::Para | Task::Sts => true,
    };
    let has_pair = rows.rows.iter().all(|r| r.text_pair.is_some());
    if needs_pair && !has_pair {
        return Err(Error::Invalid(format!(
            "task {} takes sentence pairs: give the second sentences (--sentence-pair, or a pair column)",
            task.name()
        )));
    }
    let mut rows = rows.clone();
    if !needs_pair && !own.is_some_and(|o| o.pairs_optional) {
        rows.rows.iter_mut().for_each(|r| r.text_pair = None);
    }
    let placeholder = OwnTask {
        name: task.name().into(),
        kind: TaskKind::Regression,
        columns: Columns {
            text: String::new(),
            text_pair: None,
            label: String::new(),
        },
        metric_for_best_model: String::new(),
        no_header: false,
        pairs_optional: false,
    };
    let mut data = task_data(
        &rows,
        own.unwrap_or(&placeholder),
        tok,
        encoding,
        None,
        false,
    )?;
    data.task = task;
    data.own = own.map(|o| o.kind.clone());
    Ok(data)
}

/// The stem of a file name (`data/reviews.csv` → `reviews`).
fn stem(path: &str) -> String {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    base.rsplit_once('.').map_or(base, |(s, _)| s).to_string()
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
    let format = Format::resolve(&spec.train_file, spec.format)?;
    let table = Table::read(train_bytes, &spec.train_file, format, !spec.no_header)?;
    let columns = Columns::resolve(&table, spec)?;
    let all = rows(&table, &columns, true)?;
    let kind = infer_kind(&all, &columns.label, spec.task_type)?;
    // transformers names metrics `eval_accuracy`, ...: the prefix is optional here.
    let asked = spec
        .metric_for_best_model
        .as_deref()
        .map(|m| m.strip_prefix("eval_").unwrap_or(m).to_string());
    let metric = match &asked {
        Some(m) if kind.metric_names().contains(&m.as_str()) => m.clone(),
        Some(m) => {
            return Err(Error::Invalid(format!(
                "--metric-for-best-model `{m}` is not a metric of {} (use one of {})",
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
    let (train, val, validation) = match (&spec.validation_file, validation_bytes) {
        (Some(name), Some(bytes)) => {
            let vf = Format::resolve(name, spec.format)?;
            let vt = Table::read(bytes, name, vf, !spec.no_header)?;
            let v = rows(&vt, &task.columns, true)?;
            if v.rows.is_empty() {
                return Err(Error::data(name, 1, "no rows with a label to validate on"));
            }
            (all, v, name.clone())
        }
        _ => {
            let (t, v) = split(all, &task, spec.validation_split, seed)?;
            let how = match task.kind {
                TaskKind::Classification { .. } => "stratified by class",
                TaskKind::Regression => "random",
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
