//! The label column: numbers or class names, the task kind they make, each row's target, the
//! label counts, and the seeded (stratified) validation split.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{
    Columns, LabelSummary, MAX_AUTO_CLASSES, OwnRow, OwnRows, OwnTask, TaskKind, TaskType,
};
use crate::data::table::Table;
use crate::error::{Error, Result};
use crate::tasks::own_task::{number, numeric_class};

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
    crate::tasks::kinds::own(task).target(&row.label, source, row.line)
}

/// Label counts of `rows` for `task`.
///
/// # Errors
/// As [`target`].
pub fn summarize(rows: &OwnRows, task: &OwnTask) -> Result<LabelSummary> {
    let kind = crate::tasks::kinds::own(task);
    let targets = rows
        .rows
        .iter()
        .map(|r| kind.target(&r.label, &rows.source, r.line))
        .collect::<Result<Vec<f32>>>()?;
    Ok(kind.summarize(&targets))
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
    let kind = crate::tasks::kinds::own(task);
    for (i, r) in rows.rows.iter().enumerate() {
        let key = kind
            .stratum(kind.target(&r.label, &rows.source, r.line)?)
            .unwrap_or(0);
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
