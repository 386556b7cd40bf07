//! `lorabert embed`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::load::{load_encoder, load_model};
use super::{ModelArgs, devices, io};
use crate::data::TokenBatch;
use crate::tasks::{Pooling, pool};

/// `lorabert embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    /// Optional checkpoint whose adapter is applied.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A sentence (repeatable).
    #[arg(long = "sentence")]
    sentences: Vec<String>,
    /// A UTF-8 file with one sentence per line.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output safetensors file (last_hidden_state [batch, seq, hidden], attention_mask, input_ids;
    /// with --pooling also sentence_embedding [batch, hidden]).
    #[arg(long)]
    output: PathBuf,
    /// Also write `sentence_embedding`: the states pooled as sentence-transformers' Pooling
    /// module does (mean over real tokens, or the [CLS] state), unnormalised.
    #[arg(long, value_enum)]
    pooling: Option<super::export::ExportPooling>,
}

/// `lorabert embed`: `last_hidden_state`, `attention_mask` and `input_ids` of sentences to a
/// safetensors file, with or without a checkpoint's adapter.
pub fn embed(a: EmbedArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let mut sentences = a.sentences.clone();
    if let Some(p) = &a.input {
        sentences.extend(io::read_text(p)?.lines().map(str::to_string));
    }
    if sentences.is_empty() {
        bail!("no sentences: pass --sentence TEXT (repeatable) or --input FILE");
    }
    let (tok, bert) = match &a.checkpoint {
        Some(ck) => {
            let (loaded, bert) = load_encoder(&a.model, ck, &device)?;
            (loaded.tokenizer, bert)
        }
        None => {
            let dir = io::resolve_model(a.model.model.as_deref())?;
            let (l, bert) = load_model(&dir, None, a.model.max_len, &device)?;
            (l.tokenizer, bert)
        }
    };
    let encs = sentences
        .iter()
        .map(|s| tok.encode(s))
        .collect::<crate::Result<Vec<_>>>()?;
    let batch = TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    let x = batch.to_tensors(&device);
    let hidden = bert.forward(x.ids, x.type_ids, x.mask.clone());
    let dims = hidden.dims();
    let mut t = std::collections::BTreeMap::new();
    if let Some(p) = a.pooling {
        let pooling = match p {
            super::export::ExportPooling::Mean => Pooling::Mean,
            super::export::ExportPooling::Cls => Pooling::Cls,
        };
        let pooled = pool(hidden.clone(), x.mask, pooling);
        let shape = pooled.dims().to_vec();
        let v = pollster::block_on(crate::kernels::read_f32(pooled))?;
        t.insert("sentence_embedding".to_string(), (shape, v));
    }
    let values = pollster::block_on(crate::kernels::read_f32(hidden))?;
    t.insert("last_hidden_state".to_string(), (dims.to_vec(), values));
    t.insert(
        "attention_mask".to_string(),
        (vec![batch.batch, batch.seq], batch.mask.clone()),
    );
    t.insert(
        "input_ids".to_string(),
        (
            vec![batch.batch, batch.seq],
            batch.ids.iter().map(|&v| v as f32).collect(),
        ),
    );
    let bytes = crate::model::weights::f32_safetensors(&t)?;
    io::write_atomic(&a.output, &bytes)?;
    eprintln!(
        "wrote {} (last_hidden_state {:?})",
        a.output.display(),
        dims
    );
    Ok(())
}
