//! Token-classification data: CoNLL or JSON Lines files of tagged words
//! ([`crate::data::conll`]) → the task (its tags, as transformers' `run_ner.py` sorts them; the
//! scheme, detected or `--tag-scheme`) and its examples, each word's tag on its first word piece
//! (`run_ner.py`'s alignment; `--label-all-tokens` gives the later pieces the tag too, `B-` as
//! `I-`). A sentence longer than the window (`--max-len` pieces, `[CLS]` and `[SEP]`
//! included) is split into windows that share `--stride` pieces, so that no word goes
//! unlabelled or unpredicted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Columns, DataSpec, DataSummary, LabelSummary, OwnData, OwnTask, TaskKind, TaskType};
use crate::data::conll::{JsonKeys, TOKEN_KEYS, TaggedFile, read_conll, read_token_jsonl};
use crate::data::sha256_hex;
use crate::data::table::Format;
use crate::error::{Error, Result};
use crate::model::{BertTokenizer, Encoded};
use crate::tasks::kinds;
use crate::tasks::tags::{Detected, TagScheme, continuation, detect, entities};
use crate::tasks::{NO_TAG, Prepared, TaskData, WindowWords};

/// Word pieces consecutive windows share unless `--stride` says otherwise.
pub const DEFAULT_STRIDE: usize = 32;

/// Whether `spec`'s training file (`bytes`) is token-classification data: `--task-type
/// token-classification`, a CoNLL file (`--format conll`, `.conll`, `.iob`, `.bio`, `.txt`),
/// or JSON Lines whose first object has a list of tokens (`tokens` or `words`).
///
/// # Errors
/// [`Error::Config`] for a file of unknown extension and no `--format`.
pub fn is_token_data(spec: &DataSpec, bytes: &[u8]) -> Result<bool> {
    if spec.task_type == Some(TaskType::TokenClassification) {
        return Ok(true);
    }
    Ok(match Format::resolve(&spec.train_file, spec.format)? {
        Format::Conll => true,
        Format::Jsonl => first_object_has_tokens(bytes, spec.text_column.as_deref()),
        Format::Csv | Format::Tsv => false,
    })
}

/// Whether the first non-blank line of JSON Lines `bytes` is an object with a list under the
/// tokens key (`key`, else one of [`TOKEN_KEYS`]).
fn first_object_has_tokens(bytes: &[u8], key: Option<&str>) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 20)]);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(first) else {
        return false;
    };
    let keys: Vec<&str> = key.map_or_else(|| TOKEN_KEYS.to_vec(), |k| vec![k]);
    keys.iter()
        .any(|k| matches!(o.get(*k), Some(serde_json::Value::Array(_))))
}

/// Reads tagged sentences from a token file `name` (`bytes`) under `spec`: CoNLL (`--format
/// conll` or its extensions; `--label-column N` the tag column, 0-based, default the last) or
/// JSON Lines (`--text-column`/`--label-column` the keys, `--label-names` for integer tags).
///
/// # Errors
/// The readers' errors naming file and line; [`Error::Invalid`] for a `--label-column` that
/// is not a column number on a CoNLL file.
pub fn read_tagged(bytes: &[u8], name: &str, spec: &DataSpec) -> Result<TaggedFile> {
    match Format::resolve(name, spec.format)? {
        Format::Jsonl => read_token_jsonl(
            bytes,
            name,
            JsonKeys {
                tokens: spec.text_column.as_deref(),
                tags: spec.label_column.as_deref(),
                label_names: spec.label_names.as_deref(),
            },
        ),
        Format::Conll | Format::Csv | Format::Tsv => {
            let column = match &spec.label_column {
                None => None,
                Some(c) => Some(c.parse::<usize>().map_err(|_| {
                    Error::Invalid(format!(
                        "--label-column `{c}`: a CoNLL file's columns are numbered (0 is the \
                         word; the tag is the last column unless you name another)"
                    ))
                })?),
            };
            read_conll(bytes, name, column)
        }
    }
}

