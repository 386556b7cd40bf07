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
    /// Output file, by its extension: `.safetensors` with `sentence_embedding` `[sentences,
    /// hidden]` in input order (with --hidden-states also `last_hidden_state` `[sentences,
    /// longest, hidden]`, zero past each sentence's end, `attention_mask` and `input_ids`
    /// `[sentences, longest]`); `.npy`, the embeddings as a float32 NumPy array `[sentences,
    /// hidden]` (`numpy.load`); `.jsonl`, a line `{"sentence": ..., "embedding": [...]}` per
    /// sentence.
    #[arg(long)]
    output: PathBuf,
    /// How `sentence_embedding` pools the token states, as sentence-transformers' Pooling
    /// module: the mean over real tokens (all-MiniLM-L6-v2's) or the [CLS] state; unnormalised.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: ExportPooling,
    /// Also write the encoder's last hidden states, attention mask and input ids.
    #[arg(long)]
    hidden_states: bool,
    /// Sentences per forward pass, at most: sentences are sorted by length, batched (on the CPU
    /// a batch also stops at 384 token rows, sentences × its longest, where the caches still
    /// hold its activations) and each batch padded to its own longest (dynamic padding); on the CPU
    /// batches run side by side, one per thread. The outputs are put back in input order and
    /// do not depend on the batching beyond rounding.
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
    let format = OutputFormat::of(&a.output)?;
    if a.hidden_states && format != OutputFormat::Safetensors {
        bail!(
            "--hidden-states writes safetensors: give --output a .safetensors name ({} holds the \
             sentence embeddings only)",
            a.output.display()
        );
    }
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
    let bytes = match format {
        OutputFormat::Safetensors => crate::model::weights::f32_safetensors(&out)?,
        OutputFormat::Npy => {
            let (shape, v) = &out["sentence_embedding"];
            npy_f32(shape, v)
        }
        OutputFormat::Jsonl => {
            let (shape, v) = &out["sentence_embedding"];
            jsonl(&sentences, shape[1], v)?
        }
    };
    io::write_atomic(&a.output, &bytes)?;
    let shapes: Vec<String> = out.iter().map(|(k, (s, _))| format!("{k} {s:?}")).collect();
    eprintln!("wrote {} ({})", a.output.display(), shapes.join(", "));
    Ok(())
}

/// What `--output` holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Safetensors,
    Npy,
    Jsonl,
}

impl OutputFormat {
    /// The format of `path` by its extension.
    ///
    /// # Errors
    /// Another extension, naming the three.
    fn of(path: &std::path::Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(OutputFormat::Safetensors),
            Some("npy") => Ok(OutputFormat::Npy),
            Some("jsonl") => Ok(OutputFormat::Jsonl),
            _ => bail!(
                "--output {}: name it .safetensors, .npy or .jsonl (the format follows the \
                 extension)",
                path.display()
            ),
        }
    }
}

/// A little-endian float32 array of `shape` as a NumPy `.npy` file (format version 1.0: the
/// magic string, a header dict padded with spaces to a multiple of 64 bytes and ended by a
/// newline, then the values in C order), as `numpy.save` writes it.
fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n', to a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// One JSON line per sentence: `{"sentence": ..., "embedding": [...]}` (`hidden` values each,
/// in input order).
fn jsonl(sentences: &[String], hidden: usize, values: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (s, e) in sentences.iter().zip(values.chunks(hidden)) {
        let line = serde_json::json!({ "sentence": s, "embedding": e });
        serde_json::to_writer(&mut out, &line)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The named outputs of [`embed`] for `encs`: length-sorted batches of `batch_size` through
/// `bert`, each padded to its own longest sentence, put back in input order.
pub(super) fn encode(
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
    // Longest first, so the side-by-side workers ([`crate::kernels::batches`]) end together.
    let batches = crate::data::length_batches(
        &order,
        |i| encs[i].ids.len(),
        batch_size,
        crate::data::inference_batch_tokens(device),
    );
    let outs = crate::kernels::batches::map_batches(device, batches.len(), |j| {
        let idx = batches[j];
        let batch = TokenBatch::from_encoded(&idx.iter().map(|&i| &encs[i]).collect::<Vec<_>>(), 0);
        let x = batch.to_tensors(device);
        let states = bert.forward(x.ids, x.type_ids, x.mask.clone());
        let p = pollster::block_on(crate::kernels::read_f32(pool(
            states.clone(),
            x.mask,
            pooling,
        )))?;
        let v = if hidden_states {
            pollster::block_on(crate::kernels::read_f32(states))?
        } else {
            Vec::new()
        };
        Ok((p, v, batch.seq))
    })?;
    for (idx, (p, v, s)) in batches.iter().zip(outs) {
        for (k, &i) in idx.iter().enumerate() {
            pooled[i * h..(i + 1) * h].copy_from_slice(&p[k * h..(k + 1) * h]);
        }
        if hidden_states {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_is_what_numpy_save_writes() {
        // tests/golden/embedding.npy: numpy.save of this array (tools/make_golden_npy.py).
        let want = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/embedding.npy"),
        )
        .unwrap();
        let got = npy_f32(&[2, 3], &[0.5, -1.0, 2.0, 3.25, 0.0, -0.125]);
        assert_eq!(got, want);
    }
}
