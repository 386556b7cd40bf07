//! `lorabert eval` and `lorabert predict`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::load::{data_file, load_split, load_trained};
use super::{CheckpointArgs, ModelArgs, devices, io, set_threads};
use crate::tasks::minbert::Split;
use crate::tasks::{Task, TaskData};
use crate::train::{evaluate, predict as predict_task};

/// `lorabert eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
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
    model: ModelArgs,
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
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// `lorabert eval`: dev metrics of a checkpoint, as JSON on stdout.
pub fn eval(a: EvalArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
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
    let m = pollster::block_on(evaluate(&model, &dev, a.batch_size, loaded.pad_id()))?;
    println!("{}", serde_json::to_string_pretty(&m)?);
    eprintln!("{m}");
    Ok(())
}

/// `lorabert predict`: test (or dev) predictions of a checkpoint in the minBERT format.
pub fn predict(a: PredictArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
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
    let (file, header) = match p.task {
        Task::Sst => ("sst", "Predicted_Sentiment"),
        Task::Para => ("para", "Predicted_Is_Paraphrase"),
        Task::Sts => ("sts", "Predicted_Similiarity"),
    };
    let mut csv = format!("id,{header}\n");
    for (id, v) in p.ids.iter().zip(p.labels()) {
        match p.task {
            Task::Sts => csv.push_str(&format!("{id},{v:.4}\n")),
            _ => csv.push_str(&format!("{id},{}\n", v as i64)),
        }
    }
    let path = out.join(format!("{file}-{split_name}-output.csv"));
    io::write_atomic(&path, csv.as_bytes())?;
    eprintln!("wrote {} ({} rows)", path.display(), p.ids.len());
    Ok(())
}
