//! `--task sts --loss cosent` and `--task para --loss mnrl`: the minBERT pair tasks trained as
//! sentence embeddings. Each preset must train exactly what the equivalent own-data command
//! trains (same files, columns, score range and seed give the same metrics, bit for bit on the
//! CPU), and single-sentence or multitask presets are refused saying what to use.

mod common;

use std::path::Path;

use common::*;
use lorabert::tasks::own::TaskType;
use lorabert::train::RunResults;

/// A minBERT-style folder (TAB-separated, a leading empty column, `id`, `sentence1`,
/// `sentence2`, and `similarity` 0..5 or `is_duplicate` 0/1) with a few dozen pairs whose
/// texts are all distinct.
fn minbert_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let topics = [
        "cats", "rain", "trains", "music", "bread", "chess", "rivers", "stars",
    ];
    let rows = |n: usize, off: usize, label: &dyn Fn(usize) -> String| {
        let mut s = String::new();
        for i in 0..n {
            let t = topics[(i + off) % topics.len()];
            s.push_str(&format!(
                "{i}\tid{i}x{off}\tsome words about {t} number {} here\tother text on {t} item {} now\t{}\n",
                i + off,
                i * 3 + off,
                label(i)
            ));
        }
        s
    };
    let score = |i: usize| format!("{:.1}", (i * 7 % 26) as f64 / 5.0);
    let dup = |i: usize| format!("{}.0", usize::from(!i.is_multiple_of(3)));
    for (name, col, n, off, label) in [
        (
            "sts-train.csv",
            "similarity",
            48,
            0,
            &score as &dyn Fn(usize) -> String,
        ),
        ("sts-dev.csv", "similarity", 24, 100, &score),
        ("quora-train.csv", "is_duplicate", 48, 200, &dup),
        ("quora-dev.csv", "is_duplicate", 24, 300, &dup),
    ] {
        let body = format!("\tid\tsentence1\tsentence2\t{col}\n{}", rows(n, off, label));
        std::fs::write(dir.join(name), body).unwrap();
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn results(out: &Path) -> RunResults {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

/// The dev metrics of every evaluation of a run (epoch 0 and each epoch), as JSON.
fn evaluations(r: &RunResults) -> Vec<serde_json::Value> {
    std::iter::once(r.before_training.as_ref().unwrap())
        .chain(r.epochs.iter().map(|e| &e.dev))
        .map(|d| serde_json::to_value(d).unwrap())
        .collect()
}

#[test]
fn minbert_pair_tasks_train_as_embeddings_like_the_own_data_command() {
    let _g = rng_lock();
    let model = tmp("tiny");
    tiny_model(&model);
    let data = tmp("minbert");
    minbert_folder(&data);
    let common = |out: &Path| {
        vec![
            "train".to_string(),
            "--model".into(),
            s(&model).into(),
            "--epochs".into(),
            "2".into(),
            "--batch-size".into(),
            "16".into(),
            "--r".into(),
            "2".into(),
            "--pooling".into(),
            "mean".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    let run = |out: &Path, extra: &[String]| {
        let mut args = common(out);
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (success, _, stderr) = lorabert(&args);
        assert!(success, "lorabert {args:?} failed:\n{stderr}");
        stderr
    };
    let file = |n: &str| data.join(n).display().to_string();
    // The own-data command a preset stands for: `<prefix>-train.csv` and `<prefix>-dev.csv`
    // read as TSV embedding pairs, plus `extra`.
    let spelled_out = |prefix: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--train-file".into(),
            file(&format!("{prefix}-train.csv")),
            "--validation-file".into(),
            file(&format!("{prefix}-dev.csv")),
            "--format".into(),
            "tsv".into(),
            "--task-type".into(),
            "embedding".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };

    // STS-B with CoSENT: scores 0..5 read as score / 5, Spearman the best-model metric.
    let preset = tmp("sts-preset");
    let stderr = run(
        &preset,
        &owned(&["--task", "sts", "--loss", "cosent", "--data", s(&data)]),
    );
    assert!(stderr.contains("CoSENTLoss"), "{stderr}");
    let p = results(&preset);
    let spec = p.config.data.as_ref().expect("an own-data spec");
    assert_eq!(spec.task_type, Some(TaskType::Embedding));
    assert_eq!(spec.score_range, Some([0.0, 5.0]));
    assert_eq!(spec.label_column.as_deref(), Some("similarity"));
    assert_eq!(spec.train_file, file("sts-train.csv"));
    assert_eq!(spec.validation_file, Some(file("sts-dev.csv")));
    let best = p.before_training.as_ref().unwrap().own.as_ref().unwrap();
    assert_eq!(best.metric_for_best_model, "spearman");
    let explicit = tmp("sts-explicit");
    run(
        &explicit,
        &spelled_out(
            "sts",
            &[
                "--label-column",
                "similarity",
                "--score-range",
                "0,5",
                "--loss",
                "cosent",
            ],
        ),
    );
    assert_eq!(evaluations(&p), evaluations(&results(&explicit)));
    assert_eq!(p.epochs.len(), 2);
    // A given --score-range and --metric-for-best-model win over the preset's.
    let pearson = tmp("sts-pearson");
    let stderr = run(
        &pearson,
        &owned(&[
            "--task",
            "sts",
            "--loss",
            "cosine",
            "--data",
            s(&data),
            "--score-range",
            "0,10",
            "--metric-for-best-model",
            "pearson",
        ]),
    );
    assert!(stderr.contains("CosineSimilarityLoss"), "{stderr}");
    let r = results(&pearson);
    assert_eq!(
        r.config.data.as_ref().unwrap().score_range,
        Some([0.0, 10.0])
    );
    let own = r.before_training.as_ref().unwrap().own.as_ref().unwrap();
    assert_eq!(own.metric_for_best_model, "pearson");

    // Quora with MNRL: the pairs labelled 1 train, retrieval on the dev file's duplicates.
    let preset = tmp("para-preset");
    let stderr = run(
        &preset,
        &owned(&["--task", "para", "--loss", "mnrl", "--data", s(&data)]),
    );
    assert!(stderr.contains("MultipleNegativesRankingLoss"), "{stderr}");
    let p = results(&preset);
    let own = p.before_training.as_ref().unwrap().own.as_ref().unwrap();
    assert_eq!(own.metric_for_best_model, "ndcg@10");
    let explicit = tmp("para-explicit");
    run(
        &explicit,
        &spelled_out(
            "quora",
            &["--label-column", "is_duplicate", "--loss", "mnrl"],
        ),
    );
    assert_eq!(evaluations(&p), evaluations(&results(&explicit)));

    // SST has no pairs, multi is three tasks: refused with what to use; nothing is written.
    for task in ["sst", "multi"] {
        let out = tmp(&format!("{task}-refused"));
        let mut args: Vec<String> = common(&out);
        args.extend(["--task", task, "--loss", "mnrl", "--data", s(&data)].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (success, _, stderr) = lorabert(&args);
        assert!(!success, "{task}: {stderr}");
        assert!(
            stderr.contains("--task sts") && stderr.contains("--task para"),
            "{stderr}"
        );
        assert!(!out.exists(), "{task}: {} was created", out.display());
    }
    // The other own-data flags still need --train-file.
    let (success, _, stderr) = lorabert(&[
        "train",
        "--task",
        "sts",
        "--loss",
        "cosent",
        "--data",
        s(&data),
        "--text-column",
        "sentence1",
    ]);
    assert!(
        !success && stderr.contains("--text-column only applies"),
        "{stderr}"
    );
}
