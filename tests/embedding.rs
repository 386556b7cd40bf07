//! Sentence embeddings: the losses and evaluators against sentence-transformers
//! (`tests/golden/embedding.json`, by `tools/make_golden_embedding.py`), the data forms
//! (anchor/positive pairs, triplets, 0/1-labelled and scored pairs; fixtures in
//! `tests/data/embedding/` by `tools/make_embedding_fixtures.py`), bad input, and training
//! through the binary on a tiny random BERT.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::embed::*;
use common::*;
use lorabert::model::BertTokenizer;
use lorabert::tasks::kinds::embedding::Embedding;
use lorabert::tasks::own::{self, DataSpec, EmbeddingData, EmbeddingLoss, OwnTask};
use lorabert::tasks::own::{TaskKind, TaskType};
use lorabert::tasks::retrieval::{self, Retrieval, normalized};
use lorabert::tasks::{Kind, PairEncoding, Prepared};
use lorabert::train::RunResults;

fn golden_json() -> serde_json::Value {
    serde_json::from_slice(&golden("embedding.json")).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/embedding")
        .join(name)
}

fn flat(m: &[Vec<f32>]) -> Vec<f32> {
    m.iter().flatten().copied().collect()
}

fn task(data: EmbeddingData, loss: EmbeddingLoss, scale: f64, metric: &str) -> OwnTask {
    embedding_task(data, loss, scale, Vec::new(), metric)
}

#[test]
fn losses_match_sentence_transformers() {
    for case in golden_json()["losses"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let roles: Vec<Vec<Vec<f32>>> = case["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_matrix)
            .collect();
        let n = roles.len();
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
            "mnrl_symmetric" => (
                EmbeddingData::Pairs { negatives: 0 },
                EmbeddingLoss::MnrlSymmetric,
            ),
            _ => (
                EmbeddingData::Pairs { negatives: n - 2 },
                EmbeddingLoss::Mnrl,
            ),
        };
        let scale = case["scale"].as_f64().unwrap();
        let kind = Embedding(task(data, loss, scale, "ndcg@10"));
        assert_loss_matches(name, &kind, &roles, scores, case);
    }
}

#[test]
fn retrieval_metrics_match_the_information_retrieval_evaluator() {
    let g = &golden_json()["retrieval"];
    let (q, c) = (json_matrix(&g["queries"]), json_matrix(&g["corpus"]));
    let h = q[0].len();
    let relevant = json_lists(&g["relevant"]);
    let r = Retrieval {
        own: vec![None; relevant.len()],
        relevant,
    };
    let got =
        retrieval::retrieval_metrics(&normalized(&flat(&q), h), &normalized(&flat(&c), h), h, &r);
    for (name, v) in got {
        let want = g["metrics"][name].as_f64().unwrap();
        assert!((v - want).abs() < 1e-6, "{name}: {v} vs {want}");
    }
}

