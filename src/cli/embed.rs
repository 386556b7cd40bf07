//! `lorabert embed`: sentence embeddings (as sentence-transformers' `encode` returns them), and
//! on request the encoder's hidden states.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::export::ExportPooling;
use super::load::{load_encoder, load_model};
use super::{ModelArgs, devices, io};
use crate::data::TokenBatch;
use crate::model::{Bert, Encoded};
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
    /// Output safetensors file: `sentence_embedding` `[sentences, hidden]` in input order; with
    /// --hidden-states also `last_hidden_state` `[sentences, longest, hidden]` (zero past each
    /// sentence's end), `attention_mask` and `input_ids` `[sentences, longest]`.
    #[arg(long)]
    output: PathBuf,
    /// How `sentence_embedding` pools the token states, as sentence-transformers' Pooling
    /// module: the mean over real tokens (all-MiniLM-L6-v2's) or the [CLS] state; unnormalised.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: ExportPooling,
    /// Also write the encoder's last hidden states, attention mask and input ids.
    #[arg(long)]
    hidden_states: bool,
    /// Sentences per forward pass. Sentences are sorted by length and each batch padded to its
    /// own longest (dynamic padding); the outputs are put back in input order.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// `lorabert embed`: the pooled `sentence_embedding` of sentences (with `--hidden-states` also
/// `last_hidden_state`, `attention_mask` and `input_ids`) to a safetensors file, with or without
/// a checkpoint's adapter.
pub fn embed(a: EmbedArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let mut sentences = a.sentences.clone();
    if let Some(p) = &a.input {
        sentences.extend(io::read_text(p)?.lines().map(str::to_string));
    }
    if sentences.is_empty() {
        bail!("no sentences: pass --sentence TEXT (repeatable) or --input FILE");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be >= 1");
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
    let pooling = match a.pooling {
        ExportPooling::Mean => Pooling::Mean,
        ExportPooling::Cls => Pooling::Cls,
    };
    let out = encode(
        &bert,
        &encs,
        pooling,
        a.batch_size,
        a.hidden_states,
        &device,
    )?;
    let bytes = crate::model::weights::f32_safetensors(&out)?;
    io::write_atomic(&a.output, &bytes)?;
    let shapes: Vec<String> = out.iter().map(|(k, (s, _))| format!("{k} {s:?}")).collect();
    eprintln!("wrote {} ({})", a.output.display(), shapes.join(", "));
    Ok(())
}

/// The named outputs of [`embed`] for `encs`: length-sorted batches of `batch_size` through
/// `bert`, each padded to its own longest sentence, put back in input order.
fn encode(
    bert: &Bert,
    encs: &[Encoded],
    pooling: Pooling,
    batch_size: usize,
    hidden_states: bool,
    device: &Device,
) -> Result<crate::model::weights::Tensors> {
    let n = encs.len();
    let all = TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    let (longest, h) = (all.seq, bert.embeddings.word_embeddings.weight.dims()[1]);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| encs[i].ids.len());
    let mut pooled = vec![0f32; n * h];
    let mut hidden = if hidden_states {
        vec![0f32; n * longest * h]
    } else {
        Vec::new()
    };
    for idx in order.chunks(batch_size) {
        let batch = TokenBatch::from_encoded(&idx.iter().map(|&i| &encs[i]).collect::<Vec<_>>(), 0);
        let x = batch.to_tensors(device);
        let states = bert.forward(x.ids, x.type_ids, x.mask.clone());
        let p = pollster::block_on(crate::kernels::read_f32(pool(
            states.clone(),
            x.mask,
            pooling,
        )))?;
        for (k, &i) in idx.iter().enumerate() {
            pooled[i * h..(i + 1) * h].copy_from_slice(&p[k * h..(k + 1) * h]);
        }
        if hidden_states {
            let s = batch.seq;
            let v = pollster::block_on(crate::kernels::read_f32(states))?;
            for (k, &i) in idx.iter().enumerate() {
                let rows = encs[i].ids.len();
                hidden[i * longest * h..(i * longest + rows) * h]
                    .copy_from_slice(&v[k * s * h..(k * s + rows) * h]);
            }
        }
    }
    let mut t = BTreeMap::new();
    t.insert("sentence_embedding".to_string(), (vec![n, h], pooled));
    if hidden_states {
        t.insert(
            "last_hidden_state".to_string(),
            (vec![n, longest, h], hidden),
        );
        t.insert(
            "attention_mask".to_string(),
            (vec![n, longest], all.mask.clone()),
        );
        t.insert(
            "input_ids".to_string(),
            (
                vec![n, longest],
                all.ids.iter().map(|&v| v as f32).collect(),
            ),
        );
    }
    Ok(t)
}
