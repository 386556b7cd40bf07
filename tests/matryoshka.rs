//! Matryoshka embeddings: `MatryoshkaLoss` against sentence-transformers
//! (`tests/golden/matryoshka.json`, by `tools/make_golden_matryoshka.py`), the metrics at each
//! dimension, the flags' bad input, training through the binary on a tiny random BERT, and
//! `embed --truncate-dim` against sentence-transformers' `encode(truncate_dim=...)`.

mod common;

use common::embed::*;
use common::*;
use lorabert::tasks::Kind;
use lorabert::tasks::Prepared;
use lorabert::tasks::kinds::embedding::Embedding;
use lorabert::tasks::own::{EmbeddingData, EmbeddingLoss, OwnTask, TaskKind};
use lorabert::tasks::own_task::{MatryoshkaDim, matryoshka_dims};
use lorabert::tasks::retrieval::{self, normalized, truncated};
use lorabert::train::RunResults;

fn golden_json() -> serde_json::Value {
    serde_json::from_slice(&golden("matryoshka.json")).unwrap()
}

fn task(data: EmbeddingData, loss: EmbeddingLoss, matryoshka: Vec<MatryoshkaDim>) -> OwnTask {
    embedding_task(data, loss, 20.0, matryoshka, "ndcg@10")
}

