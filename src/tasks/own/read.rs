//! Columns and tokens: which columns of a table a task reads (the usual names, or the user's)
//! and its rows tokenised as task data.

use super::{
    Columns, DataSpec, LABEL_NAMES, OwnRows, OwnTask, PAIR_NAMES, TEXT_NAMES, TaskKind, target,
};
use crate::data::table::Table;
use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::{PairEncoding, Prepared, Task, TaskData};

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
