//! `lorabert eval` and `lorabert predict`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::load::{FileArgs, data_file, load_own_file, load_split, load_trained, read_data_file};
use super::precision::InferencePrecision;
use super::{CheckpointArgs, ModelArgs, devices, io};
use crate::model::Pretrained;
use crate::tasks::minbert::Split;
use crate::tasks::own::{self, OwnRow, OwnRows};
use crate::tasks::{HeadsConfig, MultitaskModel, TaskData};
use crate::train::evaluate::PredictionRow;
use crate::train::{evaluate, predict as predict_task};

/// `lorabert eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    pub(super) precision: InferencePrecision,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Own-data checkpoints: the labelled file to evaluate on (its columns as in training).
    #[arg(long)]
    validation_file: Option<PathBuf>,
    #[command(flatten)]
    file: FileArgs,
    /// Embedding checkpoints: more documents for the retrieval corpus, as `train
    /// --corpus-file` (a text file, one per line, or a table's `text` column).
    #[arg(long, value_name = "FILE")]
    corpus_file: Option<PathBuf>,
    /// Use at most this many dev examples per task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// `--split`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SplitArg {
    /// The dev files.
    Dev,
    /// The test-student files.
    Test,
}

/// `lorabert predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    pub(super) precision: InferencePrecision,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split to predict.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Output folder for <task>-<split>-output.csv.
    #[arg(long, default_value = "predictions")]
    out: PathBuf,
    /// A text to predict (repeatable) instead of the minBERT split: label, score and class
    /// probabilities of every head that takes it.
    #[arg(long = "sentence")]
    sentences: Vec<String>,
    /// The second sentence of a pair (repeatable, one per --sentence).
    #[arg(long = "sentence-pair")]
    sentence_pairs: Vec<String>,
    /// A file of texts to predict (CSV, TSV or JSON Lines with a header; the text columns as in
    /// training, or `sentence`/`text` and `sentence1` + `sentence2`; an `id` column is kept).
    #[arg(long, conflicts_with = "sentences")]
    input: Option<PathBuf>,
    /// Where to write the predictions of --sentence / --input: a .csv or .jsonl file (default:
    /// JSON lines on stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    file: FileArgs,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// `lorabert eval`: dev metrics of a checkpoint, as JSON on stdout.
pub fn eval(a: EvalArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, mut model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
    model.bert = a.precision.apply(model.bert, &device)?.0;
    if a.corpus_file.is_some() && heads.own.is_none() {
        bail!("--corpus-file adds documents to an embedding checkpoint's retrieval corpus");
    }
    if let Some(own) = &heads.own {
        let Some(path) = &a.validation_file else {
            bail!(
                "an own-data checkpoint is evaluated on a labelled file: pass --validation-file FILE"
            );
        };
        let mut d = load_own_file(path, &a.file, own, &loaded, heads.pair_encoding, a.max_eval)?;
        if let Some(c) = &a.corpus_file {
            let name = c.display().to_string();
            let texts = crate::data::corpus::corpus_texts(&read_data_file(c)?, &name, None)?;
            let extra = own::embedding::corpus_examples(own, &texts, &name, &loaded.tokenizer)?;
            d.examples.extend(extra.examples);
        }
        let m = pollster::block_on(evaluate(&model, &[d], a.batch_size, loaded.pad_id(), false))?;
        println!("{}", serde_json::to_string_pretty(&m)?);
        eprintln!("{m}");
        return Ok(());
    }
    let data_dir = io::resolve_data(a.data.as_deref())?;
    let dev: Vec<TaskData> = heads
        .tasks
        .iter()
        .map(|&t| {
            load_split(
                &data_dir,
                t,
                Split::Dev,
                &loaded,
                heads.pair_encoding,
                a.max_eval,
            )
        })
        .collect::<Result<_>>()?;
    let m = pollster::block_on(evaluate(&model, &dev, a.batch_size, loaded.pad_id(), false))?;
    println!("{}", serde_json::to_string_pretty(&m)?);
    eprintln!("{m}");
    Ok(())
}

/// `lorabert predict`: test (or dev) predictions of a checkpoint in the minBERT format.
pub fn predict(a: PredictArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, mut model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
    model.bert = a.precision.apply(model.bert, &device)?.0;
    if !a.sentences.is_empty() || a.input.is_some() {
        return predict_texts(&a, &loaded, &model, &heads);
    }
    if heads.own.is_some() {
        bail!("an own-data checkpoint predicts texts: pass --sentence TEXT or --input FILE");
    }
    let data_dir = io::resolve_data(a.data.as_deref())?;
    let split = match a.split {
        SplitArg::Dev => Split::Dev,
        SplitArg::Test => Split::Test,
    };
    let split_name = split.name();
    for &task in &heads.tasks {
        if data_file(&data_dir, task, split).is_none() {
            eprintln!(
                "{}: no {split_name} file in {}, skipped",
                task.name(),
                data_dir.display()
            );
            continue;
        }
        let data = load_split(&data_dir, task, split, &loaded, heads.pair_encoding, None)?;
        let p = pollster::block_on(predict_task(&model, &data, a.batch_size, loaded.pad_id()))?;
        write_predictions(&a.out, split_name, &p)?;
    }
    Ok(())
}

