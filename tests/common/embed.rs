//! Helpers of the embedding tests (`embedding.rs`, `matryoshka.rs`, `corpus.rs`,
//! `st_adapter.rs`).

use lorabert::model::Encoded;
use lorabert::tasks::own::{Columns, EmbeddingData, EmbeddingLoss, OwnTask, TaskKind};
use lorabert::tasks::own_task::MatryoshkaDim;

/// A JSON array of arrays, each element read by `f`.
fn json_rows<T>(v: &serde_json::Value, f: impl Fn(&serde_json::Value) -> T) -> Vec<Vec<T>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(&f).collect())
        .collect()
}

/// A JSON array of arrays of numbers as rows of f32.
pub fn json_matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    json_rows(v, |x| x.as_f64().unwrap() as f32)
}

/// A JSON array of strings.
pub fn json_strs(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

/// A JSON array of arrays of indices.
pub fn json_lists(v: &serde_json::Value) -> Vec<Vec<usize>> {
    json_rows(v, |x| x.as_u64().unwrap() as usize)
}

/// A one-token text `[CLS] id [SEP]`: texts are told apart by their tokens.
pub fn token_text(id: u32) -> Encoded {
    Encoded {
        ids: vec![101, id, 102],
        type_ids: vec![0; 3],
        truncated: false,
    }
}

/// An embedding task on `anchor` / `positive` columns.
pub fn embedding_task(
    data: EmbeddingData,
    loss: EmbeddingLoss,
    scale: f64,
    matryoshka: Vec<MatryoshkaDim>,
    metric: &str,
) -> OwnTask {
    OwnTask {
        name: "t".into(),
        kind: TaskKind::Embedding {
            data,
            loss,
            scale,
            matryoshka,
        },
        columns: Columns {
            text: "anchor".into(),
            text_pair: Some("positive".into()),
            label: String::new(),
            multi_label: None,
            negatives: Vec::new(),
        },
        metric_for_best_model: metric.into(),
        no_header: false,
        pairs_optional: false,
    }
}

/// Asserts that `kind`'s loss on the example texts `roles` (each `[b][h]`: anchors, positives,
/// negatives) with labels `scores` (1 for every example without) equals the golden
/// `case["loss"]` within 1e-5 relative: each example's texts side by side, `[b, n·h]`, as the
/// kind's forward gives them.
pub fn assert_loss_matches(
    name: &str,
    kind: &dyn lorabert::tasks::Kind,
    roles: &[Vec<Vec<f32>>],
    scores: Option<Vec<f32>>,
    case: &serde_json::Value,
) {
    let device = burn::tensor::Device::flex();
    let (b, n, h) = (roles[0].len(), roles.len(), roles[0][0].len());
    let mut out = Vec::with_capacity(b * n * h);
    for i in 0..b {
        for role in roles {
            out.extend_from_slice(&role[i]);
        }
    }
    let outputs = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(out, [b, n * h]),
        &device,
    );
    let labels = scores.unwrap_or_else(|| vec![1.0; b]);
    let targets = kind.targets(&labels, &device);
    let got = super::host(kind.loss(outputs, &targets))[0] as f64;
    let want = case["loss"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{name}: lorabert {got} vs sentence-transformers {want}"
    );
}
