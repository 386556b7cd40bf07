//! Memory estimates made before training starts, so a run that cannot fit fails at once with
//! the largest batch that would fit, instead of being killed (or losing the GPU) mid-epoch.
//!
//! The activation coefficients were fitted to peak resident memory measured with
//! `lorabert bench` on the CPU backend (f32, MiniLM and the bert-base shape; see docs/performance.md)
//! and carry a safety margin; they are estimates, not bounds.

use super::TrainConfig;
use crate::model::BertConfig;
use crate::tasks::PairEncoding;

/// Bytes of one f32.
const F32: u64 = 4;

/// Activation bytes kept for backward per token and layer: `A_H · hidden + A_I · intermediate`
/// floats, plus `A_S · heads · seq` floats of attention scores.
const A_H: u64 = 10;
const A_I: u64 = 3;
const A_S: u64 = 4;

/// Estimated peak bytes of training `total_params` parameters (`trainable_params` of them with
/// gradients and two AdamW moments) on `batch` sequences of `seq` tokens.
pub fn estimate_training_bytes(
    cfg: &BertConfig,
    batch: usize,
    seq: usize,
    trainable_params: usize,
    total_params: usize,
) -> u64 {
    let (b, s) = (batch as u64, seq as u64);
    let weights = total_params as u64 * F32;
    let optimiser = trainable_params as u64 * F32 * 4; // gradient, two moments, update temporary
    let per_token_layer = (A_H * cfg.hidden_size as u64
        + A_I * cfg.intermediate_size as u64
        + A_S * cfg.num_attention_heads as u64 * s)
        * F32;
    let activations = b * s * cfg.num_hidden_layers as u64 * per_token_layer;
    let embeddings = b * s * cfg.hidden_size as u64 * F32 * 4;
    weights
        .saturating_add(optimiser)
        .saturating_add(activations)
        .saturating_add(embeddings)
}

/// The largest batch (≥ 0) whose [`estimate_training_bytes`] fits in `budget` bytes.
pub fn largest_batch(
    cfg: &BertConfig,
    seq: usize,
    trainable_params: usize,
    total_params: usize,
    budget: u64,
) -> usize {
    let fits =
        |b: usize| estimate_training_bytes(cfg, b, seq, trainable_params, total_params) <= budget;
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1usize, 2usize);
    while fits(hi) && hi < 1 << 24 {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// Sequences the encoder runs per training example of `cfg`: 2 when sentence pairs are
/// bi-encoded (each sentence its own sequence), else 1.
pub fn sequences_per_example(cfg: &TrainConfig) -> usize {
    let pairs = cfg
        .kinds()
        .is_ok_and(|kinds| kinds.iter().any(|k| k.is_pair()));
    if pairs && cfg.pair_encoding == PairEncoding::Bi {
        2
    } else {
        1
    }
}

/// Bytes of the largest single tensor a training step allocates (attention scores
/// `[batch, heads, seq, seq]`, the feed-forward activation `[batch, seq, intermediate]`, or the
/// word-embedding table), for devices with a per-buffer limit such as WebGPU's
/// `maxStorageBufferBindingSize`.
pub fn largest_tensor_bytes(cfg: &BertConfig, batch: usize, seq: usize) -> u64 {
    let (b, s) = (batch as u64, seq as u64);
    let scores = b * cfg.num_attention_heads as u64 * s * s;
    let ffn = b * s * cfg.intermediate_size as u64;
    let vocab = cfg.vocab_size as u64 * cfg.hidden_size as u64;
    scores.max(ffn).max(vocab) * F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_batch_and_bound_the_search() {
        let cfg = BertConfig::tiny(30522, 384, 6, 12);
        let p = cfg.encoder_params() as usize;
        let a = estimate_training_bytes(&cfg, 8, 64, 50_000, p);
        let b = estimate_training_bytes(&cfg, 16, 64, 50_000, p);
        assert!(b > a);
        let budget = estimate_training_bytes(&cfg, 40, 64, 50_000, p);
        assert_eq!(largest_batch(&cfg, 64, 50_000, p, budget), 40);
        assert_eq!(largest_batch(&cfg, 64, 50_000, p, 1000), 0);
    }
}
