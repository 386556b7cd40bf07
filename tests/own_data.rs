//! Your own data: the readers (CSV, TSV as GLUE writes it, JSON Lines) on slices of real files
//! (`tests/data/own/`, written by `tools/make_own_fixtures.py`), task-kind inference, the
//! seeded stratified split, bad input (each error naming file, line and column), and training,
//! evaluating and predicting through the binary on a tiny random BERT.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lorabert::data::table::{Format, Table};
use lorabert::model::BertTokenizer;
use lorabert::tasks::PairEncoding;
use lorabert::tasks::own::{self, Columns, DataSpec, TaskKind, TaskType};
use lorabert::train::RunResults;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/own")
        .join(name)
}

fn tok() -> BertTokenizer {
    let bytes = std::fs::read(model_dir().join("tokenizer.json")).unwrap();
    BertTokenizer::from_bytes(&bytes, "tokenizer.json", 64).unwrap()
}

fn spec(train: &str) -> DataSpec {
    DataSpec {
        train_file: train.to_string(),
        validation_split: 0.1,
        ..DataSpec::default()
    }
}

/// `own::load` of in-memory files (`train` named `name`; `validation` optional).
fn load(s: &DataSpec, train: &[u8], validation: Option<&[u8]>) -> lorabert::Result<own::OwnData> {
    own::load(
        s,
        train,
        validation,
        &tok(),
        PairEncoding::Bi,
        42,
        None,
        None,
    )
}

fn err(s: &DataSpec, train: &str, validation: Option<&str>) -> String {
    load(s, train.as_bytes(), validation.map(str::as_bytes))
        .unwrap_err()
        .to_string()
}

fn rows_of(name: &str) -> own::OwnRows {
    let path = fixture(name);
    let p = path.display().to_string();
    let t = Table::read(
        &std::fs::read(&path).unwrap(),
        &p,
        Format::resolve(&p, None).unwrap(),
        true,
    )
    .unwrap();
    let c = Columns::resolve(&t, &spec(&p)).unwrap();
    own::rows(&t, &c, true).unwrap()
}

#[test]
fn csv_jsonl_and_tsv_hold_the_same_rows() {
    let csv = rows_of("sst2.csv");
    let (jsonl, tsv) = (rows_of("sst2.jsonl"), rows_of("sst2.tsv"));
    assert_eq!(csv.rows.len(), 240);
    let texts = |r: &own::OwnRows| {
        r.rows
            .iter()
            .map(|x| (x.text.clone(), x.label.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&csv), texts(&jsonl));
    assert_eq!(texts(&csv), texts(&tsv));
    // A CSV field with a comma, kept whole by its quotes.
    assert!(csv.rows.iter().any(|r| r.text.contains(" , ")));
}

#[test]
fn mrpc_tsv_with_byte_order_mark_and_unbalanced_quotes() {
    let path = fixture("mrpc.tsv");
    let bytes = std::fs::read(&path).unwrap();
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    let d = load(&spec("mrpc.tsv"), &bytes, None).unwrap();
    let c = &d.task.columns;
    assert_eq!(
        (c.text.as_str(), c.text_pair.as_deref(), c.label.as_str()),
        ("#1 String", Some("#2 String"), "Quality")
    );
    assert_eq!(
        d.task.kind,
        TaskKind::Classification {
            id2label: vec!["0".into(), "1".into()]
        }
    );
    // Quoting off: no row swallowed by an unbalanced quote.
    assert_eq!(d.train.examples.len() + d.dev.examples.len(), lines - 1);
    assert!(
        d.train.examples.iter().all(|e| e.b.is_some()),
        "bi-encoded pairs"
    );
}

#[test]
fn task_kinds_classes_and_split() {
    let sst5 = std::fs::read(fixture("sst5.jsonl")).unwrap();
    let d = load(&spec("sst5.jsonl"), &sst5, None).unwrap();
    let five: Vec<String> = (0..5).map(|i| i.to_string()).collect();
    assert_eq!(d.task.kind, TaskKind::Classification { id2label: five });
    assert_eq!(d.task.metric_for_best_model, "accuracy");
    // 10 % held out per class, seeded: every class in both parts, the same split again.
    let s = &d.summary;
    assert_eq!(s.train.rows + s.validation_labels.rows, 200);
    assert!((18..=22).contains(&s.validation_labels.rows), "{s:?}");
    // Class 0 has one row among these 200: it stays in training; the other four are in both.
    assert_eq!(s.train.counts["0"], 1);
    assert_eq!(s.validation_labels.counts.len(), 4);
    assert!(
        s.validation.contains("stratified by class, seed 42"),
        "{}",
        s.validation
    );
    let again = load(&spec("sst5.jsonl"), &sst5, None).unwrap();
    let ids = |d: &own::OwnData| {
        d.dev
            .examples
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&d), ids(&again));
    assert_eq!(
        d.dev.examples[0].id.len(),
        25,
        "the file's id column is kept"
    );

    let sts = std::fs::read(fixture("sts.csv")).unwrap();
    let d = load(&spec("sts.csv"), &sts, None).unwrap();
    assert_eq!(d.task.kind, TaskKind::Regression);
    assert_eq!(d.task.columns.text_pair.as_deref(), Some("sentence2"));
    assert_eq!(d.task.metric_for_best_model, "pearson");
    assert!(d.summary.train.range.is_some());
    // Forced classification of the same column: its values become classes.
    let mut forced = spec("sts.csv");
    forced.task_type = Some(TaskType::Classification);
    let d = load(&forced, &sts, None).unwrap();
    assert!(matches!(d.task.kind, TaskKind::Classification { .. }));

    // String labels keep their names; a validation file is used as it is.
    let train = std::fs::read(fixture("sst2.csv")).unwrap();
    let dev = std::fs::read(fixture("sst2-dev.csv")).unwrap();
    let mut s = spec("sst2.csv");
    s.validation_file = Some("sst2-dev.csv".into());
    let d = load(&s, &train, Some(&dev)).unwrap();
    assert_eq!(
        d.task.kind,
        TaskKind::Classification {
            id2label: vec!["negative".into(), "positive".into()]
        }
    );
    assert_eq!((d.train.examples.len(), d.dev.examples.len()), (240, 80));
    assert_eq!(d.summary.train.counts.values().sum::<usize>(), 240);
}

