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
    /// Sentence embeddings from pairs: anchor/positive (+ negatives), 0/1-labelled or scored.
    Embedding,
    /// A tag per word (named entities) from CoNLL or JSON Lines token files.
    TokenClassification,
}

/// `--loss` (embeddings), sentence-transformers' losses.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LossArg {
    /// MultipleNegativesRankingLoss (pairs and triplets; the default for them).
    Mnrl,
    /// MultipleNegativesSymmetricRankingLoss.
    MnrlSymmetric,
    /// CoSENTLoss (scored pairs; the default for them).
    Cosent,
    /// CosineSimilarityLoss (MSE of the cosine against the score).
    Cosine,
}

/// The embedding flags of `train` (with --train-file, or --task sts / para: the minBERT pair
/// files as sentence embeddings).
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddingArgs {
    /// Embeddings: the loss (default mnrl for anchor/positive or 0/1-labelled pairs, cosent
    /// for scored pairs).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Embeddings: the loss's scale (inverse temperature of mnrl and cosent) [default: 20].
    #[arg(long)]
    pub scale: Option<f64>,
    /// Embeddings: the range the scores are declared in, `LO,HI` (STS-B: 0,5) [default: 0,1].
    #[arg(long, value_parser = score_range, value_name = "LO,HI")]
    pub score_range: Option<[f64; 2]>,
    /// Embeddings: a hard-negative column (repeat or comma-separate for several) [default:
    /// every column named negative or negative_<n>].
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub negative_column: Vec<String>,
    /// Embeddings: MatryoshkaLoss around the loss, at these leading dimensions of the
    /// embedding (e.g. 384,256,128,64), so that it can be cut to any of them; evaluation
    /// reports each metric at each dimension too (ndcg@10/dim_64).
    #[arg(long, value_delimiter = ',', value_name = "DIMS")]
    pub matryoshka_dims: Vec<usize>,
    /// Embeddings: the weight of the loss at each --matryoshka-dims dimension, in the same
    /// order [default: 1 each].
    #[arg(long, value_delimiter = ',', value_name = "WEIGHTS")]
    pub matryoshka_weights: Vec<f64>,
    /// Embeddings: more documents for the retrieval evaluation's corpus, beside the validation
    /// positives (a text file, one per line, or a CSV, TSV or JSON Lines file's `text`
    /// column), as InformationRetrievalEvaluator's corpus of distractors.
    #[arg(long, value_name = "FILE")]
    pub corpus_file: Option<std::path::PathBuf>,
}

/// `--score-range LO,HI`: two numbers.
fn score_range(v: &str) -> Result<[f64; 2], String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    match parts[..] {
        [lo, hi] => match (lo.parse::<f64>(), hi.parse::<f64>()) {
            (Ok(lo), Ok(hi)) => Ok([lo, hi]),
            _ => Err(format!("`{v}` is not two numbers LO,HI (e.g. 0,5)")),
        },
        _ => Err(format!("`{v}` is not two numbers LO,HI (e.g. 0,5)")),
    }
}

impl EmbeddingArgs {
    /// The flags given, by name.
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.loss.is_some(), "--loss"),
            (self.scale.is_some(), "--scale"),
            (self.score_range.is_some(), "--score-range"),
            (!self.negative_column.is_empty(), "--negative-column"),
            (!self.matryoshka_dims.is_empty(), "--matryoshka-dims"),
            (!self.matryoshka_weights.is_empty(), "--matryoshka-weights"),
            (self.corpus_file.is_some(), "--corpus-file"),
        ]
        .into_iter()
        .filter_map(|(g, n)| g.then_some(n))
        .collect()
    }

    /// Sets the embedding fields of `spec` (a score range already there stays unless
    /// `--score-range` is given).
    pub fn apply(&self, spec: &mut crate::tasks::own::DataSpec) {
        use crate::tasks::own::EmbeddingLoss as L;
        spec.loss = self.loss.map(|l| match l {
            LossArg::Mnrl => L::Mnrl,
            LossArg::MnrlSymmetric => L::MnrlSymmetric,
            LossArg::Cosent => L::Cosent,
            LossArg::Cosine => L::Cosine,
        });
        spec.scale = self.scale;
        // A preset's range (STS-B: 0..5) unless the flag says otherwise.
        spec.score_range = self.score_range.or(spec.score_range);
        spec.negative_columns = self.negative_column.clone();
        spec.matryoshka_dims = self.matryoshka_dims.clone();
        spec.matryoshka_weights = self.matryoshka_weights.clone();
        spec.corpus_file = self.corpus_file.as_ref().map(|p| p.display().to_string());
    }
}

/// The token-classification flags of `train` (with --train-file).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Token classification: the tagging scheme, iob1, iob2 (bio), iobes (bilou) or plain
    /// [default: detected from the training file's tags].
    #[arg(long, value_name = "SCHEME")]
    pub tag_scheme: Option<String>,
    /// Token classification: word pieces shared by consecutive windows of a sentence longer
    /// than --max-len [default: 32, at most a quarter of --max-len].
    #[arg(long, value_name = "PIECES")]
    pub stride: Option<usize>,
    /// Token classification: a word's later word pieces train on its tag too (B- as I-), as
    /// run_ner.py's --label_all_tokens; by default only the first piece is in the loss.
    #[arg(long)]
    pub label_all_tokens: bool,
}

impl TokenArgs {
    /// The flags given, by name.
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.tag_scheme.is_some(), "--tag-scheme"),
            (self.stride.is_some(), "--stride"),
            (self.label_all_tokens, "--label-all-tokens"),
        ]
        .into_iter()
        .filter_map(|(g, n)| g.then_some(n))
        .collect()
    }

    /// Sets the token-classification fields of `spec`.
    ///
    /// # Errors
    /// An unknown `--tag-scheme`.
    pub fn apply(&self, spec: &mut crate::tasks::own::DataSpec) -> crate::error::Result<()> {
        spec.tag_scheme = self
            .tag_scheme
            .as_deref()
            .map(crate::tasks::tags::TagScheme::parse)
            .transpose()?;
        spec.stride = self.stride;
        spec.label_all_tokens = self.label_all_tokens;
        Ok(())
    }
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
    /// CoNLL: one token per line, whitespace-separated columns, a blank line between
    /// sentences (token classification).
    Conll,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Conll => Format::Conll,
        }
    }
}
