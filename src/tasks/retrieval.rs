//! Embedding metrics as sentence-transformers' evaluators compute them: retrieval
//! (`InformationRetrievalEvaluator`, cosine) and similarity (`EmbeddingSimilarityEvaluator`:
//! Pearson and Spearman of the cosine against gold scores), on embeddings read back to the host.

use std::collections::HashMap;

use super::metrics::{pearson, spearman};
use super::own_task::RETRIEVAL_METRICS;

/// The largest cut-off of [`RETRIEVAL_METRICS`] (`map@100`): how many hits are ranked per query.
pub const MAX_K: usize = 100;

/// `v` (`n` rows of `dim` values, row-major) with each row scaled to unit length (a zero row
/// stays zero, as `torch.nn.functional.normalize` with its `eps`).
pub fn normalized(v: &[f32], dim: usize) -> Vec<f32> {
    let mut out = v.to_vec();
    for row in out.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|&x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

/// The first `dim` values of each `width`-wide row of `v` (row-major): embeddings cut to their
/// leading dimensions, as sentence-transformers' `truncate_dim` cuts them (a Matryoshka-trained
/// model keeps most of its quality there).
///
/// # Panics
/// If `dim` is 0 or larger than `width`.
pub fn truncated(v: &[f32], width: usize, dim: usize) -> Vec<f32> {
    assert!(
        dim > 0 && dim <= width,
        "cannot cut rows of {width} to {dim}"
    );
    if dim == width {
        return v.to_vec();
    }
    v.chunks(width)
        .flat_map(|r| r[..dim].iter().copied())
        .collect()
}

/// The dot product of two equal-length rows, in eight lanes (vectorised by the compiler).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// A retrieval task: queries, a corpus and each query's relevant documents, by index into the
/// query and corpus embeddings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retrieval {
    /// Per query, the corpus indices relevant to it (non-empty).
    pub relevant: Vec<Vec<usize>>,
    /// Per query, the corpus index holding the query's own text, left out of its ranking (as
    /// BEIR's `ignore_identical_ids` does where queries are also documents); `None` otherwise.
    pub own: Vec<Option<usize>>,
}

/// Builds a [`Retrieval`] from texts identified by a key (their token ids): the queries and the
/// corpus deduplicated in first-seen order, each query's relevant texts, and the query text's
/// own corpus entry when it is also a document. Returns the retrieval with the index of the
/// first occurrence of each query and corpus text in the caller's list (`query_at`, `doc_at`).
///
/// `pairs` holds `(query key, relevant document key)` for each relevant pair; `docs` every
/// corpus text (relevant or not).
pub fn build<K: std::hash::Hash + Eq + Clone>(
    pairs: &[(K, K)],
    docs: &[K],
) -> (Retrieval, Vec<K>, Vec<K>) {
    let mut doc_index: HashMap<K, usize> = HashMap::new();
    let mut corpus = Vec::new();
    for d in docs.iter().chain(pairs.iter().map(|(_, d)| d)) {
        doc_index.entry(d.clone()).or_insert_with(|| {
            corpus.push(d.clone());
            corpus.len() - 1
        });
    }
    let mut query_index: HashMap<K, usize> = HashMap::new();
    let mut queries = Vec::new();
    let mut r = Retrieval::default();
    for (q, d) in pairs {
        let qi = *query_index.entry(q.clone()).or_insert_with(|| {
            queries.push(q.clone());
            r.relevant.push(Vec::new());
            r.own.push(doc_index.get(q).copied());
            queries.len() - 1
        });
        let di = doc_index[d];
        if !r.relevant[qi].contains(&di) && r.own[qi] != Some(di) {
            r.relevant[qi].push(di);
        }
    }
    // A query whose only relevant text is itself has nothing to find: left out.
    let keep: Vec<bool> = r.relevant.iter().map(|v| !v.is_empty()).collect();
    let mut it = keep.iter();
    queries.retain(|_| *it.next().unwrap_or(&false));
    let mut it = keep.iter();
    r.relevant.retain(|_| *it.next().unwrap_or(&false));
    let mut it = keep.iter();
    r.own.retain(|_| *it.next().unwrap_or(&false));
    (r, queries, corpus)
}

