//! Entities in texts given one by one (`lorabert predict --sentence` on a token-classification
//! checkpoint): the text split into words as the tokenizer splits it, each word tagged on its
//! first word piece (as it was trained), and the words grouped into entities, as transformers'
//! `pipeline("token-classification", aggregation_strategy="first")` reports them (`entity_group`,
//! `score` the mean of the words' tag probabilities, `word`, character `start` and `end`).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::kinds::token::TokenClassification;
use crate::tasks::own::{self, TaskKind};
use crate::tasks::tags::entities;
use crate::tasks::{HeadsConfig, MultitaskModel};
use crate::train::evaluate::predict;

/// One entity of a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntitySpan {
    /// Its type (the tag without its `B-`/`I-`/`E-`/`S-` prefix).
    pub entity_group: String,
    /// The mean of its words' tag probabilities.
    pub score: f64,
    /// The text it covers, as written.
    pub word: String,
    /// Its first character (0-based, in Unicode scalar values, as Python indexes strings).
    pub start: usize,
    /// One past its last character.
    pub end: usize,
}

/// One word of a text with its predicted tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaggedWord {
    /// The word as written.
    pub word: String,
    /// Its predicted tag.
    pub tag: String,
    /// The tag's probability.
    pub score: f64,
}

/// The entities (and tagged words) of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextEntities {
    /// The input's id.
    pub id: String,
    /// The task (the own task's name).
    pub task: String,
    /// The entities, in text order.
    pub entities: Vec<EntitySpan>,
    /// Every word with its tag.
    pub words: Vec<TaggedWord>,
}

/// The token task of `heads`, if it has one.
pub fn token_task(heads: &HeadsConfig) -> Option<&own::OwnTask> {
    heads
        .own
        .as_ref()
        .filter(|o| matches!(o.kind, TaskKind::TokenClassification { .. }))
}

/// Entities of `texts` (`(id, text)`) by `model` (inference mode) with the token task of
/// `heads`: words from [`BertTokenizer::words`], windows as in training, each word's tag its
/// first piece's most probable tag, entities decoded from the words' tags as evaluation
/// decodes them ([`entities`], the run's scheme), each entity's score the mean of its words'
/// probabilities.
///
/// # Errors
/// [`Error::Invalid`] for a checkpoint without a token task; the tokenizer's errors; a failed
/// read-back.
pub async fn predict_entities(
    model: &MultitaskModel,
    heads: &HeadsConfig,
    tok: &BertTokenizer,
    texts: &[(String, String)],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<TextEntities>> {
    let task = token_task(heads)
        .ok_or_else(|| Error::Invalid("this checkpoint has no token-classification head".into()))?;
    let kind = TokenClassification(task.clone());
    let words: Vec<Vec<(String, usize, usize)>> = texts
        .iter()
        .map(|(_, t)| tok.words(t))
        .collect::<Result<_>>()?;
    let sentences: Vec<Vec<String>> = words
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| w.iter().map(|(s, _, _)| s.clone()).collect())
        .collect();
    let mut tagged = if sentences.is_empty() {
        Vec::new()
    } else {
        let data = own::tokens::untagged(&sentences, task, tok)?;
        let p = predict(model, &data, batch_size, pad_id).await?;
        kind.word_predictions(&p.values, &data.examples)
    }
    .into_iter();
    let names = kind.tags();
    let mut out = Vec::with_capacity(texts.len());
    for ((id, text), w) in texts.iter().zip(&words) {
        let tags = if w.is_empty() {
            Vec::new()
        } else {
            tagged.next().unwrap_or_default()
        };
        let tag_names: Vec<String> = tags
            .iter()
            .map(|&(t, _)| names.get(t as usize).cloned().unwrap_or_else(|| "O".into()))
            .collect();
        let chars: Vec<char> = text.chars().collect();
        let spans = entities(std::slice::from_ref(&tag_names), kind.scheme())
            .into_iter()
            .map(|(ty, first, last)| {
                let (start, end) = (w[first].1, w[last].2);
                let score = tags[first..=last]
                    .iter()
                    .map(|&(_, p)| p as f64)
                    .sum::<f64>()
                    / (last - first + 1) as f64;
                EntitySpan {
                    entity_group: ty,
                    score,
                    word: chars[start..end].iter().collect(),
                    start,
                    end,
                }
            })
            .collect();
        out.push(TextEntities {
            id: id.clone(),
            task: task.name.clone(),
            entities: spans,
            words: w
                .iter()
                .zip(tags.iter().zip(tag_names))
                .map(|((word, _, _), (&(_, p), tag))| TaggedWord {
                    word: word.clone(),
                    tag,
                    score: p as f64,
                })
                .collect(),
        });
    }
    Ok(out)
}
