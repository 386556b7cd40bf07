//! Helpers of the embedding tests (`embedding.rs`, `matryoshka.rs`, `corpus.rs`,
//! `st_adapter.rs`).

use lorabert::model::Encoded;
use lorabert::tasks::own::{Columns, EmbeddingData, EmbeddingLoss, OwnTask, TaskKind};
use lorabert::tasks::own_task::MatryoshkaDim;

/// A JSON array of arrays of numbers as rows of f32.
pub fn json_matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
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
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
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
