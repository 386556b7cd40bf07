//! Per-token tags: the tagging schemes (IOB1 as CoNLL-2003 publishes it, IOB2, IOBES/BILOU,
//! plain tags), entities decoded from tags as `seqeval` decodes them in its default mode (the
//! conlleval rules), and the entity-level scores of token classification (`seqeval`'s
//! micro-averaged precision, recall and F1, per entity type, and token accuracy).
//!
//! Source: `seqeval.metrics.sequence_labeling` 1.2.2 (`get_entities`, `end_of_chunk`,
//! `start_of_chunk`, `precision_recall_fscore_support` with `average="micro"`,
//! `accuracy_score`), the metrics transformers' `run_ner.py` reports; checked against it by
//! `tests/token.rs` on golden files from `tools/make_golden_token.py`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a file's tags mark where entities begin and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagScheme {
    /// `I-X` inside an entity, `B-X` only where an entity follows one of the same type
    /// (CoNLL-2003 as published).
    Iob1,
    /// `B-X` on every entity's first token, `I-X` on the rest (Hugging Face's `conll2003`).
    Iob2,
    /// `B-`, `I-`, `E-` (last) and `S-` (single-token) prefixes; BILOU's `L-` and `U-` are read
    /// as `E-` and `S-`.
    Iobes,
    /// Tags without prefixes (`PER`, `O`): each run of one tag is one entity (IO tagging).
    Plain,
}

impl TagScheme {
    /// `IOB1`, `IOB2`, `IOBES` or `plain`.
    pub fn name(self) -> &'static str {
        match self {
            TagScheme::Iob1 => "IOB1",
            TagScheme::Iob2 => "IOB2",
            TagScheme::Iobes => "IOBES",
            TagScheme::Plain => "plain",
        }
    }

    /// The scheme named `name` (`iob1`, `iob2`, `bio`, `iobes`, `bilou`, `plain`; any case).
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name.
    pub fn parse(name: &str) -> Result<TagScheme> {
        match name.to_ascii_lowercase().as_str() {
            "iob1" | "iob" => Ok(TagScheme::Iob1),
            "iob2" | "bio" => Ok(TagScheme::Iob2),
            "iobes" | "bioes" | "bilou" => Ok(TagScheme::Iobes),
            "plain" | "io" | "none" => Ok(TagScheme::Plain),
            other => Err(Error::Invalid(format!(
                "--tag-scheme `{other}`: use iob1, iob2, iobes (or bilou) or plain"
            ))),
        }
    }
}

/// A tag split into its prefix (`B`, `I`, `E`, `S`, `L`, `U`) and type; `None` for `O` and for
/// tags without one of these prefixes.
fn prefixed(tag: &str) -> Option<(char, &str)> {
    let (p, t) = tag.split_once('-')?;
    matches!(p, "B" | "I" | "E" | "S" | "L" | "U").then(|| (p.chars().next().unwrap_or('O'), t))
}

/// The scheme label names suggest, where no tagged data says more (a PEFT adapter's
/// `id2label`): IOBES when a name has an `E-`, `S-`, `L-` or `U-` prefix, IOB2 when one has a
/// `B-` or `I-` prefix (Hugging Face's datasets), else plain.
pub fn scheme_of_labels(labels: &[String]) -> TagScheme {
    let prefixes: Vec<char> = labels
        .iter()
        .filter_map(|l| prefixed(l))
        .map(|(p, _)| p)
        .collect();
    if prefixes.iter().any(|p| matches!(p, 'E' | 'S' | 'L' | 'U')) {
        TagScheme::Iobes
    } else if prefixes.is_empty() {
        TagScheme::Plain
    } else {
        TagScheme::Iob2
    }
}

/// What [`detect`] found: the scheme, and how many tags go against it (IOB2's `I-X` after `O`
/// or another type, which `seqeval` reads as an entity's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The scheme.
    pub scheme: TagScheme,
    /// IOB2 only: `I-X` tags that start an entity (after `O`, another type or the sentence's
    /// start); `B-X` tags after `O` in IOB1 (CoNLL-2003 has two).
    pub irregular: usize,
}

