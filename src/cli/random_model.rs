//! `lorabert random-model`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::io;
use crate::model::init::InitRng;
use crate::model::{Bert, BertConfig};

/// `lorabert random-model`.
#[derive(Args, Debug)]
pub struct RandomModelArgs {
    /// Hugging Face config.json giving the shape.
    #[arg(long)]
    model_config: PathBuf,
    /// tokenizer.json to copy (its vocabulary should match vocab_size).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the N(0, 0.02) weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `lorabert random-model`: a randomly initialised BERT folder of the shape of a `config.json`.
pub fn random_model(a: RandomModelArgs) -> Result<()> {
    let text = io::read_text(&a.model_config)?;
    let cfg = BertConfig::from_json(&text, &a.model_config.display().to_string())?;
    let params = cfg.encoder_params();
    if io::available_memory_bytes().is_some_and(|m| params * 8 > m) {
        bail!(
            "{}: {params} parameters do not fit in memory",
            a.model_config.display()
        );
    }
    let device = Device::flex();
    device.seed(a.seed);
    let bert = Bert::random(&cfg, &device, &mut InitRng::new(a.seed));
    let files: Vec<(&str, Vec<u8>)> = vec![
        (crate::train::artifacts::names::CONFIG, text.into_bytes()),
        (
            crate::train::artifacts::names::MODEL,
            pollster::block_on(crate::train::artifacts::bert_safetensors(&bert))?,
        ),
        ("tokenizer.json", io::read(&a.tokenizer)?),
    ];
    io::write_dir_atomic(&a.out, &files)?;
    eprintln!(
        "wrote a random {}-layer, hidden {} BERT ({params} parameters) to {}",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        a.out.display()
    );
    Ok(())
}
