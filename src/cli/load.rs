//! From folders and files to what the core takes: a pretrained model and its encoder, the
//! minBERT data of a task, a trained checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::args::FormatArg;
use super::{ModelArgs, io};
use crate::data::table::{Format, Table};
use crate::model::{Bert, Pretrained};
use crate::tasks::minbert::{Split, file_names, task_data};
use crate::tasks::own::{self, Columns, DataSpec, OwnData, OwnTask};
use crate::tasks::{HeadsConfig, MultitaskModel, PairEncoding, Task, TaskData};
use crate::train::TrainConfig;
use crate::train::artifacts::{Restored, names, restore_adapter, restore_any};

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
    let (bytes, source) = match weights {
        Some(p) => (io::read(p)?, p.display().to_string()),
        None => read_weights(dir)?,
    };
    let bert = model.encoder(&bytes, &source, device)?;
    Ok((model, bert))
}

/// The weights of model folder `dir` as one safetensors buffer (with the name to quote in
/// errors), from the layouts Hugging Face checkpoints come in: `model.safetensors`; sharded
/// `model-0000N-of-0000M.safetensors` listed by `model.safetensors.index.json`; or only
/// `pytorch_model.bin` (PyTorch's pickle, read by Burn's PyTorch reader, `burn-store`).
///
/// # Errors
/// A file that cannot be read or parsed (naming it); a folder with none of these layouts
/// (listing the files it has and the layouts read).
pub fn read_weights(dir: &Path) -> Result<(Vec<u8>, String)> {
    let single = dir.join(names::MODEL);
    if single.is_file() {
        return Ok((io::read(&single)?, single.display().to_string()));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok((read_sharded(dir, &index)?, index.display().to_string()));
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok((read_pytorch(&bin)?, bin.display().to_string()));
    }
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    bail!(
        "{}: no weights in a layout lorabert reads (model.safetensors; model-0000N-of-0000M.safetensors with model.safetensors.index.json; pytorch_model.bin); the folder has {}",
        dir.display(),
        if found.is_empty() {
            "no files".into()
        } else {
            found.join(", ")
        }
    )
}

/// One safetensors buffer of named tensors `(name, dtype, shape, bytes)`.
fn serialize(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .with_context(|| format!("tensor {k}"))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).context("safetensors")
}

/// A sharded checkpoint's tensors, from the shards its index lists, as one buffer.
fn read_sharded(dir: &Path, index: &Path) -> Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(&io::read(index)?)
        .with_context(|| format!("{} is not JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no `weight_map`", index.display()))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    let mut tensors = Vec::new();
    for shard in shards {
        let path = dir.join(&shard);
        if shard.contains('/') || shard.contains('\\') || !path.is_file() {
            bail!(
                "{}: shard `{shard}` is not a file beside it",
                index.display()
            );
        }
        let bytes = io::read(&path)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| crate::Error::Safetensors {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            tensors.push((
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            ));
        }
    }
    serialize(&tensors)
}

/// A `pytorch_model.bin`'s tensors as one safetensors buffer.
fn read_pytorch(path: &Path) -> Result<Vec<u8>> {
    use burn_store::pytorch::PytorchReader;
    use burn_store::pytorch_reader::DType as P;
    let reader = PytorchReader::new(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a PyTorch checkpoint lorabert can read: {e}",
            path.display()
        )
    })?;
    let mut tensors = Vec::new();
    for (name, t) in reader.tensors() {
        let dtype = match t.dtype() {
            P::F64 => Dtype::F64,
            P::F32 => Dtype::F32,
            P::F16 => Dtype::F16,
            P::BF16 => Dtype::BF16,
            P::I64 => Dtype::I64,
            P::I32 => Dtype::I32,
            P::I16 => Dtype::I16,
            P::I8 => Dtype::I8,
            P::U64 => Dtype::U64,
            P::U32 => Dtype::U32,
            P::U16 => Dtype::U16,
            P::U8 => Dtype::U8,
            P::Bool => Dtype::BOOL,
        };
        let data = t
            .read()
            .with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    serialize(&tensors)
}