#[test]
fn bad_input_names_file_line_and_column() {
    let s = spec("reviews.csv");
    // A misspelled column: the header's columns are listed.
    let mut named = spec("reviews.csv");
    named.label_column = Some("lable".into());
    let e = err(&named, "text,label\na,1\nb,0\n", None);
    assert!(
        e.starts_with(
            "reviews.csv line 1: missing column `lable`; the columns are `text`, `label`"
        ),
        "{e}"
    );
    // No usual text column: what was tried, the columns, the flag.
    let e = err(&s, "review,stars\nok,5\nbad,1\n", None);
    assert!(
        e.contains("no text column found")
            && e.contains("`review`, `stars`")
            && e.contains("--text-column"),
        "{e}"
    );
    // Empty labels are skipped and counted.
    let d = load(
        &s,
        b"text,label\na,1\nb,\nc,0\nd,1\ne,0\nf,1\ng,0\nh,1\ni,0\nj,1\nk,0\n",
        None,
    )
    .unwrap();
    assert_eq!(d.summary.skipped_rows, 1);
    // A class of the validation file that training has not seen.
    let mut v = spec("train.csv");
    v.validation_file = Some("dev.csv".into());
    let e = err(
        &v,
        "text,label\na,pos\nb,neg\n",
        Some("text,label\nc,pos\nd,meh\n"),
    );
    assert!(
        e.starts_with("dev.csv line 3: column `label`: label `meh` does not occur in the training data (its classes: neg, pos)"),
        "{e}"
    );
    // One class only.
    let e = err(&s, "text,label\na,pos\nb,pos\n", None);
    assert!(
        e.starts_with("reviews.csv line 2: column `label` holds one class only"),
        "{e}"
    );
    // A non-numeric value in a regression column.
    let mut reg = spec("scores.csv");
    reg.task_type = Some(TaskType::Regression);
    let e = err(&reg, "text,label\na,0.5\nb,high\n", None);
    assert!(
        e.starts_with("scores.csv line 3: column `label`: label `high` is not a number"),
        "{e}"
    );
    // NaN and infinite labels.
    for bad in ["nan", "inf", "-Infinity"] {
        let e = err(&s, &format!("text,label\na,1.5\nb,{bad}\n"), None);
        assert!(e.starts_with("reviews.csv line 3: column `label`"), "{e}");
        assert!(e.contains("is not a finite number"), "{e}");
    }
    // A ragged row.
    let e = err(&s, "text,label\na,1\nb,0,extra\n", None);
    assert!(
        e.starts_with("reviews.csv line 3: the row has 3 fields, the header 2"),
        "{e}"
    );
    // Only a header.
    let e = err(&s, "text,label\n", None);
    assert!(
        e.starts_with("reviews.csv line 1: no rows with a label"),
        "{e}"
    );
    // An unknown extension.
    let e = err(&spec("reviews.xlsx"), "text,label\na,1\n", None);
    assert!(e.starts_with("reviews.xlsx: unknown file extension"), "{e}");
    // Not UTF-8, and a JSON Lines row that is not an object.
    let e = load(&s, b"text,label\n\xff\xfe,1\n", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("reviews.csv line 2: field 1 is not valid UTF-8"),
        "{e}"
    );
    let e = err(
        &spec("r.jsonl"),
        "{\"text\": \"a\", \"label\": 1}\n[1, 2]\n",
        None,
    );
    assert!(e.starts_with("r.jsonl line 2: not a JSON object"), "{e}");
    // A metric the task kind does not have.
    let mut m = spec("reviews.csv");
    m.metric_for_best_model = Some("pearson".into());
    let e = err(&m, "text,label\na,x\nb,y\n", None);
    assert!(
        e.contains("`pearson` is not a metric of classification"),
        "{e}"
    );
    // A file without a header: columns by index.
    let mut nh = spec("cola.tsv");
    nh.no_header = true;
    nh.text_column = Some("3".into());
    nh.label_column = Some("1".into());
    let mut cola = String::new();
    for i in 0..6 {
        cola.push_str(&format!("gj04\t{}\t\tSentence number {i}.\n", i % 2));
    }
    let d = load(&nh, cola.as_bytes(), None).unwrap();
    assert_eq!(d.summary.train.rows + d.summary.validation_labels.rows, 6);
    assert_eq!(d.task.columns.text, "3");
}