/// `MatryoshkaLoss` around each base loss, dimensions and weights as given to
/// sentence-transformers (out of order in one case), within 1e-5 relative.
#[test]
fn matryoshka_loss_matches_sentence_transformers() {
    for case in golden_json()["losses"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let roles: Vec<Vec<Vec<f32>>> = case["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_matrix)
            .collect();
        let n = roles.len();
        let dims: Vec<usize> = case["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let weights: Vec<f64> = case["weights"]
            .as_array()
            .map(|w| w.iter().map(|x| x.as_f64().unwrap()).collect())
            .unwrap_or_default();
        let scores: Option<Vec<f32>> = case["scores"]
            .as_array()
            .map(|s| s.iter().map(|x| x.as_f64().unwrap() as f32).collect());
        let (data, loss) = match name {
            "cosent" => (
                EmbeddingData::Scored { lo: 0.0, hi: 1.0 },
                EmbeddingLoss::Cosent,
            ),
            "cosine" => (
                EmbeddingData::Scored { lo: 0.0, hi: 1.0 },
                EmbeddingLoss::Cosine,
            ),
            _ => (
                EmbeddingData::Pairs { negatives: n - 2 },
                EmbeddingLoss::Mnrl,
            ),
        };
        let kind = Embedding(task(data, loss, matryoshka_dims(&dims, &weights).unwrap()));
        assert_loss_matches(name, &kind, &roles, scores, case);
    }
}

/// Retrieval and similarity metrics at each smaller Matryoshka dimension are those of the
/// embeddings' leading components (the full-size metrics unchanged), named `<metric>/dim_<d>`.
#[test]
fn metrics_are_reported_at_each_dimension() {
    let h = 8;
    let n = 12;
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let anchors: Vec<f32> = (0..n * h).map(|_| next()).collect();
    let positives: Vec<f32> = anchors.iter().map(|a| a + 0.8 * next()).collect();
    let examples: Vec<Prepared> = (0..n as u32)
        .map(|i| Prepared {
            id: i.to_string(),
            a: token_text(1000 + i),
            b: Some(token_text(2000 + i)),
            label: (i % 5) as f32 / 4.0,
            label_ids: Vec::new(),
            negatives: Vec::new(),
            words: None,
        })
        .collect();
    let values: Vec<f32> = (0..n)
        .flat_map(|i| [&anchors[i * h..(i + 1) * h], &positives[i * h..(i + 1) * h]].concat())
        .collect();
    let dims = matryoshka_dims(&[8, 4, 2], &[]).unwrap();
    let pairs = Embedding(task(
        EmbeddingData::Pairs { negatives: 0 },
        EmbeddingLoss::Mnrl,
        dims.clone(),
    ));
    let got = pairs.evaluate(&values, &examples);
    let r = retrieval::Retrieval {
        relevant: (0..n).map(|i| vec![i]).collect(),
        own: vec![None; n],
    };
    for d in [8, 4, 2] {
        let (q, c) = (truncated(&anchors, h, d), truncated(&positives, h, d));
        let want = retrieval::retrieval_metrics(&normalized(&q, d), &normalized(&c, d), d, &r);
        for (name, v) in want {
            let key = match d {
                8 => name.to_string(),
                _ => format!("{name}/dim_{d}"),
            };
            assert_eq!(got.get(&key), Some(v), "{key}");
        }
    }
    assert!(
        got.get("ndcg@10/dim_8").is_none(),
        "the full size is not repeated"
    );
    let kind = TaskKind::Embedding {
        data: EmbeddingData::Pairs { negatives: 0 },
        loss: EmbeddingLoss::Mnrl,
        scale: 20.0,
        matryoshka: dims.clone(),
    };
    assert!(kind.has_metric("ndcg@10/dim_2") && kind.has_metric("mrr@10"));
    assert!(!kind.has_metric("ndcg@10/dim_3"));
    // Scored pairs: Pearson and Spearman of the cut embeddings' cosines.
    let scored = Embedding(task(
        EmbeddingData::Scored { lo: 0.0, hi: 1.0 },
        EmbeddingLoss::Cosent,
        dims,
    ));
    let got = scored.evaluate(&values, &examples);
    let gold: Vec<f64> = examples.iter().map(|e| e.label as f64).collect();
    let (a, b) = (truncated(&anchors, h, 4), truncated(&positives, h, 4));
    for (name, v) in retrieval::similarity_metrics(&a, &b, 4, &gold) {
        assert_eq!(got.get(&format!("{name}/dim_4")), Some(v), "{name}");
    }
}

/// Dimensions are sorted largest first (as sentence-transformers sorts them); 0, a repeat, a
/// weight count that differs, or a weight that is not positive is refused, saying what to give.
#[test]
fn matryoshka_flags_are_checked() {
    let d = matryoshka_dims(&[64, 384, 128], &[0.5, 1.0, 0.25]).unwrap();
    let got: Vec<(usize, f64)> = d.iter().map(|m| (m.dim, m.weight)).collect();
    assert_eq!(got, vec![(384, 1.0), (128, 0.25), (64, 0.5)]);
    for (dims, weights, says) in [
        (vec![384, 0], vec![], "not a dimension"),
        (vec![384, 64, 64], vec![], "given twice"),
        (vec![384, 64], vec![1.0], "1 values for 2"),
        (vec![384, 64], vec![1.0, -1.0], "must be a positive number"),
        (vec![384], vec![f64::NAN], "must be a positive number"),
    ] {
        let e = matryoshka_dims(&dims, &weights).unwrap_err().to_string();
        assert!(e.contains(says), "{dims:?} {weights:?}: {e}");
    }
}

/// Training with `--matryoshka-dims` through the binary: the metrics at each dimension before
/// and after training, a best-model metric at a smaller dimension, a dimension larger than the
/// model and weights without dimensions refused.
#[test]
fn train_with_matryoshka_dims_through_the_binary() {
    let _g = rng_lock();
    let model = tmp("tiny");
    tiny_model(&model);
    let pairs =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/embedding/pairs.csv");
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            s(&model),
            "--train-file",
            s(&pairs),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--r",
            "2",
            "--pooling",
            "mean",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        lorabert(&args)
    };
    let out = tmp("run");
    let (success, stdout, stderr) = run(
        &out,
        &[
            "--matryoshka-dims",
            "16,8,4",
            "--metric-for-best-model",
            "ndcg@10/dim_8",
        ],
    );
    assert!(success, "{stderr}");
    assert!(
        (stdout.clone() + &stderr)
            .contains("MatryoshkaLoss(MultipleNegativesRankingLoss, dims 16,8,4)"),
        "{stdout}{stderr}"
    );
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let before = results
        .before_training
        .as_ref()
        .unwrap()
        .own
        .as_ref()
        .unwrap();
    let after = results.epochs[0].dev.own.as_ref().unwrap();
    assert_eq!(after.metric_for_best_model, "ndcg@10/dim_8");
    for m in [
        "ndcg@10",
        "ndcg@10/dim_8",
        "recall@1/dim_4",
        "map@100/dim_4",
    ] {
        for got in [before, after] {
            let v = got.get(m).unwrap_or_else(|| panic!("{m} missing"));
            assert!((0.0..=1.0).contains(&v), "{m} {v}");
        }
    }
    let (success, _, stderr) = run(&tmp("too-big"), &["--matryoshka-dims", "32,16"]);
    assert!(
        !success && stderr.contains("32 is larger than the model's embedding (16 dimensions)"),
        "{stderr}"
    );
    let (success, _, stderr) = run(&tmp("weights"), &["--matryoshka-weights", "1,1"]);
    assert!(!success && stderr.contains("give those too"), "{stderr}");
    let (success, _, stderr) = run(
        &tmp("metric"),
        &[
            "--matryoshka-dims",
            "16,8",
            "--metric-for-best-model",
            "ndcg@10/dim_4",
        ],
    );
    assert!(
        !success && stderr.contains("at a --matryoshka-dims dimension, as ndcg@10/dim_64"),
        "{stderr}"
    );
}

/// `embed --truncate-dim 64 --normalize` with all-MiniLM-L6-v2 gives sentence-transformers'
/// `encode(truncate_dim=64, normalize_embeddings=True)` within 2e-5; a dimension of 0 or
/// above the hidden size is refused.
#[test]
fn embed_truncate_dim_matches_sentence_transformers() {
    let g = &golden_json()["encode"];
    let want = json_matrix(&g["embeddings"]);
    let out = tmp("cut.safetensors");
    let model = model_dir();
    let mut args = vec!["embed", "--model", s(&model), "--output", s(&out)];
    let sentences = json_strs(&g["sentences"]);
    for t in &sentences {
        args.extend(["--sentence", t]);
    }
    let mut cut = args.clone();
    cut.extend(["--truncate-dim", "64", "--normalize"]);
    ok(&cut);
    let (shape, got) = read(&std::fs::read(&out).unwrap(), "sentence_embedding");
    assert_eq!(shape, vec![3, 64]);
    assert_close("truncated embeddings", &got, &want.concat(), 2e-5);
    for bad in ["0", "385"] {
        let mut a = args.clone();
        a.extend(["--truncate-dim", bad]);
        let (success, _, stderr) = lorabert(&a);
        assert!(
            !success && stderr.contains("give 1 to 384"),
            "{bad}: {stderr}"
        );
    }
}
