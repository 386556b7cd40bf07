//! `lorabert embed`: sentence embeddings (as sentence-transformers' `encode` returns them), and
//! on request the encoder's hidden states.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::embed_out::{Chunk, OutputFormat, Shapes, Sink};
use super::export::{ExportPooling, sentence_pooling};
use super::load::{checkpoint_dir, load_encoder, load_model};
use super::precision::InferencePrecision;
use super::{ModelArgs, devices, io};
use crate::data::TokenBatch;
use crate::model::{Bert, BertTokenizer, Encoded};
use crate::tasks::retrieval::{normalized, truncated};
use crate::tasks::{Pooling, pool};

/// `lorabert embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    pub(super) precision: InferencePrecision,
    /// Optional checkpoint whose adapter is applied.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A sentence (repeatable).
    #[arg(long = "sentence")]
    sentences: Vec<String>,
    /// A UTF-8 file with one sentence per line (after any --sentence; every line, blank ones
    /// too, gets its row, in order).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output file, by its extension: `.safetensors` with `sentence_embedding` `[sentences,
    /// hidden]` in input order (with --hidden-states also `last_hidden_state` `[sentences,
    /// longest, hidden]`, zero past each sentence's end, `attention_mask` and `input_ids`
    /// `[sentences, longest]`); `.npy`, the embeddings as a float32 NumPy array `[sentences,
    /// hidden]` (`numpy.load`); `.jsonl`, a line `{"sentence": ..., "embedding": [...]}` per
    /// sentence. The file is written as the embeddings come, 8,192 sentences at a time (fewer
    /// with --hidden-states), to a temporary file renamed at the end, so memory stays flat on a
    /// large corpus and a failed run leaves no partial file.
    #[arg(long)]
    output: PathBuf,
    /// How `sentence_embedding` pools the token states, as sentence-transformers' Pooling
    /// module: the mean over real tokens or the [CLS] state [default: the checkpoint's pooling,
    /// else the model folder's `1_Pooling/config.json` (mean for all-MiniLM-L6-v2, CLS for bge
    /// models), else mean].
    #[arg(long, value_enum)]
    pooling: Option<ExportPooling>,
    /// Scale each `sentence_embedding` to unit length, as sentence-transformers' `Normalize`
    /// module (all-MiniLM-L6-v2's last module: with it the output equals its `encode`); with
    /// --truncate-dim, after the cut (as `encode(..., normalize_embeddings=True)`).
    #[arg(long)]
    normalize: bool,
    /// Keep the first DIM components of each `sentence_embedding`, as sentence-transformers'
    /// `truncate_dim` (for a model trained with --matryoshka-dims) [default: all].
    #[arg(long, value_name = "DIM")]
    truncate_dim: Option<usize>,
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
    /// Sentences embedded and written per chunk (tests set it low to cross chunk boundaries)
    /// [default: 8,192, fewer with --hidden-states].
    #[arg(long, hide = true)]
    chunk_sentences: Option<usize>,
}

