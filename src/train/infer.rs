//! Predictions for texts given one by one (`lorabert predict --sentence`, `--input FILE`, and
//! the page's "Try it"): every head of a trained model that takes them, as named rows.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::own::{self, OwnRows};
use crate::tasks::{HeadsConfig, Kind, MultitaskModel, Task};
use crate::train::evaluate::{PredictionRow, predict};

/// The task kinds of `heads` that take `rows` ([`Kind::takes`]): single texts go to SST and
/// single-text own tasks, pairs (every row with a second text) to paraphrase, STS and pair own
/// tasks.
///
/// # Errors
/// [`Error::Invalid`] when pairs are given to a checkpoint trained on single texts, for an
/// embedding checkpoint (no head takes texts), for a token-classification checkpoint (its
/// predictions are per word: [`crate::train::entities`]), or when no head takes the inputs.
pub fn heads_for(heads: &HeadsConfig, rows: &OwnRows) -> Result<Vec<Arc<dyn Kind>>> {
    let pairs = !rows.rows.is_empty() && rows.rows.iter().all(|r| r.text_pair.is_some());
    let all = heads.kinds()?;
    if let Some(own) = heads
        .own
        .as_ref()
        .filter(|o| matches!(o.kind, own::TaskKind::TokenClassification { .. }))
    {
        return Err(Error::Invalid(format!(
            "this checkpoint ({}) is a token classification model: its predictions are per word; \
             tag text with `lorabert predict --checkpoint ... --sentence TEXT` (entities) or \
             `--input FILE`",
            own.name
        )));
    }
    if let Some(own) = all.iter().find(|k| !k.takes(true) && !k.takes(false)) {
        return Err(Error::Invalid(format!(
            "this checkpoint ({}) is an embedding model: it has no head to predict with; rank \
             texts with `lorabert search --checkpoint ...`, or get the embeddings with \
             `lorabert embed --checkpoint ...`",
            own.name()
        )));
    }
    if let Some(own) = all
        .iter()
        .find(|k| k.task() == Task::Own && !k.takes(pairs))
    {
        return Err(Error::Invalid(format!(
            "this checkpoint ({}) takes single texts: leave out the second sentences",
            own.name()
        )));
    }
    let kinds: Vec<Arc<dyn Kind>> = all.iter().filter(|k| k.takes(pairs)).cloned().collect();
    if kinds.is_empty() {
        let names: Vec<String> = all.iter().map(|k| k.name()).collect();
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
    Ok(kinds)
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
    let mut out = Vec::new();
    for kind in heads_for(heads, rows)? {
        let data = own::unlabelled(&kind, rows, tok, heads.pair_encoding)?;
        let p = predict(model, &data, batch_size, pad_id).await?;
        out.extend(p.rows());
    }
    Ok(out)
}