/// Detects the scheme of `sentences`' tags (each sentence with its first line, for errors):
/// IOBES when any tag has an `E-`, `S-`, `L-` or `U-` prefix; else IOB1 when more entities
/// start with `I-` than `B-` does after `O` (CoNLL-2003's own tags), else IOB2; plain when no
/// tag but `O` has a prefix.
///
/// # Errors
/// [`Error::Data`] at the first line of `source` whose sentence mixes prefixed and unprefixed
/// tags (other than `O`).
pub fn detect<'a, I>(sentences: I, source: &str) -> Result<Detected>
where
    I: IntoIterator<Item = (u64, &'a [String])>,
{
    let (mut plain, mut prefixes) = (None::<(u64, String)>, None::<(u64, String)>);
    let (mut ends, mut i_starts, mut b_after_other) = (false, 0usize, 0usize);
    for (line, tags) in sentences {
        let mut prev: Option<(char, &str)> = None;
        for tag in tags {
            if tag == "O" {
                prev = None;
                continue;
            }
            match prefixed(tag) {
                None => {
                    plain.get_or_insert((line, tag.clone()));
                    prev = None;
                }
                Some((p, t)) => {
                    prefixes.get_or_insert((line, tag.clone()));
                    ends |= matches!(p, 'E' | 'S' | 'L' | 'U');
                    let same = prev.is_some_and(|(_, pt)| pt == t);
                    if p == 'I' && !same {
                        i_starts += 1;
                    }
                    if p == 'B' && !same {
                        b_after_other += 1;
                    }
                    prev = Some((p, t));
                }
            }
        }
    }
    match (plain, prefixes) {
        (Some((l1, a)), Some((l2, b))) => Err(Error::data(
            source,
            l1.max(l2),
            format!(
                "tags with and without a B-/I-/E-/S- prefix in one file (`{a}` at line {l1}, \
                 `{b}` at line {l2}): name the scheme with --tag-scheme or fix the tags"
            ),
        )),
        (Some(_), None) => Ok(Detected {
            scheme: TagScheme::Plain,
            irregular: 0,
        }),
        _ if ends => Ok(Detected {
            scheme: TagScheme::Iobes,
            irregular: 0,
        }),
        _ if i_starts > b_after_other => Ok(Detected {
            scheme: TagScheme::Iob1,
            irregular: b_after_other,
        }),
        _ => Ok(Detected {
            scheme: TagScheme::Iob2,
            irregular: i_starts,
        }),
    }
}

/// One entity: its type and its first and last word (inclusive), as positions in the
/// sentences laid end to end with one `O` after each (`seqeval`'s flattening).
pub type Entity = (String, usize, usize);

/// The tag as `seqeval` reads it under `scheme`: BILOU's `L-`/`U-` as `E-`/`S-`, a plain tag
/// `X` as `I-X`.
fn as_seqeval(tag: &str, scheme: TagScheme) -> String {
    if tag == "O" {
        return tag.to_string();
    }
    match (scheme, prefixed(tag)) {
        (TagScheme::Plain, _) => format!("I-{tag}"),
        (_, Some(('L', t))) => format!("E-{t}"),
        (_, Some(('U', t))) => format!("S-{t}"),
        _ => tag.to_string(),
    }
}

/// The entities of `sentences` under `scheme`, as `seqeval.metrics.sequence_labeling.
/// get_entities` returns them for a list of sentences (default mode: a chunk ends and starts
/// by the conlleval rules, so IOB1's `I-X` after `O` starts an entity and `B-X` after `I-X`
/// starts another).
pub fn entities(sentences: &[Vec<String>], scheme: TagScheme) -> Vec<Entity> {
    let mut flat: Vec<String> = Vec::new();
    for s in sentences {
        flat.extend(s.iter().map(|t| as_seqeval(t, scheme)));
        flat.push("O".into());
    }
    flat.push("O".into());
    let (mut prev_tag, mut prev_type) = ('O', String::new());
    let mut begin = 0;
    let mut chunks = Vec::new();
    for (i, chunk) in flat.iter().enumerate() {
        let tag = chunk.chars().next().unwrap_or('O');
        let rest = chunk.get(tag.len_utf8()..).unwrap_or("");
        let ty = match rest.split_once('-') {
            Some((_, t)) => t,
            None => rest,
        };
        let ty = if ty.is_empty() { "_" } else { ty };
        if end_of_chunk(prev_tag, tag, &prev_type, ty) {
            chunks.push((prev_type.clone(), begin, i - 1));
        }
        if start_of_chunk(prev_tag, tag, &prev_type, ty) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = ty.to_string();
    }
    chunks
}

/// `seqeval`'s `end_of_chunk`.
fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != ty)
}

/// `seqeval`'s `start_of_chunk`.
fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != ty)
}

/// Precision, recall, F1 and support of one entity type (or of all, micro-averaged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    /// Correct predicted entities / predicted entities (0 when none are predicted).
    pub precision: f64,
    /// Correct predicted entities / gold entities (0 when there are none).
    pub recall: f64,
    /// Their harmonic mean (0 when both are 0).
    pub f1: f64,
    /// Gold entities.
    pub support: usize,
}

impl Prf {
    fn of(correct: usize, predicted: usize, gold: usize) -> Prf {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (p, r) = (ratio(correct, predicted), ratio(correct, gold));
        Prf {
            precision: p,
            recall: r,
            f1: if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            },
            support: gold,
        }
    }
}

/// Entity-level scores of predicted tags against gold tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagScores {
    /// All types, micro-averaged (`seqeval`'s `f1_score` default, conlleval's overall line).
    pub micro: Prf,
    /// Per entity type, in type order (`classification_report`'s rows).
    pub per_type: BTreeMap<String, Prf>,
    /// Tokens whose predicted tag equals the gold tag / tokens (`accuracy_score`).
    pub accuracy: f64,
}

