//! Own data for sentence embeddings: the columns as sentence-transformers datasets name them
//! (`anchor` + `positive` + hard negatives `negative`, `negative_1`, ...; or `sentence1` +
//! `sentence2` with a `score` or a 0/1 `label`), what the rows hold ([`EmbeddingData`]) and the
//! loss ([`EmbeddingLoss`]), and the rows read from a table.

use super::{Columns, DataSpec, EmbeddingData, EmbeddingLoss, OwnRow, OwnRows, OwnTask, TaskKind};
use crate::data::table::Table;
use crate::error::{Error, Result};

/// Names tried, in order, for the first text, the second text and the label when the user
/// names none.
pub const ANCHOR_NAMES: &[&str] = &[
    "anchor",
    "query",
    "sentence1",
    "question1",
    "sentence",
    "text",
];
pub const POSITIVE_NAMES: &[&str] = &["positive", "sentence2", "question2", "document"];
pub const SCORE_NAMES: &[&str] = &["score", "label", "is_duplicate", "similarity"];

/// sentence-transformers' default `scale` of MultipleNegativesRankingLoss and CoSENTLoss.
pub const DEFAULT_SCALE: f64 = 20.0;

/// Whether `table` under `spec` is embedding data: asked for ([`DataSpec::asks_embedding`]),
/// or, with no `--task-type`, the file has `anchor` and `positive` columns.
pub fn is_embedding(table: &Table, spec: &DataSpec) -> bool {
    let has = |n: &str| table.header.iter().any(|h| h == n);
    spec.asks_embedding() || (spec.task_type.is_none() && has("anchor") && has("positive"))
}

/// The columns, the data kind and the loss of an embedding task on `table` (the training
/// file) under `spec`.
///
/// # Errors
/// [`Error::Data`] at line 1 listing the file's columns when the two text columns are not
/// found (a file with one text column) or a named column is absent, or naming the column given
/// as both texts; [`Error::Invalid`] for a
/// loss that does not fit the data (MultipleNegativesRankingLoss on scored pairs, CoSENTLoss
/// without scores), hard negatives beside a score, a non-positive scale, an empty score
/// range, or Matryoshka dimensions and weights that [`matryoshka_dims`] refuses.
///
/// [`matryoshka_dims`]: crate::tasks::own_task::matryoshka_dims
pub fn kind_of(table: &Table, spec: &DataSpec) -> Result<(TaskKind, Columns)> {
    let has = |n: &str| table.header.iter().any(|h| h == n);
    let columns_list = || {
        table
            .header
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find =
        |given: &Option<String>, names: &[&str], skip: Option<&str>, what: &str| {
            if let Some(g) = given {
                return table.column(g).map(|_| g.clone());
            }
            names
            .iter()
            .find(|n| has(n) && Some(**n) != skip)
            .map(|n| n.to_string())
            .ok_or_else(|| {
                Error::data(
                    &table.source,
                    1,
                    format!(
                        "embedding pairs need two text columns; no {what} column found (tried {}); \
                         the columns are {}; name it with --{}",
                        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                        columns_list(),
                        if what == "first text" { "text-column" } else { "text-pair-column" },
                    ),
                )
            })
        };
    let text = find(&spec.text_column, ANCHOR_NAMES, None, "first text")?;
    let pair = find(
        &spec.text_pair_column,
        POSITIVE_NAMES,
        Some(&text),
        "second text",
    )?;
    if pair == text {
        return Err(Error::data(
            &table.source,
            1,
            format!(
                "column `{text}` is both texts of the pair: each text would be trained against \
                 itself; name two columns"
            ),
        ));
    }
    let negatives: Vec<String> = if spec.negative_columns.is_empty() {
        let numbered = |h: &str| {
            h.strip_prefix("negative_")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        };
        table
            .header
            .iter()
            .filter(|h| *h == "negative" || numbered(h))
            .cloned()
            .collect()
    } else {
        for c in &spec.negative_columns {
            table.column(c)?;
        }
        spec.negative_columns.clone()
    };
    let label = match &spec.label_column {
        Some(l) => Some(table.column(l).map(|_| l.clone())?),
        None => SCORE_NAMES
            .iter()
            .find(|n| has(n) && **n != text && **n != pair)
            .map(|n| n.to_string()),
    };
    let scale = spec.scale.unwrap_or(DEFAULT_SCALE);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Invalid(format!(
            "--scale {scale} must be a positive number"
        )));
    }
    let scored_loss = matches!(
        spec.loss,
        Some(EmbeddingLoss::Cosent | EmbeddingLoss::Cosine)
    );
    let data = match &label {
        None if scored_loss => {
            return Err(Error::data(
                &table.source,
                1,
                format!(
                    "--loss {} needs a score for each pair (a `score` column, or --label-column); \
                     the columns are {}",
                    loss_flag(spec.loss),
                    columns_list()
                ),
            ));
        }
        None => EmbeddingData::Pairs {
            negatives: negatives.len(),
        },
        Some(l) => {
            if !negatives.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: hard-negative columns ({}) go with anchor/positive pairs, not with a \
                     score or label column (`{l}`)",
                    table.source,
                    negatives.join(", ")
                )));
            }
            let c = table.column(l)?;
            let binary = table.rows.iter().all(|r| {
                let v = r.fields.get(c).map_or("", |s| s.trim());
                v.is_empty() || matches!(v.parse::<f64>(), Ok(x) if x == 0.0 || x == 1.0)
            });
            if binary && !scored_loss && spec.score_range.is_none() {
                EmbeddingData::Labelled
            } else {
                let [lo, hi] = spec.score_range.unwrap_or([0.0, 1.0]);
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(Error::Invalid(format!(
                        "--score-range {lo},{hi} must be two numbers, the lower first"
                    )));
                }
                EmbeddingData::Scored { lo, hi }
            }
        }
    };
    let loss = match (&data, spec.loss) {
        (EmbeddingData::Scored { .. }, None) => EmbeddingLoss::Cosent,
        (_, None) => EmbeddingLoss::Mnrl,
        (EmbeddingData::Scored { .. }, Some(l)) if l.in_batch() => {
            return Err(Error::Invalid(format!(
                "--loss {} trains on anchor/positive pairs; scored pairs train with --loss \
                 cosent or cosine",
                loss_flag(Some(l))
            )));
        }
        (_, Some(l)) => l,
    };
    let columns = Columns {
        text,
        text_pair: Some(pair),
        label: label.unwrap_or_default(),
        multi_label: None,
        negatives,
    };
    if spec.matryoshka_dims.is_empty() && !spec.matryoshka_weights.is_empty() {
        return Err(Error::Invalid(
            "--matryoshka-weights weighs the --matryoshka-dims dimensions; give those too".into(),
        ));
    }
    let matryoshka =
        crate::tasks::own_task::matryoshka_dims(&spec.matryoshka_dims, &spec.matryoshka_weights)?;
    let kind = TaskKind::Embedding {
        data,
        loss,
        scale,
        matryoshka,
    };
    Ok((kind, columns))
}

