//! The minBERT presets (CS224N's multitask project: SST-5, Quora, STS-B): which file holds
//! which split of a task, and the step from a file's bytes to tokenised [`TaskData`]. Both
//! drivers find their files here (the CLI in a folder, the page at a URL or among picked files).

use super::{PairEncoding, Task, TaskData, kinds};
use crate::data::{PairLabel, read_pairs, read_sst};
use crate::error::Result;
use crate::model::BertTokenizer;

pub use super::kind::Split;

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
/// is quoted in errors.
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
    let labeled = split != Split::Test;
    let label = match (labeled, task) {
        (false, _) => PairLabel::None,
        (true, Task::Para) => PairLabel::Paraphrase,
        _ => PairLabel::Similarity,
    };
    match task {
        Task::Sst => TaskData::sst(
            kinds::minbert(task),
            &read_sst(bytes, source, labeled)?,
            tok,
            limit,
        ),
        Task::Para | Task::Sts => TaskData::pairs(
            kinds::minbert(task),
            &read_pairs(bytes, source, label)?,
            tok,
            encoding,
            limit,
        ),
        Task::Own => Err(crate::Error::Invalid(
            "own data is read by tasks::own, not as a minBERT file".into(),
        )),
    }
}