/// `lorabert embed`: the pooled `sentence_embedding` of sentences (with `--hidden-states` also
/// `last_hidden_state`, `attention_mask` and `input_ids`) to a safetensors, `.npy` or JSON Lines
/// file, with or without a checkpoint's adapter, written chunk by chunk ([`Sink`]).
pub fn embed(a: EmbedArgs) -> Result<()> {
    let (device, _) = devices(a.model.backend, 0)?;
    let mut sentences = a.sentences.clone();
    if let Some(p) = &a.input {
        let text = io::read_text(p)?;
        if text.is_empty() {
            bail!("{}: the file is empty (one sentence per line)", p.display());
        }
        // A byte-order mark is not part of the first sentence.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        sentences.extend(text.lines().map(str::to_string));
    }
    if sentences.is_empty() {
        bail!("no sentences: pass --sentence TEXT (repeatable) or --input FILE");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    let format = OutputFormat::of(&a.output)?;
    if a.hidden_states && format != OutputFormat::Safetensors {
        bail!(
            "--hidden-states writes safetensors: give --output a .safetensors name ({} holds the \
             sentence embeddings only)",
            a.output.display()
        );
    }
    io::check_writable(&a.output)?;
    let model_dir = io::resolve_model(a.model.model.as_deref())?;
    let ck = a.checkpoint.as_deref().map(checkpoint_dir).transpose()?;
    let pooling = sentence_pooling(a.pooling, ck.as_deref(), &model_dir)?;
    if pooling == Pooling::Pooler {
        bail!(
            "the checkpoint's heads read BERT's pooler, not a sentence embedding: pass --pooling \
             mean or --pooling cls"
        );
    }
    let (tok, bert) = match &ck {
        Some(ck) => {
            let (loaded, bert) = load_encoder(&a.model, ck, &device)?;
            (loaded.tokenizer, bert)
        }
        None => {
            let (l, bert) = load_model(&model_dir, None, a.model.max_len, &device)?;
            (l.tokenizer, bert)
        }
    };
    let (bert, _) = a.precision.apply(bert, &device)?;
    let hidden = bert.embeddings.word_embeddings.weight.dims()[1];
    let dim = truncate_dim(a.truncate_dim, hidden)?;
    // With hidden states every sentence is padded to the longest: a first pass finds it.
    let longest = match a.hidden_states {
        true => Some(
            sentences
                .iter()
                .try_fold(0, |m, s| tok.encode(s).map(|e| m.max(e.ids.len())))?,
        ),
        false => None,
    };
    let shapes = Shapes {
        n: sentences.len(),
        hidden,
        dim,
        longest,
    };
    let chunk = a
        .chunk_sentences
        .unwrap_or_else(|| chunk_sentences(longest, hidden))
        .max(1);
    let plan = Plan {
        format,
        shapes,
        chunk,
        pooling,
    };
    // Ctrl-C or SIGTERM while writing: the temporary file goes, the output stays as it was.
    let tmp = io::temp_path(&a.output)?;
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("\ninterrupted: nothing written");
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C/SIGTERM handler")?;
    let mut failed = None;
    let written = io::write_atomic_with(&a.output, &mut |f| {
        let out = std::io::BufWriter::new(&mut *f);
        write_chunks(out, &sentences, &tok, &bert, &a, &plan, &device).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    written?;
    let shapes: Vec<String> = shapes
        .tensors()
        .iter()
        .map(|(k, s)| format!("{k} {s:?}"))
        .collect();
    eprintln!("wrote {} ({})", a.output.display(), shapes.join(", "));
    Ok(())
}

/// How [`write_chunks`] writes: the output format and shapes, sentences per chunk, pooling.
struct Plan {
    format: OutputFormat,
    shapes: Shapes,
    chunk: usize,
    pooling: Pooling,
}

/// Embeds `sentences` a chunk at a time (tokenised with `tok`, through `bert`, as `a` asks:
/// batch size, hidden states, normalisation) and writes each chunk to `out` ([`Sink`]).
///
/// # Errors
/// Tokenising, the forward passes or writing fail.
fn write_chunks(
    out: impl std::io::Write + std::io::Seek,
    sentences: &[String],
    tok: &BertTokenizer,
    bert: &Bert,
    a: &EmbedArgs,
    plan: &Plan,
    device: &Device,
) -> Result<()> {
    let mut sink = Sink::new(out, plan.format, plan.shapes)?;
    for (k, part) in sentences.chunks(plan.chunk).enumerate() {
        let encs = part
            .iter()
            .map(|s| tok.encode(s))
            .collect::<crate::Result<Vec<_>>>()?;
        let out = encode(
            bert,
            &encs,
            plan.pooling,
            a.batch_size,
            a.hidden_states,
            device,
        )?;
        let states = out
            .get("last_hidden_state")
            .map(|(s, v)| (v.as_slice(), s[1]));
        let (h, d) = (plan.shapes.hidden, plan.shapes.dim);
        let mut pooled = truncated(&out["sentence_embedding"].1, h, d);
        if a.normalize {
            pooled = normalized(&pooled, d);
        }
        sink.write(&Chunk {
            start: k * plan.chunk,
            sentences: part,
            encs: &encs,
            pooled: &pooled,
            states,
        })?;
    }
    sink.finish()?;
    Ok(())
}

/// The width of the embeddings `--truncate-dim` asks for, out of `hidden` (all without it).
///
/// # Errors
/// A dimension of 0 or larger than `hidden`.
pub(super) fn truncate_dim(asked: Option<usize>, hidden: usize) -> Result<usize> {
    match asked {
        None => Ok(hidden),
        Some(d) if (1..=hidden).contains(&d) => Ok(d),
        Some(d) => {
            bail!("--truncate-dim {d}: the embeddings have {hidden} dimensions; give 1 to {hidden}")
        }
    }
}

/// Sentences embedded (and written) per chunk: 8,192 (12 MiB of 384-wide f32 embeddings), or
/// with hidden states as many as keep the chunk's `[sentences, longest, hidden]` states near
/// 64 MiB (they are held twice: the batches' read-backs and the chunk's states).
fn chunk_sentences(longest: Option<usize>, hidden: usize) -> usize {
    match longest {
        None => 8192,
        Some(l) => ((16 << 20) / (l * hidden).max(1)).clamp(1, 8192),
    }
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
