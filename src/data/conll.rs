//! Tagged sentences for token classification, from the two files people have: CoNLL-style
//! text (one token per line, whitespace-separated columns, a blank line between sentences,
//! `-DOCSTART-` lines skipped; the CoNLL-2003 shared task's layout, which `conlleval` and
//! Hugging Face's `conll2003` loader read) and JSON Lines of token and tag lists as Hugging Face
//! `datasets` writes them (`{"tokens": [...], "ner_tags": [...]}`). Bytes in; every error names
//! the file and line (and the column or key at fault).

use serde_json::Value;

use crate::error::{Error, Result};

/// The keys tried, in order, for a JSON Lines sentence's tokens.
pub const TOKEN_KEYS: &[&str] = &["tokens", "words"];
/// The keys tried, in order, for a JSON Lines sentence's tags.
pub const TAG_KEYS: &[&str] = &[
    "ner_tags",
    "tags",
    "labels",
    "ner",
    "pos_tags",
    "chunk_tags",
];

/// One sentence: where it starts, its id, its tokens and their tags (empty when the input has
/// no tags: text to predict on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSentence {
    /// 1-based line of its first token (CoNLL) or of its JSON object.
    pub line: u64,
    /// The JSON object's `id`, else the line number.
    pub id: String,
    /// The words.
    pub tokens: Vec<String>,
    /// One tag per word, as written; empty for untagged input.
    pub tags: Vec<String>,
}

/// The sentences of one file and how they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedFile {
    /// The file (quoted in errors).
    pub source: String,
    /// The sentences, in file order.
    pub sentences: Vec<TaggedSentence>,
    /// Where the tags came from: the CoNLL column (`column 3`) or the JSON key (`ner_tags`).
    pub tag_column: String,
    /// CoNLL `-DOCSTART-` lines skipped.
    pub docstarts: usize,
    /// Whether it was read as CoNLL (a sentence's words on consecutive lines), not JSON Lines.
    pub conll: bool,
}

impl TaggedFile {
    /// Tokens in all sentences.
    pub fn tokens(&self) -> usize {
        self.sentences.iter().map(|s| s.tokens.len()).sum()
    }
}

/// The text of `bytes` (a UTF-8 byte-order mark skipped).
///
/// # Errors
/// [`Error::Data`] naming the line and byte column of the first byte that is not UTF-8.
fn text<'a>(bytes: &'a [u8], source: &str) -> Result<&'a str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let column = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        Error::data(
            source,
            line,
            format!("byte column {column}: the file is not UTF-8 text (save it as UTF-8)"),
        )
    })
}

