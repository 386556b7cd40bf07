//! `lorabert export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::load::{checkpoint_dir, load_encoder, load_restored};
use super::{CheckpointArgs, ModelArgs, devices, io};
use crate::tasks::{Pooling, Task};
use crate::train::artifacts::{Files, names};
use crate::train::export::{
    SentenceTransformersBase, SeqClsHead, peft_seq_cls_files, sentence_transformers_files,
    seq_cls_head, transformers_files,
};

/// `--format` of `export`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// A BertForSequenceClassification folder (adapter merged, one head as `classifier`) for
    /// transformers' AutoModelForSequenceClassification; a token-classification checkpoint as
    /// BertForTokenClassification (AutoModelForTokenClassification).
    Transformers,
    /// A PEFT adapter folder of task type SEQ_CLS (the head in modules_to_save) for
    /// AutoPeftModelForSequenceClassification; TOKEN_CLS for a token-classification checkpoint.
    Peft,
    /// A sentence-transformers folder (adapter merged; mean or CLS pooling).
    SentenceTransformers,
}

/// `--pooling` of `export` (sentence-transformers).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportPooling {
    /// Mean over real tokens.
    Mean,
    /// The [CLS] token state.
    Cls,
}

/// The pooling of sentence embeddings (`embed`, `search`, `export --format
/// sentence-transformers`): `arg` (`--pooling`) when given, else the checkpoint `ck`'s own
/// (its `heads_config.json`), else the model folder's sentence-transformers `Pooling` module
/// (`modules.json`'s Pooling folder, else `1_Pooling`, its `config.json`: mean for
/// all-MiniLM-L6-v2, CLS for bge models), else mean.
///
/// # Errors
/// An unreadable or invalid `heads_config.json` or Pooling `config.json`, naming the file
/// ([`Pooling::from_sentence_transformers`]).
pub(super) fn sentence_pooling(
    arg: Option<ExportPooling>,
    ck: Option<&Path>,
    model_dir: &Path,
) -> Result<Pooling> {
    match arg {
        Some(ExportPooling::Mean) => return Ok(Pooling::Mean),
        Some(ExportPooling::Cls) => return Ok(Pooling::Cls),
        None => {}
    }
    if let Some(path) = ck
        .map(|ck| ck.join(names::HEADS_CONFIG))
        .filter(|p| p.is_file())
    {
        let heads: crate::tasks::HeadsConfig = serde_json::from_slice(&io::read(&path)?)
            .with_context(|| format!("{} is invalid", path.display()))?;
        return Ok(heads.pooling);
    }
    Ok(model_pooling(model_dir)?.unwrap_or(Pooling::Mean))
}

/// The pooling that a model folder's sentence-transformers configuration names: the `Pooling`
/// module's `config.json` (the folder `modules.json` gives it, else `1_Pooling`), or `None`
/// when the folder has none (a plain BERT checkpoint).
///
/// # Errors
/// As [`Pooling::from_sentence_transformers`], naming the file; an unreadable `modules.json`.
pub(super) fn model_pooling(model_dir: &Path) -> Result<Option<Pooling>> {
    let mut folder = "1_Pooling".to_string();
    let mut named = false;
    let modules = model_dir.join("modules.json");
    if modules.is_file() {
        let v: serde_json::Value = serde_json::from_slice(&io::read(&modules)?)
            .with_context(|| format!("{} is invalid", modules.display()))?;
        let pooling = v.as_array().into_iter().flatten().find(|m| {
            m.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| t.ends_with(".Pooling"))
        });
        if let Some(p) = pooling.and_then(|m| m.get("path")).and_then(|p| p.as_str()) {
            folder = p.to_string();
            named = true;
        }
    }
    let path = model_dir.join(&folder).join("config.json");
    if !path.is_file() {
        if named || path.exists() || path.is_symlink() {
            let whose = match named {
                true => format!(
                    "{} names the Pooling module's folder `{folder}`, but ",
                    modules.display()
                ),
                false => String::new(),
            };
            bail!(
                "{whose}{} is not a readable file (fix it, or pass --pooling mean or --pooling cls)",
                path.display()
            );
        }
        return Ok(None);
    }
    let name = path.display().to_string();
    // The model's width, where its config.json reads, for the Pooling module's to match.
    let hidden = std::fs::read_to_string(model_dir.join("config.json"))
        .ok()
        .and_then(|t| crate::model::BertConfig::from_json(&t, "config.json").ok())
        .map(|c| c.hidden_size);
    Ok(Some(Pooling::from_sentence_transformers(
        &io::read(&path)?,
        &name,
        hidden,
    )?))
}

/// `lorabert export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// What to write.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The head to export (transformers, peft): sst, para, sts or own; default the
    /// checkpoint's only head.
    #[arg(long)]
    task: Option<String>,
    /// sentence-transformers: the pooling (default: the checkpoint's, else mean).
    #[arg(long, value_enum)]
    pooling: Option<ExportPooling>,
    /// Output folder (replaced atomically).
    #[arg(long)]
    output: PathBuf,
}

