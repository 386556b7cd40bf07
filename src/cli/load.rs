//! From folders and files to what the core takes: a pretrained model and its encoder, the
//! minBERT data of a task, a trained checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use super::{ModelArgs, io};
use crate::model::{Bert, Pretrained};
use crate::tasks::minbert::{Split, file_names, task_data};
use crate::tasks::{HeadsConfig, MultitaskModel, PairEncoding, Task, TaskData};
use crate::train::artifacts::{names, restore};

/// Loads `config.json`, `model.safetensors` (or `weights` instead) and `tokenizer.json` from
/// the model folder `dir`, for sequences of at most `max_len` tokens; the encoder on `device`.
///
/// # Errors
/// A file that cannot be read, or the core's errors naming the file and tensor.
pub fn load_model(
    dir: &Path,
    weights: Option<&Path>,
    max_len: usize,
    device: &Device,
) -> Result<(Pretrained, Bert)> {
    let cfg_path = dir.join(names::CONFIG);
    let tok_path = dir.join("tokenizer.json");
    let model = Pretrained::from_bytes(
        &dir.display().to_string(),
        &io::read_text(&cfg_path)?,
        &cfg_path.display().to_string(),
        &io::read(&tok_path)?,
        &tok_path.display().to_string(),
        max_len,
    )?;
    let st_path = weights
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(names::MODEL));
    let bert = model.encoder(&io::read(&st_path)?, &st_path.display().to_string(), device)?;
    Ok((model, bert))
}

/// Path of `task`'s minBERT file of `split` in `dir`; `None` when no such file is there.
pub fn data_file(dir: &Path, task: Task, split: Split) -> Option<PathBuf> {
    file_names(task, split)
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Reads and tokenises `task`'s `split` from the minBERT folder `dir` (first `limit` rows).
///
/// # Errors
/// No such file in `dir` (with where to get the data); the core's errors naming file and line.
pub fn load_split(
    dir: &Path,
    task: Task,
    split: Split,
    model: &Pretrained,
    enc: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    let path = data_file(dir, task, split).with_context(|| {
        format!(
            "no {} file for task {} in {}: {}",
            split.name(),
            task.name(),
            dir.display(),
            io::DATA_HELP
        )
    })?;
    let src = path.display().to_string();
    Ok(task_data(
        task,
        split,
        &io::read(&path)?,
        &src,
        &model.tokenizer,
        enc,
        limit,
    )?)
}

/// The checkpoint folder: `dir/best` when `dir` is a run folder.
pub fn checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join(names::HEADS_CONFIG).is_file() {
        return Ok(dir.to_path_buf());
    }
    if dir.join("best").join(names::HEADS_CONFIG).is_file() {
        return Ok(dir.join("best"));
    }
    bail!(
        "{} is not a checkpoint folder (no {} in it or in its best/)",
        dir.display(),
        names::HEADS_CONFIG
    )
}

/// Loads the base model and a trained checkpoint (a run folder or its `best/`) for inference
/// on `device` (not an autodiff device): a full fine-tuning checkpoint's own
/// `model.safetensors` replaces the base weights.
///
/// # Errors
/// As [`load_model`], [`checkpoint_dir`] and [`restore`], naming the folder.
pub fn load_trained(
    model: &ModelArgs,
    ckpt: &Path,
    device: &Device,
) -> Result<(Pretrained, MultitaskModel, HeadsConfig)> {
    let ck = checkpoint_dir(ckpt)?;
    let model_dir = io::resolve_model(model.model.as_deref())?;
    let full = ck.join(names::MODEL);
    let weights = full.is_file().then_some(full.as_path());
    let (pretrained, bert) = load_model(&model_dir, weights, model.max_len, device)?;
    let (m, heads, _) = restore(bert, &mut io::files_in(&ck), device)
        .with_context(|| format!("loading checkpoint {}", ck.display()))?;
    Ok((pretrained, m, heads))
}
