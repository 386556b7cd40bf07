//! `lorabert train --init-adapter DIR`: the adapter configuration, its weights and (where they
//! match the run's tasks) its heads, from a lorabert checkpoint or a PEFT adapter folder.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::io;
use super::load::checkpoint_dir;
use crate::adapter::LoraConfig;
use crate::train::Job;

/// The adapter configuration of `--init-adapter DIR` (its `adapter_config.json`), for training
/// on: what PEFT saved whole (`modules_to_save`: a SEQ_CLS classifier) is left to the heads.
///
/// # Errors
/// Not a checkpoint or adapter folder; no adapter in it (full fine-tuning); an invalid
/// `adapter_config.json`; an adapter whose base biases are trained (`bias` not `none`).
pub(super) fn init_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let ck = checkpoint_dir(dir)?;
    let path = ck.join(crate::train::artifacts::names::ADAPTER_CONFIG);
    if !path.is_file() {
        bail!(
            "--init-adapter {}: no {} (a full fine-tuning checkpoint has no adapter to start from)",
            dir.display(),
            path.display()
        );
    }
    let mut lora = crate::adapter::peft::parse_adapter_config(
        &io::read_text(&path)?,
        &path.display().to_string(),
    )?;
    if lora.bias != crate::adapter::Bias::None {
        bail!(
            "--init-adapter {}: the adapter trains the base model's biases (bias: {}); lorabert trains adapters with bias none",
            dir.display(),
            lora.bias.name()
        );
    }
    if !lora.modules_to_save.is_empty() {
        eprintln!(
            "note: {} saves {} whole (modules_to_save): the run trains its own heads",
            path.display(),
            lora.modules_to_save.join(", ")
        );
        lora.modules_to_save.clear();
    }
    Ok(lora)
}

/// Attaches `--init-adapter`'s adapter weights to `bert` (the configuration is already in the
/// run's), printing the loading notes.
pub(super) fn init_adapter_weights(
    dir: &Path,
    bert: crate::model::Bert,
) -> Result<crate::model::Bert> {
    let ck = checkpoint_dir(dir)?;
    let parts = crate::train::artifacts::restore_adapter(bert, &mut io::files_in(&ck))
        .with_context(|| format!("--init-adapter {}", ck.display()))?;
    for n in &parts.notes {
        eprintln!("note: {n}");
    }
    Ok(parts.bert)
}

/// Starts the job's heads from `--init-adapter`'s checkpoint when it has matching ones.
pub(super) fn init_heads(job: &mut Job, dir: &Path) -> Result<()> {
    use crate::train::artifacts::names;
    let ck = checkpoint_dir(dir)?;
    let (c, w) = (ck.join(names::HEADS_CONFIG), ck.join(names::HEADS));
    if !(c.is_file() && w.is_file()) {
        eprintln!(
            "note: {} has no task heads: the heads start fresh",
            ck.display()
        );
        return Ok(());
    }
    if job
        .init_heads(&io::read(&c)?, &io::read(&w)?)
        .with_context(|| format!("--init-adapter {}", ck.display()))?
    {
        eprintln!("starting from the adapter and heads in {}", ck.display());
    } else {
        eprintln!(
            "note: the heads in {} are for other tasks or pooling: the heads start fresh",
            ck.display()
        );
    }
    Ok(())
}