/// The windows of a sentence whose words have `pieces[i]` word pieces each, for `room` pieces
/// per window (the window less `[CLS]` and `[SEP]`), consecutive windows sharing at most
/// `stride` pieces (whole words): `(first, end, own_first, own_end)` word ranges, the words the
/// window holds and those it predicts (the first half of an overlap goes to the earlier
/// window). A word of more than `room` pieces counts as `room` (its pieces are cut).
pub fn windows(pieces: &[usize], room: usize, stride: usize) -> Vec<[usize; 4]> {
    let n = pieces.len();
    let c = |i: usize| pieces[i].min(room);
    let mut spans: Vec<[usize; 2]> = Vec::new();
    let mut start = 0;
    loop {
        let (mut end, mut used) = (start, 0);
        while end < n && used + c(end) <= room {
            used += c(end);
            end += 1;
        }
        let end = end.max(start + 1).min(n.max(start + 1));
        spans.push([start, end]);
        if end >= n {
            break;
        }
        let (mut s, mut shared) = (end, 0);
        while s > start + 1 && shared + c(s - 1) <= stride {
            shared += c(s - 1);
            s -= 1;
        }
        start = s;
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut own_first = 0;
    for (k, &[first, end]) in spans.iter().enumerate() {
        let own_end = match spans.get(k + 1) {
            Some(&[next, _]) => next + (end - next).div_ceil(2),
            None => end,
        };
        out.push([first, end, own_first, own_end]);
        own_first = own_end;
    }
    out
}

/// The examples of `file`'s sentences (at most `limit`) for a token task of tags `id2label`:
/// one per window, `label_ids` each piece's target ([`NO_TAG`] where the loss leaves it out),
/// `words` the words it predicts with their gold tags. Returns them with the number of words
/// cut to the window and of sentences split.
///
/// # Errors
/// [`Error::Data`] naming the file and line of a tag not in `id2label` (a validation tag the
/// training file does not have); the tokenizer's errors.
#[allow(clippy::too_many_arguments)]
fn examples(
    file: &TaggedFile,
    id2label: &[String],
    tok: &BertTokenizer,
    window: usize,
    stride: usize,
    label_all_tokens: bool,
    limit: Option<usize>,
) -> Result<(Vec<Prepared>, usize, usize)> {
    let ids: HashMap<&str, u32> = id2label
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let later: Vec<u32> = id2label
        .iter()
        .map(|t| ids[continuation(t, id2label).as_str()])
        .collect();
    let (cls, sep) = tok.wrapping()?;
    let room = window.saturating_sub(2).max(1);
    let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
    let (mut out, mut cut, mut split) = (Vec::new(), 0, 0);
    for (si, s) in file
        .sentences
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .enumerate()
    {
        let mut gold = Vec::with_capacity(s.tokens.len());
        for (j, t) in s.tags.iter().enumerate() {
            gold.push(*ids.get(t.as_str()).ok_or_else(|| {
                // A CoNLL sentence's words are on consecutive lines.
                let line = if file.conll {
                    s.line + j as u64
                } else {
                    s.line
                };
                Error::data(
                    &file.source,
                    line,
                    format!(
                        "tag `{t}` (word `{}`) does not occur in the training data (its tags: {})",
                        s.tokens[j],
                        id2label.join(", ")
                    ),
                )
            })?);
        }
        if gold.is_empty() {
            gold = vec![NO_TAG; s.tokens.len()];
        }
        for w in &s.tokens {
            if !cache.contains_key(w.as_str()) {
                cache.insert(w, tok.word_pieces(w)?);
            }
        }
        let pieces: Vec<&Vec<u32>> = s.tokens.iter().map(|w| &cache[w.as_str()]).collect();
        cut += pieces.iter().filter(|p| p.len() > room).count();
        let counts: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        let spans = windows(&counts, room, stride);
        split += (spans.len() > 1) as usize;
        for [first, end, own_first, own_end] in spans {
            let mut ids = vec![cls];
            let mut targets = vec![NO_TAG];
            let mut words = WindowWords {
                sentence: si as u32,
                pieces: Vec::new(),
                gold: Vec::new(),
            };
            for w in first..end {
                let p = &pieces[w][..pieces[w].len().min(room)];
                if (own_first..own_end).contains(&w) {
                    words
                        .pieces
                        .push(if p.is_empty() { 0 } else { ids.len() as u32 });
                    words.gold.push(gold[w]);
                }
                for (k, &id) in p.iter().enumerate() {
                    ids.push(id);
                    targets.push(match (k, gold[w]) {
                        (_, NO_TAG) => NO_TAG,
                        (0, g) => g,
                        (_, g) if label_all_tokens => later[g as usize],
                        _ => NO_TAG,
                    });
                }
            }
            ids.push(sep);
            targets.push(NO_TAG);
            out.push(Prepared {
                id: s.id.clone(),
                a: Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                    truncated: false,
                },
                b: None,
                label: 0.0,
                label_ids: targets,
                negatives: Vec::new(),
                words: Some(words),
            });
        }
    }
    Ok((out, cut, split))
}

