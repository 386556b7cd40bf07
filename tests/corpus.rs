//! `--corpus-file`: extra documents in an embedding run's retrieval corpus. The evaluation
//! with corpus-only examples against sentence-transformers' `InformationRetrievalEvaluator`
//! (the retrieval case of `tests/golden/embedding.json`), and `train` / `eval` through the
//! binary on a tiny random BERT.

mod common;

use std::path::Path;

use common::embed::*;
use common::*;
use lorabert::tasks::kinds::embedding::Embedding;
use lorabert::tasks::own::{EmbeddingData, EmbeddingLoss, OwnTask};
use lorabert::tasks::{Kind, Prepared};
use lorabert::train::RunResults;

fn golden_json() -> serde_json::Value {
    serde_json::from_slice(&golden("embedding.json")).unwrap()
}

fn pairs_task() -> OwnTask {
    embedding_task(
        EmbeddingData::Pairs { negatives: 0 },
        EmbeddingLoss::Mnrl,
        20.0,
        Vec::new(),
        "ndcg@10",
    )
}

/// The golden retrieval case as an embedding run sees it: each query with each of its relevant
/// documents as an anchor/positive pair (a query with several relevant documents is an anchor
/// in several rows), the documents no query finds relevant as corpus-only examples (`NaN`
/// label, two documents each, as `own::embedding::corpus_examples` makes them). The kind's
/// evaluation gives sentence-transformers' metrics within 1e-6.
#[test]
fn corpus_only_documents_join_the_retrieval_corpus() {
    let g = &golden_json()["retrieval"];
    let (q, c) = (json_matrix(&g["queries"]), json_matrix(&g["corpus"]));
    let relevant = json_lists(&g["relevant"]);
    // Token ids: query i is 1000 + i, document j is 5000 + j.
    let example = |a: u32, b: u32, label: f32| Prepared {
        id: format!("{a}-{b}"),
        a: token_text(a),
        b: Some(token_text(b)),
        label,
        label_ids: Vec::new(),
        negatives: Vec::new(),
        words: None,
    };
    let mut examples = Vec::new();
    let mut values = Vec::new();
    for (i, docs) in relevant.iter().enumerate() {
        for &d in docs {
            examples.push(example(1000 + i as u32, 5000 + d as u32, 1.0));
            values.extend_from_slice(&q[i]);
            values.extend_from_slice(&c[d]);
        }
    }
    let unused: Vec<usize> = (0..c.len())
        .filter(|j| !relevant.iter().any(|r| r.contains(j)))
        .collect();
    assert!(unused.len() > 10, "the case has distractors");
    for group in unused.chunks(2) {
        let (x, y) = (group[0], *group.last().unwrap());
        examples.push(example(5000 + x as u32, 5000 + y as u32, f32::NAN));
        values.extend_from_slice(&c[x]);
        values.extend_from_slice(&c[y]);
    }
    let got = Embedding(pairs_task()).evaluate(&values, &examples);
    for (name, want) in g["metrics"].as_object().unwrap() {
        let (got, want) = (got.get(name).unwrap(), want.as_f64().unwrap());
        assert!((got - want).abs() <= 1e-6, "{name}: {got} vs {want}");
    }
}

/// `train --corpus-file` and `eval --corpus-file` through the binary: the documents are
/// counted, they make retrieval harder (more candidates, never a higher MRR@10 with the same
/// model), `eval` of the run's checkpoint repeats the run's metrics; scored pairs and an empty
/// corpus are refused.
#[test]
fn corpus_file_through_train_and_eval() {
    let _g = rng_lock();
    let model = tmp("tiny");
    tiny_model(&model);
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/embedding/pairs.csv");
    let dir = tmp("files");
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("corpus.txt");
    let docs: Vec<String> = (0..41)
        .map(|i| format!("distractor number {i} about topic {}", i % 7))
        .collect();
    std::fs::write(&corpus, docs.join("\n") + "\n\n").unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            s(&model),
            "--train-file",
            s(&pairs),
            "--validation-file",
            s(&pairs),
            "--max-steps",
            "2",
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
    let (plain, with) = (tmp("plain"), tmp("with"));
    let (success, _, stderr) = train(&plain, &[]);
    assert!(success, "{stderr}");
    let (success, _, stderr) = train(&with, &["--corpus-file", s(&corpus)]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("corpus: 41 documents"), "{stderr}");
    let results = |out: &Path| -> RunResults {
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
    };
    let mrr = |r: &RunResults| {
        let b = r.before_training.as_ref().unwrap().own.as_ref().unwrap();
        b.get("mrr@10").unwrap()
    };
    // Same model before training: extra candidates can only push the positives down.
    assert!(mrr(&results(&with)) <= mrr(&results(&plain)));
    // eval of the run's checkpoint with the same corpus repeats its last evaluation.
    let printed = ok(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&with),
        "--validation-file",
        s(&pairs),
        "--corpus-file",
        s(&corpus),
    ]);
    let m: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let r = results(&with);
    let last = r.epochs.last().unwrap().dev.own.as_ref().unwrap();
    let got = m["own"]["ndcg@10"]
        .as_f64()
        .unwrap_or_else(|| panic!("{printed}"));
    let want = last.get("ndcg@10").unwrap();
    assert!((got - want).abs() <= 1e-4, "eval {got} vs the run's {want}");
    // Refused: scored pairs (similarity, not retrieval), a corpus with no text.
    let scored = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/embedding/scored.csv");
    let (success, _, stderr) = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&scored),
        "--task-type",
        "embedding",
        "--score-range",
        "0,5",
        "--corpus-file",
        s(&corpus),
        "--out",
        s(&tmp("scored")),
    ]);
    assert!(
        !success && stderr.contains("extra documents are for retrieval evaluation"),
        "{stderr}"
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n \n").unwrap();
    let (success, _, stderr) = train(&tmp("empty"), &["--corpus-file", s(&empty)]);
    assert!(
        !success && stderr.contains("empty.txt line 1: the corpus has no text"),
        "{stderr}"
    );
}

/// A text corpus's byte-order mark is not part of its first document; blank lines are no
/// documents and each line is trimmed.
#[test]
fn a_byte_order_mark_is_not_text() {
    let texts = lorabert::data::corpus::corpus_texts(
        b"\xEF\xBB\xBFfirst doc\n\n  second  \n",
        "c.txt",
        None,
    )
    .unwrap();
    assert_eq!(texts, vec!["first doc".to_string(), "second".to_string()]);
}
