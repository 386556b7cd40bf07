//! WordPiece tokenisation through the `tokenizers` crate, from a Hugging Face `tokenizer.json`.

use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PaddingParams, PreTokenizedString,
    PreTokenizer, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};

/// One tokenised example (a sentence or a sentence pair), unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.
    pub ids: Vec<u32>,
    /// Token-type (segment) ids: 0 for the first sentence, 1 for the second.
    pub type_ids: Vec<u32>,
    /// Whether truncation to `max_len` dropped tokens.
    pub truncated: bool,
}

/// A `tokenizer.json` tokenizer with truncation to `max_len` (longest-first for pairs, as
/// Hugging Face's default) and no padding (batches are padded dynamically).
#[derive(Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl BertTokenizer {
    /// Loads `tokenizer.json` from its bytes; `source_name` is quoted in errors. `max_len` counts
    /// special tokens, like Hugging Face's `max_length`.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the JSON is not a tokenizer or `max_len < 4`.
    pub fn from_bytes(bytes: &[u8], source_name: &str, max_len: usize) -> Result<Self> {
        let err = |message: String| Error::Tokenizer {
            source_name: source_name.to_string(),
            message,
        };
        if max_len < 4 {
            return Err(err(format!("max_len {max_len} is too small (need >= 4)")));
        }
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| err(e.to_string()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(e.to_string()))?;
        inner.with_padding(None::<PaddingParams>);
        Ok(BertTokenizer { inner, max_len })
    }

    /// Maximum sequence length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises one sentence as `[CLS] text [SEP]`.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer fails on the text.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer {
                source_name: "encode".into(),
                message: e.to_string(),
            })?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }

    /// The word pieces of one word (no special tokens; a word of more than `max_len` pieces is
    /// cut there), as `is_split_into_words=True` tokenises each word: the normaliser and
    /// pre-tokeniser run on the word alone.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer fails on the word.
    pub fn word_pieces(&self, word: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(word, false)
            .map_err(|e| Error::Tokenizer {
                source_name: "encode".into(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The words of `text` as the tokenizer splits it before word pieces (BERT: the normaliser,
    /// then whitespace and punctuation as separate words), each as written in `text` with its
    /// character span `[start, end)` (Python's string indices, as transformers' pipelines
    /// report spans).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the normaliser or pre-tokeniser fails.
    pub fn words(&self, text: &str) -> Result<Vec<(String, usize, usize)>> {
        let err = |e: tokenizers::Error| Error::Tokenizer {
            source_name: "pre-tokenize".into(),
            message: e.to_string(),
        };
        let mut n = NormalizedString::from(text);
        if let Some(norm) = self.inner.get_normalizer() {
            norm.normalize(&mut n).map_err(err)?;
        }
        let mut pts = PreTokenizedString::from(n);
        if let Some(pt) = self.inner.get_pre_tokenizer() {
            pt.pre_tokenize(&mut pts).map_err(err)?;
        }
        let bytes = pts.get_splits(OffsetReferential::Original, OffsetType::Byte);
        let chars = pts.get_splits(OffsetReferential::Original, OffsetType::Char);
        Ok(bytes
            .iter()
            .zip(&chars)
            .filter_map(|((_, (b0, b1), _), (_, (c0, c1), _))| {
                let w = text.get(*b0..*b1)?;
                (!w.trim().is_empty()).then(|| (w.to_string(), *c0, *c1))
            })
            .collect())
    }

    /// The ids of the tokens a single sentence is wrapped in (`[CLS]` and `[SEP]`): what the
    /// post-processor adds around an empty text.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tokenizer adds other than one token before and one after.
    pub fn wrapping(&self) -> Result<(u32, u32)> {
        let e = self.encode("")?;
        match e.ids[..] {
            [cls, sep] => Ok((cls, sep)),
            _ => Err(Error::Tokenizer {
                source_name: "tokenizer.json".into(),
                message: format!(
                    "its post-processor wraps a text in {} tokens; token classification needs                      BERT's [CLS] text [SEP]",
                    e.ids.len()
                ),
            }),
        }
    }

    /// Tokenises a pair as `[CLS] a [SEP] b [SEP]` with token types 0 / 1.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer fails on the text.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode((a, b), true)
            .map_err(|e| Error::Tokenizer {
                source_name: "encode".into(),
                message: e.to_string(),
            })?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }
}