/// The `k` corpus rows nearest to query `q` by dot product (cosine for unit-length rows of
/// `dim` values), best first, ties by index, row `own` left out: `(index, score)`.
pub fn top_k(
    q: &[f32],
    corpus: &[f32],
    dim: usize,
    k: usize,
    own: Option<usize>,
) -> Vec<(usize, f32)> {
    let mut scored: Vec<(f32, usize)> = corpus
        .chunks(dim.max(1))
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .map(|(i, c)| (dot(q, c), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    scored.select_nth_unstable_by(k - 1, cmp);
    scored.truncate(k);
    scored.sort_by(cmp);
    scored.into_iter().map(|(s, i)| (i, s)).collect()
}

/// The top [`MAX_K`] corpus indices of one query, best first (see [`top_k`]).
fn ranked(q: &[f32], corpus: &[f32], dim: usize, own: Option<usize>) -> Vec<usize> {
    top_k(q, corpus, dim, MAX_K, own)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// [`RETRIEVAL_METRICS`] of `queries` against `corpus` (unit-length embeddings of `dim`
/// values, row-major), as sentence-transformers' `InformationRetrievalEvaluator` computes them
/// with cosine similarity: each metric the mean over queries of, at cut-off `k`, NDCG (binary
/// relevance, `1/log2(rank + 1)` gains, ideal DCG of `min(relevant, k)` hits), MRR (reciprocal
/// rank of the first relevant hit), MAP (precision at each relevant hit, summed, over
/// `min(relevant, k)`), recall (relevant hits over relevant documents) and accuracy (any hit).
///
/// # Panics
/// When `r` does not hold one entry per query.
pub fn retrieval_metrics(
    queries: &[f32],
    corpus: &[f32],
    dim: usize,
    r: &Retrieval,
) -> Vec<(&'static str, f64)> {
    let n = queries.len() / dim.max(1);
    assert_eq!(r.relevant.len(), n, "one relevant set per query");
    let mut sums = [0f64; 8];
    for (qi, q) in queries.chunks(dim.max(1)).enumerate() {
        let hits = ranked(q, corpus, dim, r.own[qi]);
        let rel = &r.relevant[qi];
        let is_rel: Vec<bool> = hits.iter().map(|h| rel.contains(h)).collect();
        let found = |k: usize| is_rel.iter().take(k).filter(|&&b| b).count() as f64;
        let dcg = |k: usize| {
            is_rel
                .iter()
                .take(k)
                .enumerate()
                .filter(|(_, b)| **b)
                .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
                .sum::<f64>()
        };
        let idcg = (0..rel.len().min(10))
            .map(|i| 1.0 / ((i + 2) as f64).log2())
            .sum::<f64>();
        let mrr = is_rel
            .iter()
            .take(10)
            .position(|&b| b)
            .map_or(0.0, |p| 1.0 / (p + 1) as f64);
        let mut correct = 0.0;
        let mut precisions = 0.0;
        for (i, &b) in is_rel.iter().take(100).enumerate() {
            if b {
                correct += 1.0;
                precisions += correct / (i + 1) as f64;
            }
        }
        let map = precisions / rel.len().min(100) as f64;
        let m = rel.len() as f64;
        let values = [
            dcg(10) / idcg,
            mrr,
            map,
            found(1) / m,
            found(5) / m,
            found(10) / m,
            (found(1) > 0.0) as u8 as f64,
            (found(10) > 0.0) as u8 as f64,
        ];
        sums.iter_mut().zip(values).for_each(|(s, v)| *s += v);
    }
    RETRIEVAL_METRICS
        .iter()
        .zip(sums)
        .map(|(&name, s)| (name, if n == 0 { 0.0 } else { s / n as f64 }))
        .collect()
}

/// `pearson` and `spearman` of each pair's cosine (rows of `a` and `b`, `dim` values each)
/// against `scores`, as sentence-transformers' `EmbeddingSimilarityEvaluator` reports
/// `pearson_cosine` and `spearman_cosine` (scipy's `pearsonr` and `spearmanr`).
pub fn similarity_metrics(
    a: &[f32],
    b: &[f32],
    dim: usize,
    scores: &[f64],
) -> Vec<(&'static str, f64)> {
    let cos = cosines(a, b, dim);
    vec![
        ("pearson", pearson(&cos, scores)),
        ("spearman", spearman(&cos, scores)),
    ]
}

/// The cosine of each pair of rows of `a` and `b` (`dim` values each).
pub fn cosines(a: &[f32], b: &[f32], dim: usize) -> Vec<f64> {
    let (a, b) = (normalized(a, dim), normalized(b, dim));
    a.chunks(dim.max(1))
        .zip(b.chunks(dim.max(1)))
        .map(|(x, y)| dot(x, y) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dedups_and_leaves_out_the_query_itself() {
        // Queries a, b; a is also a document (row 2 of a labelled file).
        let pairs = [("a", "x"), ("a", "y"), ("b", "a"), ("c", "c")];
        let (r, q, c) = build(&pairs, &["x", "a", "z"]);
        assert_eq!(q, vec!["a", "b"]);
        assert_eq!(c, vec!["x", "a", "z", "y", "c"]);
        assert_eq!(r.relevant, vec![vec![0, 3], vec![1]]);
        assert_eq!(r.own, vec![Some(1), None]);
    }

    #[test]
    fn perfect_and_missed_rankings() {
        // Two unit queries, three unit documents on the axes.
        let corpus = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let queries = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let r = Retrieval {
            relevant: vec![vec![0], vec![1]],
            own: vec![None, None],
        };
        let m: HashMap<_, _> = retrieval_metrics(&queries, &corpus, 3, &r)
            .into_iter()
            .collect();
        // Query 1 ranks its document first; query 2 ranks document 2 first, then its document
        // third (tied at 0 with document 0, ties broken by index).
        assert_eq!(m["accuracy@1"], 0.5);
        assert!((m["mrr@10"] - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m["ndcg@10"] - (1.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(m["recall@5"], 1.0);
    }
}