/// The scores of `pred` against `gold` (sentences of tags, the same lengths), entities
/// decoded under `scheme` ([`entities`]).
///
/// # Panics
/// When a predicted sentence's length differs from its gold one's (a programming error: the
/// predictions are made per gold word).
pub fn scores(gold: &[Vec<String>], pred: &[Vec<String>], scheme: TagScheme) -> TagScores {
    assert_eq!(
        gold.len(),
        pred.len(),
        "one predicted sentence per gold one"
    );
    let (mut tokens, mut same) = (0usize, 0usize);
    for (g, p) in gold.iter().zip(pred) {
        assert_eq!(g.len(), p.len(), "one predicted tag per gold tag");
        tokens += g.len();
        same += g.iter().zip(p).filter(|(a, b)| a == b).count();
    }
    let g: BTreeSet<Entity> = entities(gold, scheme).into_iter().collect();
    let p: BTreeSet<Entity> = entities(pred, scheme).into_iter().collect();
    let types: BTreeSet<&str> = g.iter().chain(&p).map(|e| e.0.as_str()).collect();
    let count = |s: &BTreeSet<Entity>, t: &str| s.iter().filter(|e| e.0 == t).count();
    let per_type = types
        .iter()
        .map(|&t| {
            let correct = g.iter().filter(|e| e.0 == t && p.contains(*e)).count();
            (t.to_string(), Prf::of(correct, count(&p, t), count(&g, t)))
        })
        .collect();
    let correct = g.intersection(&p).count();
    TagScores {
        micro: Prf::of(correct, p.len(), g.len()),
        per_type,
        accuracy: if tokens == 0 {
            0.0
        } else {
            same as f64 / tokens as f64
        },
    }
}

/// The tag a word's later pieces train on under `--label-all-tokens` (transformers'
/// `run_ner.py` `b_to_i_label`): `B-X` becomes `I-X` when `I-X` is one of `labels`, any other
/// tag stays.
pub fn continuation(tag: &str, labels: &[String]) -> String {
    match tag.strip_prefix("B-") {
        Some(t) if labels.iter().any(|l| l == &format!("I-{t}")) => format!("I-{t}"),
        _ => tag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(tags: &str) -> Vec<String> {
        tags.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn iob1_entities_follow_conlleval() {
        // IOB1: `I-` starts an entity after O; `B-` splits two adjacent entities of one type.
        let e = entities(&[s("I-PER I-PER B-PER O I-LOC")], TagScheme::Iob1);
        assert_eq!(
            e,
            vec![
                ("PER".into(), 0, 1),
                ("PER".into(), 2, 2),
                ("LOC".into(), 4, 4)
            ]
        );
        // Sentences are laid end to end with an O between them.
        let e = entities(&[s("B-ORG"), s("I-ORG")], TagScheme::Iob2);
        assert_eq!(e, vec![("ORG".into(), 0, 0), ("ORG".into(), 2, 2)]);
        let e = entities(&[s("B-X I-X L-X U-Y")], TagScheme::Iobes);
        assert_eq!(e, vec![("X".into(), 0, 2), ("Y".into(), 3, 3)]);
        let e = entities(&[s("PER PER O LOC")], TagScheme::Plain);
        assert_eq!(e, vec![("PER".into(), 0, 1), ("LOC".into(), 3, 3)]);
    }

    #[test]
    fn schemes_are_detected() {
        let d = |v: Vec<Vec<String>>| {
            detect(v.iter().map(|t| (1u64, &t[..])), "f").map(|d| (d.scheme, d.irregular))
        };
        assert_eq!(
            d(vec![s("I-PER I-PER O I-LOC O B-ORG")]).unwrap(),
            (TagScheme::Iob1, 1)
        );
        assert_eq!(
            d(vec![s("B-PER I-PER O I-LOC B-X")]).unwrap(),
            (TagScheme::Iob2, 1)
        );
        assert_eq!(
            d(vec![s("S-PER O B-X E-X")]).unwrap(),
            (TagScheme::Iobes, 0)
        );
        assert_eq!(d(vec![s("PER O LOC")]).unwrap(), (TagScheme::Plain, 0));
        let e = d(vec![s("PER O B-LOC")]).unwrap_err().to_string();
        assert!(e.contains("with and without a B-/I-/E-/S- prefix"), "{e}");
    }

    #[test]
    fn scores_count_exact_matches() {
        let gold = vec![s("B-PER I-PER O B-LOC")];
        let pred = vec![s("B-PER I-PER O B-ORG")];
        let sc = scores(&gold, &pred, TagScheme::Iob2);
        assert_eq!(sc.micro.precision, 0.5);
        assert_eq!(sc.micro.recall, 0.5);
        assert_eq!(sc.accuracy, 0.75);
        assert_eq!(sc.per_type["LOC"].f1, 0.0);
        assert_eq!(sc.per_type["ORG"].support, 0);
        assert_eq!(continuation("B-PER", &s("B-PER I-PER")), "I-PER");
        assert_eq!(continuation("B-MISC", &s("B-MISC")), "B-MISC");
    }
}