/// Path of `task`'s minBERT file of `split` in `dir`; `None` when no such file is there.
pub fn data_file(dir: &Path, task: Task, split: Split) -> Option<PathBuf> {
    file_names(task, split)
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// [`data_file`], or an error saying where to get the minBERT files.
///
/// # Errors
/// No file of `task`'s `split` in `dir`.
pub fn require_data_file(dir: &Path, task: Task, split: Split) -> Result<PathBuf> {
    data_file(dir, task, split).with_context(|| {
        format!(
            "no {} file for task {} in {}: {}",
            split.name(),
            task.name(),
            dir.display(),
            io::DATA_HELP
        )
    })
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
    let path = require_data_file(dir, task, split)?;
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

/// Reads a data file for the core, refusing one larger than
/// [`crate::data::table::MAX_FILE_BYTES`] before reading it.
///
/// # Errors
/// The file cannot be read, or is too large.
pub fn read_data_file(path: &Path) -> Result<Vec<u8>> {
    let limit = crate::data::table::MAX_FILE_BYTES;
    let len = std::fs::metadata(path)
        .map_err(|e| crate::Error::io("read", path.display(), e))?
        .len();
    if len > limit {
        bail!(
            "{}: {:.1} GiB is more than the {} GiB lorabert reads from one data file; sample or split it",
            path.display(),
            len as f64 / (1u64 << 30) as f64,
            limit >> 30
        );
    }
    Ok(io::read(path)?)
}

/// Reads a run's own data (the files of `spec`, tokenised for `model`) and prints what was
/// found: the task kind and classes, the columns, the label counts of both splits.
///
/// # Errors
/// The files cannot be read or are too large; the core's errors naming file, line and column.
pub fn load_own(spec: &DataSpec, cfg: &TrainConfig, model: &Pretrained) -> Result<OwnData> {
    let train = read_data_file(Path::new(&spec.train_file))?;
    let validation = spec
        .validation_file
        .as_ref()
        .map(|v| read_data_file(Path::new(v)))
        .transpose()?;
    let mut own = own::load(
        spec,
        &train,
        validation.as_deref(),
        &model.tokenizer,
        cfg.pair_encoding,
        cfg.seed,
        cfg.max_train_examples,
        cfg.max_eval_examples,
    )?;
    let t = &own.task;
    eprintln!(
        "{}: {}; {}; best epoch by {}",
        spec.train_file,
        t.kind.describe(),
        t.columns.describe(),
        t.metric_for_best_model
    );
    let s = &own.summary;
    eprintln!("  train: {}", s.train);
    eprintln!("  validation ({}): {}", s.validation, s.validation_labels);
    if s.skipped_rows > 0 {
        eprintln!("  skipped {} rows with an empty label", s.skipped_rows);
    }
    if s.empty_texts > 0 {
        eprintln!(
            "  warning: {} rows have an empty text (is --text-column right?)",
            s.empty_texts
        );
    }
    for w in &s.warnings {
        eprintln!("  warning: {w}");
    }
    if let Some(c) = &spec.corpus_file {
        let texts = crate::data::corpus::corpus_texts(&read_data_file(Path::new(c))?, c, None)?;
        let extra = own::embedding::corpus_examples(&own.task, &texts, c, &model.tokenizer)?;
        eprintln!(
            "  corpus: {} documents of {c} added to the retrieval corpus{}",
            texts.len(),
            match extra.truncated {
                0 => "",
                _ => " (those longer than --max-len truncated)",
            }
        );
        own.dev.examples.extend(extra.examples);
    }
    Ok(own)
}

/// How to read a file of texts given to `eval`, `predict` or `ensemble`.
#[derive(Args, Debug, Clone, Default)]
pub struct FileArgs {
    /// The file's text column (default: the one the checkpoint was trained on, else `sentence`,
    /// `text`, ...).
    #[arg(long)]
    pub text_column: Option<String>,
    /// The file's second-sentence column, for pairs.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// The file's label column (evaluation).
    #[arg(long)]
    pub label_column: Option<String>,
    /// The file's format (default: from the extension: .csv, .tsv, .jsonl).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The file has no header row (columns 0, 1, ...); implied for checkpoints trained so.
    #[arg(long)]
    pub no_header: bool,
    /// Token classification in JSON Lines with integer tags: a file of the tag names, one per
    /// line, in id order (as in training).
    #[arg(long, value_name = "FILE")]
    pub label_names: Option<PathBuf>,
}

impl FileArgs {
    /// Reads `path` as a table; `trained_without_header` is the checkpoint's own setting.
    ///
    /// # Errors
    /// The file cannot be read or is too large; the readers' errors naming file and line.
    pub fn table(&self, path: &Path, trained_without_header: bool) -> Result<Table> {
        let name = path.display().to_string();
        let format = Format::resolve(&name, self.format.map(Format::from))?;
        let header = !(self.no_header || trained_without_header);
        Ok(Table::read(&read_data_file(path)?, &name, format, header)?)
    }

    /// The columns the user named (empty where not named).
    pub fn given(&self) -> Columns {
        Columns {
            text: self.text_column.clone().unwrap_or_default(),
            text_pair: self.text_pair_column.clone(),
            label: self.label_column.clone().unwrap_or_default(),
            multi_label: None,
            negatives: Vec::new(),
        }
    }
}

/// The label names of `--label-names FILE`: one per line (a final newline, `\r\n` line
/// ends and a byte-order mark are allowed).
///
/// # Errors
/// The file cannot be read, is not UTF-8, or holds no name.
pub(super) fn label_names(path: &Path) -> Result<Vec<String>> {
    let text = io::read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut names: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).trim().to_string())
        .collect();
    if names.last().is_some_and(|l| l.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        bail!(
            "--label-names {}: the file holds no label names",
            path.display()
        );
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            bail!(
                "--label-names {} line {}: an empty name (one name per line, ids in order)",
                path.display(),
                i + 1
            );
        }
        if let Some(j) = names[..i].iter().position(|m| m == n) {
            bail!(
                "--label-names {} line {}: `{n}` again (first at line {}): each id needs its own \
                 name",
                path.display(),
                i + 1,
                j + 1
            );
        }
    }
    Ok(names)
}