#[test]
fn similarity_metrics_match_the_embedding_similarity_evaluator() {
    let g = &golden_json()["similarity"];
    let (a, b) = (json_matrix(&g["a"]), json_matrix(&g["b"]));
    let scores: Vec<f64> = g["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let got = retrieval::similarity_metrics(&flat(&a), &flat(&b), a[0].len(), &scores);
    for (name, v) in got {
        let want = g[name].as_f64().unwrap();
        assert!((v - want).abs() < 1e-6, "{name}: {v} vs {want}");
    }
}

fn pair(a: u32, b: u32, label: f32) -> Prepared {
    Prepared {
        id: format!("{a}-{b}"),
        a: token_text(a),
        b: Some(token_text(b)),
        label,
        label_ids: Vec::new(),
        negatives: Vec::new(),
        words: None,
    }
}

/// Labelled pairs: the queries are the first sentences of the pairs labelled 1, the corpus
/// every text, a query's own text out of its ranking; the same as the metrics of those
/// queries and corpus built by hand.
#[test]
fn labelled_pairs_evaluate_as_retrieval_over_every_text() {
    // Texts 1..=5 as 2-d embeddings; (1, 2) and (4, 5) are duplicates, (1, 3) is not.
    let e: HashMap<u32, [f32; 2]> = [
        (1, [1.0, 0.0]),
        (2, [0.6, 0.8]),
        (3, [0.9, 0.1]),
        (4, [0.0, 1.0]),
        (5, [-0.2, 0.9]),
    ]
    .into_iter()
    .collect();
    let examples = vec![pair(1, 2, 1.0), pair(1, 3, 0.0), pair(4, 5, 1.0)];
    let values: Vec<f32> = examples
        .iter()
        .flat_map(|x| {
            let (a, b) = (x.a.ids[1], x.b.as_ref().unwrap().ids[1]);
            [e[&a], e[&b]].concat()
        })
        .collect();
    let kind = Embedding(task(
        EmbeddingData::Labelled,
        EmbeddingLoss::Mnrl,
        20.0,
        "ndcg@10",
    ));
    let got = kind.evaluate(&values, &examples);
    // By hand: corpus in first-seen order 1, 2, 3, 4, 5; query 1 finds 3 then 2 (its own
    // text left out); query 4 finds 5 first.
    let corpus: Vec<f32> = [1, 2, 3, 4, 5].iter().flat_map(|i| e[i]).collect();
    let queries: Vec<f32> = [1, 4].iter().flat_map(|i| e[i]).collect();
    let r = Retrieval {
        relevant: vec![vec![1], vec![4]],
        own: vec![Some(0), Some(3)],
    };
    let want =
        retrieval::retrieval_metrics(&normalized(&queries, 2), &normalized(&corpus, 2), 2, &r);
    for (name, v) in want {
        assert_eq!(got.get(name), Some(v), "{name}");
    }
    assert_eq!(got.get("mrr@10"), Some((0.5 + 1.0) / 2.0));
    assert_eq!(got.metric_for_best_model, "ndcg@10");
}

fn tok() -> BertTokenizer {
    let bytes = std::fs::read(model_dir().join("tokenizer.json")).unwrap();
    BertTokenizer::from_bytes(&bytes, "tokenizer.json", 64).unwrap()
}

fn spec(train: &str) -> DataSpec {
    DataSpec {
        train_file: fixture(train).display().to_string(),
        validation_split: 0.2,
        ..DataSpec::default()
    }
}

fn load(spec: &DataSpec, bytes: &[u8]) -> lorabert::Result<own::OwnData> {
    own::load(
        spec,
        bytes,
        None,
        &tok(),
        PairEncoding::Cross,
        42,
        None,
        None,
    )
}

fn load_fixture(spec: &DataSpec) -> lorabert::Result<own::OwnData> {
    load(spec, &std::fs::read(&spec.train_file).unwrap())
}

#[test]
fn data_forms_are_detected_with_their_losses() {
    // anchor/positive: detected without --task-type; MNRL; bi-encoded whatever was asked.
    let d = load_fixture(&spec("pairs.csv")).unwrap();
    assert_eq!(
        d.task.kind,
        TaskKind::Embedding {
            data: EmbeddingData::Pairs { negatives: 0 },
            loss: EmbeddingLoss::Mnrl,
            scale: 20.0,
            matryoshka: Vec::new(),
        }
    );
    assert_eq!(d.task.metric_for_best_model, "ndcg@10");
    assert_eq!(d.train.examples.len() + d.dev.examples.len(), 160);
    assert!(d.train.examples.iter().all(|e| e.b.is_some()));
    // Triplets: the negative column is found and tokenised.
    let d = load_fixture(&spec("triplets.jsonl")).unwrap();
    assert!(matches!(
        d.task.kind,
        TaskKind::Embedding {
            data: EmbeddingData::Pairs { negatives: 1 },
            ..
        }
    ));
    assert_eq!(d.task.columns.negatives, vec!["negative".to_string()]);
    assert!(d.train.examples.iter().all(|e| e.negatives.len() == 1));
    // 0/1-labelled pairs (Quora): MNRL trains on the pairs labelled 1 only.
    let labelled = DataSpec {
        task_type: Some(TaskType::Embedding),
        ..spec("labelled.csv")
    };
    let d = load_fixture(&labelled).unwrap();
    assert!(matches!(
        d.task.kind,
        TaskKind::Embedding {
            data: EmbeddingData::Labelled,
            ..
        }
    ));
    assert!(d.train.examples.iter().all(|e| e.label == 1.0));
    assert!(d.dev.examples.iter().any(|e| e.label == 0.0));
    assert!(
        d.summary
            .warnings
            .iter()
            .any(|w| w.contains("labelled 0 are not trained on")),
        "{:?}",
        d.summary.warnings
    );
    // Scored pairs: CoSENT by default, scores scaled from the declared range.
    let scored = DataSpec {
        task_type: Some(TaskType::Embedding),
        score_range: Some([0.0, 5.0]),
        ..spec("scored.csv")
    };
    let d = load_fixture(&scored).unwrap();
    assert!(matches!(
        d.task.kind,
        TaskKind::Embedding {
            data: EmbeddingData::Scored { .. },
            loss: EmbeddingLoss::Cosent,
            ..
        }
    ));
    assert_eq!(d.task.metric_for_best_model, "spearman");
    assert!(
        d.train
            .examples
            .iter()
            .all(|e| (0.0..=1.0).contains(&e.label))
    );
}

fn err(spec: &DataSpec, csv: &str) -> String {
    load(spec, csv.as_bytes()).unwrap_err().to_string()
}

#[test]
fn bad_pairs_are_refused_naming_file_line_and_column() {
    let emb = |name: &str| DataSpec {
        task_type: Some(TaskType::Embedding),
        train_file: name.into(),
        validation_split: 0.5,
        ..DataSpec::default()
    };
    // One text column.
    let e = err(&emb("one.csv"), "anchor\na\nb\n");
    assert!(
        e.starts_with("one.csv line 1:") && e.contains("two text columns"),
        "{e}"
    );
    // An empty positive.
    let e = err(&emb("empty.csv"), "anchor,positive\na,b\nc,\n");
    assert!(
        e.starts_with("empty.csv line 3: column `positive`: the text is empty"),
        "{e}"
    );
    // A score outside the declared range, and one that is not a number.
    let scored = DataSpec {
        score_range: Some([0.0, 5.0]),
        ..emb("s.csv")
    };
    let e = err(&scored, "sentence1,sentence2,score\na,b,1\nc,d,7.5\n");
    assert!(
        e.starts_with("s.csv line 3: column `score`: score 7.5 is outside the declared range 0..5"),
        "{e}"
    );
    let e = err(&scored, "sentence1,sentence2,score\na,b,1\nc,d,high\n");
    assert!(
        e.starts_with("s.csv line 3: column `score`: score `high` is not a finite number"),
        "{e}"
    );
    // Without --score-range, scores are declared in 0..1: an STS score of 3.2 says so.
    let e = err(
        &emb("sts.csv"),
        "sentence1,sentence2,score\na,b,0.5\nc,d,3.2\n",
    );
    assert!(e.contains("--score-range"), "{e}");
    // MNRL cannot train on scores; CoSENT needs them.
    let mnrl = DataSpec {
        loss: Some(EmbeddingLoss::Mnrl),
        ..scored.clone()
    };
    let e = err(&mnrl, "sentence1,sentence2,score\na,b,1\nc,d,2\n");
    assert!(
        e.contains("scored pairs train with --loss cosent or cosine"),
        "{e}"
    );
    let cosent = DataSpec {
        loss: Some(EmbeddingLoss::Cosent),
        ..emb("p.csv")
    };
    let e = err(&cosent, "anchor,positive\na,b\nc,d\n");
    assert!(e.contains("needs a score for each pair"), "{e}");
}

#[test]
fn train_pairs_and_scored_pairs_through_the_binary() {
    let _g = rng_lock();
    let model = tmp("tiny");
    tiny_model(&model);
    let out = tmp("pairs-run");
    ok(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("pairs.csv")),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--r",
        "4",
        "--pooling",
        "mean",
        "--out",
        s(&out),
    ]);
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let before = results
        .before_training
        .as_ref()
        .expect("an epoch-0 evaluation");
    let own = before.own.as_ref().unwrap();
    assert_eq!(own.metric_for_best_model, "ndcg@10");
    for m in lorabert::tasks::own_task::RETRIEVAL_METRICS {
        let v = own.get(m).unwrap();
        assert!((0.0..=1.0).contains(&v), "{m} {v}");
    }
    let after = results.epochs[0].dev.own.as_ref().unwrap();
    assert!(after.get("ndcg@10").is_some());
    assert!(out.join("best/adapter_model.safetensors").is_file());
    // eval re-reads a validation file as the run did; predict has no head to predict with.
    let printed = ok(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&out),
        "--validation-file",
        s(&fixture("pairs.csv")),
    ]);
    assert!(printed.contains("\"ndcg@10\""), "{printed}");
    let (success, _, stderr) = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&out),
        "--sentence",
        "hi",
    ]);
    assert!(!success && stderr.contains("lorabert search"), "{stderr}");
    // Batch size 1 with in-batch negatives is refused, saying why.
    let (success, _, stderr) = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("pairs.csv")),
        "--batch-size",
        "1",
        "--pooling",
        "mean",
        "--out",
        s(&tmp("bs1")),
    ]);
    assert!(
        !success && stderr.contains("a batch needs two pairs or more"),
        "{stderr}"
    );
    // Scored pairs with CoSENT: Pearson and Spearman, before training and after.
    let out = tmp("scored-run");
    ok(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("scored.csv")),
        "--task-type",
        "embedding",
        "--score-range",
        "0,5",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--pooling",
        "mean",
        "--out",
        s(&out),
    ]);
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let own = results.epochs[0].dev.own.as_ref().unwrap();
    assert_eq!(own.metric_for_best_model, "spearman");
    assert!(own.get("pearson").is_some_and(f64::is_finite));
}

