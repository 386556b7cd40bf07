//! Multi-label classification: its metrics against scikit-learn and its loss against PyTorch
//! (`tests/golden/multi_label.json`, by `tools/make_golden_multilabel.py`), the three ways
//! labels are written (GoEmotions' TSV of label ids with a names file, JSON arrays of names,
//! 0/1 columns; fixtures in `tests/data/multilabel/` by `tools/make_multilabel_fixtures.py`),
//! bad input, and training, predicting and exporting through the binary on a tiny random BERT.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use lorabert::model::{BertTokenizer, Encoded};
use lorabert::tasks::kinds::multi_label::{MultiLabel, tune};
use lorabert::tasks::metrics::multi_label_scores;
use lorabert::tasks::own::{self, Columns, DataSpec, OwnTask, TaskKind, TaskType};
use lorabert::tasks::{Kind, PairEncoding, Prepared};
use lorabert::train::RunResults;

fn golden_json() -> serde_json::Value {
    serde_json::from_slice(&golden("multi_label.json")).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/multilabel")
        .join(name)
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

/// A multi-label task over `k` labels `l0`, `l1`, ... with per-label `thresholds`.
fn task(k: usize, thresholds: Vec<f64>) -> OwnTask {
    OwnTask {
        name: "t".into(),
        kind: TaskKind::MultiLabel {
            id2label: (0..k).map(|i| format!("l{i}")).collect(),
            label_ids: false,
            threshold: 0.5,
            thresholds,
        },
        columns: Columns {
            text: "text".into(),
            text_pair: None,
            label: "labels".into(),
            multi_label: Some(Default::default()),
            negatives: Vec::new(),
        },
        metric_for_best_model: "f1_micro".into(),
        no_header: false,
        pairs_optional: false,
    }
}

fn example(ids: Vec<u32>) -> Prepared {
    Prepared {
        id: "x".into(),
        a: Encoded {
            ids: vec![101, 102],
            type_ids: vec![0, 0],
            truncated: false,
        },
        b: None,
        label: ids.len() as f32,
        label_ids: ids,
        negatives: Vec::new(),
        words: None,
    }
}

#[test]
fn metrics_match_scikit_learn() {
    let g = golden_json();
    for (n, case) in g["metrics"].as_array().unwrap().iter().enumerate() {
        let probs = matrix(&case["probs"]);
        let gold = matrix(&case["gold"]);
        let thr = floats(&case["thresholds"]);
        let k = thr.len();
        let pred: Vec<bool> = probs
            .iter()
            .flat_map(|r| r.iter().zip(&thr).map(|(p, t)| p >= t))
            .collect();
        let gold_b: Vec<bool> = gold.iter().flatten().map(|&x| x == 1.0).collect();
        let s = multi_label_scores(&pred, &gold_b, k);
        let want = &case["sklearn"];
        let close = |name: &str, got: f64| {
            let w = want[name].as_f64().unwrap();
            assert!((got - w).abs() < 1e-12, "case {n}: {name} {got} vs {w}");
        };
        close("f1_micro", s.f1_micro);
        close("f1_macro", s.f1_macro);
        close("precision_micro", s.precision_micro);
        close("recall_micro", s.recall_micro);
        close("subset_accuracy", s.subset_accuracy);
        close("hamming_loss", s.hamming_loss);
        for (l, w) in floats(&want["f1_per_label"]).iter().enumerate() {
            assert!((s.f1_per_label[l] - w).abs() < 1e-12, "case {n}: f1 of {l}");
        }
        // The kind, with the case's thresholds, reports the same from probabilities and
        // label sets (probabilities rounded to f32 by the script, so the thresholding agrees).
        let kind = MultiLabel(task(k, thr.clone()));
        let values: Vec<f32> = probs.iter().flatten().map(|&p| p as f32).collect();
        let examples: Vec<Prepared> = gold
            .iter()
            .map(|r| example((0..k as u32).filter(|&l| r[l as usize] == 1.0).collect()))
            .collect();
        let m = kind.evaluate(&values, &examples);
        for name in ["f1_micro", "f1_macro", "subset_accuracy", "hamming_loss"] {
            close(name, m.get(name).unwrap());
        }
        let per = floats(&want["f1_per_label"]);
        assert!((m.get("f1/l0").unwrap() - per[0]).abs() < 1e-12);
        assert_eq!(m.metric_for_best_model, "f1_micro");
    }
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let device = Device::flex();
    for case in golden_json()["bce"].as_array().unwrap() {
        let logits = matrix(&case["logits"]);
        let (b, k) = (logits.len(), logits[0].len());
        let flat =
            |m: Vec<Vec<f64>>| -> Vec<f32> { m.into_iter().flatten().map(|x| x as f32).collect() };
        let z = Tensor::<2>::from_data(TensorData::new(flat(logits), [b, k]), &device);
        let y = Tensor::<2>::from_data(
            TensorData::new(flat(matrix(&case["targets"])), [b, k]),
            &device,
        );
        let pw = case["pos_weight"].as_array().map(|_| {
            let w: Vec<f32> = floats(&case["pos_weight"])
                .iter()
                .map(|&x| x as f32)
                .collect();
            Tensor::<1>::from_data(TensorData::new(w, [k]), &device)
        });
        let got = host(lorabert::tasks::bce_with_logits_labels(z, y, pw))[0] as f64;
        let want = case["loss"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}

#[test]
fn tuning_picks_each_labels_best_threshold() {
    // Rows (label 0, label 1): the first two have both labels, the last two neither. Label 0
    // is separated by 0.25 and 0.30 (0.35f32 is just under 0.35): the one nearer 0.5 wins;
    // label 1 by 0.85 alone (0.9f32 is just under 0.9).
    let values = [0.9f32, 0.95, 0.35, 0.9, 0.2, 0.8, 0.1, 0.1];
    let gold = [true, true, true, true, false, false, false, false];
    assert_eq!(tune(&values, &gold, 2, 0.5), vec![0.3, 0.85]);
    // Nothing separates a label no row has: F1 is 0 everywhere, the base threshold stays.
    assert_eq!(tune(&[0.2, 0.7], &[false, false], 1, 0.5), vec![0.5]);
}

fn tok() -> BertTokenizer {
    let bytes = std::fs::read(model_dir().join("tokenizer.json")).unwrap();
    BertTokenizer::from_bytes(&bytes, "tokenizer.json", 64).unwrap()
}

fn load(spec: &DataSpec, train: &str, dev: &str) -> lorabert::Result<own::OwnData> {
    let t = std::fs::read(fixture(train)).unwrap();
    let d = std::fs::read(fixture(dev)).unwrap();
    own::load(spec, &t, Some(&d), &tok(), PairEncoding::Bi, 42, None, None)
}

fn emotions() -> Vec<String> {
    std::fs::read_to_string(fixture("emotions.txt"))
        .unwrap()
        .split('\n')
        .map(str::to_string)
        .collect()
}

fn goemotions_spec() -> DataSpec {
    DataSpec {
        train_file: "train.tsv".into(),
        validation_file: Some("dev.tsv".into()),
        no_header: true,
        text_column: Some("0".into()),
        label_column: Some("1".into()),
        label_separator: Some(",".into()),
        label_names: Some(emotions()),
        ..DataSpec::default()
    }
}

/// Each example's labels by name.
fn names_of(d: &own::OwnData) -> Vec<Vec<String>> {
    let names = d.task.kind.id2label();
    d.train
        .examples
        .iter()
        .map(|e| {
            let mut v: Vec<String> = e
                .label_ids
                .iter()
                .map(|&i| names[i as usize].clone())
                .collect();
            v.sort();
            v
        })
        .collect()
}

#[test]
fn goemotions_ids_json_arrays_and_label_columns_read_the_same_labels() {
    let tsv = load(&goemotions_spec(), "train.tsv", "dev.tsv").unwrap();
    assert_eq!(tsv.task.kind.name(), "multi-label");
    assert_eq!(tsv.task.kind.id2label(), emotions().as_slice());
    assert_eq!(tsv.train.examples.len(), 320);
    assert_eq!(tsv.dev.examples.len(), 120);
    // GoEmotions' first training row: `My favourite food is ...`, label 27 (neutral).
    assert_eq!(tsv.train.examples[0].label_ids, vec![27]);
    let multi = tsv
        .train
        .examples
        .iter()
        .filter(|e| e.label_ids.len() > 1)
        .count();
    assert!(multi > 20, "{multi} rows with several labels");
    let summary = &tsv.summary.train;
    assert_eq!(summary.rows, 320);
    let total: usize = tsv.train.examples.iter().map(|e| e.label_ids.len()).sum();
    assert!((summary.labels_per_row.unwrap() - total as f64 / 320.0).abs() < 1e-12);
    assert_eq!(summary.counts.values().sum::<usize>(), total);

    // The same rows as JSON Lines with arrays of names: detected as multi-label.
    let spec = DataSpec {
        train_file: "train.jsonl".into(),
        validation_file: Some("dev.jsonl".into()),
        ..DataSpec::default()
    };
    let jsonl = load(&spec, "train.jsonl", "dev.jsonl").unwrap();
    assert_eq!(jsonl.task.kind.name(), "multi-label");
    assert_eq!(jsonl.task.columns.label, "labels");
    assert_eq!(names_of(&jsonl), names_of(&tsv));
    let mut sorted = jsonl.task.kind.id2label().to_vec();
    sorted.sort();
    assert_eq!(jsonl.task.kind.id2label(), sorted.as_slice());

    // 0/1 columns of four labels.
    let spec = DataSpec {
        train_file: "cols.csv".into(),
        label_columns: vec![
            "anger".into(),
            "joy".into(),
            "sadness".into(),
            "neutral".into(),
        ],
        validation_split: 0.2,
        ..DataSpec::default()
    };
    let bytes = std::fs::read(fixture("cols.csv")).unwrap();
    let cols = own::load(&spec, &bytes, None, &tok(), PairEncoding::Bi, 7, None, None).unwrap();
    assert_eq!(
        cols.task.kind.id2label(),
        ["anger", "joy", "sadness", "neutral"]
    );
    let four = ["anger", "joy", "sadness", "neutral"];
    let want: usize = names_of(&tsv)
        .iter()
        .map(|n| n.iter().filter(|l| four.contains(&l.as_str())).count())
        .sum();
    let got: usize = cols
        .train
        .examples
        .iter()
        .chain(&cols.dev.examples)
        .map(|e| e.label_ids.len())
        .sum();
    assert_eq!(got, want);
}

fn err(spec: &DataSpec, train: &str, dev: Option<&str>) -> String {
    own::load(
        spec,
        train.as_bytes(),
        dev.map(str::as_bytes),
        &tok(),
        PairEncoding::Bi,
        42,
        None,
        None,
    )
    .map(|_| ())
    .expect_err("bad input must be refused")
    .to_string()
}

#[test]
fn bad_multi_label_input_is_named() {
    let jsonl = |name: &str| DataSpec {
        train_file: name.into(),
        validation_file: Some("dev.jsonl".into()),
        ..DataSpec::default()
    };
    // An empty label list is allowed (a row with no label); null is unlabelled (skipped).
    let train = "{\"text\": \"a\", \"labels\": [\"x\"]}\n{\"text\": \"b\", \"labels\": []}\n\
                 {\"text\": \"c\", \"labels\": [\"y\", \"x\"]}\n{\"text\": \"d\", \"labels\": null}\n";
    let dev = "{\"text\": \"e\", \"labels\": [\"y\"]}\n";
    let d = own::load(
        &jsonl("t.jsonl"),
        train.as_bytes(),
        Some(dev.as_bytes()),
        &tok(),
        PairEncoding::Bi,
        42,
        None,
        None,
    )
    .unwrap();
    let ids: Vec<Vec<u32>> = d
        .train
        .examples
        .iter()
        .map(|e| e.label_ids.clone())
        .collect();
    assert_eq!(ids, vec![vec![0], vec![], vec![0, 1]]);
    assert_eq!(d.summary.skipped_rows, 1);

    // A label array mixing strings and numbers.
    let bad = "{\"text\": \"a\", \"labels\": [\"x\"]}\n{\"text\": \"b\", \"labels\": [\"x\", 3]}\n";
    let e = err(&jsonl("t.jsonl"), bad, Some(dev));
    assert!(
        e.starts_with("t.jsonl line 2: column `labels`: the label array mixes strings and numbers"),
        "{e}"
    );
    // A label seen only in validation.
    let e = err(
        &jsonl("t.jsonl"),
        train,
        Some("{\"text\": \"e\", \"labels\": [\"x\"]}\n{\"text\": \"f\", \"labels\": [\"z\"]}\n"),
    );
    assert!(
        e.starts_with("dev.jsonl line 2: column `labels`: label `z` does not occur in the training data (its labels: x, y)"),
        "{e}"
    );
    // A threshold outside (0, 1).
    for t in [0.0, 1.0, 1.5, f64::NAN] {
        let spec = DataSpec {
            threshold: Some(t),
            ..jsonl("t.jsonl")
        };
        let e = err(&spec, train, Some(dev));
        assert!(
            e.contains("--threshold") && e.contains("must be in (0, 1)"),
            "{e}"
        );
    }
    // A 0/1 column holding something else.
    let spec = DataSpec {
        train_file: "c.csv".into(),
        label_columns: vec!["a".into(), "b".into()],
        ..DataSpec::default()
    };
    let e = err(&spec, "text,a,b\nx,1,0\ny,0,2\n", None);
    assert!(
        e.starts_with("c.csv line 3: column `b`: expected 0 or 1 (one column per label), got `2`"),
        "{e}"
    );
    // Label ids past the names file, and several labels without a separator.
    let mut spec = goemotions_spec();
    spec.label_names = Some(vec!["a".into(), "b".into()]);
    let e = err(&spec, "t\t0,1\tid1\nu\t2\tid2\n", Some("v\t0\tid3\n"));
    assert!(
        e.contains("line 2: column `1`: label `2` is neither an id (0..2) nor a name"),
        "{e}"
    );
    spec.label_separator = None;
    spec.task_type = Some(TaskType::MultiLabel);
    let e = err(&spec, "t\t0,1\tid1\n", Some("v\t0\tid3\n"));
    assert!(
        e.contains("split them with --label-separator") || e.contains("neither"),
        "{e}"
    );
    // Multi-label options with a single-label task type.
    let spec = DataSpec {
        task_type: Some(TaskType::Classification),
        label_separator: Some(",".into()),
        ..jsonl("t.jsonl")
    };
    let e = err(&spec, train, Some(dev));
    assert!(e.contains("are for multi-label data"), "{e}");
}

#[test]
fn train_tune_predict_evaluate_and_export_goemotions_through_the_binary() {
    let model = tmp("tiny");
    tiny_model(&model);
    let run = tmp("run");
    let (train, dev, names) = (
        fixture("train.tsv"),
        fixture("dev.tsv"),
        fixture("emotions.txt"),
    );
    let base = [
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&train),
        "--validation-file",
        s(&dev),
        "--no-header",
        "--text-column",
        "0",
        "--label-column",
        "1",
        "--label-separator",
        ",",
        "--label-names",
        s(&names),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--max-len",
        "32",
        "--threads",
        "1",
        "--lr",
        "5e-3",
        "--pooling",
        "cls",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--tune-thresholds",
        "--pos-weight",
        "balanced",
        "--out",
        s(&run),
    ]);
    // Balanced positive weights need every label in training: the 320 rows lack some.
    let (success, _, stderr) = lorabert(&args);
    let missing = !success;
    if missing {
        assert!(
            stderr.contains("--pos-weight balanced: no training row has the label"),
            "{stderr}"
        );
        let i = args.iter().position(|a| *a == "balanced").unwrap();
        args[i] = "grief=2,neutral=0.5";
        ok(&args);
    }
    let r = RunResults::from_json(&std::fs::read(run.join("results.json")).unwrap(), "r").unwrap();
    let best = r.best.as_ref().unwrap();
    let own = best.own.as_ref().unwrap();
    assert_eq!(own.metric_for_best_model, "f1_micro");
    for m in [
        "f1_micro",
        "f1_macro",
        "subset_accuracy",
        "hamming_loss",
        "f1/neutral",
    ] {
        let v = own.get(m).unwrap_or_else(|| panic!("{m} missing"));
        assert!((0.0..=1.0).contains(&v), "{m} {v}");
    }
    let tuned = best.thresholds.as_ref().expect("tuned thresholds");
    assert_eq!(tuned.len(), 28);
    assert!(best.untuned.is_some());
    assert_eq!(r.pos_weight.len(), 1);
    assert_eq!(r.pos_weight[0].weights.len(), 28);
    // The best checkpoint keeps the tuned thresholds.
    let heads: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("best/heads_config.json")).unwrap())
            .unwrap();
    let kept = floats(&heads["own"]["kind"]["multi_label"]["thresholds"]);
    assert_eq!(&kept, tuned);

    // predict: the labels over their thresholds and every label's probability.
    let out = ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--sentence",
        "Thank you so much, this is wonderful!",
    ]);
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["probabilities"].as_object().unwrap().len(), 28, "{row}");
    let labels = row["labels"].as_array().expect("labels");
    for l in labels {
        let name = l.as_str().unwrap();
        let i = emotions().iter().position(|n| n == name).unwrap();
        assert!(
            row["probabilities"][name].as_f64().unwrap() >= kept[i],
            "{row}"
        );
    }

    // eval on the dev file gives the run's best metrics (at the kept thresholds), up to a few
    // of the tiny random model's near-identical probabilities falling on the other side of a
    // threshold (its 28 outputs hardly differ between texts).
    let out = ok(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--validation-file",
        s(&dev),
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    for name in ["f1_micro", "f1_macro", "hamming_loss"] {
        let got = m["own"][name].as_f64().unwrap();
        let want = own.get(name).unwrap();
        assert!(
            (got - want).abs() < 0.01,
            "{name}: eval {got}, training {want}"
        );
    }

    // Class weights are for single-label classes.
    let mut args = base.to_vec();
    let other = tmp("cw");
    args.extend(["--class-weights", "balanced", "--out", s(&other)]);
    let (success, _, stderr) = lorabert(&args);
    assert!(
        !success && stderr.contains("multi-label tasks take --pos-weight"),
        "{stderr}"
    );
    for d in [model, run, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A multi-label checkpoint on MiniLM (`tests/golden/multilabel_export/`, by
/// `tools/make_golden_multilabel_export.py`) predicts transformers' sigmoid probabilities of
/// its `export --format transformers` folder (`AutoModelForSequenceClassification`,
/// `problem_type` multi-label) within 1e-4, and a new export says multi-label again.
#[test]
fn predictions_equal_transformers_sigmoid_of_the_export() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/multilabel_export");
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let model = model_dir();
    let ckpt = dir.join("ckpt");
    let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(&ckpt)];
    let sentences: Vec<&str> = exp["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for t in &sentences {
        args.extend(["--sentence", t]);
    }
    let out = ok(&args);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sentences.len(), "{out}");
    let id2label = &exp["config"]["id2label"];
    for (row, want) in rows.iter().zip(exp["transformers"].as_array().unwrap()) {
        for (i, w) in floats(want).iter().enumerate() {
            let name = id2label[i.to_string()].as_str().unwrap();
            let got = row["probabilities"][name].as_f64().unwrap();
            assert!((got - w).abs() < 1e-4, "{name}: {got} vs transformers {w}");
            let listed = row["labels"].as_array().unwrap().iter().any(|l| l == name);
            assert_eq!(listed, got >= 0.5, "{row}");
        }
    }
    let exported = tmp("golden-export");
    ok(&[
        "export",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--format",
        "transformers",
        "--output",
        s(&exported),
    ]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("config.json")).unwrap()).unwrap();
    for k in ["architectures", "id2label", "num_labels", "problem_type"] {
        assert_eq!(cfg[k], exp["config"][k], "{k}");
    }
    assert_eq!(cfg["problem_type"], "multi_label_classification");
    let _ = std::fs::remove_dir_all(exported);
}

#[test]
fn multi_label_flags_on_single_label_data_are_refused() {
    let model = tmp("tiny-single");
    tiny_model(&model);
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/own/sst2.csv");
    let run = tmp("single");
    let base = [
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&train),
        "--epochs",
        "1",
        "--max-len",
        "16",
        "--threads",
        "1",
        "--out",
        s(&run),
    ];
    for (flag, value, says) in [
        (
            "--tune-thresholds",
            None,
            "--tune-thresholds applies to multi-label tasks",
        ),
        (
            "--threshold",
            Some("0.3"),
            "--threshold applies to multi-label tasks",
        ),
        (
            "--pos-weight",
            Some("balanced"),
            "--pos-weight applies to multi-label tasks",
        ),
    ] {
        let mut args = base.to_vec();
        args.push(flag);
        args.extend(value);
        let (success, _, stderr) = lorabert(&args);
        assert!(!success && stderr.contains(says), "{flag}: {stderr}");
    }
    for d in [model, run] {
        let _ = std::fs::remove_dir_all(d);
    }
}