/// Writes `<task>-<split>-output.csv` in the minBERT format (`id,Predicted_Sentiment`,
/// `id,Predicted_Is_Paraphrase`, `id,Predicted_Similiarity` as the starter code spells it).
pub fn write_predictions(
    out: &Path,
    split_name: &str,
    p: &crate::train::Predictions,
) -> Result<()> {
    let Some((file, header)) = p.kind.minbert_output() else {
        bail!("own-data predictions are written by --input/--output");
    };
    let mut csv = format!("id,{header}\n");
    for (id, v) in p.ids.iter().zip(p.labels()) {
        if p.kind.real_valued() {
            csv.push_str(&format!("{id},{v:.4}\n"));
        } else {
            csv.push_str(&format!("{id},{}\n", v as i64));
        }
    }
    let path = out.join(format!("{file}-{split_name}-output.csv"));
    io::write_atomic(&path, csv.as_bytes())?;
    eprintln!("wrote {} ({} rows)", path.display(), p.ids.len());
    Ok(())
}

/// `lorabert predict --sentence ... | --input FILE`: every head of the checkpoint that takes
/// the inputs (single sentences: SST and single-text own tasks; pairs: paraphrase, STS and
/// pair own tasks), as JSON lines or a CSV/JSONL file.
fn predict_texts(
    a: &PredictArgs,
    loaded: &Pretrained,
    model: &MultitaskModel,
    heads: &HeadsConfig,
) -> Result<()> {
    if crate::train::entities::token_task(heads).is_some() {
        let input = super::predict_tokens::TokenInput {
            sentences: &a.sentences,
            input: a.input.as_deref(),
            output: a.output.as_deref(),
            format: a.file.format.map(Into::into),
            batch_size: a.batch_size,
        };
        return super::predict_tokens::predict_tokens(&input, loaded, model, heads);
    }
    let own_task = heads.own.as_ref();
    let rows = match &a.input {
        Some(path) => {
            let table = a.file.table(path, own_task.is_some_and(|o| o.no_header))?;
            let want_pair = match own_task {
                Some(o) if !o.pairs_optional => o.is_pair(),
                _ => {
                    a.file.text_pair_column.is_some()
                        || own::PAIR_NAMES
                            .iter()
                            .any(|n| table.header.iter().any(|h| h == n))
                }
            };
            let trained = own_task.map(|o| &o.columns).filter(|c| !c.text.is_empty());
            let (cols, notes) =
                own::file_columns(&table, trained, &a.file.given(), want_pair, false)?;
            for n in notes {
                eprintln!("note: {n}");
            }
            let rows = own::rows(&table, &cols, false)?;
            if rows.rows.is_empty() {
                bail!("{}: no rows to predict", path.display());
            }
            rows
        }
        None => {
            if !a.sentence_pairs.is_empty() && a.sentence_pairs.len() != a.sentences.len() {
                bail!(
                    "{} --sentence and {} --sentence-pair: give one pair sentence per sentence",
                    a.sentences.len(),
                    a.sentence_pairs.len()
                );
            }
            OwnRows {
                source: "--sentence".into(),
                rows: a
                    .sentences
                    .iter()
                    .enumerate()
                    .map(|(i, s)| OwnRow {
                        line: i as u64 + 1,
                        id: (i + 1).to_string(),
                        text: s.clone(),
                        text_pair: a.sentence_pairs.get(i).cloned(),
                        label: String::new(),
                        negatives: Vec::new(),
                    })
                    .collect(),
                skipped_lines: Vec::new(),
            }
        }
    };
    if let Some(out) = &a.output
        && !out
            .extension()
            .is_some_and(|e| e == "csv" || e == "jsonl" || e == "json")
    {
        bail!("--output {}: name a .csv or .jsonl file", out.display());
    }
    let out = pollster::block_on(crate::train::infer::predict_texts(
        model,
        heads,
        &loaded.tokenizer,
        &rows,
        a.batch_size,
        loaded.pad_id(),
    ))?;
    write_rows(&out, a.output.as_deref())
}

/// Prediction rows as JSON lines (stdout, or a `.jsonl` file) or CSV (`id,task,label,score`,
/// then one probability column per class).
fn write_rows(rows: &[PredictionRow], output: Option<&Path>) -> Result<()> {
    let csv_out = output.is_some_and(|p| p.extension().is_some_and(|e| e == "csv"));
    let bytes = if csv_out {
        let mut classes: Vec<String> = Vec::new();
        for r in rows {
            for (c, _) in &r.probabilities {
                if !classes.contains(c) {
                    classes.push(c.clone());
                }
            }
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec![
            "id".to_string(),
            "task".into(),
            "label".into(),
            "score".into(),
        ];
        header.extend(classes.iter().map(|c| format!("p_{c}")));
        w.write_record(&header)?;
        for r in rows {
            let mut rec = vec![
                r.id.clone(),
                r.task.clone(),
                r.label
                    .clone()
                    .or_else(|| r.labels.as_ref().map(|l| l.join(",")))
                    .unwrap_or_default(),
                format!("{:.6}", r.score),
            ];
            for c in &classes {
                let p = r.probabilities.iter().find(|(k, _)| k == c);
                rec.push(p.map_or(String::new(), |(_, p)| format!("{p:.6}")));
            }
            w.write_record(&rec)?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("CSV: {e}"))?
    } else {
        let mut s = String::new();
        for r in rows {
            s.push_str(&serde_json::to_string(r)?);
            s.push('\n');
        }
        s.into_bytes()
    };
    match output {
        Some(p) => {
            io::write_atomic(p, &bytes)?;
            eprintln!("wrote {} ({} predictions)", p.display(), rows.len());
        }
        None => print!("{}", String::from_utf8_lossy(&bytes)),
    }
    Ok(())
}