/// The label summary of tagged sentences: sentences, and entities per type (decoded under
/// `scheme`).
pub fn summarize(file: &TaggedFile, scheme: TagScheme) -> LabelSummary {
    let tags: Vec<Vec<String>> = file.sentences.iter().map(|s| s.tags.clone()).collect();
    let mut counts = BTreeMap::new();
    for (t, _, _) in entities(&tags, scheme) {
        *counts.entry(t).or_insert(0) += 1;
    }
    LabelSummary {
        rows: file.sentences.len(),
        entities: Some(counts.values().sum()),
        counts,
        range: None,
        labels_per_row: None,
    }
}

/// A seeded random split of `file`'s sentences: `fraction` of them held out for validation.
fn split(file: TaggedFile, fraction: f64, seed: u64) -> Result<(TaggedFile, TaggedFile)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Invalid(format!(
            "--validation-split {fraction} must be in (0, 1)"
        )));
    }
    let n = file.sentences.len();
    let held = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    if n < 2 {
        return Err(Error::Invalid(format!(
            "{}: too few sentences ({n}) to hold out {fraction} for validation",
            file.source
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let val_idx: BTreeSet<usize> = order[..held].iter().copied().collect();
    let mut file = file;
    let all = std::mem::take(&mut file.sentences);
    let (mut train, mut val) = (file.clone(), file);
    for (i, s) in all.into_iter().enumerate() {
        if val_idx.contains(&i) {
            val.sentences.push(s);
        } else {
            train.sentences.push(s);
        }
    }
    Ok((train, val))
}

/// A training file of tagged words as a run reads it, before tokenising: what the page's
/// summary shows and [`load`] trains on.
#[derive(Debug, Clone)]
pub struct TrainingTags {
    /// Its sentences.
    pub file: TaggedFile,
    /// Its tags, sorted (the label list, as `run_ner.py`'s `get_label_list`).
    pub id2label: Vec<String>,
    /// The scheme: `--tag-scheme`, else the detected one.
    pub scheme: TagScheme,
    /// What detection found (the scheme, and the tags that go against it).
    pub detected: Detected,
}

/// Reads the training file `spec.train_file` (`bytes`) of a token-classification run: its
/// sentences, sorted tags and scheme ([`TrainingTags`]).
///
/// # Errors
/// As [`read_tagged`] and [`detect`]; [`Error::Data`] for a file without tags.
pub fn training_tags(spec: &DataSpec, bytes: &[u8]) -> Result<TrainingTags> {
    let file = read_tagged(bytes, &spec.train_file, spec)?;
    if file.sentences.iter().all(|s| s.tags.is_empty()) {
        return Err(Error::data(
            &spec.train_file,
            file.sentences.first().map_or(1, |s| s.line),
            "no tags: training needs a tag per word (CoNLL: a second column; JSON Lines: a \
             list under one of ner_tags, tags, labels, ... or --label-column)",
        ));
    }
    let detected = detect(
        file.sentences.iter().map(|s| (s.line, &s.tags[..])),
        &spec.train_file,
    )?;
    let id2label: Vec<String> = file
        .sentences
        .iter()
        .flat_map(|s| s.tags.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(TrainingTags {
        file,
        id2label,
        scheme: spec.tag_scheme.unwrap_or(detected.scheme),
        detected,
    })
}

/// Reads a token-classification run's data (the counterpart of [`super::load`] for CoNLL and
/// JSON Lines token files): the tags of the training file (sorted, as `run_ner.py`'s
/// `get_label_list`), the scheme (`--tag-scheme`, else detected), the validation file or a
/// seeded split of the training sentences, windows of `tok.max_len()` pieces.
///
/// # Errors
/// The readers' errors; [`Error::Data`] for a training file without tags, a validation tag the
/// training file lacks; [`Error::Invalid`] for a `--stride` that leaves a window no new word,
/// an unknown `--metric-for-best-model`.
#[allow(clippy::too_many_arguments)]
pub fn load(
    spec: &DataSpec,
    train_bytes: &[u8],
    validation_bytes: Option<&[u8]>,
    tok: &BertTokenizer,
    seed: u64,
    max_train: Option<usize>,
    max_eval: Option<usize>,
) -> Result<OwnData> {
    let format = match Format::resolve(&spec.train_file, spec.format)? {
        Format::Jsonl => Format::Jsonl,
        _ => Format::Conll,
    };
    let TrainingTags {
        file: all,
        id2label,
        scheme,
        detected,
    } = training_tags(spec, train_bytes)?;
    let window = tok.max_len();
    let stride = spec.stride.unwrap_or(DEFAULT_STRIDE.min(window / 4));
    if stride >= window - 2 {
        return Err(Error::Invalid(format!(
            "--stride {stride} must be under the window's {} word pieces (--max-len {window} \
             less [CLS] and [SEP])",
            window - 2
        )));
    }
    let kind = TaskKind::TokenClassification {
        id2label: id2label.clone(),
        scheme,
        window,
        stride,
        label_all_tokens: spec.label_all_tokens,
        label_names: match format {
            Format::Jsonl => spec.label_names.clone().unwrap_or_default(),
            _ => Vec::new(),
        },
    };
    let metric = metric(spec, &kind)?;
    let text_column = spec.text_column.clone().unwrap_or_else(|| match format {
        Format::Jsonl => TOKEN_KEYS[0].to_string(),
        _ => "column 0".to_string(),
    });
    let task = OwnTask {
        name: super::stem(&spec.train_file),
        kind,
        columns: Columns {
            text: text_column,
            text_pair: None,
            label: all.tag_column.clone(),
            multi_label: None,
            negatives: Vec::new(),
        },
        metric_for_best_model: metric,
        no_header: false,
        pairs_optional: false,
    };
    let (train, val, validation) = match (&spec.validation_file, validation_bytes) {
        (Some(name), Some(bytes)) => {
            let v = read_tagged(bytes, name, spec)?;
            (all, v, name.clone())
        }
        _ => {
            let (t, v) = split(all, spec.validation_split, seed)?;
            let held = format!(
                "{} of the {} sentences of {} held out (random, seed {seed})",
                v.sentences.len(),
                t.sentences.len() + v.sentences.len(),
                spec.train_file
            );
            (t, v, held)
        }
    };
    let mut warnings = Vec::new();
    if detected.irregular > 0 && spec.tag_scheme.is_none() {
        warnings.push(match detected.scheme {
            TagScheme::Iob2 => format!(
                "{} tags I-X in {} start an entity (after O or another type), which IOB2 \
                 does not do: read as seqeval reads them, a new entity",
                detected.irregular, spec.train_file
            ),
            _ => format!(
                "{} tags B-X in {} follow O, which IOB1 does not do (CoNLL-2003 has two): \
                 read as conlleval reads them, a new entity",
                detected.irregular, spec.train_file
            ),
        });
    }
    if spec.label_names.is_some() && format != Format::Jsonl {
        warnings.push(format!(
            "--label-names names integer tags in JSON Lines; {} is a CoNLL file, whose tags are \
             their names: not used",
            spec.train_file
        ));
    }
    let kind_arc = kinds::own(&task);
    let (tr, cut_t, split_t) = examples(
        &train,
        &id2label,
        tok,
        window,
        stride,
        spec.label_all_tokens,
        max_train,
    )?;
    let (dv, cut_v, split_v) = examples(&val, &id2label, tok, window, stride, false, max_eval)?;
    if split_t + split_v > 0 {
        warnings.push(format!(
            "{} sentences longer than {} word pieces (--max-len {window}) are split into \
             windows sharing {stride} pieces (--stride); every word is trained on and predicted",
            split_t + split_v,
            window - 2
        ));
    }
    let summary = DataSummary {
        train_file: spec.train_file.clone(),
        validation,
        format,
        train: summarize(&train, scheme),
        validation_labels: summarize(&val, scheme),
        skipped_rows: 0,
        empty_texts: 0,
        train_sha256: sha256_hex(train_bytes),
        validation_sha256: validation_bytes.map(sha256_hex),
        warnings,
    };
    Ok(OwnData {
        train: task_data(kind_arc.clone(), tr, cut_t),
        dev: task_data(kind_arc, dv, cut_v),
        task,
        summary,
    })
}

/// A tagged file (`bytes` of `name`, CoNLL or JSON Lines by its extension or `format`) as task
/// data of the token task `task` (at most `limit` sentences), read as the run read its
/// validation file: the same tag column or key, window and stride; integer tags in JSON Lines
/// are read by `label_names` (`--label-names`), else by the names the run was trained with.
/// For `lorabert eval`.
///
/// # Errors
/// As [`read_tagged`]; [`Error::Invalid`] for a task of another kind; [`Error::Data`] for a
/// file without tags or a tag the task does not have.
pub fn eval_data(
    bytes: &[u8],
    name: &str,
    format: Option<Format>,
    task: &OwnTask,
    tok: &BertTokenizer,
    limit: Option<usize>,
    label_names: Option<&[String]>,
) -> Result<TaskData> {
    let (id2label, window, stride) = shape(task)?;
    let jsonl = Format::resolve(name, format)? == Format::Jsonl;
    let trained: &[String] = match &task.kind {
        TaskKind::TokenClassification { label_names, .. } => label_names,
        _ => &[],
    };
    let label_names = match label_names {
        Some(given) if !trained.is_empty() && given != trained => {
            return Err(Error::Invalid(format!(
                "--label-names differs from the names the run read its integer tags by ({}): \
                 ids would mean other tags; leave --label-names out to use the run's",
                trained.join(", ")
            )));
        }
        Some(given) => Some(given),
        None => (!trained.is_empty()).then_some(trained),
    };
    // The run's tag column (`column 3`) or key (`ner_tags`), where this file is of that form.
    let label_column = match (jsonl, task.columns.label.strip_prefix("column ")) {
        (false, Some(n)) => Some(n.to_string()),
        (true, None) => Some(task.columns.label.clone()),
        _ => None,
    };
    let text_column = match (jsonl, task.columns.text.starts_with("column ")) {
        (true, false) => Some(task.columns.text.clone()),
        _ => None,
    };
    let spec = DataSpec {
        format,
        text_column,
        label_column,
        label_names: label_names.map(<[String]>::to_vec),
        ..DataSpec::default()
    };
    let file = read_tagged(bytes, name, &spec)?;
    if file.sentences.iter().all(|s| s.tags.is_empty()) {
        return Err(Error::data(name, 1, "no tags to evaluate against"));
    }
    let (ex, cut, _) = examples(&file, id2label, tok, window, stride, false, limit)?;
    Ok(task_data(kinds::own(task), ex, cut))
}

/// The tags, window and stride of the token task `task`.
///
/// # Errors
/// [`Error::Invalid`] for a task of another kind.
fn shape(task: &OwnTask) -> Result<(&[String], usize, usize)> {
    match &task.kind {
        TaskKind::TokenClassification {
            id2label,
            window,
            stride,
            ..
        } => Ok((id2label, *window, *stride)),
        _ => Err(Error::Invalid(format!(
            "`{}` is not a token task",
            task.name
        ))),
    }
}

/// Sentences of words without tags (text to predict on) as task data of the token task `task`:
/// windows as in training, each sentence's id its 1-based position.
///
/// # Errors
/// [`Error::Invalid`] for a task of another kind; the tokenizer's errors.
pub fn untagged(
    sentences: &[Vec<String>],
    task: &OwnTask,
    tok: &BertTokenizer,
) -> Result<TaskData> {
    let (id2label, window, stride) = shape(task)?;
    let file = TaggedFile {
        source: "input".into(),
        sentences: sentences
            .iter()
            .enumerate()
            .map(|(i, words)| crate::data::conll::TaggedSentence {
                line: i as u64 + 1,
                id: (i + 1).to_string(),
                tokens: words.clone(),
                tags: Vec::new(),
            })
            .collect(),
        tag_column: String::new(),
        docstarts: 0,
        conll: false,
    };
    let (ex, cut, _) = examples(&file, id2label, tok, window, stride, false, None)?;
    Ok(task_data(kinds::own(task), ex, cut))
}

fn task_data(kind: Arc<dyn crate::tasks::Kind>, examples: Vec<Prepared>, cut: usize) -> TaskData {
    TaskData {
        kind,
        examples,
        truncated: cut,
        skipped_rows: 0,
    }
}

/// The metric that picks the best epoch: the one asked (`eval_` prefix optional; `f1/<type>`
/// for one entity type's F1), else `f1`.
fn metric(spec: &DataSpec, kind: &TaskKind) -> Result<String> {
    let Some(m) = spec.metric_for_best_model.as_deref() else {
        return Ok(kind.default_metric().to_string());
    };
    let m = m.strip_prefix("eval_").unwrap_or(m);
    if kind.metric_names().contains(&m) || m.starts_with("f1/") {
        Ok(m.to_string())
    } else {
        Err(Error::Invalid(format!(
            "--metric-for-best-model `{m}` is not a metric of token-classification (use one of \
             {}, or f1/<type>)",
            kind.metric_names().join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_word_once() {
        // No split when the sentence fits.
        assert_eq!(windows(&[1, 2, 1], 10, 2), vec![[0, 3, 0, 3]]);
        // 6 words of 2 pieces, 5 pieces per window, 2 shared.
        let w = windows(&[2; 6], 5, 2);
        assert_eq!(
            w,
            vec![
                [0, 2, 0, 2],
                [1, 3, 2, 3],
                [2, 4, 3, 4],
                [3, 5, 4, 5],
                [4, 6, 5, 6]
            ]
        );
        for (counts, room, stride) in [(vec![1, 3, 1, 1, 4, 1, 1, 2], 5, 3), (vec![9, 1, 9], 4, 1)]
        {
            let w = windows(&counts, room, stride);
            let owned: Vec<usize> = w.iter().flat_map(|s| s[2]..s[3]).collect();
            assert_eq!(owned, (0..counts.len()).collect::<Vec<_>>(), "{w:?}");
            assert!(w.iter().all(|s| s[0] <= s[2] && s[3] <= s[1]), "{w:?}");
        }
    }
}