/// `lorabert search` with the base model ranks as sentence-transformers' `util.semantic_search`
/// does (same corpus ids in the same order, cosines within 1e-4), the second time from its
/// cache; bad requests are refused.
#[test]
fn search_matches_semantic_search() {
    let g = &golden_json()["search"];
    let cache = tmp("search-cache");
    let mut args = vec![
        "search".to_string(),
        "--model".into(),
        s(&model_dir()).into(),
        "--corpus".into(),
        s(&fixture("pairs.csv")).into(),
        "--text-column".into(),
        "positive".into(),
        "--top-k".into(),
        "5".into(),
        "--json".into(),
        "--cache-dir".into(),
        s(&cache).into(),
    ];
    for q in g["queries"].as_array().unwrap() {
        args.push("--query".into());
        args.push(q.as_str().unwrap().into());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    for round in 0..2 {
        let (success, stdout, stderr) = lorabert(&argv);
        assert!(success, "{stderr}");
        assert_eq!(stderr.contains("from the cache"), round == 1, "{stderr}");
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want: Vec<&serde_json::Value> = g["hits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| h.as_array().unwrap())
            .collect();
        assert_eq!(lines.len(), want.len());
        for (got, want) in lines.iter().zip(want) {
            assert_eq!(got["corpus_id"], want["corpus_id"], "{got}");
            let (a, b) = (
                got["score"].as_f64().unwrap(),
                want["score"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-4, "{got} vs {want}");
        }
    }
    let (success, _, stderr) = lorabert(&[
        "search",
        "--model",
        s(&model_dir()),
        "--corpus",
        s(&fixture("pairs.csv")),
        "--query",
        "x",
        "--top-k",
        "0",
    ]);
    assert!(
        !success && stderr.contains("--top-k must be >= 1"),
        "{stderr}"
    );
    let empty = tmp("empty-corpus.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let (success, _, stderr) = lorabert(&[
        "search",
        "--model",
        s(&model_dir()),
        "--corpus",
        s(&empty),
        "--query",
        "x",
    ]);
    assert!(
        !success && stderr.contains("the corpus has no text"),
        "{stderr}"
    );
}

/// The page's loss list sends `--loss` values: each names its loss, "detect" (empty) none.
#[test]
fn loss_names_round_trip() {
    use own::embedding::{loss_flag, loss_of_flag};
    for l in [
        EmbeddingLoss::Mnrl,
        EmbeddingLoss::MnrlSymmetric,
        EmbeddingLoss::Cosent,
        EmbeddingLoss::Cosine,
    ] {
        assert_eq!(loss_of_flag(loss_flag(Some(l))), Some(l));
    }
    assert_eq!(
        loss_of_flag("mnrl-symmetric"),
        Some(EmbeddingLoss::MnrlSymmetric)
    );
    assert_eq!(loss_of_flag(""), None);
    assert_eq!(loss_of_flag("MultipleNegativesRankingLoss"), None);
}

/// One column named as both texts of a pair would train each text against itself: refused,
/// naming the column.
#[test]
fn a_column_as_both_texts_is_refused() {
    let same = DataSpec {
        text_column: Some("positive".into()),
        text_pair_column: Some("positive".into()),
        ..spec("pairs.csv")
    };
    let e = load_fixture(&same).unwrap_err().to_string();
    assert!(
        e.contains("pairs.csv line 1") && e.contains("column `positive` is both texts"),
        "{e}"
    );
}