/// A labelled file of an own-data task as task data (at most `limit` rows): its columns as
/// [`own::file_columns`] finds them, any note printed.
///
/// # Errors
/// The file cannot be read; no labelled row; the core's errors naming file, line and column.
pub fn load_own_file(
    path: &Path,
    file: &FileArgs,
    task: &OwnTask,
    model: &Pretrained,
    enc: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    if let own::TaskKind::TokenClassification { .. } = task.kind {
        let name = path.display().to_string();
        let format = file.format.map(Format::from);
        if file.label_names.is_some() && Format::resolve(&name, format)? != Format::Jsonl {
            eprintln!(
                "note: --label-names names integer tags in JSON Lines; {name} is not JSON Lines, \
                 so it is not used"
            );
        }
        return Ok(own::tokens::eval_data(
            &read_data_file(path)?,
            &name,
            format,
            task,
            &model.tokenizer,
            limit,
            file.label_names
                .as_deref()
                .map(label_names)
                .transpose()?
                .as_deref(),
        )?);
    }
    if file.label_names.is_some() {
        eprintln!(
            "note: --label-names names the integer tags of a token-classification JSON Lines \
             file; this checkpoint's task is not one, so it is not used"
        );
    }
    let table = file.table(path, task.no_header)?;
    let embedding = matches!(task.kind, own::TaskKind::Embedding { .. });
    // Anchor/positive pairs have no label column.
    let labelled = !(embedding && task.columns.label.is_empty());
    let (columns, notes) = own::file_columns(
        &table,
        Some(&task.columns),
        &file.given(),
        task.is_pair(),
        labelled,
    )?;
    for n in notes {
        eprintln!("note: {n}");
    }
    let task = &OwnTask {
        columns,
        ..task.clone()
    };
    let enc = if embedding { PairEncoding::Bi } else { enc };
    let rows = own::task_rows(&table, task)?;
    if rows.rows.is_empty() {
        bail!("{}: no rows with a label to evaluate on", path.display());
    }
    Ok(own::task_data(
        &rows,
        task,
        &model.tokenizer,
        enc,
        limit,
        true,
    )?)
}

/// The checkpoint folder: `dir/best` when `dir` is a run folder; `dir` itself when it holds a
/// lorabert checkpoint (`heads_config.json`) or a PEFT adapter folder (`adapter_config.json`
/// + `adapter_model.safetensors`, as PEFT's `save_pretrained` writes it).
pub fn checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    let is_checkpoint =
        |d: &Path| d.join(names::HEADS_CONFIG).is_file() || d.join(names::ADAPTER_CONFIG).is_file();
    if is_checkpoint(dir) {
        return Ok(dir.to_path_buf());
    }
    if is_checkpoint(&dir.join("best")) {
        return Ok(dir.join("best"));
    }
    bail!(
        "{} is not a checkpoint folder (no {} or {} in it or in its best/)",
        dir.display(),
        names::HEADS_CONFIG,
        names::ADAPTER_CONFIG
    )
}

