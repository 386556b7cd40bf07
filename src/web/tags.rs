//! Token classification in the page: a CoNLL or JSON Lines file of tagged words previewed with
//! its entities coloured by type, summarised (tags, scheme, entities per type) by the same
//! reader as `lorabert train --train-file` (`tasks::own::tokens::training_tags`), and "Try it"
//! on a token-classification model: the typed sentence with its entities highlighted, each with
//! its type and score, through the code of `lorabert predict --sentence`
//! (`train::entities::predict_entities`).

use super::dom::esc;
use crate::data::conll::TaggedFile;
use crate::tasks::own::tokens::{self, TrainingTags};
use crate::tasks::own_task::TOKEN_METRICS;
use crate::tasks::tags::{TagScheme, entities};
use crate::train::entities::TextEntities;

/// Colours the page has for entity types (`.ent.c0` .. `.ent.c7` in `style.css`).
const COLOURS: usize = 8;

/// The colour class of entity type `ty`: the same type gets the same colour in the preview and
/// in Try it (the common CoNLL types their own; others by a hash of the name).
fn colour(ty: &str) -> usize {
    match ty {
        "PER" => 0,
        "ORG" => 1,
        "LOC" => 2,
        "MISC" => 3,
        _ => ty.bytes().map(usize::from).sum::<usize>() % COLOURS,
    }
}

/// An entity as a highlighted span: its text with the type (and score) in small letters.
fn mark(text: &str, ty: &str, score: Option<f64>) -> String {
    let score = score.map_or(String::new(), |s| format!(" {s:.2}"));
    format!(
        "<mark class=\"ent c{}\" title=\"{}\">{}<small>{}{score}</small></mark>",
        colour(ty),
        esc(ty),
        esc(text),
        esc(ty)
    )
}

/// The preview of `file`'s first `rows` sentences: line, then the words with each entity
/// (decoded under `scheme`) highlighted by type; a word's tag is its tooltip.
pub fn preview_html(file: &TaggedFile, scheme: TagScheme, rows: usize) -> String {
    let mut html = String::from("<tr><th>line</th><th>words and entities</th></tr>");
    for s in file.sentences.iter().take(rows) {
        let spans = entities(std::slice::from_ref(&s.tags), scheme);
        let mut cells = Vec::new();
        let mut i = 0;
        for (ty, first, last) in spans {
            cells.extend(s.tokens[i..first].iter().map(|w| esc(w)));
            cells.push(mark(&s.tokens[first..=last].join(" "), &ty, None));
            i = last + 1;
        }
        cells.extend(s.tokens[i.min(s.tokens.len())..].iter().map(|w| esc(w)));
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"words\">{}</td></tr>",
            s.line,
            cells.join(" ")
        ));
    }
    html
}

/// The summary line of a training file of tagged words as [`tokens::training_tags`] read it: its
/// tags, the scheme (and the tags read against it), sentences and entities per type, the
/// metrics.
pub fn summary(read: &TrainingTags) -> String {
    let counts = tokens::summarize(&read.file, read.scheme);
    let irregular = match read.detected.irregular {
        0 => String::new(),
        n => format!(" ({n} tags start an entity against the scheme: read as seqeval reads them)"),
    };
    let mut tags: Vec<&str> = read.id2label.iter().map(String::as_str).take(20).collect();
    if read.id2label.len() > 20 {
        tags.push("...");
    }
    format!(
        "token classification with {} tags ({}), {}{irregular} of the words of {}: {counts}; \
         metrics {}",
        read.id2label.len(),
        tags.join(", "),
        read.scheme.name(),
        if read.file.conll {
            "a CoNLL file"
        } else {
            "a JSON Lines file"
        },
        TOKEN_METRICS.join(", ")
    )
}

/// The typed text with the entities of `e` highlighted, then a table of them (type, text,
/// characters, score).
pub fn entities_html(text: &str, e: &TextEntities) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::from("<tr><td colspan=\"4\" class=\"words\">");
    let mut at = 0;
    for s in &e.entities {
        out.push_str(&esc(&chars[at..s.start].iter().collect::<String>()));
        out.push_str(&mark(&s.word, &s.entity_group, Some(s.score)));
        at = s.end;
    }
    out.push_str(&esc(&chars[at.min(chars.len())..]
        .iter()
        .collect::<String>()));
    out.push_str("</td></tr><tr><th>type</th><th>text</th><th>characters</th><th>score</th></tr>");
    if e.entities.is_empty() {
        out.push_str("<tr><td colspan=\"4\">no entities</td></tr>");
    }
    for s in &e.entities {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}..{}</td><td>{:.4}</td></tr>",
            esc(&s.entity_group),
            esc(&s.word),
            s.start,
            s.end,
            s.score
        ));
    }
    out
}
