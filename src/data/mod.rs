//! Data: tables from CSV, TSV and JSON Lines files ([`table`]), the minBERT readers
//! ([`minbert`]), padded token batches and seeded, length-bucketed batch plans.

pub mod conll;
pub mod corpus;
pub mod minbert;
pub mod table;

pub use minbert::{Dataset, PairExample, PairLabel, SstExample, read_pairs, read_sst};

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::model::Encoded;

/// The SHA-256 of `bytes` as 64 lowercase hex digits (FIPS 180-4; the `sha2` crate), as
/// `sha256sum` prints it: data files in `results.json`, downloads checked or cached.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A padded batch of token sequences, host-side, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// Token ids, padded with `pad_id`.
    pub ids: Vec<i64>,
    /// Token-type ids, padded with 0.
    pub type_ids: Vec<i64>,
    /// 1.0 for real tokens, 0.0 for padding.
    pub mask: Vec<f32>,
    /// Number of sequences.
    pub batch: usize,
    /// Padded length (the longest sequence of this batch: dynamic padding).
    pub seq: usize,
}

/// Token rows (sequences × padded length) per inference batch: small enough for a batch's
/// activations (`[rows, 1536]` floats for MiniLM's intermediate layer, 2.4 MB at 384 rows) to
/// stay in a core's caches. Measured on a 2-core AMD EPYC (`lorabert bench --inference
/// --batch-size 128`, 2 threads, medians of 3 alternating runs): SST dev sentences 187
/// sentences/s at 384 rows, 177 at 768, 171 at 1,024, 159 at 1,536, 139 unlimited; Quora dev
/// questions 304 at 384, 308 at 256, 291 at 512. The default run's dev evaluation took 157 s
/// with 256 texts per batch and 144 s with 32.
pub const INFERENCE_BATCH_TOKENS: usize = 384;

/// The token-row budget of an inference batch on `device`: [`INFERENCE_BATCH_TOKENS`] on the
/// CPU (flex), none elsewhere (a GPU is better fed large batches).
pub fn inference_batch_tokens(device: &burn::tensor::Device) -> usize {
    if crate::kernels::fused::is_flex(device) {
        INFERENCE_BATCH_TOKENS
    } else {
        usize::MAX
    }
}

/// Inference batches of `order` (indices sorted by ascending `len`), longest first: runs of
/// consecutive indices with at most `max_count` items and, past the first item, at most
/// `max_tokens` padded token rows (items × the longest item's length). Every index is in
/// exactly one batch; each batch holds at least one.
pub fn length_batches(
    order: &[usize],
    len: impl Fn(usize) -> usize,
    max_count: usize,
    max_tokens: usize,
) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut end = order.len();
    while end > 0 {
        let longest = len(order[end - 1]).max(1);
        let fit = (max_tokens / longest).clamp(1, max_count.max(1));
        let start = end.saturating_sub(fit);
        out.push(&order[start..end]);
        end = start;
    }
    out
}

/// Device tensors of a [`TokenBatch`]: ids and type ids `[batch, seq]` (int), mask `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// `input_ids`, `[batch, seq]`.
    pub ids: Tensor<2, Int>,
    /// `token_type_ids`, `[batch, seq]`.
    pub type_ids: Tensor<2, Int>,
    /// `attention_mask` as floats, `[batch, seq]`.
    pub mask: Tensor<2>,
}

impl TokenBatch {
    /// Pads `encs` to their longest length with `pad_id` (dynamic padding).
    pub fn from_encoded(encs: &[&Encoded], pad_id: u32) -> Self {
        let batch = encs.len();
        let seq = encs.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id as i64; batch * seq];
        let mut type_ids = vec![0i64; batch * seq];
        let mut mask = vec![0f32; batch * seq];
        for (r, e) in encs.iter().enumerate() {
            for (c, (&id, &t)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[r * seq + c] = id as i64;
                type_ids[r * seq + c] = t as i64;
                mask[r * seq + c] = 1.0;
            }
        }
        TokenBatch {
            ids,
            type_ids,
            mask,
            batch,
            seq,
        }
    }

    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }

    /// Uploads the batch to `device`.
    pub fn to_tensors(&self, device: &Device) -> BatchTensors {
        let shape = [self.batch, self.seq];
        BatchTensors {
            ids: Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            type_ids: Tensor::from_data(TensorData::new(self.type_ids.clone(), shape), device),
            mask: Tensor::from_data(TensorData::new(self.mask.clone(), shape), device),
        }
    }
}