/// Reads a CoNLL-style file: one token per line, its columns separated by spaces or TABs
/// (any run of whitespace), the word in the first column and the tag in `tag_column`
/// (0-based; `None`: the last column); a line that is empty or only whitespace ends a
/// sentence (consecutive ones are one break, and the last sentence needs none); lines whose
/// first field is `-DOCSTART-` are skipped whatever their other fields. A file of one column
/// is untagged text (one word per line, for predictions): its tags are empty.
///
/// # Errors
/// [`Error::Data`] naming the file and line: bytes that are not UTF-8, a token line whose
/// column count differs from the file's first token line, a `tag_column` the lines do not
/// have, a file with no sentence.
pub fn read_conll(bytes: &[u8], source: &str, tag_column: Option<usize>) -> Result<TaggedFile> {
    let text = text(bytes, source)?;
    let mut sentences = Vec::new();
    let mut current: Option<TaggedSentence> = None;
    let mut columns: Option<(usize, u64)> = None;
    let mut docstarts = 0;
    let mut tag_at = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i as u64 + 1;
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.first() == Some(&"-DOCSTART-") {
            docstarts += 1;
            sentences.extend(current.take());
            continue;
        }
        if fields.is_empty() {
            sentences.extend(current.take());
            continue;
        }
        let (n, first) = *columns.get_or_insert((fields.len(), line));
        if fields.len() != n {
            return Err(Error::data(
                source,
                line,
                format!(
                    "{} column(s) where the file's token lines have {n} (as line {first}): \
                     a token with a space in it, or a missing tag?",
                    fields.len()
                ),
            ));
        }
        if n > 1 {
            tag_at = tag_column.unwrap_or(n - 1);
            if tag_at == 0 || tag_at >= n {
                return Err(Error::data(
                    source,
                    line,
                    format!(
                        "--label-column {tag_at}: the token lines have columns 0..{} (0 is the \
                         word)",
                        n - 1
                    ),
                ));
            }
        }
        let s = current.get_or_insert_with(|| TaggedSentence {
            line,
            id: line.to_string(),
            tokens: Vec::new(),
            tags: Vec::new(),
        });
        s.tokens.push(fields[0].to_string());
        if n > 1 {
            s.tags.push(fields[tag_at].to_string());
        }
    }
    sentences.extend(current.take());
    if sentences.is_empty() {
        return Err(Error::data(
            source,
            1,
            format!(
                "no sentence in the file (one token per line, a blank line between sentences{})",
                if docstarts > 0 {
                    "; only -DOCSTART- lines were found"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(TaggedFile {
        source: source.to_string(),
        sentences,
        tag_column: format!("column {tag_at}"),
        docstarts,
        conll: true,
    })
}

/// How to read a JSON Lines file of tagged sentences.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonKeys<'a> {
    /// The tokens' key (`None`: the first of [`TOKEN_KEYS`] present).
    pub tokens: Option<&'a str>,
    /// The tags' key (`None`: the first of [`TAG_KEYS`] present; none present: untagged).
    pub tags: Option<&'a str>,
    /// Names of integer tags, by id (`--label-names`; Hugging Face datasets keep them in the
    /// features, not the rows).
    pub label_names: Option<&'a [String]>,
}

/// Reads JSON Lines of tagged sentences: one object per line with a list of tokens (strings)
/// and a list of tags (strings, or integer ids into `keys.label_names`) of the same length;
/// blank lines skipped.
///
/// # Errors
/// [`Error::Data`] naming the file, line and key: bytes that are not UTF-8, a line that is not a
/// JSON object, a missing or non-list tokens key, a token that is not a string, tags of another
/// length than the tokens, an integer tag without label names or outside them, an empty
/// sentence; a file with no sentence.
pub fn read_token_jsonl(bytes: &[u8], source: &str, keys: JsonKeys) -> Result<TaggedFile> {
    let text = text(bytes, source)?;
    let mut sentences = Vec::new();
    let mut tag_key: Option<String> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let err = |m: String| Error::data(source, line, m);
        let obj: Value =
            serde_json::from_str(raw).map_err(|e| err(format!("not a JSON object: {e}")))?;
        let Value::Object(obj) = obj else {
            return Err(err("not a JSON object".into()));
        };
        let tk = match keys.tokens {
            Some(k) => k,
            None => TOKEN_KEYS
                .iter()
                .copied()
                .find(|k| obj.contains_key(*k))
                .ok_or_else(|| {
                    err(format!(
                        "no tokens list (keys tried: {}; name it with --text-column)",
                        TOKEN_KEYS.join(", ")
                    ))
                })?,
        };
        let tokens = strings(obj.get(tk), tk, None).map_err(err)?;
        if tokens.is_empty() {
            return Err(err(format!("`{tk}` is an empty sentence")));
        }
        let key = tag_key.get_or_insert_with(|| {
            keys.tags
                .or_else(|| TAG_KEYS.iter().copied().find(|k| obj.contains_key(*k)))
                .unwrap_or("")
                .to_string()
        });
        let tags = if key.is_empty() {
            Vec::new()
        } else {
            let t = strings(obj.get(key.as_str()), key, keys.label_names).map_err(err)?;
            if t.len() != tokens.len() {
                return Err(err(format!(
                    "{} tokens (`{tk}`) but {} tags (`{key}`): one tag per token",
                    tokens.len(),
                    t.len()
                )));
            }
            t
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => line.to_string(),
        };
        sentences.push(TaggedSentence {
            line,
            id,
            tokens,
            tags,
        });
    }
    if sentences.is_empty() {
        return Err(Error::data(source, 1, "no sentence in the file"));
    }
    Ok(TaggedFile {
        source: source.to_string(),
        sentences,
        tag_column: tag_key.unwrap_or_default(),
        docstarts: 0,
        conll: false,
    })
}

/// A JSON list of strings (or of integer ids into `names`) under `key`.
fn strings(v: Option<&Value>, key: &str, names: Option<&[String]>) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = v else {
        return Err(format!(
            "`{key}` is {}, not a list",
            match v {
                None => "missing",
                Some(Value::Null) => "null",
                Some(_) => "not a list",
            }
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(j, x)| match (x, names) {
            (Value::String(s), _) => Ok(s.clone()),
            (Value::Number(n), Some(names)) => n
                .as_u64()
                .and_then(|i| names.get(i as usize))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "`{key}`[{j}] = {n} is not an id of the {} label names",
                        names.len()
                    )
                }),
            (Value::Number(n), None) => Err(format!(
                "`{key}`[{j}] = {n}: integer tags need their names (--label-names FILE, one \
                 name per line in id order, as the dataset's features list them)"
            )),
            (other, _) => Err(format!("`{key}`[{j}] is {other}, not a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conll_sentences_docstarts_and_blank_lines() {
        let f = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n \t\n\n\
                 Peter NNP I-NP I-PER\n\n\n";
        let t = read_conll(f.as_bytes(), "a.conll", None).unwrap();
        assert_eq!(t.docstarts, 1);
        assert_eq!(t.sentences.len(), 2);
        assert_eq!(t.sentences[0].line, 3);
        assert_eq!(t.sentences[0].tags, vec!["I-ORG", "O"]);
        let pos = read_conll(f.as_bytes(), "a.conll", Some(1)).unwrap();
        assert_eq!(pos.sentences[1].tags, vec!["NNP"]);
        // TABs, no final blank line.
        let t = read_conll(b"a\tB-X\nb\tO", "t.conll", None).unwrap();
        assert_eq!(t.sentences[0].tokens, vec!["a", "b"]);
    }

    #[test]
    fn conll_errors_name_the_line() {
        let e = read_conll(b"a B-X\nb c O\n", "x.conll", None).unwrap_err();
        assert!(
            e.to_string().starts_with("x.conll line 2: 3 column(s)"),
            "{e}"
        );
        let e = read_conll(b"-DOCSTART- O\n\n", "x.conll", None).unwrap_err();
        assert!(e.to_string().contains("only -DOCSTART-"), "{e}");
        let e = read_conll(b"a O\nb\xff O\n", "x.conll", None).unwrap_err();
        assert!(
            e.to_string().starts_with("x.conll line 2: byte column 2"),
            "{e}"
        );
        let e = read_conll(b"a O\n", "x.conll", Some(3)).unwrap_err();
        assert!(e.to_string().contains("--label-column 3"), "{e}");
    }

    #[test]
    fn jsonl_tags_as_names_or_ids() {
        let f = "{\"id\": \"7\", \"tokens\": [\"EU\", \"rejects\"], \"ner_tags\": [3, 0]}\n";
        let names: Vec<String> = ["O", "B-PER", "I-PER", "B-ORG"].map(String::from).into();
        let keys = JsonKeys {
            label_names: Some(&names),
            ..Default::default()
        };
        let t = read_token_jsonl(f.as_bytes(), "a.jsonl", keys).unwrap();
        assert_eq!(t.sentences[0].tags, vec!["B-ORG", "O"]);
        assert_eq!(t.sentences[0].id, "7");
        let e = read_token_jsonl(f.as_bytes(), "a.jsonl", JsonKeys::default()).unwrap_err();
        assert!(e.to_string().contains("--label-names"), "{e}");
        let bad = "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n";
        let e = read_token_jsonl(bad.as_bytes(), "b.jsonl", JsonKeys::default()).unwrap_err();
        assert!(e.to_string().starts_with("b.jsonl line 1: 2 tokens"), "{e}");
        let empty = "{\"tokens\": [], \"tags\": []}\n";
        let e = read_token_jsonl(empty.as_bytes(), "c.jsonl", JsonKeys::default()).unwrap_err();
        assert!(e.to_string().contains("empty sentence"), "{e}");
    }
}
