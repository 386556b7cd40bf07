//! `lorabert merge`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::load::{checkpoint_dir, load_encoder};
use super::{CheckpointArgs, ModelArgs, devices, io};
use crate::train::artifacts::names;

/// `lorabert merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Output folder (model.safetensors, config.json, tokenizer.json, heads).
    #[arg(long)]
    output: PathBuf,
}

/// `lorabert merge`: the adapter folded into the base weights, written as a plain BERT folder
/// with the heads and `lorabert_merged.json` (what it was merged from: base, checkpoint and
/// their SHA-256), which later loads check so the adapter is not applied again.
pub fn merge(a: MergeArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, bert) = load_encoder(&a.model, &a.ckpt.checkpoint, &device)?;
    let ck = checkpoint_dir(&a.ckpt.checkpoint)?;
    let model_dir = io::resolve_model(a.model.model.as_deref())?;
    let bert = crate::adapter::merge(bert);
    let st = pollster::block_on(crate::train::artifacts::bert_safetensors(&bert))?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (names::MODEL, st),
        (names::CONFIG, loaded.config_json.into_bytes()),
    ];
    let tok = io::read(&model_dir.join("tokenizer.json"))?;
    files.push(("tokenizer.json", tok));
    // What it was merged from, so the adapter is not applied to it again (`refuse_applying_twice`).
    let base_weights = std::fs::read(model_dir.join(names::MODEL)).ok();
    let adapter = io::read(&ck.join(names::ADAPTER_WEIGHTS))?;
    let marker = crate::train::merged::MergedFrom::new(
        &model_dir.display().to_string(),
        base_weights.as_deref(),
        &ck.display().to_string(),
        &adapter,
    );
    files.push((
        crate::train::merged::MARKER,
        serde_json::to_vec_pretty(&marker)?,
    ));
    // A lorabert checkpoint's heads go along; a PEFT adapter folder has none.
    for n in [names::HEADS, names::HEADS_CONFIG] {
        if ck.join(n).is_file() {
            files.push((n, io::read(&ck.join(n))?));
        }
    }
    io::write_dir_atomic(&a.output, &files)?;
    eprintln!("wrote merged checkpoint to {}", a.output.display());
    Ok(())
}
