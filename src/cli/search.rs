//! `lorabert search`: semantic search over a corpus with the base model or a checkpoint's
//! adapter: brute-force cosine of each query against every corpus text (as
//! sentence-transformers' `util.semantic_search`), the corpus embeddings cached in a file keyed
//! by the corpus's bytes and the model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::embed::truncate_dim;
use super::export::{ExportPooling, sentence_pooling};
use super::load::{checkpoint_dir, load_encoder, load_model};
use super::precision::InferencePrecision;
use super::{ModelArgs, devices, io};
use crate::data::corpus::corpus_texts;
use crate::data::sha256_hex;
use crate::tasks::Pooling;
use crate::tasks::retrieval::{normalized, top_k, truncated};
use crate::train::texts::embed_encoded;

/// `lorabert search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    #[command(flatten)]
    pub(super) precision: InferencePrecision,
    /// A checkpoint whose adapter is applied (a run folder or its `best/`); without it, the
    /// base model.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The corpus: a text file with one document per line (empty lines skipped), or a CSV,
    /// TSV or JSON Lines file read by --text-column.
    #[arg(long)]
    corpus: PathBuf,
    /// The column of a table corpus holding the documents [default: `text`, else the first
    /// column].
    #[arg(long)]
    text_column: Option<String>,
    /// A query (repeatable).
    #[arg(long = "query")]
    queries: Vec<String>,
    /// A UTF-8 file with one query per line.
    #[arg(long = "queries")]
    queries_file: Option<PathBuf>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// One JSON object per result (`query`, `rank`, `score`, `corpus_id`, `text`) instead of
    /// text lines.
    #[arg(long)]
    json: bool,
    /// How the token states are pooled [default: the checkpoint's pooling, else the model
    /// folder's `1_Pooling/config.json`, else mean].
    #[arg(long, value_enum)]
    pooling: Option<ExportPooling>,
    /// Rank by the first DIM components of the embeddings, as sentence-transformers'
    /// `truncate_dim` (for a model trained with --matryoshka-dims) [default: all].
    #[arg(long, value_name = "DIM")]
    truncate_dim: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where the corpus embeddings are cached [default: $XDG_CACHE_HOME/lorabert/search or
    /// ~/.cache/lorabert/search].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// The cache folder: `--cache-dir`, else `$XDG_CACHE_HOME/lorabert/search`, else
/// `~/.cache/lorabert/search`, else `.lorabert-cache/search`.
fn cache_dir(given: Option<&Path>) -> PathBuf {
    if let Some(d) = given {
        return d.to_path_buf();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".lorabert-cache"));
    base.join("lorabert").join("search")
}