/// Tokenizer files copied from the model folder when present (`tokenizer.json` is required).
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// `lorabert export`: a checkpoint (or PEFT adapter folder) as a folder that transformers,
/// PEFT or sentence-transformers load; see [`crate::train::export`].
pub fn export(a: ExportArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let st = a.format == ExportFormat::SentenceTransformers;
    if !st && a.pooling.is_some() {
        bail!(
            "--pooling applies to --format sentence-transformers (a classifier head keeps the pooling it was trained with)"
        );
    }
    if st && a.task.is_some() {
        bail!(
            "--task applies to --format transformers and peft (sentence-transformers exports the encoder)"
        );
    }
    let model_dir = io::resolve_model(a.model.model.as_deref())?;
    let (mut files, hint) = match a.format {
        ExportFormat::SentenceTransformers => sentence_transformers(&a, &device)?,
        ExportFormat::Transformers | ExportFormat::Peft => seq_cls(&a, &model_dir, &device)?,
    };
    for name in TOKENIZER_FILES {
        let p = model_dir.join(name);
        if p.is_file() {
            files.push((name, io::read(&p)?));
        } else if name == "tokenizer.json" {
            bail!("{} is missing: the export needs the tokenizer", p.display());
        }
    }
    io::write_dir_atomic(&a.output, &files)?;
    eprintln!("wrote {}; {hint}", a.output.display());
    Ok(())
}

/// The head to export: `--task`, or the checkpoint's only head.
fn pick_task(arg: Option<&str>, tasks: &[Task]) -> Result<Task> {
    let names: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
    match arg {
        Some(n) => tasks.iter().copied().find(|t| t.name() == n).with_context(|| {
            format!(
                "--task {n}: the checkpoint's heads are {} (own-data and PEFT SEQ_CLS heads are `own`)",
                names.join(", ")
            )
        }),
        None => match tasks {
            [one] => Ok(*one),
            _ => bail!(
                "the checkpoint has {} heads ({}): pick one with --task",
                tasks.len(),
                names.join(", ")
            ),
        },
    }
}

/// `--format transformers | peft`.
fn seq_cls(
    a: &ExportArgs,
    model_dir: &Path,
    device: &burn::tensor::Device,
) -> Result<(Files, String)> {
    let (loaded, r) = load_restored(&a.model, &a.ckpt.checkpoint, device)?;
    let task = pick_task(a.task.as_deref(), &r.heads.tasks)?;
    let head = pollster::block_on(seq_cls_head(&r.model, &r.heads, task))?;
    let kwargs = python_kwargs(&head);
    match a.format {
        ExportFormat::Peft => {
            let Some(lora) = &r.adapter else {
                bail!(
                    "{} is a full fine-tuning checkpoint (no adapter): export it with --format transformers",
                    a.ckpt.checkpoint.display()
                );
            };
            // PEFT loads the base from this path: absolute, so it holds from any directory.
            let base = std::fs::canonicalize(model_dir)
                .unwrap_or_else(|_| model_dir.to_path_buf())
                .display()
                .to_string();
            let files = pollster::block_on(peft_seq_cls_files(&r.model.bert, lora, &head, &base))?;
            Ok((
                files,
                format!(
                    "load it with peft.AutoPeftModelFor{}.from_pretrained(\"{}\"{kwargs})",
                    auto_class(&head),
                    a.output.display()
                ),
            ))
        }
        _ => {
            let bert = crate::adapter::merge(r.model.bert);
            let files = pollster::block_on(transformers_files(&bert, &head, &loaded.config_json))?;
            Ok((
                files,
                format!(
                    "load it with transformers.AutoModelFor{}.from_pretrained(\"{}\")",
                    auto_class(&head),
                    a.output.display()
                ),
            ))
        }
    }
}

/// `TokenClassification` or `SequenceClassification`: the `AutoModelFor...` class of `head`.
fn auto_class(head: &SeqClsHead) -> &'static str {
    if head.token {
        "TokenClassification"
    } else {
        "SequenceClassification"
    }
}

/// The keyword arguments AutoPeftModelForSequenceClassification needs for `head` (the base
/// config has no labels: transformers would build 2).
fn python_kwargs(head: &SeqClsHead) -> String {
    let labels: Vec<String> = head
        .id2label
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{i}: {}", serde_json::Value::from(l.as_str())))
        .collect();
    let mut s = format!(
        ", num_labels={}, id2label={{{}}}",
        head.id2label.len(),
        labels.join(", ")
    );
    if head.regression {
        s.push_str(", problem_type=\"regression\"");
    } else if head.multi_label {
        s.push_str(", problem_type=\"multi_label_classification\"");
    }
    s
}

/// `--format sentence-transformers`.
fn sentence_transformers(a: &ExportArgs, device: &burn::tensor::Device) -> Result<(Files, String)> {
    let ck = checkpoint_dir(&a.ckpt.checkpoint)?;
    let base_dir = io::resolve_model(a.model.model.as_deref())?;
    let pooling = sentence_pooling(a.pooling, Some(&ck), &base_dir)?;
    let (loaded, bert) = load_encoder(&a.model, &a.ckpt.checkpoint, device)?;
    let bert = crate::adapter::merge(bert);
    // The base's own sentence-transformers modules and settings (Normalize, max_seq_length).
    let read = |name: &str| std::fs::read(base_dir.join(name)).ok();
    let base = SentenceTransformersBase::from_files(
        read("modules.json").as_deref(),
        read("sentence_bert_config.json").as_deref(),
    )
    .with_context(|| format!("reading the base model's folder {}", base_dir.display()))?;
    for ty in &base.not_carried {
        eprintln!(
            "note: the base model's module {ty} (after Pooling) is not carried into the export"
        );
    }
    let files = pollster::block_on(sentence_transformers_files(
        &bert,
        &loaded.config_json,
        pooling,
        a.model.max_len,
        loaded.cfg.hidden_size,
        &base,
    ))?;
    Ok((
        files,
        format!(
            "load it with sentence_transformers.SentenceTransformer(\"{}\")",
            a.output.display()
        ),
    ))
}