/// Splits `0..n` into batches of at most `batch_size` indices.
///
/// With `shuffle`, the order is a seeded permutation (same `seed`, same batches on every
/// platform). With `lengths`, examples of similar length are grouped to cut padding
/// (Hugging Face's `group_by_length`): the permutation is cut into chunks of 50 batches, each
/// chunk sorted by length, split into batches, and the batch order shuffled again.
pub fn make_batches(
    n: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    lengths: Option<&[usize]>,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    if shuffle {
        idx.shuffle(&mut rng);
    }
    let mut batches: Vec<Vec<usize>> = match lengths {
        Some(len) if shuffle => {
            let mut out = Vec::new();
            for chunk in idx.chunks_mut(batch_size * 50) {
                chunk.sort_by_key(|&i| std::cmp::Reverse(len[i]));
                out.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
            }
            out.shuffle(&mut rng);
            out
        }
        _ => idx.chunks(batch_size).map(<[usize]>::to_vec).collect(),
    };
    batches.retain(|b| !b.is_empty());
    batches
}

/// Batches of `n` examples in a seeded random order in which no text appears twice in one
/// batch, as sentence-transformers' `NoDuplicatesBatchSampler` draws them: each batch takes the
/// next examples in order whose texts (`texts[i]`: one key per text of example `i`) are not yet
/// in it, and an example that clashes waits for a later batch (so the last batches may be
/// smaller). Returns the batches and how many examples waited at least once.
pub fn no_duplicate_batches<K: std::hash::Hash + Eq>(
    texts: &[Vec<K>],
    batch_size: usize,
    seed: u64,
) -> (Vec<Vec<usize>>, usize) {
    let batch_size = batch_size.max(1);
    let mut remaining: Vec<usize> = (0..texts.len()).collect();
    remaining.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut waited = vec![false; texts.len()];
    let mut batches = Vec::new();
    while !remaining.is_empty() {
        let mut seen: std::collections::HashSet<&K> = std::collections::HashSet::new();
        let mut batch = Vec::with_capacity(batch_size);
        let mut rest = Vec::with_capacity(remaining.len());
        for (pos, &i) in remaining.iter().enumerate() {
            if batch.len() == batch_size {
                rest.extend_from_slice(&remaining[pos..]);
                break;
            }
            if texts[i].iter().any(|k| seen.contains(k)) {
                waited[i] = true;
                rest.push(i);
                continue;
            }
            seen.extend(texts[i].iter());
            batch.push(i);
        }
        batches.push(batch);
        remaining = rest;
    }
    (batches, waited.iter().filter(|&&w| w).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_batches_hold_each_text_once() {
        // Example 3 repeats example 0's positive; 4 repeats 1's anchor.
        let texts = vec![
            vec!["a0", "p0"],
            vec!["a1", "p1"],
            vec!["a2", "p2"],
            vec!["a3", "p0"],
            vec!["a1", "p4"],
            vec!["a5", "p5"],
        ];
        for seed in 0..20 {
            let (batches, _) = no_duplicate_batches(&texts, 3, seed);
            let mut all: Vec<usize> = batches.concat();
            all.sort();
            assert_eq!(all, (0..6).collect::<Vec<_>>());
            for b in &batches {
                let mut t: Vec<&str> = b.iter().flat_map(|&i| texts[i].clone()).collect();
                let n = t.len();
                t.sort();
                t.dedup();
                assert_eq!(t.len(), n, "seed {seed}: {batches:?}");
                assert!(b.len() <= 3);
            }
        }
        let (b, waited) = no_duplicate_batches(&texts[..3], 3, 1);
        assert_eq!((b.len(), waited), (1, 0));
    }

    #[test]
    fn batches_cover_all_once_and_are_seeded() {
        let lens: Vec<usize> = (0..103).map(|i| (i * 7) % 31).collect();
        let a = make_batches(103, 8, true, 7, Some(&lens));
        let b = make_batches(103, 8, true, 7, Some(&lens));
        assert_eq!(a, b);
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert_ne!(a, make_batches(103, 8, true, 8, Some(&lens)));
    }

    #[test]
    fn dynamic_padding() {
        let e1 = Encoded {
            ids: vec![101, 5, 102],
            type_ids: vec![0; 3],
            truncated: false,
        };
        let e2 = Encoded {
            ids: vec![101, 102],
            type_ids: vec![0; 2],
            truncated: false,
        };
        let b = TokenBatch::from_encoded(&[&e1, &e2], 0);
        assert_eq!(b.seq, 3);
        assert_eq!(b.ids, vec![101, 5, 102, 101, 102, 0]);
        assert_eq!(b.mask, vec![1., 1., 1., 1., 1., 0.]);
    }
}
