//! The minBERT presets (CS224N's multitask project: SST-5, Quora, STS-B): which file holds
//! which split of a task, and the step from a file's bytes to tokenised [`TaskData`]. Both
//! drivers find their files here (the CLI in a folder, the page at a URL or among picked files).

use super::{PairEncoding, Task, TaskData};
use crate::data::{PairLabel, read_pairs, read_sst};
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

/// The file names of `task`'s `split`, most preferred first (Quora training uses
/// `quora-train.csv` when present, else the starter code's `quora-train-partial.csv`); none
/// for own data.
pub fn file_names(task: Task, split: Split) -> &'static [&'static str] {
    match (task, split) {
        (Task::Sst, Split::Train) => &["ids-sst-train.csv"],
        (Task::Sst, Split::Dev) => &["ids-sst-dev.csv"],
        (Task::Sst, Split::Test) => &["ids-sst-test-student.csv"],
        (Task::Para, Split::Train) => &["quora-train.csv", "quora-train-partial.csv"],
        (Task::Para, Split::Dev) => &["quora-dev.csv"],
        (Task::Para, Split::Test) => &["quora-test-student.csv"],
        (Task::Sts, Split::Train) => &["sts-train.csv"],
        (Task::Sts, Split::Dev) => &["sts-dev.csv"],
        (Task::Sts, Split::Test) => &["sts-test-student.csv"],
        (Task::Own, _) => &[],
    }
}

/// Reads `task`'s file of `split` from its bytes and tokenises its first `limit` rows (all
/// without a limit); pairs as `encoding` says. Test files carry no labels. `source` (the file)
/// is quoted in errors.
///
/// # Errors
/// [`crate::Error::Data`] naming `source` and the line (see [`read_sst`], [`read_pairs`]);
/// [`crate::Error::Tokenizer`] when tokenisation fails.
pub fn task_data(
    task: Task,
    split: Split,
    bytes: &[u8],
    source: &str,
    tok: &BertTokenizer,
    encoding: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    let labeled = split != Split::Test;
    match task {
        Task::Sst => TaskData::sst(&read_sst(bytes, source, labeled)?, tok, limit),
        Task::Para | Task::Sts => {
            let label = match (labeled, task) {
                (false, _) => PairLabel::None,
                (true, Task::Para) => PairLabel::Paraphrase,
                _ => PairLabel::Similarity,
            };
            let ds = read_pairs(bytes, source, label)?;
            TaskData::pairs(task, &ds, tok, encoding, limit)
        }
        Task::Own => Err(crate::Error::Invalid(
            "own data is read by tasks::own, not as a minBERT file".into(),
        )),
    }
}