// ---- through the binary, on a tiny random BERT ----

/// A stray quote in a CSV of one-line texts: RFC 4180 lets a quoted field span lines, so the
/// reader (like Python's `csv` and pandas) merges lines 4 to 9 into one field and the 40-row file
/// holds 35 rows. lorabert says so in a warning naming the lines and the counts, and
/// `--strict-quotes` makes it an error naming the line the quote opened on.
#[test]
fn a_stray_quote_spanning_lines_is_named() {
    let mut csv = String::from("text,label\n");
    for i in 1..=40 {
        let line = match i {
            3 => "\"a stray quote opens here,1".to_string(),
            8 => "and closes here\" at last,1".to_string(),
            _ => format!("plain text {i},{}", i % 2),
        };
        csv.push_str(&line);
        csv.push('\n');
    }
    let d = load(&spec("stray.csv"), csv.as_bytes(), None).unwrap();
    assert_eq!(d.train.examples.len() + d.dev.examples.len(), 35);
    assert_eq!(d.summary.warnings.len(), 1, "{:?}", d.summary.warnings);
    let w = &d.summary.warnings[0];
    assert!(
        w.starts_with(
            "stray.csv: 1 row of 35 holds a quoted field spanning lines (the first: lines 4-9)"
        ) && w.contains("the file has 41 lines for 35 rows")
            && w.contains("--strict-quotes"),
        "{w}"
    );
    let strict = DataSpec {
        strict_quotes: true,
        ..spec("stray.csv")
    };
    let e = err(&strict, &csv, None);
    assert!(
        e.starts_with("stray.csv line 4: a quoted field opens on this line and closes on line 9"),
        "{e}"
    );
    // A file without such rows says nothing.
    let clean = csv.replace('"', "");
    let d = load(&spec("clean.csv"), clean.as_bytes(), None).unwrap();
    assert!(d.summary.warnings.is_empty(), "{:?}", d.summary.warnings);
}

/// A tiny random BERT of the test `name` (each test its own: tests run in parallel).
fn tiny(name: &str) -> PathBuf {
    let dir = tmp(&format!("tiny-model-{name}"));
    tiny_model(&dir);
    dir
}

const QUICK: &[&str] = &[
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--max-len",
    "32",
    "--threads",
    "1",
    "--lr",
    "5e-3",
];

