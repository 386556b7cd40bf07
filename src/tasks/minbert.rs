//! The minBERT presets (CS224N's multitask project: SST-5, Quora, STS-B): which file holds
//! which split of a task, and the step from a file's bytes to tokenised [`TaskData`]. Both
//! drivers find their files here (the CLI in a folder, the page at a URL or among picked files).

use super::{PairEncoding, Task, TaskData, kinds};
use crate::data::{PairLabel, read_pairs};
use crate::error::Result;
use crate::model::BertTokenizer;

/// A split of the minBERT files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Dev (the evaluation split).
    Dev,
    /// Test (no labels).
    Test,
}

impl Split {
    /// `train`, `dev` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// The file names of `task`'s `split`, most preferred first, as its kind says
/// ([`Kind::preset_files`]); none for own data.
pub fn file_names(task: Task, split: Split) -> &'static [&'static str] {
    match task {
        Task::Own => &[],
        t => kinds::minbert(t).preset_files(split),
    }
}

/// Reads `task`'s file of `split` from its bytes and tokenises its first `limit` rows (all
/// without a limit); pairs as `encoding` says. Test files carry no labels. `source` (the file)
/// is quoted in errors. The kind reads its file ([`Kind::read_preset`]).
///
/// # Errors
/// [`crate::Error::Data`] naming `source` and the line (see [`read_sst`], [`read_pairs`]);
/// [`crate::Error::Tokenizer`] when tokenisation fails; [`crate::Error::Invalid`] for own data.
pub fn task_data(
    task: Task,
    split: Split,
    bytes: &[u8],
    source: &str,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    match task {
        Task::Own => Err(crate::Error::Invalid(
            "own data is read by tasks::own, not as a minBERT file".into(),
        )),
        t => kinds::minbert(t).read_preset(split, bytes, source, tok, encoding, limit),
    }
}

/// Reads a minBERT pair file (Quora or STS) as `label` says and tokenises it for `task`.
///
/// # Errors
/// As [`read_pairs`] and [`TaskData::pairs`].
#[allow(clippy::too_many_arguments)]
pub fn read_pair_file(
    task: Task,
    label: PairLabel,
    bytes: &[u8],
    source: &str,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    TaskData::pairs(
        task,
        &read_pairs(bytes, source, label)?,
        tok,
        encoding,
        limit,
    )
}
