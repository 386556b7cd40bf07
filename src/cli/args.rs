//! The value types of the flags that several commands share (`--task`, `--adapter`,
//! `--pooling`, `--pair-encoding`, `--task-type`, `--format`), in one place so the command files
//! import them from here rather than from each other.

use clap::ValueEnum;

use crate::data::table::Format;
use crate::tasks::Task;

/// `--task`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TaskArg {
    /// SST-5 sentiment.
    Sst,
    /// Quora paraphrase.
    Para,
    /// STS-B similarity.
    Sts,
    /// All three on one shared encoder.
    Multi,
}

impl TaskArg {
    /// The tasks trained.
    pub fn tasks(self) -> Vec<Task> {
        match self {
            TaskArg::Sst => vec![Task::Sst],
            TaskArg::Para => vec![Task::Para],
            TaskArg::Sts => vec![Task::Sts],
            TaskArg::Multi => Task::ALL.to_vec(),
        }
    }
}

/// `sweep --tasks`: the `--task` values, and `own` (your file, given after `--`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SweepTaskArg {
    /// SST-5 sentiment.
    Sst,
    /// Quora paraphrase.
    Para,
    /// STS-B similarity.
    Sts,
    /// All three on one shared encoder.
    Multi,
    /// Your own data (`-- --train-file FILE`).
    Own,
}

impl SweepTaskArg {
    /// The name in cell names, `sweep.csv` and the `--task` flag of its runs.
    pub fn name(self) -> &'static str {
        match self {
            SweepTaskArg::Sst => "sst",
            SweepTaskArg::Para => "para",
            SweepTaskArg::Sts => "sts",
            SweepTaskArg::Multi => "multi",
            SweepTaskArg::Own => "own",
        }
    }
}

/// `--adapter`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AdapterArg {
    /// Full fine-tuning (no adapter; every encoder weight trains).
    None,
    /// LoRA.
    Lora,
    /// DoRA.
    Dora,
}

impl AdapterArg {
    /// `none`, `lora` or `dora`: the name in cell names, `sweep.csv` and `--adapter`.
    pub fn name(self) -> &'static str {
        match self {
            AdapterArg::None => "none",
            AdapterArg::Lora => "lora",
            AdapterArg::Dora => "dora",
        }
    }
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PoolingArg {
    /// Mean over real tokens.
    Mean,
    /// The [CLS] token.
    Cls,
    /// The [CLS] token through BERT's pooler (as BertForSequenceClassification).
    Pooler,
}

/// `--pair-encoding`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PairArg {
    /// Each sentence encoded separately.
    Bi,
    /// Both sentences in one sequence.
    Cross,
}

/// `--task-type`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TaskTypeArg {
    /// Classes (strings or integers).
    Classification,
    /// A real-valued target.
    Regression,
    /// Any number of labels per row (a JSON array, --label-separator, or --label-columns).
    MultiLabel,
}

/// `--format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// Comma-separated, RFC 4180 quoting.
    Csv,
    /// Tab-separated, quoting off (GLUE).
    Tsv,
    /// JSON Lines.
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}
