//! The minBERT presets (CS224N's multitask project: SST-5, Quora, STS-B): which file holds
//! which split of a task, and the step from a file's bytes to tokenised [`TaskData`]. Both
//! drivers find their files here (the CLI in a folder, the page at a URL or among picked files).

use super::{PairEncoding, Task, TaskData, kinds};
use crate::data::table::Format;
use crate::data::{PairLabel, read_pairs, read_sst};
use crate::error::{Error, Result};
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

/// The minBERT pair task `task` trained as sentence embeddings (`--task sts --loss cosent`,
/// `--task para --loss mnrl`): own data of the embedding kind, TAB-separated with quoting off as
/// the minBERT files are written. `train_file` and `validation_file` are left empty: the
/// caller fills in where its driver finds the task's files ([`file_names`]).
///
/// - STS-B: scored pairs `sentence1` + `sentence2`, label `similarity` mapped from 0..5 to
///   0..1 (`score / 5`, as sentence-transformers' STS-B examples), the default loss `CoSENTLoss`,
///   evaluated by `EmbeddingSimilarityEvaluator` (Spearman of the cosine is the best-model
///   metric);
/// - Quora: labelled pairs, `is_duplicate`; the pairs labelled 1 train
///   `MultipleNegativesRankingLoss` and the dev file's duplicates are the retrieval evaluation
///   (queries: their first questions; corpus: every distinct dev question), as
///   sentence-transformers' Quora duplicate-questions example.
///
/// The caller adds the loss and its other flags to the returned spec.
///
/// # Errors
/// [`Error::Invalid`] for SST (single sentences, no pairs to embed) and own data.
pub fn embedding_preset(task: Task) -> Result<super::own::DataSpec> {
    let (label, score_range) = match task {
        Task::Sts => ("similarity", Some([0.0, 5.0])),
        Task::Para => ("is_duplicate", None),
        Task::Sst | Task::Own => {
            return Err(Error::Invalid(format!(
                "--task {}: the embedding losses (--loss and the other embedding flags) train on \
                 pairs: use --task sts (scored pairs, cosent) or --task para (duplicate pairs, \
                 mnrl), or your own file with --train-file",
                task.name()
            )));
        }
    };
    Ok(super::own::DataSpec {
        format: Some(Format::Tsv),
        text_column: Some("sentence1".into()),
        text_pair_column: Some("sentence2".into()),
        label_column: Some(label.into()),
        task_type: Some(super::own::TaskType::Embedding),
        score_range,
        ..super::own::DataSpec::default()
    })
}