#[test]
fn train_eval_and_predict_on_own_csv_with_string_labels() {
    let model = tiny("sst2");
    let run = tmp("sst2");
    let (train, dev) = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
    let mut args = vec![
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&train),
        "--validation-file",
        s(&dev),
        "--r",
        "4",
        "--out",
        s(&run),
    ];
    args.extend(QUICK);
    ok(&args);
    let r = RunResults::from_json(&std::fs::read(run.join("results.json")).unwrap(), "r").unwrap();
    let own = r.config.own.as_ref().expect("the own task in the config");
    assert_eq!(own.name, "sst2");
    let data = r.data.as_ref().expect("the data summary");
    assert_eq!(
        data.train.counts["negative"] + data.train.counts["positive"],
        240
    );
    assert_eq!(data.validation_labels.rows, 80);
    let best = r.best.as_ref().unwrap().own.as_ref().expect("own metrics");
    for m in ["accuracy", "f1", "f1_macro", "mcc"].map(|n| best.get(n)) {
        assert!(m.is_some_and(f64::is_finite), "{best:?}");
    }
    let heads = std::fs::read_to_string(run.join("best/heads_config.json")).unwrap();
    assert!(
        heads.contains("\"negative\"") && heads.contains("\"positive\""),
        "{heads}"
    );

    // eval on a labelled file.
    let out = ok(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--validation-file",
        s(&fixture("sst2-dev.csv")),
        "--max-len",
        "32",
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acc = m["own"]["accuracy"].as_f64().unwrap();
    assert!(
        (acc - best.get("accuracy").unwrap()).abs() < 1e-9,
        "{acc} vs {best:?}"
    );

    // predict free text: class names and probabilities that sum to 1.
    let out = ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--sentence",
        "a gorgeous , witty , seductive movie .",
        "--sentence",
        "the plot is nothing but boilerplate clichés",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(
            ["negative", "positive"].contains(&l["label"].as_str().unwrap()),
            "{l}"
        );
        let p = &l["probabilities"];
        let sum = p["negative"].as_f64().unwrap() + p["positive"].as_f64().unwrap();
        assert!((sum - 1.0).abs() < 1e-5, "{l}");
        assert_eq!(l["task"], "sst2");
    }
    // ... and a file, to CSV, keeping the input's ids (here its line numbers).
    let pred = run.join("pred.csv");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--input",
        s(&fixture("sst2-dev.csv")),
        "--output",
        s(&pred),
    ]);
    let text = std::fs::read_to_string(&pred).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,task,label,score,p_negative,p_positive")
    );
    assert_eq!(lines.next().unwrap().split(',').next(), Some("2"));
    assert_eq!(text.lines().count(), 81);
}

#[test]
fn csv_and_jsonl_give_the_same_run_and_regression_pairs_train() {
    let model = tiny("same");
    let metrics = |file: &str| {
        let run = tmp(&format!("same-{file}"));
        let mut args = vec!["train", "--model", s(&model), "--train-file"];
        let f = fixture(file);
        args.push(s(&f));
        args.extend(["--out", s(&run), "--max-steps", "12"]);
        args.extend(QUICK);
        ok(&args);
        let r =
            RunResults::from_json(&std::fs::read(run.join("results.json")).unwrap(), "r").unwrap();
        (
            r.best.unwrap(),
            r.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
        )
    };
    let (a, la) = metrics("sst2.csv");
    let (b, lb) = metrics("sst2.jsonl");
    assert_eq!(a, b);
    assert_eq!(la, lb);

    // Sentence-pair regression, cross-encoded.
    let run = tmp("sts");
    let sts = fixture("sts.csv");
    let mut args = vec![
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&sts),
        "--pair-encoding",
        "cross",
        "--metric-for-best-model",
        "spearman",
        "--out",
        s(&run),
    ];
    args.extend(QUICK);
    ok(&args);
    let r = RunResults::from_json(&std::fs::read(run.join("results.json")).unwrap(), "r").unwrap();
    let own = r.best.unwrap().own.unwrap();
    assert_eq!(own.metric_for_best_model, "spearman");
    assert!(
        ["pearson", "spearman", "mse"]
            .iter()
            .all(|n| own.get(n).is_some())
    );
    let out = ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--sentence",
        "A man plays a guitar.",
        "--sentence-pair",
        "A man is playing the guitar.",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["score"].as_f64().unwrap().is_finite() && v.get("label").is_none(),
        "{v}"
    );
}