/// The `--loss` value of `loss`.
pub fn loss_flag(loss: Option<EmbeddingLoss>) -> &'static str {
    match loss {
        Some(EmbeddingLoss::Mnrl) | None => "mnrl",
        Some(EmbeddingLoss::MnrlSymmetric) => "mnrl-symmetric",
        Some(EmbeddingLoss::Cosent) => "cosent",
        Some(EmbeddingLoss::Cosine) => "cosine",
    }
}

/// The loss of a `--loss` value (`mnrl`, `mnrl-symmetric`, `cosent`, `cosine`; the inverse of
/// [`loss_flag`]); `None` for any other text (the page's "detect" choice is empty).
pub fn loss_of_flag(flag: &str) -> Option<EmbeddingLoss> {
    [
        EmbeddingLoss::Mnrl,
        EmbeddingLoss::MnrlSymmetric,
        EmbeddingLoss::Cosent,
        EmbeddingLoss::Cosine,
    ]
    .into_iter()
    .find(|l| loss_flag(Some(*l)) == flag)
}

/// The rows of `table` for an embedding task reading `columns`: every text trimmed; a row
/// without a label (an empty field) skipped when the task has a label column.
///
/// # Errors
/// [`Error::Data`] naming the file, line and column: an absent column, an empty text (anchor,
/// positive or negative), a JSON Lines value that is not a string.
pub fn rows(table: &Table, columns: &Columns) -> Result<OwnRows> {
    let text = table.column(&columns.text)?;
    let pair = table.column(columns.text_pair.as_deref().unwrap_or_default())?;
    let negatives = columns
        .negatives
        .iter()
        .map(|n| table.column(n))
        .collect::<Result<Vec<_>>>()?;
    let label = (!columns.label.is_empty())
        .then(|| table.column(&columns.label))
        .transpose()?;
    let id = table.header.iter().position(|h| h == "id");
    let mut out = OwnRows {
        source: table.source.clone(),
        rows: Vec::with_capacity(table.rows.len()),
        skipped_lines: Vec::new(),
    };
    for r in &table.rows {
        let get = |i: usize| r.fields.get(i).map_or("", |s| s.trim());
        // A row without a label is skipped (counted) before its texts are looked at.
        let lab = label.map_or("", get).to_string();
        if label.is_some() && lab.is_empty() {
            out.skipped_lines.push(r.line);
            continue;
        }
        let texts = [text, pair].into_iter().chain(negatives.iter().copied());
        for c in texts.clone() {
            let problem = match r.not_text(c) {
                Some(kind) => Some(format!("expected a string, got {kind}")),
                None if get(c).is_empty() => Some("the text is empty".to_string()),
                None => None,
            };
            if let Some(p) = problem {
                return Err(Error::data(
                    &table.source,
                    r.line,
                    format!("column `{}`: {p}", table.header[c]),
                ));
            }
        }
        out.rows.push(OwnRow {
            line: r.line,
            id: id.map_or_else(|| r.line.to_string(), |i| get(i).to_string()),
            text: get(text).to_string(),
            text_pair: Some(get(pair).to_string()),
            label: lab,
            negatives: negatives.iter().map(|&c| get(c).to_string()).collect(),
        });
    }
    Ok(out)
}

