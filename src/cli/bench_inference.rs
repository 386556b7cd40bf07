//! `lorabert bench --inference`: sentences per second for sentence embeddings (what `lorabert
//! embed` computes: tokenisation, length-sorted batches with dynamic padding, mean pooling) of a
//! file's sentences, as a JSON line. `tools/inference_bench.py time` times sentence-transformers
//! and ONNX Runtime on the same sentences and batch size; `tools/compare_inference.sh`
//! alternates them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::embed::encode;
use super::io;
use super::load::load_model;
use crate::tasks::Pooling;

/// One `bench --inference` result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceRecord {
    /// `lorabert`.
    pub tool: String,
    /// `inference`.
    pub mode: String,
    /// The model folder.
    pub model: String,
    /// The sentences file's name (no folder).
    pub input: String,
    /// Sentences embedded per pass.
    pub sentences: usize,
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// Maximum tokens per sentence (special tokens included; longer ones are truncated).
    pub max_len: usize,
    /// Backend.
    pub backend: String,
    /// Threads.
    pub threads: usize,
    /// The precision that ran: `f32`, or `f16` ([`super::precision::InferencePrecision`]).
    #[serde(default)]
    pub precision: String,
    /// Median seconds per pass over the sentences (tokenisation, forward passes, pooling and
    /// the read-back; the model load and the warm-up batch excluded).
    pub seconds: f64,
    /// `sentences / seconds`.
    pub sentences_per_second: f64,
    /// Every timed pass, in seconds.
    pub pass_seconds: Vec<f64>,
    /// Peak resident memory of the process in bytes.
    pub peak_memory_bytes: Option<u64>,
}

/// What `bench --inference` measures (from `lorabert bench`'s flags).
pub(super) struct InferenceBench<'a> {
    /// `--model`.
    pub model: Option<&'a std::path::Path>,
    /// `--input`.
    pub input: Option<&'a PathBuf>,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--steps`: timed passes.
    pub steps: usize,
    /// `--max-len`.
    pub max_len: usize,
    /// `--backend`.
    pub backend: super::BackendArg,
    /// `--output`.
    pub output: &'a std::path::Path,
    /// `--precision` and `--exact-precision`.
    pub precision: super::precision::InferencePrecision,
}

/// `--inference`: loads the model, embeds the first `--batch-size` sentences of `--input` once
/// untimed, then times `--steps` passes over all of them and prints (and writes to `--output`)
/// one [`InferenceRecord`].
///
/// # Errors
/// No `--input`, an unreadable or empty file, a bad `--batch-size`/`--steps`/`--max-len`, a
/// model that does not load.
pub(super) fn run(a: &InferenceBench) -> Result<()> {
    let input = a
        .input
        .context("--inference needs --input FILE (one sentence per line)")?;
    let max_len = a.max_len;
    if a.batch_size == 0 || a.steps == 0 || max_len < 3 {
        bail!("--batch-size and --steps must be >= 1, --max-len >= 3");
    }
    io::check_writable(a.output)?;
    let sentences: Vec<String> = io::read_text(input)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if sentences.is_empty() {
        bail!("{}: no sentences (one per line)", input.display());
    }
    let (device, _) = super::devices(a.backend, 0)?;
    let dir = io::resolve_model(a.model)?;
    let (loaded, bert) = load_model(&dir, None, max_len, &device)?;
    let (bert, precision) = a.precision.apply(bert, &device)?;
    let tok = loaded.tokenizer;
    let embed_all = |texts: &[String]| -> Result<()> {
        let encs = texts
            .iter()
            .map(|s| tok.encode(s))
            .collect::<crate::Result<Vec<_>>>()?;
        encode(&bert, &encs, Pooling::Mean, a.batch_size, false, &device)?;
        Ok(())
    };
    embed_all(&sentences[..a.batch_size.min(sentences.len())])?;
    let mut times = Vec::with_capacity(a.steps);
    for _ in 0..a.steps {
        let t = Instant::now();
        embed_all(&sentences)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let median = super::bench_gemm::median(&times);
    let rec = InferenceRecord {
        tool: "lorabert".into(),
        mode: "inference".into(),
        model: dir.display().to_string(),
        input: input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sentences: sentences.len(),
        batch_size: a.batch_size,
        max_len,
        backend: a.backend.describe().to_string(),
        threads: rayon::current_num_threads(),
        precision: precision.name().to_string(),
        seconds: median,
        sentences_per_second: sentences.len() as f64 / median,
        pass_seconds: times,
        peak_memory_bytes: io::peak_rss_bytes(),
    };
    let line = serde_json::to_string(&rec)?;
    eprintln!(
        "{} sentences of {}, batch {}, {}: {:.3} s, {:.1} sentences/s ({} threads)",
        rec.sentences,
        rec.input,
        rec.batch_size,
        rec.precision,
        rec.seconds,
        rec.sentences_per_second,
        rec.threads
    );
    println!("{line}");
    io::write_atomic(a.output, format!("{line}\n").as_bytes())?;
    Ok(())
}
