//! Predictions for texts given one by one (`lorabert predict --sentence`, `--input FILE`, and
//! the page's "Try it"): every head of a trained model that takes them, as named rows.

use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::own::{self, OwnRows};
use crate::tasks::{HeadsConfig, MultitaskModel, Task};
use crate::train::evaluate::{PredictionRow, predict};

/// The heads of `heads` that take `rows`: single texts go to SST and single-text own tasks,
/// pairs (every row with a second text) to paraphrase, STS and pair own tasks.
///
/// # Errors
/// [`Error::Invalid`] when pairs are given to a checkpoint trained on single texts, or when
/// no head takes the inputs.
pub fn heads_for(heads: &HeadsConfig, rows: &OwnRows) -> Result<Vec<Task>> {
    let pairs = !rows.rows.is_empty() && rows.rows.iter().all(|r| r.text_pair.is_some());
    if let Some(o) = &heads.own
        && pairs
        && !o.is_pair()
        && !o.pairs_optional
    {
        return Err(Error::Invalid(format!(
            "this checkpoint ({}) takes single texts: leave out the second sentences",
            o.name
        )));
    }
    let tasks: Vec<Task> = heads
        .tasks
        .iter()
        .copied()
        .filter(|t| match t {
            Task::Sst => !pairs,
            Task::Para | Task::Sts => pairs,
            Task::Own => true,
        })
        .collect();
    if tasks.is_empty() {
        let names: Vec<&str> = heads.tasks.iter().map(|t| t.name()).collect();
        return Err(Error::Invalid(format!(
            "none of this checkpoint's heads ({}) takes {}",
            names.join(", "),
            if pairs {
                "sentence pairs"
            } else {
                "single sentences (give a second sentence for pairs)"
            }
        )));
    }
    Ok(tasks)
}

/// Predictions of `model` (inference mode) for `rows`: for each head of [`heads_for`], one
/// [`PredictionRow`] per row (class name, its probability and every class's, or the score:
/// STS on 0..5, a regression value), heads in checkpoint order. Matches `lorabert predict
/// --sentence` exactly: the same code runs for both.
///
/// # Errors
/// As [`heads_for`]; [`Error::Tokenizer`] for a text the tokenizer refuses; a failed read-back.
pub async fn predict_texts(
    model: &MultitaskModel,
    heads: &HeadsConfig,
    tok: &BertTokenizer,
    rows: &OwnRows,
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<PredictionRow>> {
    let own_task = heads.own.as_ref();
    let mut out = Vec::new();
    for task in heads_for(heads, rows)? {
        let data = own::unlabelled(task, own_task, rows, tok, heads.pair_encoding)?;
        let p = predict(model, &data, batch_size, pad_id).await?;
        out.extend(p.rows(own_task));
    }
    Ok(out)
}
