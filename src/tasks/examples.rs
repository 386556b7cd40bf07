//! Tokenised, task-typed examples and their device batches.

use std::sync::Arc;

use burn::tensor::Device;

use super::kind::Kind;
use super::{PairEncoding, Task, TaskBatch};
use crate::data::{Dataset, PairExample, SstExample, TokenBatch};
use crate::error::Result;
use crate::model::{BertTokenizer, Encoded};

/// One tokenised example.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The example id from the data file.
    pub id: String,
    /// The sentence (SST), the first sentence (bi-encoded pairs) or the pair (cross-encoded).
    pub a: Encoded,
    /// The second sentence of a bi-encoded pair.
    pub b: Option<Encoded>,
    /// Target: SST class id, paraphrase 0/1, STS similarity 0..5 (as in the file); `NaN` when
    /// the file has no labels.
    pub label: f32,
    /// Multi-label: the ids of the example's labels (ascending; empty for no label, and for
    /// every other kind).
    pub label_ids: Vec<u32>,
    /// Embeddings: the hard negatives of an anchor/positive pair, in column order (empty for
    /// every other kind).
    pub negatives: Vec<Encoded>,
    /// Token classification: the words of its sentence this example (a window of it)
    /// predicts; `None` for every other kind.
    pub words: Option<WindowWords>,
}

/// The words of a sentence that one window of it predicts (token classification). A sentence
/// longer than the window is split into overlapping windows; each word is predicted by one of
/// them (the first half of an overlap by the earlier window, the rest by the later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowWords {
    /// The sentence's index, in file order (the windows of one sentence are consecutive).
    pub sentence: u32,
    /// Position in the window's `a.ids` of each predicted word's first piece, in word order; 0
    /// (the `[CLS]` position) for a word the tokenizer gives no piece (predicted `O`).
    pub pieces: Vec<u32>,
    /// Each predicted word's gold tag id; [`NO_TAG`] where the input has no tags.
    pub gold: Vec<u32>,
}

/// The target id of a word piece the loss leaves out (PyTorch's `ignore_index = -100`), and
/// the gold tag of an untagged word.
pub const NO_TAG: u32 = u32::MAX;

impl Prepared {
    /// Tokens in this example (both sentences).
    pub fn len(&self) -> usize {
        self.a.ids.len()
            + self.b.as_ref().map_or(0, |b| b.ids.len())
            + self.negatives.iter().map(|n| n.ids.len()).sum::<usize>()
    }

    /// The token ids of each of its texts, in batch order: `a`, `b`, then the negatives (two
    /// texts are the same text when these are equal).
    pub fn texts(&self) -> Vec<&[u32]> {
        let mut t = vec![&self.a.ids[..]];
        t.extend(self.b.iter().map(|b| &b.ids[..]));
        t.extend(self.negatives.iter().map(|n| &n.ids[..]));
        t
    }

    /// Whether the example has no tokens (never true for tokenised text).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tokenised examples of one task and split.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// The task kind.
    pub kind: Arc<dyn Kind>,
    /// Examples in file order.
    pub examples: Vec<Prepared>,
    /// How many examples were truncated to `max_len`.
    pub truncated: usize,
    /// Rows skipped by the reader (missing label).
    pub skipped_rows: usize,
}

impl TaskData {
    /// The task slot of its kind.
    pub fn task(&self) -> Task {
        self.kind.task()
    }

    /// Tokenises SST sentences as task data of `kind`.
    ///
    /// # Errors
    /// [`crate::Error::Tokenizer`] when tokenisation fails.
    pub fn sst(
        kind: Arc<dyn Kind>,
        ds: &Dataset<SstExample>,
        tok: &BertTokenizer,
        limit: Option<usize>,
    ) -> Result<Self> {
        let mut examples = Vec::new();
        let mut truncated = 0;
        for ex in ds.examples.iter().take(limit.unwrap_or(usize::MAX)) {
            let a = tok.encode(&ex.sentence)?;
            truncated += a.truncated as usize;
            examples.push(Prepared {
                id: ex.id.clone(),
                a,
                b: None,
                label: ex.label.map_or(f32::NAN, |l| l as f32),
                label_ids: Vec::new(),
                negatives: Vec::new(),
                words: None,
            });
        }
        Ok(TaskData {
            kind,
            examples,
            truncated,
            skipped_rows: ds.skipped_lines.len(),
        })
    }

    /// Tokenises sentence pairs as task data of `kind` (paraphrase or STS) with the given
    /// encoding.
    ///
    /// # Errors
    /// [`crate::Error::Tokenizer`] when tokenisation fails.
    pub fn pairs(
        kind: Arc<dyn Kind>,
        ds: &Dataset<PairExample>,
        tok: &BertTokenizer,
        encoding: PairEncoding,
        limit: Option<usize>,
    ) -> Result<Self> {
        let mut examples = Vec::new();
        let mut truncated = 0;
        for ex in ds.examples.iter().take(limit.unwrap_or(usize::MAX)) {
            let (a, b) = match encoding {
                PairEncoding::Cross => (tok.encode_pair(&ex.sentence1, &ex.sentence2)?, None),
                PairEncoding::Bi => (tok.encode(&ex.sentence1)?, Some(tok.encode(&ex.sentence2)?)),
            };
            truncated += (a.truncated || b.as_ref().is_some_and(|b| b.truncated)) as usize;
            examples.push(Prepared {
                id: ex.id.clone(),
                a,
                b,
                label: ex.label.unwrap_or(f32::NAN),
                label_ids: Vec::new(),
                negatives: Vec::new(),
                words: None,
            });
        }
        Ok(TaskData {
            kind,
            examples,
            truncated,
            skipped_rows: ds.skipped_lines.len(),
        })
    }

    /// Token counts per example (for length bucketing).
    pub fn lengths(&self) -> Vec<usize> {
        self.examples.iter().map(Prepared::len).collect()
    }

    /// Builds the device batch of examples `idx`: the tokens (a bi-encoded pair's first
    /// sentences, then its second sentences, then each column of hard negatives) and the kind's targets
    /// ([`Kind::batch_targets`]: SST class ids; paraphrase 0/1; STS `similarity / 5`, the scale of
    /// the cosine or regression output; own data class ids or the regression value).
    ///
    /// # Panics
    /// When an index in `idx` is out of range.
    pub fn batch(&self, idx: &[usize], pad_id: u32, device: &Device) -> TaskBatch {
        let exs: Vec<&Prepared> = idx.iter().map(|&i| &self.examples[i]).collect();
        let mut encs: Vec<&Encoded> = exs.iter().map(|e| &e.a).collect();
        encs.extend(exs.iter().filter_map(|e| e.b.as_ref()));
        let negatives = exs.first().map_or(0, |e| e.negatives.len());
        for j in 0..negatives {
            encs.extend(exs.iter().filter_map(|e| e.negatives.get(j)));
        }
        TaskBatch {
            kind: self.kind.clone(),
            x: TokenBatch::from_encoded(&encs, pad_id).to_tensors(device),
            targets: self.kind.batch_targets(&exs, device),
        }
    }
}