/// `lorabert search`: the `--top-k` corpus texts nearest each query by cosine.
pub fn search(a: SearchArgs) -> Result<()> {
    if a.top_k == 0 {
        bail!("--top-k must be >= 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    let mut queries = a.queries.clone();
    if let Some(p) = &a.queries_file {
        queries.extend(
            io::read_text(p)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if queries.is_empty() {
        bail!("no query: pass --query TEXT (repeatable) or --queries FILE");
    }
    let corpus_bytes = io::read(&a.corpus)?;
    let corpus = corpus_texts(
        &corpus_bytes,
        &a.corpus.display().to_string(),
        a.text_column.as_deref(),
    )?;
    let (device, _) = devices(a.model.backend, 0)?;
    let model_dir = io::resolve_model(a.model.model.as_deref())?;
    let (tok, bert, ck) = match &a.checkpoint {
        Some(c) => {
            let ck = checkpoint_dir(c)?;
            let (loaded, bert) = load_encoder(&a.model, &ck, &device)?;
            (loaded.tokenizer, bert, Some(ck))
        }
        None => {
            let (l, bert) = load_model(&model_dir, None, a.model.max_len, &device)?;
            (l.tokenizer, bert, None)
        }
    };
    let pooling = sentence_pooling(a.pooling, ck.as_deref(), &model_dir)?;
    if pooling == Pooling::Pooler {
        bail!("search embeds with mean or cls pooling; pass --pooling mean or --pooling cls");
    }
    let (bert, precision) = a.precision.apply(bert, &device)?;
    // The cache key: the corpus's bytes and column, the model (base folder and the adapter's
    // files), pooling, length and precision.
    let mut key = sha256_hex(&corpus_bytes);
    key.push_str(&format!(
        "|{:?}|{pooling:?}|{}",
        a.text_column, a.model.max_len
    ));
    if precision != crate::train::Precision::F32 {
        // f32 keys stay as they were, so existing caches still serve.
        key.push_str(&format!("|{}", precision.name()));
    }
    key.push_str(&format!("|{}", model_dir.display()));
    if let Some(ck) = &ck {
        for name in [
            crate::train::artifacts::names::ADAPTER_WEIGHTS,
            crate::train::artifacts::names::ADAPTER_CONFIG,
        ] {
            if let Ok(b) = std::fs::read(ck.join(name)) {
                key.push_str(&format!("|{}", sha256_hex(&b)));
            }
        }
    }
    let cache = cache_dir(a.cache_dir.as_deref())
        .join(format!("{}.safetensors", sha256_hex(key.as_bytes())));
    let h = bert.embeddings.word_embeddings.weight.dims()[1];
    let dim = truncate_dim(a.truncate_dim, h)?;
    // The cache holds the full unit-length embeddings; a cut is scaled to unit length again.
    let cut = |v: Vec<f32>| match dim < h {
        true => normalized(&truncated(&v, h, dim), dim),
        false => v,
    };
    let cached = std::fs::read(&cache)
        .ok()
        .and_then(|b| crate::model::weights::read_f32_tensor(&b, "corpus_embedding").ok())
        .filter(|(shape, _)| shape == &[corpus.len(), h]);
    // Unit-length embeddings `[texts, h]` of `texts`, truncations counted.
    let embed = |texts: &[String], what: &str| -> Result<Vec<f32>> {
        let encs = texts
            .iter()
            .map(|t| tok.encode(t))
            .collect::<crate::Result<Vec<_>>>()?;
        let truncated = encs.iter().filter(|e| e.truncated).count();
        if truncated > 0 {
            eprintln!(
                "note: {truncated} {what} were truncated to --max-len {} tokens",
                a.model.max_len
            );
        }
        let out = pollster::block_on(embed_encoded(&bert, &encs, pooling, a.batch_size, 0))?;
        Ok(normalized(&out, h))
    };
    let docs = match cached {
        Some((_, v)) => {
            eprintln!("corpus embeddings from the cache ({})", cache.display());
            v
        }
        None => {
            let v = embed(&corpus, "corpus texts")?;
            let mut t = std::collections::BTreeMap::new();
            t.insert(
                "corpus_embedding".to_string(),
                (vec![corpus.len(), h], v.clone()),
            );
            if let Some(dir) = cache.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            io::write_atomic(&cache, &crate::model::weights::f32_safetensors(&t)?)?;
            eprintln!(
                "embedded {} corpus texts (cached in {})",
                corpus.len(),
                cache.display()
            );
            v
        }
    };
    let (docs, q) = (cut(docs), cut(embed(&queries, "queries")?));
    let mut out = String::new();
    for (qi, query) in queries.iter().enumerate() {
        let hits = top_k(&q[qi * dim..(qi + 1) * dim], &docs, dim, a.top_k, None);
        if !a.json {
            out.push_str(&format!("query: {query}\n"));
        }
        for (rank, (i, score)) in hits.into_iter().enumerate() {
            if a.json {
                let line = serde_json::json!({
                    "query": query, "rank": rank + 1, "score": score, "corpus_id": i, "text": corpus[i],
                });
                out.push_str(&line.to_string());
                out.push('\n');
            } else {
                out.push_str(&format!("{:>3}  {score:.4}  {}\n", rank + 1, corpus[i]));
            }
        }
    }
    print!("{out}");
    Ok(())
}