/// The rows a loss trains on: MultipleNegativesRankingLoss on labelled pairs trains on the
/// pairs labelled 1 (the others stay in the validation corpus). Returns the rows kept and how
/// many were set aside.
pub fn trained_rows(mut rows: OwnRows, kind: &TaskKind) -> (OwnRows, usize) {
    let TaskKind::Embedding {
        data: EmbeddingData::Labelled,
        loss,
        ..
    } = kind
    else {
        return (rows, 0);
    };
    if !loss.in_batch() {
        return (rows, 0);
    }
    let n = rows.rows.len();
    rows.rows
        .retain(|r| r.label.parse::<f64>().is_ok_and(|v| v == 1.0));
    let dropped = n - rows.rows.len();
    (rows, dropped)
}

/// How many rows repeat a text (anchor, positive or negative) of an earlier row.
pub fn repeated_texts(rows: &OwnRows) -> usize {
    let mut seen = std::collections::HashSet::new();
    rows.rows
        .iter()
        .filter(|r| {
            let texts = [&r.text]
                .into_iter()
                .chain(r.text_pair.as_ref())
                .chain(&r.negatives);
            let mut repeated = false;
            for t in texts {
                repeated |= !seen.insert(t.as_str());
            }
            repeated
        })
        .count()
}

/// Validation examples that hold the documents `texts` of a corpus file (`--corpus-file`,
/// named `source`) for `task`'s retrieval evaluation: `n` documents per example (`n` the
/// task's texts per example; the last example repeats its last document), tokenised for `tok`,
/// with a `NaN` label marking them as corpus only (no query; the evaluation puts every text in
/// the corpus, the same text once).
///
/// # Errors
/// [`Error::Invalid`] for scored pairs (evaluated by similarity, not retrieval) or a task of
/// another kind; the tokeniser's errors.
pub fn corpus_examples(
    task: &OwnTask,
    texts: &[String],
    source: &str,
    tok: &crate::model::BertTokenizer,
) -> Result<crate::tasks::TaskData> {
    let n = match &task.kind {
        TaskKind::Embedding {
            data: EmbeddingData::Pairs { negatives },
            ..
        } => 2 + negatives,
        TaskKind::Embedding {
            data: EmbeddingData::Labelled,
            ..
        } => 2,
        _ => {
            return Err(Error::Invalid(format!(
                "--corpus-file {source}: extra documents are for retrieval evaluation (pairs \
                 and triplets, or 0/1-labelled pairs); {} is evaluated otherwise",
                task.kind.describe()
            )));
        }
    };
    let rows = texts
        .chunks(n)
        .enumerate()
        .map(|(i, group)| {
            let at = |j: usize| group[j.min(group.len() - 1)].clone();
            OwnRow {
                line: (i * n + 1) as u64,
                id: format!("corpus:{}", i * n),
                text: at(0),
                text_pair: Some(at(1)),
                label: String::new(),
                negatives: (2..n).map(at).collect(),
            }
        })
        .collect();
    let rows = OwnRows {
        source: source.to_string(),
        rows,
        skipped_lines: Vec::new(),
    };
    super::task_data(
        &rows,
        task,
        tok,
        crate::tasks::PairEncoding::Bi,
        None,
        false,
    )
}
