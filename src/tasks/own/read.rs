//! Columns and tokens: which columns of a table a task reads (the usual names, or the user's)
//! and its rows tokenised as task data.

use std::sync::Arc;

use super::{Columns, DataSpec, LABEL_NAMES, OwnRows, OwnTask, PAIR_NAMES, TEXT_NAMES, TaskType};
use crate::data::table::Table;
use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::own_task::MultiLabelColumns;
use crate::tasks::{Kind, PairEncoding, Prepared, TaskData, kinds};

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
        let single = matches!(
            spec.task_type,
            Some(TaskType::Classification | TaskType::Regression)
        );
        if single && spec.asks_multi_label() {
            return Err(Error::Invalid(
                "--label-separator, --label-columns and --label-names are for multi-label \
                 data: drop --task-type, or use --task-type multi-label"
                    .into(),
            ));
        }
        if !spec.label_columns.is_empty() {
            if spec.label_column.is_some() {
                return Err(Error::Invalid(
                    "--label-column names one label column, --label-columns one 0/1 column per \
                     label: give one of them"
                        .into(),
                ));
            }
            for c in &spec.label_columns {
                table.column(c)?;
            }
            return Ok(Columns {
                text,
                text_pair,
                label: spec.label_columns.join(","),
                multi_label: Some(MultiLabelColumns {
                    separator: None,
                    columns: spec.label_columns.clone(),
                }),
                negatives: Vec::new(),
            });
        }
        let label = find(&spec.label_column, LABEL_NAMES, "label")?;
        let arrays = table
            .column(&label)
            .is_ok_and(|c| table.rows.iter().any(|r| r.not_text(c) == Some("an array")));
        let multi = !single && (spec.asks_multi_label() || arrays);
        Ok(Columns {
            text,
            text_pair,
            label,
            multi_label: multi.then(|| MultiLabelColumns {
                separator: spec.label_separator.clone(),
                columns: Vec::new(),
            }),
            negatives: Vec::new(),
        })
    }
}

/// Tokenises `rows` as task data of `task` (pairs as `encoding` says), at most `limit` rows.
///
/// # Errors
/// As [`target`](super::target); [`Error::Tokenizer`] when tokenisation fails.
pub fn task_data(
    rows: &OwnRows,
    task: &OwnTask,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    limit: Option<usize>,
    labelled: bool,
) -> Result<TaskData> {
    tokenise(rows, kinds::own(task), tok, encoding, limit, labelled)
}

/// Tokenises `rows` for `kind`, with targets from the labels when `labelled` (else `NaN`).
fn tokenise(
    rows: &OwnRows,
    kind: Arc<dyn Kind>,
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
        let (label, label_ids) = if labelled {
            (
                kind.target(&r.label, &rows.source, r.line)?,
                kind.target_ids(&r.label, &rows.source, r.line)?,
            )
        } else {
            (f32::NAN, Vec::new())
        };
        let negatives = r
            .negatives
            .iter()
            .map(|n| tok.encode(n))
            .collect::<Result<Vec<_>>>()?;
        truncated += negatives.iter().any(|n| n.truncated) as usize;
        examples.push(Prepared {
            id: r.id.clone(),
            a,
            b,
            label,
            label_ids,
            negatives,
            words: None,
        });
    }
    Ok(TaskData {
        kind,
        examples,
        truncated,
        skipped_rows: rows.skipped_lines.len(),
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
    let multi_label = trained.and_then(|c| c.multi_label.clone());
    let label_columns = multi_label.as_ref().map_or(&[][..], |m| &m.columns[..]);
    let label = if labelled && !label_columns.is_empty() && given.label.is_empty() {
        for c in label_columns {
            table.column(c)?;
        }
        trained.map_or(String::new(), |c| c.label.clone())
    } else if labelled {
        pick(
            &given.label,
            trained.map(|c| c.label.as_str()),
            LABEL_NAMES,
            "label",
        )?
    } else {
        String::new()
    };
    // A label column named for a task trained on 0/1 label columns holds the labels itself.
    let multi_label = match multi_label {
        Some(m) if !m.columns.is_empty() && !given.label.is_empty() => {
            Some(crate::tasks::own_task::MultiLabelColumns {
                separator: None,
                columns: Vec::new(),
            })
        }
        m => m,
    };
    Ok((
        Columns {
            text,
            text_pair,
            label,
            multi_label,
            negatives: trained.map_or_else(Vec::new, |c| c.negatives.clone()),
        },
        notes,
    ))
}

/// Tokenised unlabelled inputs for `kind`: single sentences or pairs as it takes them (pairs
/// as `encoding` says).
///
/// # Errors
/// [`Error::Invalid`] when the kind needs pairs and `rows` have none; [`Error::Tokenizer`].
pub fn unlabelled(
    kind: &Arc<dyn Kind>,
    rows: &OwnRows,
    tok: &BertTokenizer,
    encoding: PairEncoding,
) -> Result<TaskData> {
    let has_pair = rows.rows.iter().all(|r| r.text_pair.is_some());
    if kind.is_pair() && !has_pair {
        return Err(Error::Invalid(format!(
            "task {} takes sentence pairs: give the second sentences (--sentence-pair, or a pair column)",
            kind.name()
        )));
    }
    let mut rows = rows.clone();
    if !kind.is_pair() && !kind.takes(true) {
        rows.rows.iter_mut().for_each(|r| r.text_pair = None);
    }
    tokenise(&rows, kind.clone(), tok, encoding, None, false)
}
