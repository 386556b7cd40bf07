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
    let multi = columns.multi_label.as_ref();
    let label_columns: Vec<usize> = match multi {
        Some(m) if !m.columns.is_empty() => {
            if labelled {
                m.columns
                    .iter()
                    .map(|c| table.column(c))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let label = if multi.is_some_and(|m| !m.columns.is_empty()) {
        None
    } else if labelled {
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
                (Some("an array"), "label") if multi.is_some() => {}
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
        let lab = match multi {
            Some(m) if labelled || label.is_some() => {
                match multi_labels(table, r, label, &label_columns, m.separator.as_deref())? {
                    Some(names) => serde_json::Value::from(names).to_string(),
                    None => String::new(),
                }
            }
            Some(_) => String::new(),
            None => label.map_or("", get).trim().to_string(),
        };
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
            negatives: Vec::new(),
        });
    }
    Ok(out)
}

/// A multi-label row's labels as written (names or ids, each once, in the row's order): the
/// names of the 0/1 `columns` holding 1, else the `label` field's JSON array, or its string
/// split at `separator` (without one, a non-empty string is one label). `None` where the row
/// has no labels at all (a JSON `null` or missing key: unlabelled); an empty field is the empty
/// list (no label).
///
/// # Errors
/// [`Error::Data`] naming the file, line and column: a 0/1 column holding something else; a
/// label array that mixes strings and numbers or holds other values.
fn multi_labels(
    table: &Table,
    r: &crate::data::table::Row,
    label: Option<usize>,
    columns: &[usize],
    separator: Option<&str>,
) -> Result<Option<Vec<String>>> {
    let field = |c: usize| r.fields.get(c).map_or("", |s| s.as_str()).trim();
    let err = |c: usize, msg: String| {
        Error::data(
            &table.source,
            r.line,
            format!("column `{}`: {msg}", table.header[c]),
        )
    };
    let mut names: Vec<String> = Vec::new();
    if !columns.is_empty() {
        if columns
            .iter()
            .all(|&c| matches!(r.not_text(c), Some("missing" | "null")))
        {
            return Ok(None);
        }
        for &c in columns {
            match field(c) {
                "1" | "1.0" | "true" | "True" | "TRUE" => names.push(table.header[c].clone()),
                "0" | "0.0" | "false" | "False" | "FALSE" | "" => {}
                other => {
                    return Err(err(
                        c,
                        format!("expected 0 or 1 (one column per label), got `{other}`"),
                    ));
                }
            }
        }
        return Ok(Some(names));
    }
    let Some(c) = label else { return Ok(None) };
    match r.not_text(c) {
        Some("missing" | "null") => return Ok(None),
        Some("an array") => {
            let items: Vec<serde_json::Value> = serde_json::from_str(field(c))
                .map_err(|e| err(c, format!("the label array is not valid JSON: {e}")))?;
            let (mut strings, mut numbers) = (None, None);
            for v in &items {
                match v {
                    serde_json::Value::String(s) => {
                        strings.get_or_insert(v.to_string());
                        if !s.trim().is_empty() {
                            names.push(s.trim().to_string());
                        }
                    }
                    serde_json::Value::Number(n) => {
                        numbers.get_or_insert(v.to_string());
                        match n.as_f64().filter(|x| x.is_finite()) {
                            Some(x) => names.push(numeric_class(x)),
                            None => return Err(err(c, format!("label `{n}` is not finite"))),
                        }
                    }
                    other => {
                        return Err(err(
                            c,
                            format!(
                                "the label array holds `{other}`: labels are strings or numbers"
                            ),
                        ));
                    }
                }
            }
            if let (Some(s), Some(n)) = (strings, numbers) {
                return Err(err(
                    c,
                    format!(
                        "the label array mixes strings and numbers ({s} and {n}): write every \
                         label the same way"
                    ),
                ));
            }
        }
        _ => {
            let s = field(c);
            match separator {
                Some(sep) => names.extend(
                    s.split(sep)
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(str::to_string),
                ),
                None if s.is_empty() => {}
                None => names.push(s.to_string()),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(Some(names))
}

/// The multi-label task kind of the training rows (as [`rows`] writes their labels: JSON
/// arrays): the labels `spec.label_names` names, in that order (labels then written as ids
/// into them, or as those names); the 0/1 label columns, in their order; else every label the
/// rows hold, numbers ordered by value and names alphabetically. The threshold is `spec.threshold` (default 0.5).
///
/// # Errors
/// [`Error::Invalid`] for a threshold outside (0, 1) or empty or repeated label names;
/// [`Error::Data`] naming the file and line: no rows, or no row with a label.
pub fn infer_multi_label(rows: &OwnRows, spec: &super::DataSpec) -> Result<TaskKind> {
    let src = rows.source.as_str();
    let threshold = spec.threshold.unwrap_or(0.5);
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(Error::Invalid(format!(
            "--threshold {threshold} must be in (0, 1): a label is predicted when its \
             probability reaches it"
        )));
    }
    if rows.rows.is_empty() {
        return Err(Error::data(
            src,
            1,
            "no rows with labels (the file holds only a header?)",
        ));
    }
    let mut written: Vec<String> = Vec::new();
    for r in &rows.rows {
        written.extend(crate::tasks::kinds::multi_label::written_labels(
            &r.label, src, r.line,
        )?);
    }
    if let Some(names) = &spec.label_names {
        let mut seen = std::collections::HashSet::new();
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() || !seen.insert(n) {
                return Err(Error::Invalid(format!(
                    "--label-names: name {} (`{n}`, line {}) is {}",
                    i,
                    i + 1,
                    if n.trim().is_empty() {
                        "empty"
                    } else {
                        "given twice"
                    }
                )));
            }
        }
        return Ok(TaskKind::MultiLabel {
            id2label: names.clone(),
            label_ids: true,
            threshold,
            thresholds: Vec::new(),
        });
    }
    if written.is_empty() {
        return Err(Error::data(
            src,
            rows.rows[0].line,
            "no row has a label: multi-label training needs labels to learn",
        ));
    }
    let numeric: Option<Vec<f64>> = written.iter().map(|w| w.parse::<f64>().ok()).collect();
    let id2label = match numeric {
        // 0/1 columns: the labels in the columns' order.
        _ if !spec.label_columns.is_empty() => spec.label_columns.clone(),
        Some(mut v) => {
            v.sort_by(f64::total_cmp);
            v.dedup();
            v.into_iter().map(numeric_class).collect()
        }
        None => {
            let mut v = written;
            v.sort();
            v.dedup();
            v
        }
    };
    Ok(TaskKind::MultiLabel {
        id2label,
        label_ids: false,
        threshold,
        thresholds: Vec::new(),
    })
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
    let mut targets = Vec::with_capacity(rows.rows.len());
    let mut ids = Vec::with_capacity(rows.rows.len());
    for r in &rows.rows {
        targets.push(kind.target(&r.label, &rows.source, r.line)?);
        ids.push(kind.target_ids(&r.label, &rows.source, r.line)?);
    }
    Ok(kind.summarize(&targets, &ids))
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