#[test]
fn a_file_over_the_limit_is_refused_before_reading() {
    let dir = tmp("huge");
    std::fs::create_dir_all(&dir).unwrap();
    let huge = dir.join("huge.csv");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(2 << 30).unwrap(); // 2 GiB, sparse: nothing is written
    let model = tiny("huge");
    let (success, _, stderr) = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&huge),
        "--out",
        s(&dir.join("run")),
    ]);
    assert!(!success);
    assert!(
        stderr.contains("huge.csv: 2.0 GiB is more than the 1 GiB lorabert reads"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweep_report_and_share_link_on_own_data() {
    let model = tiny("sweep");
    let out = tmp("sweep");
    let train = fixture("sst2.csv");
    ok(&[
        "sweep",
        "--out",
        s(&out),
        "--tasks",
        "own",
        "--adapters",
        "lora",
        "--ranks",
        "1,2",
        "--model",
        s(&model),
        "--",
        "--train-file",
        s(&train),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-len",
        "32",
        "--threads",
        "1",
    ]);
    let rows = lorabert::report::sweep::rows_from_csv(
        &std::fs::read(out.join("sweep.csv")).unwrap(),
        "sweep.csv",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.task == "own" && r.metric.as_deref() == Some("accuracy"))
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("dev accuracy"), "the plots name the metric");
    let link = html
        .split('"')
        .find(|s| s.contains("#v1."))
        .expect("a share link in the report");
    let p = lorabert::report::share::decode(link).unwrap();
    let d = p.data.expect("the link names the data");
    assert_eq!(
        (d.file.as_str(), d.kind.as_str()),
        ("sst2.csv", "classification")
    );
    assert_eq!(d.train_rows + d.validation_rows, 240);
    assert_eq!(p.rows[0].metric.as_deref(), Some("accuracy"));
}

#[test]
fn more_bad_input_found_by_trying_it() {
    let s = spec("reviews.csv");
    // One non-number among numbers: not silently a class per value.
    let mut csv = String::from("text,score\n");
    for i in 0..30 {
        csv.push_str(&format!("t{i},{}.{}\n", i % 5, i % 7));
    }
    csv.push_str("oops,n/a\n");
    let e = err(&s, &csv.replace("score", "label"), None);
    assert!(
        e.starts_with("reviews.csv line 32: column `label`: label `n/a` is not a number, but 30 of the 31 labels are"),
        "{e}"
    );
    // JSON Lines values that are not text.
    for (line, what) in [
        (
            r#"{"text": {"a": 1}, "label": 1}"#,
            "expected a string, got an object",
        ),
        (
            r#"{"text": ["a"], "label": 1}"#,
            "expected a string, got an array",
        ),
        (r#"{"label": 1}"#, "expected a string, got missing"),
        (
            r#"{"text": "x", "label": {"a": 1}}"#,
            "expected a string or number, got an object",
        ),
    ] {
        let file = format!(
            "{{\"text\": \"a\", \"label\": 0}}\n{line}\n{{\"text\": \"b\", \"label\": 1}}\n"
        );
        let e = err(&spec("d.jsonl"), &file, None);
        assert!(
            e.starts_with("d.jsonl line 2: column `") && e.contains(what),
            "{line}: {e}"
        );
    }
    // A label array makes the task multi-label (tests/multi_label.rs), unless the task type
    // says classification.
    let file = "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"x\", \"label\": [1]}\n";
    let mut cls = spec("d.jsonl");
    cls.task_type = Some(TaskType::Classification);
    let e = err(&cls, file, None);
    assert!(
        e.starts_with("d.jsonl line 2: column `label`: expected a string or number, got an array"),
        "{e}"
    );
    // A duplicated column name, and the label column read as text.
    let e = err(&s, "text,label,label\na,1,0\n", None);
    assert!(
        e.contains("column `label` appears 2 times in the header"),
        "{e}"
    );
    let mut same = spec("reviews.csv");
    same.text_column = Some("label".into());
    let e = err(&same, "text,label\na,1\nb,0\n", None);
    assert!(e.contains("column `label` is both text and label"), "{e}");
    // A validation file without labelled rows.
    let mut v = spec("train.csv");
    v.validation_file = Some("dev.csv".into());
    let e = err(&v, "text,label\na,1\nb,0\n", Some("text,label\n"));
    assert!(
        e.starts_with("dev.csv line 1: no rows with a label to validate on"),
        "{e}"
    );
    // The stratified split holds out the fraction asked, not a row of every class.
    let mut many = String::from("text,label\n");
    for i in 0..80 {
        many.push_str(&format!("t{i},c{}\n", i / 2));
    }
    let mut forced = spec("many.csv");
    forced.task_type = Some(TaskType::Classification);
    let d = load(&forced, many.as_bytes(), None).unwrap();
    assert_eq!(d.summary.validation_labels.rows, 8);
    assert!(
        d.summary.validation.starts_with("8 of the 80 rows"),
        "{}",
        d.summary.validation
    );
    // transformers' metric names are accepted.
    let mut m = spec("reviews.csv");
    m.metric_for_best_model = Some("eval_f1".into());
    let d = load(&m, b"text,label\na,x\nb,y\nc,x\nd,y\n", None).unwrap();
    assert_eq!(d.task.metric_for_best_model, "f1");
}

#[test]
fn runs_are_not_overwritten_and_resumes_read_the_same_data() {
    let model = tiny("guard");
    let dir = tmp("guard");
    std::fs::create_dir_all(&dir).unwrap();
    let train = dir.join("t.csv");
    std::fs::copy(fixture("sst2.csv"), &train).unwrap();
    let run = dir.join("run");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "--model",
            s(&model),
            "--train-file",
            s(&train),
            "--out",
            s(&run),
        ];
        a.extend(QUICK);
        a.extend(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // A run that stops at step 5 (a non-finite loss) with a resume checkpoint at step 4.
    let first = base(&["--checkpoint-every", "4", "--debug-nan-at-step", "5"]);
    let (success, _, stderr) = lorabert(&args(&first));
    assert!(!success && stderr.contains("--resume"), "{stderr}");
    assert!(run.join("resume/state.json").is_file());
    // A new run into the folder is refused (the resume checkpoint would be lost) ...
    let (success, _, stderr) = lorabert(&args(&base(&[])));
    assert!(
        !success && stderr.contains("holds an interrupted run") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    // ... and a resume of a changed training file too.
    std::fs::write(
        &train,
        std::fs::read_to_string(fixture("sst2.csv"))
            .unwrap()
            .replacen("negative", "positive", 3),
    )
    .unwrap();
    let (success, _, stderr) = lorabert(&["train", "--resume", s(&run), "--threads", "1"]);
    assert!(
        !success && stderr.contains("changed since this run began"),
        "{stderr}"
    );
    assert!(
        stderr.contains("resuming with the run's model"),
        "the run's model is found: {stderr}"
    );
    // --overwrite starts over.
    ok(&args(&base(&["--overwrite"])));
    // Own-data options without --train-file are refused, not ignored.
    let (success, _, stderr) = lorabert(&[
        "train",
        "--task",
        "sst",
        "--text-column",
        "x",
        "--out",
        s(&dir.join("other")),
    ]);
    assert!(
        !success && stderr.contains("--text-column only applies to your own data"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_reads_other_column_names_and_refuses_mismatched_inputs() {
    let model = tiny("cols");
    let run = tmp("cols");
    let train = fixture("sst2.csv");
    let mut args = vec![
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&train),
        "--out",
        s(&run),
    ];
    args.extend(QUICK);
    ok(&args);
    // Trained on `sentence`; this file has `text`: read with a note.
    let jsonl = fixture("sst5.jsonl");
    let (success, stdout, stderr) = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--input",
        s(&jsonl),
    ]);
    assert!(success, "{stderr}");
    assert!(
        stderr.contains("no column `sentence`") && stderr.contains("reading `text`"),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 200);
    let (success, _, stderr) = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--sentence",
        "a",
        "--sentence-pair",
        "b",
    ]);
    assert!(
        !success && stderr.contains("takes single texts"),
        "{stderr}"
    );
    let (success, _, stderr) = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--sentence",
        "a",
        "--output",
        "x.txt",
    ]);
    assert!(
        !success && stderr.contains("name a .csv or .jsonl file"),
        "{stderr}"
    );
    // An ensemble of a classifier and a regressor is refused before anything is loaded.
    let reg = tmp("cols-reg");
    let sts = fixture("sts.csv");
    let mut args = vec![
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&sts),
        "--out",
        s(&reg),
    ];
    args.extend(QUICK);
    ok(&args);
    let (success, _, stderr) = lorabert(&[
        "ensemble",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--checkpoint",
        s(&reg),
        "--validation-file",
        s(&fixture("sst2-dev.csv")),
    ]);
    assert!(
        !success && stderr.contains("predict different things"),
        "{stderr}"
    );
    // A sweep whose options fail says so once, before any cell.
    let out = tmp("cols-sweep");
    let (success, _, stderr) = lorabert(&[
        "sweep",
        "--out",
        s(&out),
        "--tasks",
        "own",
        "--ranks",
        "1,2",
        "--adapters",
        "lora",
        "--model",
        s(&model),
        "--",
        "--train-file",
        s(&fixture("missing.csv")),
    ]);
    assert!(
        !success && stderr.contains("the cells' training options fail"),
        "{stderr}"
    );
    assert!(
        !out.join("cells").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .join("results.json")
            .is_file())
    );
}