/// Loads the base model and a trained checkpoint (a run folder or its `best/`) for inference
/// on `device` (not an autodiff device): a full fine-tuning checkpoint's own
/// `model.safetensors` replaces the base weights. Loading notes are printed.
///
/// # Errors
/// As [`load_model`], [`checkpoint_dir`] and [`restore`] (a PEFT adapter folder has no heads),
/// naming the folder.
pub fn load_trained(
    model: &ModelArgs,
    ckpt: &Path,
    device: &Device,
) -> Result<(Pretrained, MultitaskModel, HeadsConfig)> {
    let (pretrained, r) = load_restored(model, ckpt, device)?;
    Ok((pretrained, r.model, r.heads))
}

/// [`load_trained`], with the adapter's configuration (`None` for full fine-tuning).
///
/// # Errors
/// As [`load_trained`].
pub fn load_restored(
    model: &ModelArgs,
    ckpt: &Path,
    device: &Device,
) -> Result<(Pretrained, Restored)> {
    let ck = checkpoint_dir(ckpt)?;
    let (pretrained, bert) = load_base_for(model, &ck, device)?;
    let r = restore_any(
        bert,
        &mut io::files_in(&ck),
        &pretrained.config_json,
        device,
    )
    .with_context(|| format!("loading checkpoint {}", ck.display()))?;
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok((pretrained, r))
}

/// The base model of checkpoint folder `ck`: `--model`'s (or the default), with the
/// checkpoint's own `model.safetensors` for full fine-tuning.
fn load_base_for(model: &ModelArgs, ck: &Path, device: &Device) -> Result<(Pretrained, Bert)> {
    let model_dir = io::resolve_model(model.model.as_deref())?;
    refuse_applying_twice(&model_dir, ck, model.force)?;
    let full = ck.join(names::MODEL);
    let weights = full.is_file().then_some(full.as_path());
    load_model(&model_dir, weights, model.max_len, device)
}

/// Refuses to apply the adapter of checkpoint folder `ck` to `model_dir` when that folder is a
/// `lorabert merge` of the same adapter, or of another one on the adapter's own base
/// ([`crate::train::merged::applied_twice`]), unless `force`.
///
/// # Errors
/// The reason, naming both folders and `--force`; an unreadable marker.
pub(super) fn refuse_applying_twice(model_dir: &Path, ck: &Path, force: bool) -> Result<()> {
    use crate::train::merged::{MARKER, MergedFrom, applied_twice};
    let marker = model_dir.join(MARKER);
    let adapter = ck.join(names::ADAPTER_WEIGHTS);
    if !marker.is_file() || !adapter.is_file() {
        return Ok(());
    }
    let merged = MergedFrom::from_json(&io::read(&marker)?)
        .with_context(|| format!("reading {}", marker.display()))?;
    let adapter_base = io::read(&ck.join(names::ADAPTER_CONFIG))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("base_model_name_or_path")?
                .as_str()
                .map(str::to_string)
        });
    let canonical = |p: &str| std::fs::canonicalize(p).ok();
    // The same base by name, by resolved path, or (a copy under another name) by the SHA-256
    // of its weights, which the merge recorded.
    let same_weights = |b: &str| {
        !merged.base_weights_sha256.is_empty()
            && std::fs::read(Path::new(b).join(names::MODEL))
                .is_ok_and(|w| crate::data::sha256_hex(&w) == merged.base_weights_sha256)
    };
    let same_base = adapter_base.is_some_and(|b| {
        b == merged.base_model
            || canonical(&b).is_some() && canonical(&b) == canonical(&merged.base_model)
            || same_weights(&b)
    });
    let model = model_dir.display().to_string();
    if let Some(why) = applied_twice(&model, &merged, &io::read(&adapter)?, same_base) {
        if force {
            eprintln!("warning (--force): {why}");
        } else {
            bail!("{why}");
        }
    }
    Ok(())
}

/// Loads the base model with the encoder of a checkpoint or PEFT adapter folder (no heads
/// needed: `embed`, `merge`). Loading notes are printed.
///
/// # Errors
/// As [`load_model`], [`checkpoint_dir`] and [`restore_adapter`], naming the folder.
pub fn load_encoder(model: &ModelArgs, ckpt: &Path, device: &Device) -> Result<(Pretrained, Bert)> {
    let ck = checkpoint_dir(ckpt)?;
    let (pretrained, bert) = load_base_for(model, &ck, device)?;
    let parts = restore_adapter(bert, &mut io::files_in(&ck))
        .with_context(|| format!("loading the adapter in {}", ck.display()))?;
    for n in &parts.notes {
        eprintln!("note: {n}");
    }
    Ok((pretrained, parts.bert))
}
